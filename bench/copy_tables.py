"""The copies benchmark's tables (bench/copy_detection.py): each query's ranking ordered again without some stages, and
the recall, false "copy" marks, fusion sweeps and category precision computed from those orders."""

import numpy as np

from bench.common import RERANK_CANDIDATES
from bench.copysets import EDIT_TYPES
from workers.ranking import copy_space as copy_space_stage
from workers.ranking import fusion, signature, tunables, words
from workers.ranking.candidates import NEAR

THRESHOLDS = (6, 8, 10, 12, 15, 20, 30)
# cosine per sub-threshold inlier; 0: the lead by cosine and signature likeness
FUSION_WEIGHTS = (0.0, 0.01, 0.02, 0.03)
FUSION_CANDIDATES = (20, 30)


# How a search's copy evidence was built up, for the "stages" table: (name, ranked_lists options). The last is what
# searches do.
STAGES = (
    (
        "first k verified",
        {"near_duplicate": False, "alike": False, "found_by_words": False, "copy_space": False, "copy_finds": False},
    ),
    (
        "+ signature near duplicate",
        {"near_duplicate": True, "alike": False, "found_by_words": False, "copy_space": False, "copy_finds": False},
    ),
    (
        "+ signature likeness in picking the lead",
        {"near_duplicate": True, "alike": True, "found_by_words": False, "copy_space": False, "copy_finds": False},
    ),
    (
        "+ whole-index finds (visual words' 5 nearest, the likest signature), verified or leading",
        {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": False, "copy_finds": False},
    ),
    (
        "+ the lead picked in the projection's copy space, where it has one",
        {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": True, "copy_finds": False},
    ),
    (
        "+ the copy space's 5 nearest, verified or leading (production)",
        {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": True, "copy_finds": True},
    ),
)


def ranked_lists(
    searched,
    min_inliers,
    weight=None,
    fused=RERANK_CANDIDATES,
    near_duplicate=True,
    alike=True,
    found_by_words=True,
    copy_space=True,
    copy_finds=True,
):
    """Each query's results [(position, score, match)], best first, as fusion.fuse gives them from its ranking with
    `fused` global candidates, all of them (not cut at k). Options leave stages out of that ranking's candidates table:
    `near_duplicate` False the signature's near duplicate, `alike` False its likeness to the candidates (both False:
    the evidence before signatures), `found_by_words` False the visual words' and the lookalike's finds, `copy_space`
    False the copy space's likeness in picking the lead (the global score instead), `copy_finds` False its nearest."""
    left_out = ([] if near_duplicate else [NEAR]) + ([] if found_by_words else [words.SOURCE, signature.LOOKALIKE])
    left_out += [] if copy_finds else [copy_space_stage.SOURCE]
    position = searched.index.position
    out = []
    for one in searched.searched:
        table = one.rankings[fused].candidates
        table = table.without(*left_out) if left_out else table
        ranked = fusion.fuse(
            table,
            min_inliers=min_inliers,
            inlier_weight=weight,
            signature_weight=None if alike else 0.0,
            lead_scores=copy_space,
        )
        out.append([(position[image_id], score, match) for image_id, score, match in ranked])
    return out


def rerank_top1(searched, min_inliers, **options):
    """Each query's first result after re-ranking (see ranked_lists)."""
    return np.array([ranked[0][0] if ranked else -1 for ranked in ranked_lists(searched, min_inliers, **options)])


def badged_first(searched, sources, args):
    """Whether each query's original comes first wearing the "Same picture" badge (match "copy"), as searches do."""
    firsts = [
        ranked[0] if ranked else (-1, 0.0, "") for ranked in ranked_lists(searched, args.min_inliers, fused=args.k)
    ]
    return np.array([position == source and match == "copy" for (position, _, match), source in zip(firsts, sources)])


def recall_table(searched, sources, edits, args):
    """recall@1 (global, re-ranked), the original badged first, and the global recall@k ceiling per edit type, and
    overall."""
    rows = {
        "global": searched.global_first() == sources,
        "reranked": rerank_top1(searched, args.min_inliers, fused=args.k) == sources,
        "badged": badged_first(searched, sources, args),
        "global_at_k": searched.global_within(sources, args.k),
    }
    table = {}
    for edit in [*EDIT_TYPES, "all"]:
        mask = edits == edit if edit != "all" else np.ones(len(edits), bool)
        if mask.any():
            table[edit] = {"n": int(mask.sum()), **{name: float(hit[mask].mean()) for name, hit in rows.items()}}
    return table


def stage_table(searched, sources, edits, u_searched, folders, query_folders, args):
    """recall@1 (combined edits, all edits) and unrelated queries' category precision@10 at each stage of STAGES."""
    table = []
    for name, stage in STAGES:
        options = {"fused": args.k, **stage}
        hits = rerank_top1(searched, args.min_inliers, **options) == sources
        cat = category_check(folders, query_folders, u_searched, args, **options)
        table.append(
            {
                "stage": name,
                "combined": float(hits[edits == "combined"].mean()),
                "all": float(hits.mean()),
                "precision_at_10": cat["precision_at_10_reranked"],
            }
        )
    return table


SIZE_BANDS = (("< 128 px", 0, 128), ("128-255 px", 128, 256), (">= 256 px", 256, 10**9))


def size_table(searched, sources, edits, sides, args):
    """recall@1 (global, re-ranked) of all queries and of combined edits, by the original's longer side."""
    first = searched.global_first() == sources
    reranked = rerank_top1(searched, args.min_inliers, fused=args.k) == sources
    table = {}
    for name, low, high in SIZE_BANDS:
        band = (sides >= low) & (sides < high)
        for label, mask in (("all", band), ("combined", band & (edits == "combined"))):
            if mask.any():
                table.setdefault(name, {})[label] = {
                    "n": int(mask.sum()),
                    "global": float(first[mask].mean()),
                    "reranked": float(reranked[mask].mean()),
                }
    return table


def threshold_table(searched, sources, u_searched, args, thresholds=THRESHOLDS):
    """Per inlier threshold: recall@1, and how many results that are not the original are marked "copy"
    (verified or near duplicates), among edited queries' results and unrelated queries' results."""
    table = {}
    for th in thresholds:
        edited = ranked_lists(searched, th, fused=args.k)
        unrelated = ranked_lists(u_searched, th, fused=args.k)
        others = [[m for i, _, m in ranked if i != source] for ranked, source in zip(edited, sources.tolist())]
        marks = [[m for _, _, m in ranked] for ranked in unrelated]
        table[th] = {
            "recall_at_1": float(np.mean([ranked[0][0] == source for ranked, source in zip(edited, sources.tolist())])),
            "false_copy_edited": [sum(m.count("copy") for m in others), sum(len(m) for m in others)],
            "false_copy_unrelated": [sum(m.count("copy") for m in marks), sum(len(m) for m in marks)],
            "unrelated_queries_with_false_copy": [sum("copy" in m for m in marks), len(marks)],
        }
    return table


def fusion_table(searched, sources, edits, u_searched, folders, query_folders, args):
    """How the weight of sub-threshold inliers (tunables.INLIER_WEIGHT, which picks the lead of the candidates
    that are not copies) and the fused candidate count trade off.

    For each (candidates, weight): recall@1 of combined edits and of all queries, and the category precision@10
    of the unrelated queries after re-ranking (copies and the near duplicate enter from the whole pool in each).
    """
    table = []
    for k in FUSION_CANDIDATES:
        for weight in FUSION_WEIGHTS:
            hits = rerank_top1(searched, args.min_inliers, weight=weight, fused=k) == sources
            cat = category_check(folders, query_folders, u_searched, args, weight=weight, fused=k)
            table.append(
                {
                    "candidates": k,
                    "weight": weight,
                    "combined": float(hits[edits == "combined"].mean()),
                    "all": float(hits.mean()),
                    "precision_at_10": cat["precision_at_10_reranked"],
                }
            )
    return table


def category_check(folders, query_folders, u_searched, args, **options):
    """Folder-category precision@10 of unrelated queries: global order against re-ranked order."""
    options.setdefault("fused", args.k)
    top = u_searched.top
    before, after = [], []
    for folder, t, ranked in zip(query_folders, top, ranked_lists(u_searched, args.min_inliers, **options)):
        before.append((folders[t[:10]] == folder).mean() if t else 0.0)
        after.append((folders[[i for i, _, _ in ranked[:10]]] == folder).mean() if ranked else 0.0)
    return {"precision_at_10_global": float(np.mean(before)), "precision_at_10_reranked": float(np.mean(after))}


def print_report(which, result, args):
    """One table per set, then the cost, category and false-copy lines."""
    print(
        f"\n{which}: {result['images']} images, {result['queries']} queries, {args.k} candidates fused, "
        f"signatures over the whole set, min_inliers {args.min_inliers}, "
        f"keypoints (side, count) {tunables.SCALES}"
    )
    print(f"{'edit':<10} {'n':>5} {'global@1':>9} {'rerank@1':>9} {'badged@1':>9} {f'global@{args.k}':>10}")
    for edit, row in result["recall_at_1"].items():
        print(
            f"{edit:<10} {row['n']:>5} {row['global']:>9.3f} {row['reranked']:>9.3f} {row['badged']:>9.3f} "
            f"{row['global_at_k']:>10.3f}"
        )
    lat, size, cat = result["latency_ms"], result["bytes_per_image"], result["categories"]
    print(
        f"added latency per query: median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms; "
        f"stored {size['mean']:.0f} bytes/image (max {size['max']}) + a {size['signature']}-byte signature; "
        f"index-time extract {result['index_extract_ms']:.1f} ms/image"
    )
    print(
        f"category precision@10 of unrelated queries: global {cat['precision_at_10_global']:.3f}, "
        f"re-ranked {cat['precision_at_10_reranked']:.3f}"
    )
    for band, rows in result["by_original_size"].items():
        print(
            f"originals {band}: "
            + "; ".join(
                f"{label} n={r['n']} global {r['global']:.3f} re-ranked {r['reranked']:.3f}"
                for label, r in rows.items()
            )
        )
    print(
        f"{'inliers>=':>9} {'recall@1':>9} {'false copy (edited)':>20} {'false copy (unrelated)':>23} {'queries hit':>12}"
    )
    for th, row in result["thresholds"].items():
        (fe, ne), (fu, nu) = row["false_copy_edited"], row["false_copy_unrelated"]
        qu, nq = row["unrelated_queries_with_false_copy"]
        print(f"{th:>9} {row['recall_at_1']:>9.3f} {f'{fe}/{ne}':>20} {f'{fu}/{nu}':>23} {f'{qu}/{nq}':>12}")
    print(f"{'stage':<45} {'combined@1':>11} {'all@1':>7} {'P@10 unrelated':>15}")
    for row in result["stages"]:
        print(f"{row['stage']:<45} {row['combined']:>11.3f} {row['all']:>7.3f} {row['precision_at_10']:>15.3f}")
    print(f"{'candidates':>10} {'weight':>7} {'combined@1':>11} {'all@1':>7} {'P@10 unrelated':>15}")
    for row in result["fusion"]:
        print(
            f"{row['candidates']:>10} {row['weight']:>7} {row['combined']:>11.3f} {row['all']:>7.3f} {row['precision_at_10']:>15.3f}"
        )
