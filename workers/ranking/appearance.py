"""The "Same picture" verdict: is a verified candidate the query's own picture, or another picture of the same kind?

Keypoints that fit one transform say the two images share a drawing; they do not say it is the same picture. Signs
of one family share their frame (a warning triangle, a prohibition ring, a flag's stripes), icons come in colour
variants, and a plain shape fits any other plain shape. A candidate with enough inliers to be ordered as a copy
(fusion.py) is badged "copy" only when three more things hold:

- distinct: it fits the query DISTINCT_RATIO times better than any other candidate (more inliers), the image-level
  analogue of Lowe's ratio test: a sign whose frame fits the query fits its family just as well. A candidate that is
  the same picture indexed twice does not count: its signature a near duplicate's (correlation SIGNATURE_COPY or
  more) and its colours the same (the grey signature cannot tell an icon's colour variants apart).
- whole: mapped onto the query by the fitted transform, it covers the query's drawing (COVERED of its edges): a sign
  that is another's without its figure is no copy of it.
- alike: mapped onto the query by the fitted transform, it looks like the query where the two overlap, in every block
  of a grid (AGREEMENT_BLOCKS, at a low resolution where blur and re-encoding count little): the same drawing (the
  lightness agrees within LIGHTNESS_TOLERANCE once each image's brightness and contrast are normalised), in the same
  tones (the lightness itself within TONE_TOLERANCE) and the same colours (hues within HUE_TOLERANCE where the query
  is coloured; a grey query matches only a grey picture, a coloured one only a coloured one).

A copy whose colours or tones were changed (recoloured, greyed, much darkened) is therefore not badged: it still leads
the results, marked "Looks alike". That is the price of never badging the same drawing in another colour, which no
pixel check can tell from a recoloured copy: an icon's colour variants, a ribbon in a darker red, a grey icon whose
coloured version alone is indexed. What stays possible by design: a picture that is a crop of an indexed one, and one
pictogram turned into another sign.

The candidate's pixels are its stored thumbnail (or its file), read for the few candidates that get this far.
"""

import cv2
import numpy as np
from django.conf import settings
from PIL import Image

from search.models import IndexedImage

from ..imageio import ImageDecodeError, load_rgb
from . import signature, tunables

SIDE = tunables.WORK_SIDE  # the frame the fitted transform maps between


def check(query, candidates):
    """Stage: settle `row.same_picture` of each candidate ordered as a verified copy (and not the query's very file)."""
    rows = [row for row in candidates if (row.inliers or 0) >= tunables.MIN_INLIERS and not row.identical]
    pixels = Pixels()
    for row in rows:
        row.same_picture = distinct(row, candidates, pixels) and alike(query, row, pixels)


class Pixels(dict):
    """The stored working images of one ranking's candidates, each read once: image_id -> array or None."""

    def __missing__(self, image_id):
        self[image_id] = stored_pixels(image_id)
        return self[image_id]


def distinct(row, candidates, pixels=None):
    """Whether the row's inliers are DISTINCT_RATIO times those of every other candidate that is not the same picture
    indexed twice (see the module)."""
    pixels = Pixels() if pixels is None else pixels
    stored = candidates.stored_evidence()
    own = stored.get(row.image_id, (None, None))[1]
    rivals = [other for other in candidates if other is not row and (other.inliers or 0) > 0]
    if own is not None and rivals:
        theirs = [stored.get(other.image_id, (None, None))[1] for other in rivals]
        near = signature.similarities(own, np.stack([np.zeros_like(own) if t is None else t for t in theirs]))
        rivals = [
            other
            for other, similarity in zip(rivals, near)
            if similarity < tunables.SIGNATURE_COPY or not same_colours(pixels[row.image_id], pixels[other.image_id])
        ]
    best_rival = max((other.inliers for other in rivals), default=0)
    return row.inliers >= tunables.DISTINCT_RATIO * max(best_rival, 1)


def alike(query, row, pixels=None):
    """Whether the candidate, mapped onto the query by its Match's transform, looks like the query (see the module)."""
    candidate = stored_pixels(row.image_id) if pixels is None else pixels[row.image_id]
    if candidate is None or query.working is None:
        return False
    return agrees(query.working, candidate, row.match)


def agrees(query_rgb, candidate_rgb, match):
    """The verdict for two working images (RGB float arrays, longer side SIDE) and the Match between them."""
    warped, valid = _warp(candidate_rgb, match, query_rgb.shape[:2])
    q, c, region = _low(query_rgb, valid), _low(warped, valid), _low(valid.astype(np.float32)) > 0.9
    if region.sum() < 16:
        return False
    q_lab = cv2.cvtColor(q, cv2.COLOR_RGB2LAB)
    c_lab = cv2.cvtColor(c, cv2.COLOR_RGB2LAB)
    return (
        _covers(query_rgb, valid)
        and _lightness_agrees(q_lab[..., 0], c_lab[..., 0], region)
        and _blocks_agree(np.abs(q_lab[..., 0] - c_lab[..., 0]), region, tunables.TONE_TOLERANCE)
        and _colours_agree(q, c, q_lab, c_lab, region)
    )


def same_colours(a, b):
    """Whether two working images that are near duplicates in their grey signatures (the frame squeezed to a square
    either way) have the same colours, either way round; False if either is unreadable."""
    if a is None or b is None:
        return False
    side = tunables.AGREEMENT_RESOLUTION
    a, b = (
        cv2.resize(cv2.GaussianBlur(x, (0, 0), tunables.AGREEMENT_BLUR), (side, side), interpolation=cv2.INTER_AREA)
        for x in (a, b)
    )
    a_lab, b_lab = cv2.cvtColor(a, cv2.COLOR_RGB2LAB), cv2.cvtColor(b, cv2.COLOR_RGB2LAB)
    region = np.ones((side, side), bool)
    return _colours_agree(a, b, a_lab, b_lab, region) and _colours_agree(b, a, b_lab, a_lab, region)


def working(img):
    """An image as the verification's frame holds it: RGB float32 0..1, its longer side at SIDE pixels."""
    w, h = img.size
    scale = SIDE / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(img.convert("RGB").resize(size, Image.Resampling.BILINEAR), np.float32) / 255


def _warp(candidate, match, shape):
    """The candidate in the query's frame (outside it: invalid) under the Match's transform."""
    transform = np.vstack([match.matrix, [0, 0, 1]])
    if match.mirrored:  # the transform maps the query's mirrored coordinates
        transform = transform @ np.diag([-1.0, 1.0, 1.0])
    h, w = shape
    warped = cv2.warpAffine(
        candidate,
        transform[:2],
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(-1, -1, -1),
    )
    return warped, warped[..., 0] >= 0


def _low(image, valid=None):
    """Blurred and shrunk to AGREEMENT_RESOLUTION blocks of the longer side: blur and re-encoding count little."""
    if valid is not None:
        image = np.where(valid[..., None], image, 0).astype(np.float32)
    h, w = image.shape[:2]
    scale = tunables.AGREEMENT_RESOLUTION / SIDE
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(cv2.GaussianBlur(image, (0, 0), tunables.AGREEMENT_BLUR), size, interpolation=cv2.INTER_AREA)


def _covers(query_rgb, valid):
    """Whether the candidate, mapped onto the query (`valid` where it lies), covers the query's drawing: at least COVERED
    of the query's edges (low-resolution pixels whose lightness changes by EDGE or more to the next) lie on it or
    next to it. The flat corners a turned copy is filled with have no edges, so they do not count."""
    q = cv2.cvtColor(_low(query_rgb), cv2.COLOR_RGB2LAB)[..., 0]
    gy, gx = np.gradient(q)
    edges = np.hypot(gx, gy) >= tunables.EDGE
    if not edges.any():
        return True
    on = cv2.dilate((_low(valid.astype(np.float32)) > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return bool((edges & on).sum() >= tunables.COVERED * edges.sum())


def _lightness_agrees(q, c, region):
    """Every block of the region agrees in lightness once each image's brightness and contrast are normalised."""
    a, b = q[region], c[region]
    diff = np.abs((q - a.mean()) / max(a.std(), 1.0) - (c - b.mean()) / max(b.std(), 1.0))
    return _blocks_agree(diff, region, tunables.LIGHTNESS_TOLERANCE)


def _blocks_agree(diff, region, tolerance):
    """Every block of the grid (AGREEMENT_BLOCKS a side) at least half inside the region has a mean `diff` there of
    `tolerance` or less."""
    h, w = diff.shape
    step_y, step_x = max(1, h // tunables.AGREEMENT_BLOCKS), max(1, w // tunables.AGREEMENT_BLOCKS)
    for y in range(0, h, step_y):
        for x in range(0, w, step_x):
            inside = region[y : y + step_y, x : x + step_x]
            if inside.sum() >= 0.5 * inside.size and diff[y : y + step_y, x : x + step_x][inside].mean() > tolerance:
                return False
    return True


def _colours_agree(q_rgb, c_rgb, q_lab, c_lab, region):
    """The query's colours are the candidate's: see the module. Hues are compared (HSV) where the query is coloured
    (chroma over ACHROMATIC); the candidate grey there (under half of it: a pale colour a little under the line on one
    side and over it on the other is no difference) counts as the largest difference, so a small coloured part on a
    grey ground counts in full. A grey query (coloured pixels under COLOURED_SHARE) agrees with a grey candidate only."""
    q_colourful = region & (np.hypot(q_lab[..., 1], q_lab[..., 2]) > tunables.ACHROMATIC)
    c_colourful = region & (np.hypot(c_lab[..., 1], c_lab[..., 2]) > tunables.ACHROMATIC / 2)
    least = tunables.COLOURED_SHARE * region.sum()
    if q_colourful.sum() < least:  # a grey query: the same picture only if the candidate is grey too
        coloured = region & (np.hypot(c_lab[..., 1], c_lab[..., 2]) > tunables.ACHROMATIC)
        return bool(coloured.sum() < least)
    if c_colourful.sum() < least:
        return False  # a copy adds no colour to a grey picture
    q_hue = cv2.cvtColor(q_rgb, cv2.COLOR_RGB2HSV)[..., 0][q_colourful]
    c_hue = cv2.cvtColor(c_rgb, cv2.COLOR_RGB2HSV)[..., 0][q_colourful]
    diff = np.abs((q_hue - c_hue + 180) % 360 - 180)
    diff[~c_colourful[q_colourful]] = 180
    return bool(np.percentile(diff, 90) <= tunables.HUE_TOLERANCE)


def stored_pixels(image_id):
    """An indexed image's working image, from its thumbnail (or its file where it has none); None if unreadable."""
    image = IndexedImage.objects.filter(id=image_id).only("file", "thumbnail").first()
    if image is None:
        return None
    for stored in (image.thumbnail, image.file):
        if stored:
            try:
                with stored.open("rb") as f:
                    return working(load_rgb(f, target_size=SIDE, max_pixels=settings.IMGSEARCH_MAX_PIXELS))
            except (ImageDecodeError, OSError, ValueError):
                continue
    return None
