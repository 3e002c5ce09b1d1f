"""The "Same picture" verdict (workers/ranking/appearance.py): which verified copies wear the badge. Plain shapes,
flags and signs of one family are built here, as the cases that fooled the keypoints alone."""

import io
import math
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


def clock(hour):
    """A clock face: a blue ring, twelve ticks, a long minute hand at twelve and a short hour hand at `hour`."""
    img, draw = canvas()
    draw.ellipse((10, 10, 190, 190), outline=(20, 40, 200), width=12)
    for tick in range(12):
        a = math.radians(30 * tick)
        draw.line(
            (100 + 70 * math.sin(a), 100 - 70 * math.cos(a), 100 + 80 * math.sin(a), 100 - 80 * math.cos(a)),
            fill=(20, 40, 200),
            width=4,
        )
    draw.line((100, 100, 100, 35), fill=(20, 40, 200), width=5)
    a = math.radians(30 * hour)
    draw.line((100, 100, 100 + 35 * math.sin(a), 100 - 35 * math.cos(a)), fill=(20, 40, 200), width=5)
    draw.ellipse((92, 92, 108, 108), fill=(20, 40, 200))
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
        (
            clock(1),
            clock(8),
            "a clock at another hour: the face fits, one hand does not (an 8 x 8 grid saw no difference)",
        ),
    ],
)
def test_pictures_of_one_kind_are_not_the_same_picture(query, candidate, why):
    assert not same(query, candidate), why


def jpeg(img, quality):
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return load_rgb(out.getvalue())


def test_copies_edited_as_people_edit_them_are_the_same_picture(dev_images):
    """A real photo re-encoded and blurred, a little paler, or shrunk; a drawing shrunk, blurred and re-encoded: each
    looks like its original once aligned. (Aligned with the identity here: the edits keep the frame.)"""
    photo = load_rgb(dev_images / "tuxpaint" / "animals" / "birds_crow.png")
    assert same(jpeg(photo.filter(ImageFilter.GaussianBlur(1.5)), 40), photo)
    assert same(ImageEnhance.Color(photo).enhance(0.8), photo)
    assert same(photo.resize((photo.width // 3, photo.height // 3)).resize(photo.size), photo)
    assert same(diamond((30, 90, 220)), diamond((30, 80, 230)))  # a white balance moves hues a little
    drawn = clock(1)
    assert same(jpeg(drawn.filter(ImageFilter.GaussianBlur(1.5)).resize((120, 120)), 40).resize((200, 200)), drawn)


def test_a_copy_in_other_colours_or_tones_only_looks_alike(dev_images):
    """The badge says "the same picture, colours included": a copy greyed, recoloured or much darkened is not badged
    (it still leads as "Looks alike"), since the same drawing in another colour cannot be told from it: a grey icon
    whose coloured version alone is indexed, a ribbon in a darker red."""
    photo = load_rgb(dev_images / "tuxpaint" / "animals" / "amphibians_frog.png")
    assert not same(photo.convert("L").convert("RGB"), photo)
    assert not same(ImageEnhance.Brightness(photo).enhance(0.5), photo)
    assert not same(disc((120, 0, 0)), disc((220, 0, 0)))  # one red a shade darker: the tone differs
    assert not same(diamond((30, 90, 220)), diamond((30, 180, 220)))  # blue turned to cyan
    assert same(disc((90, 90, 90)).convert("L").convert("RGB"), disc((90, 90, 90)))  # a grey picture's grey copy


def test_the_transform_is_applied_before_comparing(dev_images):
    """A copy turned a quarter and mirrored agrees with its original through the Match verification finds, and not
    without it."""
    photo = load_rgb(dev_images / "tuxpaint" / "animals" / "amphibians_frog.png")
    turned = photo.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    match = verification.match(verification.extract(turned), verification.extract(photo))
    assert match.inliers >= 20 and match.mirrored
    assert same(turned, photo, match)
    assert not same(turned.resize(photo.size), photo)


def test_a_result_that_lacks_part_of_the_query_is_not_the_same_picture(dev_images):
    """A sign that is another's without its figure: the query's drawing must lie within the result (appearance.
    _covers), while a crop of the result (the query inside it) still is the same picture."""
    crow = load_rgb(dev_images / "tuxpaint" / "animals" / "birds_crow.png")
    frog = load_rgb(dev_images / "tuxpaint" / "animals" / "amphibians_frog.png").resize(crow.size)
    both = Image.new("RGB", (crow.width * 2, crow.height), "white")
    both.paste(crow, (0, 0))
    both.paste(frog, (crow.width, 0))
    onto_crow = verification.match(verification.extract(both), verification.extract(crow))
    assert onto_crow.inliers >= 20
    assert not same(both, crow, onto_crow), "half of the query is not in the result"
    onto_both = verification.match(verification.extract(crow), verification.extract(both))
    assert same(crow, both, onto_both), "a crop of an indexed picture is a copy of it"


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
