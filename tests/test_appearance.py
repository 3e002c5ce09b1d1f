"""The "Same picture" verdict (workers/ranking/appearance.py): which verified copies wear the badge. Plain shapes,
flags and signs of one family are built here, as the cases that fooled the keypoints alone."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from workers.imageio import load_rgb
from workers.ranking import appearance, verification
from workers.ranking.candidates import GLOBAL, Candidates

IDENTITY = verification.Match(40, 0, False, np.array([[1.0, 0, 0], [0, 1.0, 0]]), np.zeros((0, 2)), np.zeros((0, 2)))


def canvas(size=(200, 200)):
    img = Image.new("RGB", size, "white")
    return img, ImageDraw.Draw(img)


def disc(fill):
    img, draw = canvas()
    draw.ellipse((20, 20, 180, 180), fill=fill)
    return img


def diamond(fill):
    img, draw = canvas()
    draw.polygon([(100, 10), (190, 100), (100, 190), (10, 100)], fill=fill)
    return img


def tricolour(colours, vertical=True):
    img, draw = canvas((300, 200))
    for n, colour in enumerate(colours):
        box = (n * 100, 0, n * 100 + 100, 200) if vertical else (0, n * 67, 300, n * 67 + 67)
        draw.rectangle(box, fill=colour)
    return img


def warning(pictogram):
    """A yellow warning triangle with a black border around a pictogram: an exclamation mark or a flame-like blob."""
    img, draw = canvas()
    draw.polygon([(100, 10), (190, 180), (10, 180)], fill="black")
    draw.polygon([(100, 35), (170, 168), (30, 168)], fill=(250, 200, 0))
    if pictogram == "!":
        draw.rectangle((92, 70, 108, 135), fill="black")
        draw.ellipse((91, 142, 109, 160), fill="black")
    else:
        draw.ellipse((70, 95, 130, 160), fill="black")
        draw.polygon([(100, 60), (125, 120), (75, 120)], fill="black")
    return img


def same(query, candidate, match=IDENTITY):
    return appearance.agrees(appearance.working(query), appearance.working(candidate), match)


@pytest.mark.parametrize(
    ("query", "candidate", "why"),
    [
        (disc((140, 90, 40)), disc((45, 45, 50)), "a brown disc is no recoloured copy of a grey one"),
        (diamond((30, 90, 220)), diamond((220, 20, 30)), "blue and red are further apart than a recolouring turns"),
        (
            tricolour([(0, 85, 164), "white", (239, 65, 53)]),
            tricolour([(0, 146, 70), "white", (206, 43, 55)]),
            "two flags of one layout in other colours",
        ),
        (warning("!"), warning("flame"), "two signs of one family: the frame fits, the pictogram does not"),
    ],
)
def test_pictures_of_one_kind_are_not_the_same_picture(query, candidate, why):
    assert not same(query, candidate), why


def jpeg(img, quality):
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return load_rgb(out.getvalue())


def test_copies_edited_as_people_edit_them_are_the_same_picture(dev_images):
    """A real photo re-encoded and blurred, darkened and recoloured a little, or turned grey: each looks like its
    original once aligned. (Aligned with the identity here: the edits keep the frame.)"""
    photo = load_rgb(dev_images / "tuxpaint" / "animals" / "birds_crow.png")
    assert same(jpeg(photo.filter(ImageFilter.GaussianBlur(1.5)), 40), photo)
    assert same(ImageEnhance.Brightness(ImageEnhance.Color(photo).enhance(0.6)).enhance(0.8), photo)
    assert same(photo.convert("L").convert("RGB"), photo)
    assert same(diamond((30, 90, 220)), diamond((30, 60, 240)))  # a recolouring turns hues a little


def test_the_transform_is_applied_before_comparing(dev_images):
    """A copy turned a quarter and mirrored agrees with its original through the Match verification finds, and not
    without it."""
    photo = load_rgb(dev_images / "tuxpaint" / "animals" / "amphibians_frog.png")
    turned = photo.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    match = verification.match(verification.extract(turned), verification.extract(photo))
    assert match.inliers >= 20 and match.mirrored
    assert same(turned, photo, match)
    assert not same(turned.resize(photo.size), photo)


@pytest.mark.django_db
def test_a_copy_is_distinct_only_when_no_other_candidate_fits_nearly_as_well(settings):
    """The image-level ratio test: 40 inliers against a rival's 30 is no proof, against 10 it is; a rival that is
    the same picture indexed twice (its signature a near duplicate's, its colours the same) does not count, but the
    same drawing in another colour (an icon's colour variant: the grey signature is alike) does."""
    from pathlib import Path

    from search.models import IndexedImage, LocalFeatures
    from workers.ranking import signature

    def stored(name, img):
        path = Path(settings.MEDIA_ROOT) / "distinct" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        image = IndexedImage.objects.create(
            content_hash=name.ljust(64, "0"), file=f"distinct/{name}.png", title=name, status="ready"
        )
        LocalFeatures.objects.create(image=image, data=b"", signature=signature.compute(img))
        return image.id

    best = stored("best", warning("!"))
    rival = stored("rival", tricolour(["red", "white", "green"]))
    twin = stored("twin", warning("!").resize((160, 160)))
    variant = stored("variant", warning("!").convert("L").convert("RGB"))  # the grey signature's very own, no colour

    def table(rows):
        candidates = Candidates(SimpleNamespace())
        for image_id, inliers in rows:
            candidates.add(image_id, 0.5, GLOBAL).inliers = inliers
        return candidates

    candidates = table([(best, 40), (rival, 30)])
    assert not appearance.distinct(candidates.get(best), candidates)
    candidates = table([(best, 40), (rival, 10)])
    assert appearance.distinct(candidates.get(best), candidates)
    candidates = table([(best, 40), (twin, 38), (rival, 10)])
    assert appearance.distinct(candidates.get(best), candidates)
    candidates = table([(best, 40), (variant, 38), (rival, 10)])
    assert not appearance.distinct(candidates.get(best), candidates)
