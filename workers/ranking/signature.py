"""A picture's 16x16 grey signature: evidence that two images are the same picture where keypoints give out.

A copy that was blurred, shrunk to a few dozen pixels or re-encoded keeps too few SIFT keypoints to verify
(verification.py) and drifts in the global embedding, often out of the candidates. Its tiny grey thumbnail barely
changes: the image squeezed to SIDE x SIDE pixels (aspect ignored, so a rescaled copy lands on the same grid),
compared as a correlation (mean removed, unit length), so brightness, contrast and colour changes cancel out. The
query is compared in the 8 turns and mirrorings of the square, as a photo saved sideways or a mirrored copy would be.
A crop, a caption or a small rotation move the grid and lower the correlation: those are the keypoints' to find.

Each indexed image stores its signature in a pgvector column with its own HNSW index (migration 0007), so a search
finds the best-matching signature in the whole index (best_in_index): at tunables.SIGNATURE_COPY or more it is the near
duplicate, a copy; below, the lookalike, verified beside the candidates. Every candidate's likeness to the query's
signature also helps pick the lead of those that are not copies (fusion.py).
"""

import numpy as np
from PIL import Image

from search import replica
from search.knn import vector_literal

from . import tunables
from .candidates import NEAR

SIDE = tunables.SIGNATURE_SIDE
DIM = SIDE * SIDE
LOOKALIKE = "lookalike"


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


def best_in_index(query: np.ndarray, *, exclude=None):
    """The indexed image whose signature best matches `query` turned or mirrored any way: (image_id, correlation),
    or None when no image has one; `exclude`: an image left out (the duplicate finder's own). One statement: the best
    of each orientation, each found through the signatures' HNSW index, by inner product since signatures are unit
    vectors."""
    others = "" if exclude is None else " WHERE image_id <> %s"
    one = (
        f"(SELECT image_id, -(signature <#> %s::halfvec({DIM})) AS likeness FROM search_localfeatures{others}"
        f" ORDER BY signature <#> %s::halfvec({DIM}) LIMIT 1)"
    )
    literals = [vector_literal(v) for v in orientations(query)]
    params = [
        v for literal in literals for v in ((literal, literal) if exclude is None else (literal, exclude, literal))
    ]

    def best(db):  # a read a replica may answer (search.replica)
        with db.cursor() as cursor:
            cursor.execute(
                f"SELECT image_id, likeness FROM ({' UNION ALL '.join([one] * len(literals))}) AS best"
                " WHERE likeness IS NOT NULL ORDER BY likeness DESC LIMIT 1",
                params,
            )
            return cursor.fetchone()

    row = replica.read(best)
    return None if row is None else (row[0], float(row[1]))


def near_or_lookalike(match) -> tuple:
    """(near duplicate, lookalike) of a best match (image_id, likeness) or None: its id as the near duplicate when it
    reaches SIGNATURE_COPY, else as the lookalike; (None, None) without one."""
    if match is None:
        return None, None
    image_id, likeness = match
    return (image_id, None) if likeness >= tunables.SIGNATURE_COPY else (None, image_id)


def near_duplicate(query, candidates):
    """Stage: the image whose signature matches the query's best in the whole index, where it reaches
    SIGNATURE_COPY, joins the candidates as the near duplicate (a copy), or marks the candidate it already is."""
    near, _ = near_or_lookalike(query.signature_match)
    if near is not None:
        candidates.find([near], NEAR)


def lookalike(query, candidates):
    """Stage: that best match below SIGNATURE_COPY joins the candidates as a find, kept only if verified or leading."""
    _, found = near_or_lookalike(query.signature_match)
    if found is not None:
        candidates.find([found], LOOKALIKE)


def likeness(query, candidates):
    """Stage: each candidate's likeness to the query, as similarities gives it; 0.0 for one without a stored
    signature, which counts as a flat picture's all-zero signature."""
    stored = candidates.stored_evidence()
    rows = list(candidates)
    signatures = [stored.get(row.image_id, (None, None))[1] for row in rows]
    matrix = np.stack([np.zeros(DIM, np.float32) if sig is None else sig for sig in signatures]) if rows else []
    for row, value in zip(rows, similarities(query.signature, matrix).tolist()):
        row.likeness = value
