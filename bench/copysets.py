"""Copy-detection query sets: edited copies of real images, as people find them re-posted on the web.

    from bench.copysets import build_queries
    queries = build_queries(originals, per_edit=300, seed=0)   # originals: RGB PIL images

Every edit takes an RGB image and a `random.Random` and returns a new RGB image. Each query gets its own
generator seeded from (seed, edit, number), so a set is the same on every run and every machine, whatever
is built before it. Load originals with `load_original` (transparency flattened onto white, exactly as the
indexer's `workers.imageio.load_rgb` does), so an edit starts from the pixels that were indexed.
"""

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from workers.imageio import ImageDecodeError, load_rgb

_WORDS = ("found", "on", "the", "web", "repost", "credit", "photo", "meme", "share", "2024", "via", "look")
_RESAMPLING = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Query:
    source: int  # index of the original in the list given to build_queries
    edit: str  # the edit type, e.g. "crop" or "combined"
    steps: str  # what was done, e.g. "grey+crop+jpeg"
    image: Image.Image


def load_original(path) -> Image.Image:
    """The RGB pixels the indexer stores for an image file (alpha composited onto white)."""
    return load_rgb(path)


def crop(img, rng):
    """Cut 10-30% off the width and off the height, the kept window at a random position."""
    w, h = img.size
    cw, ch = max(1, round(w * rng.uniform(0.7, 0.9))), max(1, round(h * rng.uniform(0.7, 0.9)))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((left, top, left + cw, top + ch))


def rescale(img, rng):
    """Shrink to 0.3-0.7 of the size with a random resampling filter."""
    f = rng.uniform(0.3, 0.7)
    size = (max(1, round(img.width * f)), max(1, round(img.height * f)))
    return img.resize(size, rng.choice(_RESAMPLING))


def jpeg(img, rng):
    """Re-encode as JPEG at quality 30-60."""
    out = io.BytesIO()
    img.save(out, "JPEG", quality=rng.randint(30, 60))
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def rotate(img, rng):
    """Rotate by 5-15 degrees either way, canvas expanded, corners filled white or black."""
    angle = rng.uniform(5, 15) * rng.choice((-1, 1))
    fill = rng.choice(((255, 255, 255), (0, 0, 0)))
    return img.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def rotate90(img, rng):
    """Turn a quarter either way (a photo saved sideways)."""
    return img.transpose(rng.choice((Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)))


def flip(img, rng):
    """Mirror left to right."""
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def grey(img, rng):
    """Drop the colour."""
    return img.convert("L").convert("RGB")


def blur(img, rng):
    """Gaussian blur of radius 1-3 pixels."""
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(1, 3)))


def caption(img, rng):
    """Draw a band over the bottom 15-25% with a few words in Pillow's default font."""
    out = img.copy()
    w, h = out.size
    band = max(1, round(h * rng.uniform(0.15, 0.25)))
    dark = rng.random() < 0.5
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, h - band, w, h), fill=(0, 0, 0) if dark else (255, 255, 255))
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 4))).upper()
    font = ImageFont.load_default(size=max(6, round(band * 0.6)))
    draw.text((max(1, w // 40), h - band + band // 5), text, fill=(255, 255, 255) if dark else (0, 0, 0), font=font)
    return out


def colour(img, rng):
    """Shift hue by 10-60 degrees, scale saturation by 0.5-1.5 and brightness by 0.7-1.3."""
    hsv = np.asarray(img.convert("HSV")).copy()
    shift = round(rng.uniform(10, 60) / 360 * 255) * rng.choice((-1, 1))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
    out = Image.fromarray(hsv, "HSV").convert("RGB")
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.5, 1.5))
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.7, 1.3))


EDITS = {
    "crop": crop,
    "rescale": rescale,
    "jpeg": jpeg,
    "rotate": rotate,
    "rotate90": rotate90,
    "flip": flip,
    "grey": grey,
    "blur": blur,
    "caption": caption,
    "colour": colour,
}
EDIT_TYPES = (*EDITS, "combined")


def apply(edit, img, rng):
    """(edited image, steps) for an edit type; "combined" chains three different edits in random order."""
    names = rng.sample(sorted(EDITS), 3) if edit == "combined" else [edit]
    for name in names:
        img = EDITS[name](img, rng)
    return img, "+".join(names)


def build_queries(originals, per_edit, seed=0, edits=EDIT_TYPES):
    """`per_edit` edited copies per edit type, each of a different original while there are enough."""
    queries = []
    for edit in edits:
        picks = _sources(len(originals), per_edit, random.Random(f"{seed}:{edit}:sources"))
        for number, source in enumerate(picks):
            rng = random.Random(f"{seed}:{edit}:{number}")
            image, steps = apply(edit, originals[source], rng)
            queries.append(Query(source, edit, steps, image))
    return queries


def _sources(count, wanted, rng):
    """Indices of originals to edit: without repeats until every original has been used once."""
    picks = []
    while len(picks) < wanted:
        picks += rng.sample(range(count), min(count, wanted - len(picks)))
    return picks


# --- The sets: which dev images a copy benchmark indexes ---------------------------------------------------------

FOLDERS = {"photo": ("tuxpaint", "desktop-base"), "mixed": ("tuxpaint", "openclipart", "desktop-base")}


PHOTOS = Path.home() / ".cache" / "imgsearch-dev-photos"  # ../shared/data/fetch-dev-photos puts them there


def dev_photos():
    """[(path, image)] of the dev photographs, as the indexer decodes them."""
    found = []
    for path in sorted(PHOTOS.rglob("*")):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            try:
                found.append((path, load_original(path)))
            except ImageDecodeError:
                continue
    if not found:
        raise SystemExit(f"No photographs under {PHOTOS}; run ../shared/data/fetch-dev-photos first.")
    return found


def photo_like(img):
    """A heuristic: photos have many distinct colours, drawings and smooth wallpapers few."""
    thumb = img.copy()
    thumb.thumbnail((128, 128))
    px = np.asarray(thumb) // 4
    codes = (px[..., 0].astype(np.int32) << 12) | (px[..., 1].astype(np.int32) << 6) | px[..., 2]
    return len(np.unique(codes)) >= 600


def thumb_vectors(img, turns=False):
    """16x16 colour thumbnails of the image, its margins trimmed, and of its mirror image (with `turns`, of all 8 turns
    and mirrorings of it), for spotting duplicates."""
    small = trimmed(img).resize((16, 16), Image.Resampling.BOX)
    if turns:
        views = [
            v.rotate(90 * k, expand=True)
            for v in (small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
            for k in range(4)
        ]
    else:
        views = [small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return [np.asarray(t, np.float32).ravel() for t in views]


def trimmed(img):
    """The image without its margin: the rows and columns at its edges of the top-left pixel's colour (within 24 grey
    levels). The dev images hold some drawings twice, on canvases of other sizes (a tuxpaint stamp, an openclipart
    icon with more padding), which whole-canvas thumbnails did not match."""
    background = Image.new(img.mode, img.size, img.getpixel((0, 0)))
    box = ImageChops.difference(img, background).convert("L").point(lambda v: 255 if v > 24 else 0).getbbox()
    return img if box is None else img.crop(box)


def twin_of(thumbs, vectors):
    """Whether an image (its thumb_vectors) is the same picture as one of `thumbs` (rows of earlier images' first
    thumb vector): another size of it, on another canvas, or its mirror image. A set holds no two such files, since
    either would be a right answer to the other's copies (on distinct pictures the distance is far above 12: colour
    variants of one symbol 162, two flags of three stripes 89; on the same drawing twice 1 to 5)."""
    return bool(len(thumbs)) and min(np.sqrt(((thumbs - v) ** 2).mean(axis=1)).min() for v in vectors) < 12


def pick_images(root, which, limit, extra, seed, avoid=()):
    """(index, unrelated): up to `limit` distinct (path, image) pairs, and `extra` others of the same kind; none of
    them a twin (twin_of) of another or of an image in `avoid` (images another set already holds)."""
    files = sorted(p for folder in FOLDERS[which] for p in (root / folder).rglob("*") if p.suffix in (".png", ".jpg"))
    random.Random(seed).shuffle(files)
    chosen = []
    thumbs = np.array([thumb_vectors(img)[0] for img in avoid], np.float32).reshape(-1, 768)
    for path in files:
        try:
            img = load_original(path)
        except ImageDecodeError:  # the indexer skips these too (e.g. over the pixel limit)
            continue
        if which == "photo" and not photo_like(img):
            continue
        vectors = thumb_vectors(img)
        if twin_of(thumbs, vectors):
            continue
        chosen.append((path, img))
        thumbs = np.vstack([thumbs, vectors[0]])
        if len(chosen) == limit + extra:
            break
    # Too few for both (the photo set): hold `extra` back, but index at least half.
    split = min(limit, max(len(chosen) - extra, len(chosen) // 2))
    return chosen[:split], chosen[split:]
