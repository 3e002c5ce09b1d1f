"""Local-feature copy verification (workers/localfeatures.py): plain functions, no database."""

import io
import math
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from workers import localfeatures
from workers.imageio import load_rgb
from workers.localfeatures import MIN_INLIERS, extract, pack, rerank, unpack, verify


@pytest.fixture(scope="module")
def animals(dev_images):
    """Three real photo cut-outs, decoded as the indexer decodes them: two birds alike, and a frog."""
    folder = dev_images / "tuxpaint" / "animals"
    return {name: load_rgb(folder / f"{file}.png") for name, file in
            (("crow", "birds_crow"), ("blackbird", "birds_blackbird"), ("frog", "amphibians_frog"))}


def shapes(seed, size=(320, 240)):
    """A generated picture: random coloured shapes on a grey background, different for each seed."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x, y, x + rng.randint(8, 60), y + rng.randint(8, 60))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return img


def web_copy(img):
    """Cropped off-centre, shrunk to 60% and re-encoded as a poor JPEG: a copy found on the web."""
    w, h = img.size
    img = img.crop((w // 10, h // 12, w - w // 8, h - h // 10))
    img = img.resize((img.width * 3 // 5, img.height * 3 // 5), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=50)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_an_edited_copy_of_a_real_photo_verifies_with_many_inliers(animals):
    """Crop + rescale + JPEG of a real photo still matches its original geometrically."""
    for name in ("crow", "frog"):
        assert verify(extract(web_copy(animals[name])), extract(animals[name])) >= 2 * MIN_INLIERS, name


def test_a_different_real_photo_does_not_verify(animals):
    """Another photo, even of a similar black bird, stays below the copy threshold both ways."""
    crow, blackbird, frog = (extract(animals[n]) for n in ("crow", "blackbird", "frog"))
    assert verify(crow, blackbird) < MIN_INLIERS
    assert verify(blackbird, crow) < MIN_INLIERS
    assert verify(crow, frog) < MIN_INLIERS


def test_a_mirrored_copy_verifies(animals):
    """A left-right flipped copy verifies although SIFT descriptors are not mirror-invariant."""
    original = extract(animals["frog"])
    flipped = extract(animals["frog"].transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert verify(flipped, original) >= 2 * MIN_INLIERS
    generated = shapes(3)
    mirrored_copy = web_copy(generated.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    assert verify(extract(mirrored_copy), extract(generated)) >= MIN_INLIERS


def test_a_quarter_turned_copy_verifies(animals):
    """A photo saved sideways verifies: SIFT keypoints carry their own orientation."""
    turned = animals["crow"].transpose(Image.Transpose.ROTATE_90)
    assert verify(extract(turned), extract(animals["crow"])) >= 2 * MIN_INLIERS


def test_pack_round_trips_within_the_stated_size(animals):
    """pack/unpack keep descriptors exactly and points to 1/256 pixel, in 2 + 2 x sizes + 132 bytes per keypoint."""
    features = extract(animals["crow"])
    data = pack(features)
    back = unpack(data)
    sizes = len(localfeatures.SCALES)
    assert [len(s) > 0 for s in features.scales] == [True] * sizes
    assert all(len(s) <= count for s, (_, count) in zip(features.scales, localfeatures.SCALES))
    assert len(data) == 2 + 2 * sizes + 132 * len(features) <= 2 + 2 * sizes + 132 * localfeatures.MAX_KEYPOINTS
    for original, unpacked in zip(features.scales, back.scales):
        assert np.array_equal(unpacked.descriptors, original.descriptors)
        assert np.abs(unpacked.points - original.points).max() < 1 / 256
    assert verify(back, features) == verify(features, features)


def test_a_blurred_small_copy_verifies_at_the_smaller_size(animals):
    """Halved and blurred, a photo still verifies: its coarse keypoints match at 128 pixels where 256 falls short."""
    from PIL import ImageFilter

    frog = animals["frog"]
    copy = frog.resize((frog.width // 2, frog.height // 2), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(1.5))
    original, query = extract(frog), extract(copy)
    assert localfeatures._verify_at(query.scales[0], original.scales[0]) < MIN_INLIERS
    assert verify(query, original) >= MIN_INLIERS


def test_unpack_refuses_another_version_or_a_damaged_record():
    """A record from another format version, or cut short, raises ValueError instead of returning garbage."""
    data = pack(extract(shapes(1)))
    with pytest.raises(ValueError, match="version"):
        unpack(bytes([localfeatures.VERSION + 1]) + data[1:])
    with pytest.raises(ValueError, match="version"):
        unpack(bytes([1, 0, 0]))  # the one-size format of version 1
    with pytest.raises(ValueError, match="length"):
        unpack(data[:-1])
    with pytest.raises(ValueError):
        unpack(b"")


def test_sift_s_pre_filter_skips_faint_ripples():
    """OpenCV pre-filters candidate extrema at floor(0.5 * threshold / layers * 255) grey levels; at 0 (a threshold
    of 0.02 with 3 layers) every faint ripple is refined before being rejected, which doubled SIFT's time."""
    pre_filter = math.floor(0.5 * localfeatures.CONTRAST_THRESHOLD / localfeatures.SIFT_LAYERS * 255)
    assert pre_filter == 1  # and no more: the contrast test itself stays near half of OpenCV's default


@pytest.mark.parametrize("size", [(1, 1), (20000, 10), (10, 20000), (640, 480)])
def test_flat_and_degenerate_images_have_no_features(size):
    """A one-pixel image, a 20000x10 strip and a flat picture give zero features, and verify to 0."""
    features = extract(Image.new("RGB", size, (200, 30, 30)))
    assert len(features) == 0
    assert len(unpack(pack(features))) == 0
    assert verify(features, extract(shapes(1))) == 0
    assert verify(extract(shapes(1)), features) == 0


def features_of(stored):
    """A load_features for rerank: the stored features of the asked ids that have them."""
    return lambda ids: {i: stored[i] for i in ids if i in stored}


def test_rerank_puts_a_verified_copy_first_even_with_a_lower_global_score():
    """A copy ranked third by cosine moves to the top as "copy"; the others keep their order and scores."""
    original = shapes(7)
    features = {1: extract(shapes(1)), 2: extract(shapes(2)), 3: extract(original)}
    candidates = [(1, 0.91), (2, 0.80), (3, 0.52)]
    ranked = rerank(candidates, extract(web_copy(original)), features_of(features), min_inliers=MIN_INLIERS)
    assert ranked == [(3, 0.52, "copy"), (1, 0.91, "similar"), (2, 0.80, "similar")]


def test_rerank_keeps_the_global_order_without_a_copy():
    """With no copy among the candidates, and one candidate without features, nothing moves."""
    features = {1: extract(shapes(1)), 3: extract(shapes(3))}
    candidates = [(1, 0.9), (2, 0.8), (3, 0.7)]
    ranked = rerank(candidates, extract(shapes(9)), features_of(features), min_inliers=MIN_INLIERS)
    assert ranked == [(1, 0.9, "similar"), (2, 0.8, "similar"), (3, 0.7, "similar")]


def test_order_ranks_copies_by_inliers_and_ties_by_global_order():
    """Copies come first, most inliers first; equal counts and all non-copies keep the global order."""
    candidates = [(10, 0.9), (11, 0.8), (12, 0.7), (13, 0.6), (14, 0.5)]
    ranked = localfeatures.order(candidates, [3, 40, 12, 40, 9], min_inliers=10)
    expected = [(11, "copy"), (13, "copy"), (12, "copy"), (10, "similar"), (14, "similar")]
    assert [(i, m) for i, _, m in ranked] == expected


def test_order_puts_the_query_s_very_file_first_as_a_copy_whatever_its_inliers():
    """An identical file (the upload's own bytes, or the indexed image searched with) leads, then copies, then the rest."""
    candidates = [(1, 0.9), (2, 0.8), (3, 0.99)]
    ranked = localfeatures.order(candidates, [0, 30, 2], min_inliers=10, identical={3})
    assert ranked == [(3, 0.99, "copy"), (2, 0.8, "copy"), (1, 0.9, "similar")]


def test_order_credits_inliers_below_the_copy_threshold_to_the_lead_of_the_candidates_that_are_not_copies():
    """A few inliers lift the likeliest source past a slightly closer candidate without any, never past a copy or a
    far better score; the others keep their global order; the scores shown stay the global ones and nothing below
    the threshold is called a copy."""
    candidates = [(1, 0.80), (2, 0.78), (3, 0.70), (4, 0.69), (5, 0.40)]
    inliers = [0, 6, 0, 5, 12]
    ranked = localfeatures.order(candidates, inliers, min_inliers=10, inlier_weight=0.02)
    # 2: 0.78 + 6 x 0.02 = 0.90 leads the rest; 4 (0.69 + 0.10 = 0.79) stays behind 3; 5 is a copy and goes first.
    assert ranked == [(5, 0.40, "copy"), (2, 0.78, "similar"), (1, 0.80, "similar"), (3, 0.70, "similar"),
                      (4, 0.69, "similar")]
    assert localfeatures.order(candidates, [0, 6, 0, 5, 0], min_inliers=10, inlier_weight=0.0) == [
        (1, 0.80, "similar"), (2, 0.78, "similar"), (3, 0.70, "similar"), (4, 0.69, "similar"), (5, 0.40, "similar")]
    far = localfeatures.order([(1, 0.95), (2, 0.60)], [0, 9], min_inliers=10, inlier_weight=0.02)
    assert [i for i, _, _ in far] == [1, 2]  # 0.60 + 0.18 < 0.95


def test_order_credits_signature_likeness_to_the_lead_of_the_candidates_that_are_not_copies():
    """A candidate that looks like the query at 16x16 leads the rest ahead of a slightly closer one, never ahead of
    a copy or a far better score; the others keep their global order and nothing is called a copy for it."""
    candidates = [(1, 0.80), (2, 0.78), (3, 0.70), (4, 0.40)]
    likeness = [0.1, 0.2, 0.9, 0.95]
    ranked = localfeatures.order(candidates, [0, 0, 0, 12], min_inliers=10, likeness=likeness, signature_weight=0.2)
    # 3: 0.70 + 0.2 x 0.9 = 0.88 leads 1 (0.82) and 2 (0.82); 4 is a verified copy and goes first.
    assert ranked == [(4, 0.40, "copy"), (3, 0.70, "similar"), (1, 0.80, "similar"), (2, 0.78, "similar")]
    assert [i for i, _, _ in localfeatures.order(candidates, [0] * 4, min_inliers=10)] == [1, 2, 3, 4]  # no likeness
    far = localfeatures.order([(1, 0.95), (2, 0.70)], [0, 0], min_inliers=10, likeness=[0.0, 1.0], signature_weight=0.2)
    assert [i for i, _, _ in far] == [1, 2]  # 0.70 + 0.2 < 0.95
    both = localfeatures.order([(1, 0.80), (2, 0.70)], [0, 3], min_inliers=10, inlier_weight=0.02,
                               likeness=[0.2, 0.5], signature_weight=0.2)
    assert [i for i, _, _ in both] == [2, 1]  # 0.70 + 3 x 0.02 + 0.10 = 0.86 against 0.80 + 0.04


def test_order_puts_the_near_duplicate_after_verified_copies_and_before_the_rest():
    """The signature's near duplicate is a copy, behind any verified copy, ahead of closer-scoring candidates."""
    candidates = [(1, 0.9), (2, 0.8), (3, 0.6), (4, 0.5)]
    ranked = localfeatures.order(candidates, [0, 0, 12, 0], min_inliers=10, near=3)
    assert ranked == [(3, 0.6, "copy"), (4, 0.5, "copy"), (1, 0.9, "similar"), (2, 0.8, "similar")]


def test_rerank_verifies_every_candidate_and_brings_in_a_distant_copy():
    """The near duplicate appended after the global candidates (it ranked far below them) is verified too and
    comes first as a copy; candidates without features are not verified."""
    original = shapes(7)
    stored = {i: extract(shapes(100 + i)) for i in range(10)}
    stored[40] = extract(original)
    del stored[4]
    asked = []

    def load(ids):
        asked.extend(ids)
        return {i: stored[i] for i in ids if i in stored}

    candidates = [(i, 0.9 - i / 100) for i in range(10)] + [(40, 0.5)]
    ranked = rerank(candidates, extract(web_copy(original)), load, near=10)
    assert ranked[0] == (40, 0.5, "copy") and [m for _, _, m in ranked[1:]] == ["similar"] * 10
    assert asked == [*range(10), 40]


def test_order_picks_the_lead_on_lead_scores_where_given_and_keeps_the_global_scores():
    """lead_scores (the copy space's likeness) replace the global score in picking the lead only: the results keep
    their global scores and the others their global order."""
    candidates = [(1, 0.80), (2, 0.78), (3, 0.70), (4, 0.65)]
    ranked = localfeatures.order(candidates, [0, 0, 2, 0], min_inliers=10, inlier_weight=0.02,
                                 lead_scores=[0.30, 0.20, 0.25, 0.60])
    assert ranked == [(4, 0.65, "similar"), (1, 0.80, "similar"), (2, 0.78, "similar"), (3, 0.70, "similar")]
    # 3 has 2 inliers: 0.25 + 0.04 does not beat 4's 0.60; without lead_scores 1 leads on its global score.
    assert [i for i, _, _ in localfeatures.order(candidates, [0, 0, 2, 0], min_inliers=10)] == [1, 2, 3, 4]
