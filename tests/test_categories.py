import pytest

from workers.categories import CATEGORIES, MIN_TAG_PROBABILITY, category_for_class, tag_for


@pytest.fixture(scope="module")
def class_index():
    """Map each ImageNet class name to its index, using torchvision's own name list."""
    weights = pytest.importorskip("torchvision.models").MobileNet_V2_Weights.IMAGENET1K_V1
    names = weights.meta["categories"]
    assert len(names) == 1000
    return {name: index for index, name in enumerate(names)}


def test_one_category_per_class():
    """Every one of the 1000 ImageNet classes has a category."""
    assert len(CATEGORIES) == 1000
    assert all(isinstance(category, str) and category for category in CATEGORIES)


def test_categories_are_short_lowercase_words():
    """Tags are lowercase plain words, at most two of them."""
    for category in set(CATEGORIES):
        assert category == category.lower()
        assert 1 <= len(category.split()) <= 2
        assert category.replace(" ", "").isalpha()


def test_dog_breeds_are_dogs():
    """All dog breeds (151..268) map to "dog", and nothing else does."""
    dogs = [index for index, category in enumerate(CATEGORIES) if category == "dog"]
    assert dogs == list(range(151, 269))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("goldfish", "fish"),
        ("bald eagle", "bird"),
        ("tree frog", "amphibian"),
        ("boa constrictor", "reptile"),
        ("tarantula", "spider"),
        ("golden retriever", "dog"),
        ("tabby", "cat"),
        ("Persian cat", "cat"),
        ("Siamese cat", "cat"),
        ("lion", "big cat"),
        ("snow leopard", "big cat"),
        ("ice bear", "bear"),
        ("sports car", "vehicle"),
        ("school bus", "vehicle"),
        ("speedboat", "boat"),
        ("airliner", "aircraft"),
        ("acoustic guitar", "musical instrument"),
        ("pizza", "food"),
        ("banana", "fruit"),
        ("broccoli", "vegetable"),
        ("laptop", "electronics"),
        ("volcano", "landscape"),
        ("seashore", "landscape"),
        ("daisy", "flower"),
        ("agaric", "fungus"),
        ("scuba diver", "person"),
    ],
)
def test_spot_checks_by_name(class_index, name, expected):
    """Classes looked up by torchvision's name get the expected category."""
    assert category_for_class(class_index[name]) == expected


def test_number_of_distinct_categories():
    """The tag vocabulary is coarse but not too coarse."""
    assert 30 <= len(set(CATEGORIES)) <= 90


def test_few_classes_are_other():
    """Almost every class gets a real category rather than "other"."""
    assert CATEGORIES.count("other") < 30


def test_category_for_class_matches_table():
    """The lookup function agrees with the CATEGORIES tuple at both ends."""
    assert category_for_class(0) == CATEGORIES[0]
    assert category_for_class(999) == CATEGORIES[999]


@pytest.mark.parametrize("index", [-1, 1000, 10_000])
def test_out_of_range_index_raises(index):
    """Indices outside 0..999 raise ValueError instead of wrapping or IndexError."""
    with pytest.raises(ValueError):
        category_for_class(index)


def test_a_tag_only_for_a_likely_category_that_names_something():
    assert tag_for("dog", MIN_TAG_PROBABILITY) == "dog" and tag_for("dog", 0.99) == "dog"
    assert tag_for("dog", MIN_TAG_PROBABILITY - 0.01) == ""
    assert tag_for("other", 0.99) == ""
