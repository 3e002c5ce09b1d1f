"""The embedding model: every registered backbone, the shared real weights, and refusing bad weights."""

import numpy as np
import pytest
import torchvision.models._api
from PIL import Image

from imgsearch.backbones import MODELS
from workers.embedder import Embedder, WeightsError, check_weights

from .conftest import WEIGHTS


def pictures():
    return [Image.new("RGB", (300, 200), c) for c in ("red", "navy")] + [
        Image.effect_noise((240, 240), 60).convert("RGB")
    ]


@pytest.fixture(scope="module")
def mobilenet():
    return Embedder("mobilenet_v2", str(WEIGHTS))


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_every_registered_backbone_gives_unit_vectors_of_its_dimension(arch):
    """Each backbone in the registry embeds a batch into L2-normalised vectors of the declared size."""
    embedder = Embedder(arch, "random")
    vectors, predictions = embedder.embed(pictures())
    assert vectors.shape == (3, MODELS[arch].dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert len(predictions) == 3 and all(p.category and 0 <= p.score <= 1 for p in predictions)
    assert embedder.key == f"{arch}:random"


def test_real_weights_embed_deterministically_and_batching_changes_nothing(mobilenet):
    """The same image gives the same vector alone or in a batch."""
    images = pictures()
    batch, _ = mobilenet.embed(images)
    alone, _ = mobilenet.embed(images[1:2])
    assert np.allclose(batch[1], alone[0], atol=1e-4)
    assert mobilenet.key.startswith("mobilenet_v2:sha256-") and mobilenet.dim == 1280


def test_the_classifier_head_names_a_dog_a_dog(mobilenet, dev_images):
    """Real weights on a real dog photo give the automatic tag "dog"."""
    from workers.imageio import load_rgb

    _, predictions = mobilenet.embed([load_rgb(dev_images / "tuxpaint" / "animals" / "mammals_dogs_dog.png")])
    assert predictions[0].category == predictions[0].tag == "dog", predictions


def test_missing_weights_file_names_the_setting_and_the_path(tmp_path):
    """A weights path that does not exist is refused, naming IMGSEARCH_WEIGHTS and the path."""
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=f"IMGSEARCH_WEIGHTS.*{missing}"):
        check_weights("mobilenet_v2", str(missing))


def test_corrupt_weights_are_refused(tmp_path):
    """A file that is not a state_dict is refused with the path in the message."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(WeightsError, match="cannot be loaded"):
        check_weights("mobilenet_v2", str(bad))
    with pytest.raises(WeightsError, match="cannot be loaded"):
        Embedder("mobilenet_v2", str(bad))


def test_weights_of_another_architecture_are_refused():
    """MobileNetV2 weights do not fit ResNet-50, and the check says so before any computation."""
    with pytest.raises(WeightsError, match="does not fit"):
        check_weights("resnet50", str(WEIGHTS))
    check_weights("mobilenet_v2", str(WEIGHTS))


def test_unknown_weights_names_list_the_valid_ones():
    """A weights name torchvision does not know is refused with the valid names."""
    with pytest.raises(WeightsError, match="IMAGENET1K_V1"):
        check_weights("mobilenet_v2", "IMAGENET_BOGUS")


def test_no_download_without_network_gives_an_actionable_message(monkeypatch):
    """Where the download fails, the message says to point IMGSEARCH_WEIGHTS at a file."""

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError, match="set IMGSEARCH_WEIGHTS to its path"):
        check_weights("mobilenet_v2", "DEFAULT")


def test_the_tag_is_the_category_its_classes_add_up_to_and_only_a_likely_one():
    """Classes of one category add up (three dog breeds beat one cat class); below MIN_TAG_PROBABILITY no tag."""
    import torch

    from workers.categories import CATEGORIES, MIN_TAG_PROBABILITY
    from workers.embedder import _predictions

    names = [f"class {i}" for i in range(1000)]
    cat_class, dog_classes = CATEGORIES.index("cat"), [i for i, c in enumerate(CATEGORIES) if c == "dog"][:3]
    probs = torch.full((3, 1000), 1e-9)
    other = next(i for i, c in enumerate(CATEGORIES) if c not in ("cat", "dog"))
    probs[0, cat_class], probs[0, dog_classes], probs[0, other] = (
        0.3,
        torch.tensor([0.25, 0.2, 0.15]),
        0.1,
    )  # cat on top
    probs[1, :] = 1 / 1000  # no idea at all
    probs[2, cat_class], probs[2, other] = 0.9, 0.1
    dogs, flat, cat = _predictions(probs.log(), names)
    assert (dogs.category, dogs.tag, dogs.label) == ("dog", "dog", f"class {dog_classes[0]}")
    assert round(dogs.score, 2) == 0.6
    assert flat.score < MIN_TAG_PROBABILITY and flat.category and flat.tag == "" and flat.auto_tags == []
    assert (cat.tag, cat.auto_tags, cat.label) == ("cat", ["cat"], f"class {cat_class}") and round(cat.score, 2) == 0.9
