"""Fusion: the order of a search's results, from the evidence its stages gathered on the candidates, and the
verdict each result shows.

Tiers, best first (the first three are the candidates with evidence of being the query's picture):
  3. the query's very file (identical.py);
  2. verified copies, MIN_INLIERS or more inliers, by inliers;
  1. the signature's near duplicate (signature.py);
  0. the rest, "similar", in their global order, except that one of them leads: the best global score (or copy-space
     cosine, where the index has a copy space) plus INLIER_WEIGHT per inlier plus SIGNATURE_WEIGHT times its
     signature's likeness to the query. A small, blurred or thrice-edited copy often keeps only a few inliers, or
     none, while unrelated pictures mostly get none and look less alike at 16x16; such weak evidence picks the
     likeliest source only, and the others keep the order of likeness (re-sorting them all by it cost category
     precision@10 up to 0.007 on some samples). Candidates found only in the whole index (visual words, the
     lookalike, the copy space) stay only as copies or as that lead, so the similar results are the global neighbours.
Ties keep the order the candidates were found in.

Only the query's very file, and a verified copy that appearance.py finds distinct and alike, is marked "copy" (the
"Same picture" badge); the others of the first tiers lead the list but are marked "similar", their evidence saying
they look alike: a 16x16 likeness or a frame two signs share is no proof that a picture is the query's.
"""

from . import tunables, verification
from .candidates import NEAR

COPY, SIMILAR = "copy", "similar"


def fuse(candidates, *, min_inliers=None, inlier_weight=None, signature_weight=None, lead_scores=True):
    """[(image_id, score, match)], best first, of the candidates (candidates.Candidates). The weights default to the
    tunables; `lead_scores` False picks the lead on the global scores even where copy-space cosines were measured."""
    min_inliers = tunables.MIN_INLIERS if min_inliers is None else min_inliers
    inlier_weight = tunables.INLIER_WEIGHT if inlier_weight is None else inlier_weight
    signature_weight = tunables.SIGNATURE_WEIGHT if signature_weight is None else signature_weight
    rows = list(candidates)
    counts = [row.inliers or 0 for row in rows]
    tiers = [_tier(row, count, min_inliers) for row, count in zip(rows, counts)]
    # sorted() is stable with reverse too: ties stay in the given order
    copies = sorted(
        (p for p, t in enumerate(tiers) if t), key=lambda p: (tiers[p], counts[p] if tiers[p] == 2 else 0), reverse=True
    )
    others = [p for p, t in enumerate(tiers) if not t]
    rest = [p for p in others if not rows[p].found_elsewhere]
    if others:

        def strength(p):
            row = rows[p]
            base = row.lead_score if lead_scores and row.lead_score is not None else row.score
            return base + inlier_weight * counts[p] + signature_weight * (row.likeness or 0.0)

        lead = max(others, key=strength)  # ties: the first
        rest = [lead] + [p for p in rest if p != lead]
    return [(rows[p].image_id, rows[p].score, COPY if _same_picture(rows[p]) else SIMILAR) for p in copies + rest]


def _same_picture(row):
    return row.identical or row.same_picture


def evidence(row, query=None):
    """Why a result leads as (or looks like) the query's own picture, for the API: None for a merely similar one.
    Given the query (its size known), a verified copy that is the same picture also says where the query lies in
    it: `transform` (verification.transform)."""
    verdict = "same picture" if _same_picture(row) else "looks alike"
    if row.identical:
        return {
            "verdict": verdict,
            "by": "identical file",
            "inliers": row.inliers,
            "likeness": None,
            **_where(row, query),
        }
    if (row.inliers or 0) >= tunables.MIN_INLIERS:
        return {"verdict": verdict, "by": "keypoints", "inliers": row.inliers, "likeness": None, **_where(row, query)}
    if NEAR in row.sources:
        return {"verdict": verdict, "by": "signature", "inliers": row.inliers, "likeness": round(row.likeness or 0, 3)}
    return None


def _where(row, query):
    """{"transform": ...} of a same picture verified by its keypoints, where the query's and its sizes are known;
    else nothing: the transform of a lookalike would outline a likeness, not the query."""
    if query is None or query.size is None or not _same_picture(row) or (row.inliers or 0) < tunables.MIN_INLIERS:
        return {}
    size = verification.upright_size(row.image_id)
    found = verification.transform(row.match, query.size, size) if size and row.match is not None else None
    return {"transform": found} if found else {}


def _tier(row, inliers, min_inliers):
    """3 the query's very file, 2 a verified copy, 1 the near duplicate, 0 the rest."""
    if row.identical:
        return 3
    if inliers >= min_inliers:
        return 2
    return 1 if NEAR in row.sources else 0
