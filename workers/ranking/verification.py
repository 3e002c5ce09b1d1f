"""Verification: is a candidate the same picture as the query, edited? SIFT keypoints and a RANSAC transform.

Each indexed image keeps SIFT keypoints of its grey version at two sizes (tunables.SCALES): up to 256 with its longer
side at 256 pixels, and up to 128 at 128 pixels, where a blurred or much reduced copy still finds the same blobs
(workers/indexing/features.py stores them, packed). At search time the query gets the same extraction, and each
candidate is verified at each size: RootSIFT nearest neighbours with Lowe's ratio test, then a RANSAC similarity
transform (rotation, uniform scale, translation); the larger inlier count is the evidence (tunables.MIN_INLIERS
makes a verified copy). A mirrored copy needs no second extraction: mirroring an image permutes each SIFT
descriptor's bins (see _mirror_permutation), so the query is also tried with permuted descriptors and mirrored x
coordinates. A search matches its candidates together (match_many): their descriptors of one size stacked into one
product with the query's, as is and mirrored, which costs half what a product per candidate did. OpenCV and numpy:
only worker processes import it.
"""

import math
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from search.models import IndexedImage, LocalFeatures

from . import tunables

VERSION = 2  # of the packed record: a record of another version is extracted again

# version, number of sizes, keypoint count of each size; then per size count x (x, y) uint16 in 1/65535 of
# tunables.WORK_SIDE and count x 128 uint8.
_HEADER = struct.Struct("<BB")
_COUNT = struct.Struct("<H")
_DIM = 128
BYTES_PER_KEYPOINT = 2 * 2 + _DIM


@dataclass(frozen=True)
class Keypoints:
    """The keypoints of one size."""

    points: np.ndarray  # (n, 2) float32, x and y in tunables.WORK_SIDE pixels
    descriptors: np.ndarray  # (n, 128) uint8, OpenCV SIFT

    def __len__(self):
        return len(self.points)


EMPTY = Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, _DIM), np.uint8))


def max_keypoints():
    """The most keypoints an image keeps, all sizes together."""
    return sum(count for _, count in tunables.SCALES)


@dataclass(frozen=True)
class Features:
    """An image's keypoints at each of tunables.SCALES."""

    scales: tuple

    def __len__(self):
        return sum(len(s) for s in self.scales)


def extract(img: Image.Image) -> Features:
    """SIFT keypoints and descriptors of an RGB image (as load_rgb decodes it) at each size; none for a flat one."""
    return Features(tuple(_extract_at(img, side, count) for side, count in tunables.SCALES))


def _extract_at(img, side, max_keypoints):
    sift = cv2.SIFT_create(
        nfeatures=max_keypoints, nOctaveLayers=tunables.SIFT_LAYERS, contrastThreshold=tunables.CONTRAST_THRESHOLD
    )
    keypoints, descriptors = sift.detectAndCompute(_working_grey(img, side), None)
    if descriptors is None or not keypoints:
        return EMPTY
    keypoints, descriptors = keypoints[:max_keypoints], descriptors[:max_keypoints]  # ties can exceed nfeatures
    points = np.array([k.pt for k in keypoints], np.float32) * (tunables.WORK_SIDE / side)
    # OpenCV's SIFT descriptor values are already whole numbers 0..255, so uint8 loses nothing.
    return Keypoints(points, np.clip(np.rint(descriptors), 0, 255).astype(np.uint8))


def _working_grey(img, side):
    """The image in grey, its longer side scaled to `side` (up or down), as a uint8 array."""
    img = reduced(img, 2 * side)  # a cheap box shrink first, so big photos are not converted whole
    grey = np.asarray(img.convert("L"))
    h, w = grey.shape
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def reduced(img, side):
    """The image box-shrunk by the largest whole factor that keeps its longer side at `side` pixels or more (itself
    where that factor is 1), in RGB or L."""
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # reduce() refuses palette images
    factor = max(img.size) // side
    return img.reduce(factor) if factor >= 2 else img


def pack(features: Features) -> bytes:
    """The storage format: 2 + 2 x sizes header bytes plus BYTES_PER_KEYPOINT per keypoint."""
    parts = [_HEADER.pack(VERSION, len(features.scales))]
    parts += [_COUNT.pack(len(s)) for s in features.scales]
    for s in features.scales:
        parts.append(np.clip(np.rint(s.points * (65535 / tunables.WORK_SIDE)), 0, 65535).astype("<u2").tobytes())
        parts.append(s.descriptors.tobytes())
    return b"".join(parts)


def unpack(data: bytes) -> Features:
    """Features from pack()'s bytes; ValueError for another version or a damaged record."""
    if len(data) < _HEADER.size:
        raise ValueError("local features record is too short")
    version, sizes = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"local features version {version}, expected {VERSION}: extract them again")
    offset = _HEADER.size + sizes * _COUNT.size
    if len(data) < offset:
        raise ValueError("local features record has the wrong length")
    counts = [_COUNT.unpack_from(data, _HEADER.size + i * _COUNT.size)[0] for i in range(sizes)]
    if len(data) != offset + sum(counts) * BYTES_PER_KEYPOINT:
        raise ValueError("local features record has the wrong length")
    scales = []
    for count in counts:
        xy = np.frombuffer(data, "<u2", count * 2, offset).reshape(count, 2)
        offset += xy.nbytes
        descriptors = np.frombuffer(data, np.uint8, count * _DIM, offset).reshape(count, _DIM)
        offset += descriptors.nbytes
        scales.append(Keypoints(xy.astype(np.float32) * (tunables.WORK_SIDE / 65535), descriptors))
    return Features(tuple(scales))


def _mirror_permutation():
    """Where each of SIFT's 4x4x8 bins goes when the image is mirrored left to right.

    A mirrored keypoint's orientation is mirrored too, so in its own frame the patch is flipped about the
    frame's x axis: the 4 spatial rows reverse and each gradient angle a becomes -a (bin o -> -o mod 8).
    """
    index = np.arange(_DIM).reshape(4, 4, 8)
    return index[::-1, :, (-np.arange(8)) % 8].ravel()


_MIRROR = _mirror_permutation()


def mirrored_descriptors(descriptors):
    """SIFT descriptors (n, 128) as the same keypoints of the image mirrored left to right would have them."""
    return descriptors[:, _MIRROR]


@dataclass(frozen=True)
class Match:
    """How the query's keypoints map onto a candidate's at the size where most of them do: the RANSAC inliers, the
    similarity transform (2x3, query working pixels to the candidate's; the query's x negated first where
    `mirrored`), and the inlier keypoints on both sides."""

    inliers: int
    scale: int  # which of tunables.SCALES
    mirrored: bool
    matrix: np.ndarray | None  # None without a transform
    query_points: np.ndarray  # (inliers, 2), in the query's working pixels, as extracted
    candidate_points: np.ndarray  # (inliers, 2), in the candidate's


NO_MATCH = Match(0, 0, False, None, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))


def verify(query: Features, candidate: Features) -> int:
    """RANSAC inliers of the query mapped onto the candidate, at the size where they are most; 0 if none matches."""
    return match(query, candidate).inliers


def match(query: Features, candidate: Features) -> Match:
    """The Match of the query onto the candidate at the size where the most inliers fit (NO_MATCH if none does)."""
    found = [_match_at(n, q, c) for n, (q, c) in enumerate(zip(query.scales, candidate.scales))]
    return max(found, key=lambda m: m.inliers, default=NO_MATCH)


def match_many(query: Features, candidates, batch=None) -> list:
    """match(query, candidate) of each candidate (Features), found together: at each size, the RootSIFT descriptors
    of up to `batch` candidates (tunables.MATCH_BATCH) are stacked into one product with the query's, as is and
    mirrored, and one ratio test; each candidate's RANSAC fits are its own. A batch of 0: one match() per candidate."""
    batch = tunables.MATCH_BATCH if batch is None else batch
    if batch < 1:
        return [match(query, candidate) for candidate in candidates]
    found = [[] for _ in candidates]  # each candidate's Match at each size it shares with the query, in order
    for scale, q in enumerate(query.scales):
        sharing = [(n, c.scales[scale]) for n, c in enumerate(candidates) if scale < len(c.scales)]
        for n, _ in sharing:
            found[n].append(NO_MATCH)  # as _match_at gives it below MIN_MATCHES keypoints on either side
        eligible = [(n, c) for n, c in sharing if min(len(q), len(c)) >= tunables.MIN_MATCHES]
        if not eligible:
            continue
        descriptors = rootsift(q.descriptors)
        both = np.ascontiguousarray(np.vstack([descriptors, mirrored_descriptors(descriptors)]))
        for start in range(0, len(eligible), batch):
            group = eligible[start : start + batch]
            for (n, _), one in zip(group, _match_group(scale, q.points, both, [c for _, c in group])):
                found[n][-1] = one
    return [max(matches, key=lambda m: m.inliers, default=NO_MATCH) for matches in found]


def _match_group(scale, query_points, both, group):
    """Each candidate's Match at one size (as _match_at gives it), from one product of their stacked RootSIFT
    descriptors with the query's `both` (as is, then mirrored) and one ratio test."""
    count = len(query_points)
    stacked = rootsift(np.concatenate([c.descriptors for c in group]))
    sims = cv2.gemm(stacked, both, 1.0, None, 0.0, flags=cv2.GEMM_2_T).reshape(len(stacked), 2, count)
    passed = _ratio_test(sims)
    out, start = [], 0
    for c in group:
        rows = slice(start, start + len(c))
        start += len(c)
        direct, mirrored = (
            _fit_matched(scale, bool(m), query_points, sims[rows, m], np.nonzero(passed[rows, m])[0], c.points)
            for m in (0, 1)
        )
        out.append(mirrored if mirrored.inliers > direct.inliers else direct)
    return out


def _ratio_test(sims):
    """Whether each row's best similarity (along the last axis) passes Lowe's ratio test against its second best."""
    best_two = -np.partition(-sims, 1, axis=-1)[..., :2]
    # Unit vectors: squared distance is 2 - 2 * similarity.
    d1, d2 = (np.sqrt(np.maximum(2 - 2 * best_two[..., i], 0)) for i in (0, 1))
    return d1 < tunables.RATIO * d2


def _match_at(scale, query: Keypoints, candidate: Keypoints) -> Match:
    """The Match at one size, the query as is or mirrored (the mirror where it fits more); NO_MATCH below
    tunables.MIN_MATCHES matches."""
    if len(query) < tunables.MIN_MATCHES or len(candidate) < tunables.MIN_MATCHES:
        return NO_MATCH
    q, c = rootsift(query.descriptors), rootsift(candidate.descriptors)
    direct = _fit(scale, False, query.points, q, candidate.points, c)
    mirrored = _fit(scale, True, query.points, mirrored_descriptors(q), candidate.points, c)
    return mirrored if mirrored.inliers > direct.inliers else direct


def rootsift(descriptors):
    """RootSIFT: square roots of the L1-normalised descriptor, unit length, compared by dot product."""
    d = descriptors.astype(np.float32)
    return np.sqrt(d / np.maximum(d.sum(axis=1, keepdims=True), 1.0))


def _fit(scale, mirrored, query_points, query_desc, cand_points, cand_desc):
    """Ratio-test matches from candidate to query keypoints, then a RANSAC similarity transform: its Match."""
    # cv2.gemm, not numpy's @: in the worker, OpenBLAS threads fight torch's OpenMP threads after an
    # embedding and stalled this small product for up to 600 ms (measured in bench/copy_detection.py).
    sims = cv2.gemm(cand_desc, query_desc, 1.0, None, 0.0, flags=cv2.GEMM_2_T)
    return _fit_matched(scale, mirrored, query_points, sims, np.nonzero(_ratio_test(sims))[0], cand_points)


def _fit_matched(scale, mirrored, query_points, sims, matched, cand_points):
    """The RANSAC similarity transform of the candidate keypoints `matched` (rows of sims that passed the ratio test)
    onto their most similar query keypoints: its Match."""
    if len(matched) < tunables.MIN_MATCHES:
        return NO_MATCH
    partners = sims[matched].argmax(axis=1)
    source = query_points[partners] * (np.array([-1, 1], np.float32) if mirrored else 1)
    matrix, mask = cv2.estimateAffinePartial2D(
        source,
        cand_points[matched],
        method=cv2.RANSAC,
        ransacReprojThreshold=tunables.RANSAC_PX,
        maxIters=tunables.RANSAC_ITERATIONS,
    )
    if mask is None:
        return NO_MATCH
    kept = mask.ravel().astype(bool)
    return Match(int(kept.sum()), scale, mirrored, matrix, query_points[partners][kept], cand_points[matched][kept])


def transform(match: Match, query_size, result_size):
    """The Match's transform for the API, in the images' own pixels: `matrix` (2x3) maps a pixel (x, y, 1) of the
    query searched (its region, where it had one; `query_size` [width, height]) onto the result's (`result_size`), the
    query mirrored left to right first where `mirrored`; `scale` (result pixels per query pixel) and `rotation`
    (degrees, clockwise as seen, after the mirroring) describe it, and `outline` is where the query's corners land
    (top left, top right, bottom right, bottom left) in fractions of the result. None without a transform."""
    if match.matrix is None or min(*query_size, *result_size) <= 0:
        return None
    (qw, qh), (rw, rh) = query_size, result_size
    fitted = np.vstack([np.asarray(match.matrix, np.float64), [0.0, 0.0, 1.0]])  # working pixels to working pixels
    to_working = np.diag([tunables.WORK_SIDE / max(qw, qh)] * 2 + [1.0])
    from_working = np.diag([max(rw, rh) / tunables.WORK_SIDE] * 2 + [1.0])
    mirror = np.diag([-1.0 if match.mirrored else 1.0, 1.0, 1.0])
    full = from_working @ fitted @ mirror @ to_working
    corners = full @ np.array([[0, qw, qw, 0], [0, 0, qh, qh], [1, 1, 1, 1]], np.float64)
    turn = math.degrees(math.atan2(fitted[1, 0], fitted[0, 0]))
    return {
        "matrix": [[round(float(v), 5) for v in row] for row in full[:2]],
        "query_size": [int(qw), int(qh)],
        "result_size": [int(rw), int(rh)],
        "scale": round(math.sqrt(abs(np.linalg.det(full[:2, :2]))), 4),
        "rotation": round(turn if turn > -180 else turn + 360, 1),
        "mirrored": bool(match.mirrored),
        "outline": [[round(float(x / rw), 4), round(float(y / rh), 4)] for x, y in corners[:2].T],
    }


def header_size(f):
    """(width, height) of an image file as shown upright (its EXIF orientation applied), from its header only."""
    with Image.open(f) as img:
        width, height = img.size
        turned = img.getexif().get(0x0112) in (5, 6, 7, 8)  # turned a quarter: the sides swap
    return (height, width) if turned else (width, height)


def upright_size(image_id):
    """An indexed image's (width, height) as shown upright, the frame its stored keypoints were found in; None if
    unknown. Its recorded size is the file header's, so its thumbnail (made upright) says which way round it is."""
    image = IndexedImage.objects.filter(id=image_id).only("width", "height", "file", "thumbnail").first()
    if image is None:
        return None
    shown = None
    for stored in (image.thumbnail, image.file):
        if stored:
            try:
                with stored.open("rb") as f:
                    shown = header_size(f)
                break
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
    if not (image.width and image.height):
        return shown
    size = (image.width, image.height)
    if shown and shown[0] != shown[1] and (shown[0] > shown[1]) != (size[0] > size[1]):
        size = size[::-1]
    return size


def stored_evidence(image_ids):
    """{image_id: (Features or None, signature or None)} of the images' stored copy evidence, in one query: no
    Features for a record of another version (extracted again later), no signature for an image indexed before
    signatures existed; images without a record are left out."""
    found = {}
    for image_id, data, sig in LocalFeatures.objects.filter(image_id__in=image_ids).values_list(
        "image_id", "data", "signature"
    ):
        try:
            features = unpack(bytes(data))
        except ValueError:  # stored by another version: "similar" until extracted again
            features = None
        found[image_id] = (features, None if sig is None else np.asarray(sig, np.float32))
    return found


def inliers(query, candidates):
    """Stage: verify every candidate against the query, all together (match_many: each one's Match, and so its RANSAC
    inliers); a candidate whose keypoints are not stored (not extracted yet) stays unverified (None). The query keeps
    its matches, so a second ranking of it verifies only the images it has not met yet."""
    stored = candidates.stored_evidence()
    new = {}
    for row in candidates:
        if row.image_id not in query.matches:
            new[row.image_id] = stored.get(row.image_id, (None, None))[0]
    kept = {image_id: features for image_id, features in new.items() if features is not None}
    query.matches.update(dict.fromkeys(new))
    if kept:
        query.matches.update(zip(kept, match_many(query.features, list(kept.values()))))
    for row in candidates:
        row.match = query.matches[row.image_id]
        row.inliers = None if row.match is None else row.match.inliers
