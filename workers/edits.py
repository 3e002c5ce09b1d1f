"""Edited copies of indexed images, for a projection to learn what edits do to a vector (workers/projection.py).

    copy = edited(img, random.Random(seed))

Three of the edits people make before re-posting a picture, in random order: crop, shrink, rotate a little, turn
a quarter or half, mirror, blur, re-encode as JPEG, drop the colour, change brightness, contrast and saturation.
Written for the index to learn from, apart from the benchmark's copies (bench/copysets.py: other ranges, other
filters), so the benchmark does not grade the app on the very edits it learned.
"""

import io
import random

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

_TURNS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


def crop(img, rng):
    """Keep 50-100% of the area, the window's shape a little wider or taller than the image's."""
    area, aspect = rng.uniform(0.5, 1.0), rng.uniform(0.75, 1.33)
    w, h = img.size
    cw, ch = max(1, min(w, round(w * (area * aspect) ** 0.5))), max(1, min(h, round(h * (area / aspect) ** 0.5)))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((left, top, left + cw, top + ch))


def shrink(img, rng):
    factor = rng.uniform(0.25, 0.8)
    return img.resize(
        (max(1, round(img.width * factor)), max(1, round(img.height * factor))), Image.Resampling.BILINEAR
    )


def rotate(img, rng):
    fill = tuple(rng.randint(0, 255) for _ in range(3))
    return img.rotate(rng.uniform(-20, 20), Image.Resampling.BILINEAR, expand=True, fillcolor=fill)


def turn(img, rng):
    return img.transpose(rng.choice(_TURNS))


def mirror(img, rng):
    return ImageOps.mirror(img)


def blur(img, rng):
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.5)))


def jpeg(img, rng):
    out = io.BytesIO()
    img.save(out, "JPEG", quality=rng.randint(15, 70))
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def grey(img, rng):
    return ImageOps.grayscale(img).convert("RGB")


def tone(img, rng):
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.6, 1.4))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.6, 1.4))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.3, 1.7))


EDITS = (crop, shrink, rotate, turn, mirror, blur, jpeg, grey, tone)


def edited(img: Image.Image, rng: random.Random) -> Image.Image:
    """An RGB copy of an RGB image with three different edits applied, in random order."""
    for edit in rng.sample(EDITS, 3):
        img = edit(img, rng)
    return img
