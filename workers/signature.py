"""A picture's 16x16 grey signature: evidence that two images are the same picture where keypoints give out.

A copy that was blurred, shrunk to a few dozen pixels or re-encoded keeps too few SIFT keypoints to verify
(workers/localfeatures.py) and drifts in the global embedding, often out of the candidates re-ranking looks
at. Its tiny grey thumbnail barely changes: the image squeezed to SIDE x SIDE pixels (aspect ignored, so a
rescaled copy lands on the same grid), compared as a correlation (mean removed, unit length), so brightness,
contrast and colour changes cancel out. The query is compared in the 8 turns and mirrorings of the square,
as a photo saved sideways or a mirrored copy would be. A crop, a caption or a small rotation move the grid
and lower the correlation: those are local features' to find.

Each indexed image stores its signature as a pgvector column with its own HNSW index (search/knn.py), so
a search finds the best-matching signature in the whole index, not only among the global neighbours; at
SIGNATURE_COPY or more it counts as a copy (bench/copy_detection.py measures how often that is right).
numpy and Pillow only: no torch.
"""

import numpy as np
from PIL import Image

SIDE = 16
DIM = SIDE * SIDE
SIGNATURE_COPY = 0.95  # correlation at which the best match counts as the same picture


def compute(img: Image.Image) -> np.ndarray:
    """The signature of a decoded image: DIM float32, mean removed and unit length (all zero for a flat image)."""
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    grid = np.asarray(img.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX), np.float32)
    return _unit(grid.ravel())


def _unit(cells):
    cells = cells - cells.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(cells, axis=-1, keepdims=True)
    return np.where(norm > 1e-3, cells / np.maximum(norm, 1e-3), 0).astype(np.float32)


def orientations(sig: np.ndarray) -> np.ndarray:
    """The signature turned 0-3 quarters, as is and mirrored: (8, DIM), the upright one first."""
    grid = np.asarray(sig, np.float32).reshape(SIDE, SIDE)
    return np.stack([np.rot90(g, k).ravel() for g in (grid, grid[:, ::-1]) for k in range(4)])


def similarities(query: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Each stored signature's (rows of `stored`) best correlation with the query in any of its orientations."""
    if len(stored) == 0:
        return np.zeros(0, np.float32)
    return (np.asarray(stored, np.float32) @ orientations(query).T).max(axis=1)


def likeness(query: np.ndarray, stored: list) -> list:
    """Each of some stored signatures' similarity to the query (see similarities); 0.0 for one missing (None),
    which counts as a flat picture's all-zero signature."""
    rows = [np.zeros(DIM, np.float32) if sig is None else sig for sig in stored]
    return similarities(query, np.stack(rows)).tolist() if rows else []


def near_or_lookalike(match) -> tuple:
    """(near duplicate, lookalike) of the best match, (id, likeness) as knn.signature_match answers or None: its id
    as the near duplicate when it reaches SIGNATURE_COPY, else as the lookalike, which a search verifies beside its
    candidates and keeps only as a copy or as the lead of the rest (localfeatures.order); (None, None) without one."""
    if match is None:
        return None, None
    image_id, likeness = match
    return (image_id, None) if likeness >= SIGNATURE_COPY else (None, image_id)


def _best_of(likeness):
    """(position, likeness) of the best of some similarities, or None when there are none."""
    if len(likeness) == 0:
        return None
    best = int(np.argmax(likeness))
    return best, likeness[best]  # numpy's own type: compared with SIGNATURE_COPY as before


def best_match(likeness) -> int | None:
    """The position of the best of some similarities if it reaches SIGNATURE_COPY, else None."""
    return near_or_lookalike(_best_of(likeness))[0]


def lookalike(likeness) -> int | None:
    """The position of the best of some similarities when it is below SIGNATURE_COPY (see near_or_lookalike)."""
    return near_or_lookalike(_best_of(likeness))[1]


def with_near_duplicate(ids: list, best) -> tuple:
    """(candidate ids with the near duplicate `best` appended unless it is one of them, its position); `best`
    None (no match reached SIGNATURE_COPY): the ids unchanged and None."""
    if best is None:
        return ids, None
    if best in ids:
        return ids, ids.index(best)
    return [*ids, best], len(ids)
