"""The order of a search's results from its candidates' evidence (workers/ranking/fusion.py): plain functions."""

from workers.ranking import fusion
from workers.ranking.verification import extract, verify

from .conftest import candidates_table
from .test_verification import shapes, web_copy


def order(scored, inliers, **evidence):
    """fusion.fuse of a table of `scored` rows with these inliers (and other evidence; weights pass through)."""
    weights = {k: evidence.pop(k) for k in ("min_inliers", "inlier_weight", "signature_weight") if k in evidence}
    return fusion.fuse(candidates_table(scored, inliers=inliers, **evidence), **weights)


def test_a_verified_copy_comes_first_even_with_a_lower_global_score():
    """A copy ranked third by cosine moves to the top as "copy"; the others keep their order and scores."""
    original = shapes(7)
    query = extract(web_copy(original))
    inliers = [verify(query, extract(img)) for img in (shapes(1), shapes(2), original)]
    ranked = order([(1, 0.91), (2, 0.80), (3, 0.52)], inliers)
    assert ranked == [(3, 0.52, "copy"), (1, 0.91, "similar"), (2, 0.80, "similar")]


def test_the_global_order_stays_without_a_copy():
    """With no copy among the candidates, and one candidate not verified (no keypoints stored), nothing moves."""
    query = extract(shapes(9))
    inliers = [verify(query, extract(shapes(1))), None, verify(query, extract(shapes(3)))]
    ranked = order([(1, 0.9), (2, 0.8), (3, 0.7)], inliers)
    assert ranked == [(1, 0.9, "similar"), (2, 0.8, "similar"), (3, 0.7, "similar")]


def test_copies_rank_by_inliers_and_ties_by_global_order():
    """Copies come first, most inliers first; equal counts and all non-copies keep the global order."""
    ranked = order([(10, 0.9), (11, 0.8), (12, 0.7), (13, 0.6), (14, 0.5)], [3, 40, 12, 40, 9], min_inliers=10)
    expected = [(11, "copy"), (13, "copy"), (12, "copy"), (10, "similar"), (14, "similar")]
    assert [(i, m) for i, _, m in ranked] == expected


def test_the_query_s_very_file_comes_first_as_a_copy_whatever_its_inliers():
    """An identical file (the upload's own bytes, or the indexed image searched with) leads, then copies, then the rest."""
    ranked = order([(1, 0.9), (2, 0.8), (3, 0.99)], [0, 30, 2], min_inliers=10, identical={3})
    assert ranked == [(3, 0.99, "copy"), (2, 0.8, "copy"), (1, 0.9, "similar")]


def test_inliers_below_the_copy_threshold_credit_the_lead_of_the_candidates_that_are_not_copies():
    """A few inliers lift the likeliest source past a slightly closer candidate without any, never past a copy or a
    far better score; the others keep their global order; the scores shown stay the global ones and nothing below
    the threshold is called a copy."""
    candidates = [(1, 0.80), (2, 0.78), (3, 0.70), (4, 0.69), (5, 0.40)]
    ranked = order(candidates, [0, 6, 0, 5, 12], min_inliers=10, inlier_weight=0.02)
    # 2: 0.78 + 6 x 0.02 = 0.90 leads the rest; 4 (0.69 + 0.10 = 0.79) stays behind 3; 5 is a copy and goes first.
    assert ranked == [
        (5, 0.40, "copy"),
        (2, 0.78, "similar"),
        (1, 0.80, "similar"),
        (3, 0.70, "similar"),
        (4, 0.69, "similar"),
    ]
    assert order(candidates, [0, 6, 0, 5, 0], min_inliers=10, inlier_weight=0.0) == [
        (1, 0.80, "similar"),
        (2, 0.78, "similar"),
        (3, 0.70, "similar"),
        (4, 0.69, "similar"),
        (5, 0.40, "similar"),
    ]
    far = order([(1, 0.95), (2, 0.60)], [0, 9], min_inliers=10, inlier_weight=0.02)
    assert [i for i, _, _ in far] == [1, 2]  # 0.60 + 0.18 < 0.95


def test_signature_likeness_credits_the_lead_of_the_candidates_that_are_not_copies():
    """A candidate that looks like the query at 16x16 leads the rest ahead of a slightly closer one, never ahead of
    a copy or a far better score; the others keep their global order and nothing is called a copy for it."""
    candidates = [(1, 0.80), (2, 0.78), (3, 0.70), (4, 0.40)]
    likeness = [0.1, 0.2, 0.9, 0.95]
    ranked = order(candidates, [0, 0, 0, 12], min_inliers=10, likeness=likeness, signature_weight=0.2)
    # 3: 0.70 + 0.2 x 0.9 = 0.88 leads 1 (0.82) and 2 (0.82); 4 is a verified copy and goes first.
    assert ranked == [(4, 0.40, "copy"), (3, 0.70, "similar"), (1, 0.80, "similar"), (2, 0.78, "similar")]
    assert [i for i, _, _ in order(candidates, [0] * 4, min_inliers=10)] == [1, 2, 3, 4]  # no likeness
    far = order([(1, 0.95), (2, 0.70)], [0, 0], min_inliers=10, likeness=[0.0, 1.0], signature_weight=0.2)
    assert [i for i, _, _ in far] == [1, 2]  # 0.70 + 0.2 < 0.95
    both = order(
        [(1, 0.80), (2, 0.70)], [0, 3], min_inliers=10, inlier_weight=0.02, likeness=[0.2, 0.5], signature_weight=0.2
    )
    assert [i for i, _, _ in both] == [2, 1]  # 0.70 + 3 x 0.02 + 0.10 = 0.86 against 0.80 + 0.04


def test_the_near_duplicate_leads_after_verified_copies_but_wears_no_badge():
    """The signature's near duplicate comes behind any verified copy, ahead of closer-scoring candidates, but a 16x16
    likeness alone proves no copy: it is "similar", its evidence saying it looks alike by its signature."""
    table = candidates_table(
        [(1, 0.9), (2, 0.8), (3, 0.6), (4, 0.5)], inliers=[0, 0, 12, 0], near=3, likeness=[0.1, 0.2, 0.3, 0.97]
    )
    assert fusion.fuse(table) == [(3, 0.6, "copy"), (4, 0.5, "similar"), (1, 0.9, "similar"), (2, 0.8, "similar")]
    assert fusion.evidence(table.get(4)) == {
        "verdict": "looks alike",
        "by": "signature",
        "inliers": 0,
        "likeness": 0.97,
    }
    assert fusion.evidence(table.get(3)) == {
        "verdict": "same picture",
        "by": "keypoints",
        "inliers": 12,
        "likeness": None,
    }
    assert fusion.evidence(table.get(1)) is None


def test_a_verified_copy_that_fails_the_appearance_check_leads_as_a_lookalike():
    """Keypoints that fit (a sign's frame, a plain shape) order a candidate first, but without the appearance check's
    verdict it is "similar", and its evidence says it looks alike by its keypoints; the query's very file is the same
    picture whatever its keypoints."""
    table = candidates_table([(1, 0.9), (2, 0.6), (3, 0.99)], inliers=[0, 40, 2], alike=set(), identical={3})
    assert fusion.fuse(table) == [(3, 0.99, "copy"), (2, 0.6, "similar"), (1, 0.9, "similar")]
    assert fusion.evidence(table.get(2))["verdict"] == "looks alike"
    assert fusion.evidence(table.get(3)) == {
        "verdict": "same picture",
        "by": "identical file",
        "inliers": 2,
        "likeness": None,
    }


def test_the_lead_is_picked_on_lead_scores_where_given_and_the_global_scores_stay():
    """Lead scores (the copy space's likeness) replace the global score in picking the lead only: the results keep
    their global scores and the others their global order."""
    candidates = [(1, 0.80), (2, 0.78), (3, 0.70), (4, 0.65)]
    ranked = order(candidates, [0, 0, 2, 0], min_inliers=10, inlier_weight=0.02, lead=[0.30, 0.20, 0.25, 0.60])
    assert ranked == [(4, 0.65, "similar"), (1, 0.80, "similar"), (2, 0.78, "similar"), (3, 0.70, "similar")]
    # 3 has 2 inliers: 0.25 + 0.04 does not beat 4's 0.60; without lead scores 1 leads on its global score.
    assert [i for i, _, _ in order(candidates, [0, 0, 2, 0], min_inliers=10)] == [1, 2, 3, 4]
    table = candidates_table(candidates, inliers=[0, 0, 2, 0], lead=[0.30, 0.20, 0.25, 0.60])
    assert [i for i, _, _ in fusion.fuse(table, min_inliers=10, lead_scores=False)] == [1, 2, 3, 4]


def test_a_stage_left_out_takes_its_finds_along_and_keeps_the_rest():
    """Candidates.without: the rows a stage alone found leave, one also found otherwise stays with its evidence."""
    table = candidates_table([(1, 0.9), (2, 0.8), (3, 0.4)], inliers=[0, 30, 12], found={1, 2})
    table.get(2).sources.add("global")
    kept = table.without("words")
    assert [(row.image_id, row.sources, row.inliers) for row in kept] == [(1, {"global"}, 0), (2, {"global"}, 30)]
    assert [i for i, _, _ in fusion.fuse(table)] == [2, 3, 1] and [i for i, _, _ in fusion.fuse(kept)] == [2, 1]
