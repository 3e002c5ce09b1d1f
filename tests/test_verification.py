"""Copy verification by local features (workers/ranking/verification.py): plain functions, and its stage."""

import io
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from workers.imageio import load_rgb
from workers.ranking import tunables, verification
from workers.ranking.tunables import MIN_INLIERS
from workers.ranking.verification import extract, pack, unpack, verify


@pytest.fixture(scope="module")
def animals(dev_images):
    """Three real photo cut-outs, decoded as the indexer decodes them: two birds alike, and a frog."""
    folder = dev_images / "tuxpaint" / "animals"
    return {
        name: load_rgb(folder / f"{file}.png")
        for name, file in (("crow", "birds_crow"), ("blackbird", "birds_blackbird"), ("frog", "amphibians_frog"))
    }


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


@pytest.mark.parametrize("batch", [1, 2, tunables.MATCH_BATCH, 100])
def test_matching_candidates_together_finds_what_matching_each_alone_finds(animals, batch):
    """match_many stacks candidates' descriptors into one product per size; each candidate's Match (inliers, size,
    mirroring, transform) is match()'s of it alone: copies as is, mirrored and turned, other photos, no keypoints."""
    frog, crow = animals["frog"], animals["crow"]
    query = extract(web_copy(frog.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    candidates = [
        extract(img)
        for img in (crow, frog, animals["blackbird"], shapes(3), frog.transpose(Image.Transpose.ROTATE_90), shapes(4))
    ] + [verification.Features((verification.EMPTY, verification.EMPTY)), verification.Features((verification.EMPTY,))]
    together = verification.match_many(query, candidates, batch=batch)
    alone = [verification.match(query, c) for c in candidates]
    assert [(m.inliers, m.scale, m.mirrored) for m in together] == [(m.inliers, m.scale, m.mirrored) for m in alone]
    assert together[1].mirrored and together[1].inliers >= MIN_INLIERS
    for a, b in zip(together, alone):
        assert (a.matrix is None) == (b.matrix is None)
        assert a.matrix is None or np.allclose(a.matrix, b.matrix, atol=1e-4)
    assert verification.match_many(query, [], batch=batch) == []
    assert (
        verification.match_many(extract(Image.new("RGB", (64, 64))), candidates[:2], batch=batch)
        == [verification.NO_MATCH] * 2
    )


def test_a_large_query_shrunk_first_keeps_its_256_pixel_keypoints():
    """Query.pixels: the query box-shrunk to QUERY_SIDE before its evidence is computed gives the very keypoints
    at 256 pixels that the full image gives (_working_grey made the same shrink), and a small image is not touched."""
    big = shapes(5, size=(1900, 1270))
    small = verification.reduced(big, tunables.QUERY_SIDE)
    assert small.size == (634, 424) and max(small.size) >= tunables.QUERY_SIDE
    full, shrunk = extract(big).scales[0], extract(small).scales[0]
    assert np.array_equal(full.descriptors, shrunk.descriptors) and np.array_equal(full.points, shrunk.points)
    little = shapes(6)
    assert verification.reduced(little, tunables.QUERY_SIDE) is little


def test_pack_round_trips_within_the_stated_size(animals):
    """pack/unpack keep descriptors exactly and points to 1/256 pixel, in 2 + 2 x sizes + 132 bytes per keypoint."""
    features = extract(animals["crow"])
    data = pack(features)
    back = unpack(data)
    sizes = len(tunables.SCALES)
    assert [len(s) > 0 for s in features.scales] == [True] * sizes
    assert all(len(s) <= count for s, (_, count) in zip(features.scales, tunables.SCALES))
    assert len(data) == 2 + 2 * sizes + 132 * len(features) <= 2 + 2 * sizes + 132 * verification.max_keypoints()
    for original, unpacked in zip(features.scales, back.scales):
        assert np.array_equal(unpacked.descriptors, original.descriptors)
        assert np.abs(unpacked.points - original.points).max() < 1 / 256
    assert verify(back, features) == verify(features, features)


def test_a_blurred_small_copy_verifies_at_the_smaller_size(animals):
    """Halved and blurred, a photo still verifies: its coarse keypoints match at 128 pixels where 256 falls short."""
    from PIL import ImageFilter

    frog = animals["frog"]
    copy = frog.resize((frog.width // 2, frog.height // 2), Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(1.5)
    )
    original, query = extract(frog), extract(copy)
    assert verification._match_at(0, query.scales[0], original.scales[0]).inliers < MIN_INLIERS
    assert verify(query, original) >= MIN_INLIERS


def test_unpack_refuses_another_version_or_a_damaged_record():
    """A record from another format version, or cut short, raises ValueError instead of returning garbage."""
    data = pack(extract(shapes(1)))
    with pytest.raises(ValueError, match="version"):
        unpack(bytes([verification.VERSION + 1]) + data[1:])
    with pytest.raises(ValueError, match="version"):
        unpack(bytes([1, 0, 0]))  # the one-size format of version 1
    with pytest.raises(ValueError, match="length"):
        unpack(data[:-1])
    with pytest.raises(ValueError):
        unpack(b"")


def test_sift_s_pre_filter_skips_faint_ripples():
    """OpenCV pre-filters candidate extrema at floor(0.5 * threshold / layers * 255) grey levels; at 0 (a threshold
    of 0.02 with 3 layers) every faint ripple is refined before being rejected, which doubled SIFT's time."""
    pre_filter = math.floor(0.5 * tunables.CONTRAST_THRESHOLD / tunables.SIFT_LAYERS * 255)
    assert pre_filter == 1  # and no more: the contrast test itself stays near half of OpenCV's default


@pytest.mark.parametrize("size", [(1, 1), (20000, 10), (10, 20000), (640, 480)])
def test_flat_and_degenerate_images_have_no_features(size):
    """A one-pixel image, a 20000x10 strip and a flat picture give zero features, and verify to 0."""
    features = extract(Image.new("RGB", size, (200, 30, 30)))
    assert len(features) == 0
    assert len(unpack(pack(features))) == 0
    assert verify(features, extract(shapes(1))) == 0
    assert verify(extract(shapes(1)), features) == 0


@pytest.mark.django_db
def test_the_stage_verifies_every_candidate_with_stored_keypoints_and_only_once_per_query():
    """Every candidate whose keypoints are stored is verified, the near duplicate appended after the global ones too;
    one without a record stays unverified (None); a second ranking of the same query verifies nothing again."""
    from search.models import IndexedImage, LocalFeatures
    from workers.ranking.candidates import GLOBAL, NEAR, Candidates

    original = shapes(7)
    ids = []
    for n, img in enumerate([shapes(100), shapes(101), None, original]):
        image = IndexedImage.objects.create(content_hash=f"v{n}", file=f"v{n}.png", title=f"v{n}", status="ready")
        if img is not None:
            LocalFeatures.objects.create(image=image, data=pack(extract(img)))
        ids.append(image.id)
    query = SimpleNamespace(features=extract(web_copy(original)), matches={})
    table = Candidates(query)
    for image_id, score in zip(ids[:3], (0.9, 0.8, 0.7)):
        table.add(image_id, score, GLOBAL)
    table.add(ids[3], 0.5, NEAR)
    verification.inliers(query, table)
    counts = [row.inliers for row in table]
    assert counts[2] is None and counts[3] >= MIN_INLIERS and counts[0] < MIN_INLIERS and counts[1] < MIN_INLIERS
    assert {i: m and m.inliers for i, m in query.matches.items()} == dict(zip(ids, counts))
    query.features = None  # a second pass must not need the query's keypoints: every count is kept
    again = Candidates(query)
    again.add(ids[3], 0.5, NEAR)
    verification.inliers(query, again)
    assert again.get(ids[3]).inliers == counts[3]
