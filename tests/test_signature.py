"""Signatures (workers/ranking/signature.py): tiny grey thumbnails that still match a blurred, shrunk or turned copy,
found in the whole index and compared with each candidate."""

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from workers.imageio import load_rgb
from workers.ranking import signature, tunables


@pytest.fixture(scope="module")
def photos(dev_images):
    """Real photo cut-outs, decoded as the indexer decodes them."""
    folder = dev_images / "tuxpaint" / "animals"
    return [
        load_rgb(folder / f"{name}.png")
        for name in ("birds_crow", "birds_blackbird", "amphibians_frog", "mammals_cats_tiger", "birds_pink_flamingo")
    ]


def degraded(img):
    """Shrunk to a third, blurred, greyed, darkened and saved as a poor JPEG: too small and soft for keypoints."""
    img = img.resize((max(1, img.width // 3), max(1, img.height // 3)), Image.Resampling.BILINEAR)
    img = ImageEnhance.Brightness(img.filter(ImageFilter.GaussianBlur(1.5)).convert("L").convert("RGB")).enhance(0.8)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=35)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_a_degraded_copy_keeps_its_signature_and_others_do_not_match(photos):
    """Each degraded copy correlates with its own original at SIGNATURE_COPY or more, and best of all."""
    stored = np.stack([signature.compute(img) for img in photos])
    for number, img in enumerate(photos):
        likeness = signature.similarities(signature.compute(degraded(img)), stored)
        assert likeness[number] >= tunables.SIGNATURE_COPY, (number, likeness)
        assert signature.near_or_lookalike((int(np.argmax(likeness)), likeness.max())) == (number, None)
        assert np.delete(likeness, number).max() < tunables.SIGNATURE_COPY


@pytest.mark.parametrize(
    "turn",
    [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.TRANSPOSE],
)
def test_a_turned_or_mirrored_copy_matches_in_one_of_the_eight_orientations(photos, turn):
    """A photo saved sideways or mirrored matches as well as an upright copy, and not when upright only."""
    original = signature.compute(photos[3])
    copy = signature.compute(degraded(photos[3]).transpose(turn))
    assert signature.similarities(copy, original[None])[0] >= tunables.SIGNATURE_COPY
    assert float(copy @ original) < tunables.SIGNATURE_COPY
    assert np.allclose(signature.orientations(copy)[0], copy)


def test_signatures_are_unit_vectors_and_a_flat_picture_matches_nothing(photos):
    """Mean removed and unit length; a flat picture's signature is zero and correlates 0 with anything."""
    sig = signature.compute(photos[0])
    assert sig.shape == (signature.DIM,) and sig.dtype == np.float32
    assert abs(float(sig.sum())) < 1e-3 and float(np.linalg.norm(sig)) == pytest.approx(1.0, abs=1e-5)
    flat = signature.compute(Image.new("RGB", (300, 200), (90, 140, 200)))
    assert not flat.any()
    assert signature.similarities(flat, np.stack([flat, sig])).tolist() == [0, 0]
    assert signature.similarities(sig, np.stack([flat]))[0] < tunables.SIGNATURE_COPY
    assert len(signature.similarities(sig, np.zeros((0, signature.DIM)))) == 0


def test_odd_images_have_a_signature():
    """A one-pixel image, a long strip, a palette, a grey and a transparent image all give DIM values."""
    for img in (
        Image.new("RGB", (1, 1)),
        Image.new("RGB", (20000, 3), "red"),
        Image.new("P", (40, 30)),
        Image.new("L", (50, 60), 128),
        Image.new("RGBA", (10, 10)),
    ):
        assert signature.compute(img).shape == (signature.DIM,)


def stored(*signatures):
    """Indexed images with these stored signatures (None: a row stored before signatures existed); their ids."""
    from search.models import IndexedImage, LocalFeatures

    ids = []
    for n, sig in enumerate(signatures):
        image = IndexedImage.objects.create(content_hash=f"s{n}", file=f"s{n}.png", title=f"s{n}", status="ready")
        LocalFeatures.objects.create(image=image, data=b"", signature=sig)
        ids.append(image.id)
    return ids


@pytest.mark.django_db
def test_likeness_is_each_candidate_s_best_correlation_and_zero_for_one_without_a_signature(photos):
    """The likeness stage gives each candidate the query's similarity to its stored signature, 0.0 where it has none."""
    from types import SimpleNamespace

    from workers.ranking.candidates import GLOBAL, Candidates

    query, other = signature.compute(photos[0]), signature.compute(photos[2])
    turned = signature.compute(photos[0].transpose(Image.Transpose.ROTATE_90))
    table = Candidates(SimpleNamespace())
    for image_id in stored(other, None, turned):
        table.add(image_id, 0.5, GLOBAL)
    signature.likeness(SimpleNamespace(signature=query), table)
    alike = [row.likeness for row in table]
    # stored as halfvec (11 bits of mantissa): equal to a few parts in 10,000
    assert alike[0] == pytest.approx(float(signature.similarities(query, other[None])[0]), abs=1e-3)
    assert alike[1] == 0.0 and alike[2] > 0.99 > alike[0]


@pytest.mark.django_db
def test_the_whole_index_s_best_match_is_a_near_duplicate_at_the_threshold_else_a_lookalike(photos):
    """best_in_index finds the likest signature in any of its 8 orientations; near_or_lookalike splits it at
    SIGNATURE_COPY: a near duplicate joins as a copy, a lookalike only to be verified."""
    ids = stored(*(signature.compute(img) for img in photos[:3]), None)
    copy = signature.compute(degraded(photos[1]).transpose(Image.Transpose.ROTATE_90))
    best = signature.best_in_index(copy)
    assert best[0] == ids[1] and best[1] >= tunables.SIGNATURE_COPY
    assert signature.near_or_lookalike(best) == (ids[1], None)
    assert signature.near_or_lookalike((ids[2], 0.9)) == (None, ids[2])
    assert signature.near_or_lookalike(None) == (None, None)
    assert signature.best_in_index(signature.compute(Image.new("RGB", (30, 30), "grey")))[1] == 0.0
