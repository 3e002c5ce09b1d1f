"""Copy detection: does an edited copy of an indexed picture bring back its original first?

    python -m imgsearch.embedded exec -- python -m bench.copy_detection [--sets photo,mixed] [--limit 600]
        [--queries 30] [--combined-queries N] [--json out.json]

For each set of real images (photo: the tuxpaint and desktop-base pictures that look like photos, i.e. have
many distinct colours; mixed: a sample of tuxpaint, openclipart and desktop-base), it indexes every image in the bench
database as the app does (bench/appindex.py: the copy evidence the indexing pipeline stores, the visual words and,
from 1,000 images on, the projection with its copy space, learned as an index learns them), builds edited copies
(bench/copysets.py) and searches each through the app's own ranking (workers/ranking), stage by stage. It reports,
in one run, recall@1 of the original for the global k-NN alone and for the whole ranking, per edit type and overall,
and by stage (the "stages" table: the ranking's candidates table ordered again without some stages, which is how the
ranking orders without them); the time the stages after the global k-NN took per query (the search's rerank_ms); the
bytes stored per image; and how often a picture that is not the original is marked "copy": among the results of
unrelated images (same kind, not indexed) and of edited queries, for several inlier thresholds. Last, the photo set's
combined-edit copies are searched again with --distractors other dev images indexed beside it (the sets above hold a
few hundred images; the ranking of a heavily edited copy degrades as the index grows). The small sets are searched
on raw vectors, as an index under 1,000 images is; the at-scale index, larger, through the projection it learns.
Recall is also split by the size of the original (its longer side), because many of the "photos" here are stamps of
50 to 200 pixels whose edited copies are only a few dozen. Run it from the repository root inside
`imgsearch.embedded exec` (it needs the bench database); the defaults take about 5 minutes on 2 busy cores.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from bench import benchdb
from bench.common import DEV_IMAGES, RERANK_CANDIDATES
from bench.copysets import EDIT_TYPES, FOLDERS, build_queries, pick_images

benchdb.use_once()  # the app's modules below need Django, on the bench database

from bench.appindex import KNN_STAGE, AppIndex  # noqa: E402
from workers.ranking import copy_space as copy_space_stage  # noqa: E402
from workers.ranking import fusion, signature, tunables, words  # noqa: E402
from workers.ranking.candidates import GLOBAL, NEAR  # noqa: E402

THRESHOLDS = (6, 8, 10, 12, 15, 20, 30)
FUSION_WEIGHTS = (0.0, 0.01, 0.02, 0.03)  # cosine per sub-threshold inlier; 0: the lead by cosine and signature likeness
FUSION_CANDIDATES = (20, 30)


def combined_count(args):
    """Combined-edit queries per set: --combined-queries, else --queries like every other edit type."""
    return args.combined_queries or args.queries


def edited_queries(images, args):
    """--queries edited copies per single edit type, then combined_count(args) combinations of three (the first
    --queries of them are the same either way: build_queries picks and edits each query on its own)."""
    return (build_queries(images, args.queries, seed=args.seed, edits=EDIT_TYPES[:-1])
            + build_queries(images, combined_count(args), seed=args.seed, edits=("combined",)))


def embed_all(embedder, images, batch=32):
    """L2-normalised global embeddings, one row per image."""
    return np.concatenate([embedder.embed(images[i : i + batch])[0] for i in range(0, len(images), batch)])


class Searched:
    """What the searches of a query set found, as positions in the index: each query's global k-NN (best first, from
    its widest ranking) and its production rankings (bench.appindex.Searched) by number of global candidates."""

    def __init__(self, index, searched):
        self.index = index  # the AppIndex
        self.searched = searched
        widest = [s.rankings[max(s.rankings)].candidates for s in searched]
        self.top = [[index.position[row.image_id] for row in table if GLOBAL in row.sources] for table in widest]
        self.seconds = [sum(ms for stage, ms in s.timings.items() if stage != KNN_STAGE) / 1000 for s in searched]

    def global_first(self):
        """Each query's first global result (-1 where the k-NN returned none)."""
        return np.array([top[0] if top else -1 for top in self.top])

    def global_within(self, sources, k):
        """Whether each query's original (at `sources`) is among its first k global results."""
        return np.array([source in top[:k] for top, source in zip(self.top, sources.tolist())])


def search(embedder, index, images, args, wanted=None):
    """Searched for query images through the app's ranking over `index` (an AppIndex), with args.k global
    candidates, and with each count of FUSION_CANDIDATES too for the fusion table (`wanted`: those counts instead)."""
    wanted = tuple(dict.fromkeys((args.k, *FUSION_CANDIDATES))) if wanted is None else wanted
    return Searched(index, index.search(images, embed_all(embedder, images), wanted=wanted))


# How a search's copy evidence was built up, for the "stages" table: (name, ranked_lists options). The last is what
# searches do.
STAGES = (("first k verified", {"near_duplicate": False, "alike": False, "found_by_words": False, "copy_space": False, "copy_finds": False}),
          ("+ signature near duplicate", {"near_duplicate": True, "alike": False, "found_by_words": False, "copy_space": False, "copy_finds": False}),
          ("+ signature likeness in picking the lead", {"near_duplicate": True, "alike": True, "found_by_words": False, "copy_space": False, "copy_finds": False}),
          ("+ whole-index finds (visual words' 5 nearest, the likest signature), verified or leading", {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": False, "copy_finds": False}),
          ("+ the lead picked in the projection's copy space, where it has one", {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": True, "copy_finds": False}),
          ("+ the copy space's 5 nearest, verified or leading (production)", {"near_duplicate": True, "alike": True, "found_by_words": True, "copy_space": True, "copy_finds": True}))


def ranked_lists(searched, min_inliers, weight=None, fused=RERANK_CANDIDATES, near_duplicate=True, alike=True,
                 found_by_words=True, copy_space=True, copy_finds=True):
    """Each query's results [(position, score, match)], best first, as fusion.order gives them from its ranking with
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
        ranked = fusion.order(table, min_inliers=min_inliers, inlier_weight=weight,
                              signature_weight=None if alike else 0.0, lead_scores=copy_space)
        out.append([(position[image_id], score, match) for image_id, score, match in ranked])
    return out


def rerank_top1(searched, min_inliers, **options):
    """Each query's first result after re-ranking (see ranked_lists)."""
    return np.array([ranked[0][0] if ranked else -1 for ranked in ranked_lists(searched, min_inliers, **options)])


def evaluate(embedder, root, which, args):
    """Every number of the report for one image set."""
    index, unrelated = pick_images(root, which, args.limit, args.unrelated, args.seed)
    images = [img for _, img in index]
    app = AppIndex.build(embedder, images, embed_all(embedder, images), names=[p.name for p, _ in index])
    queries = edited_queries(images, args)
    searched = search(embedder, app, [q.image for q in queries], args)
    sources = np.array([q.source for q in queries])
    edits = np.array([q.edit for q in queries])
    u_searched = search(embedder, app, [img for _, img in unrelated], args)
    folders = np.array([path.parent.name for path, _ in index])
    query_folders = [p.parent.name for p, _ in unrelated]
    sides = np.array([max(images[q.source].size) for q in queries])
    seconds = searched.seconds
    mean, most = app.stored_bytes()
    return {
        "by_original_size": size_table(searched, sources, edits, sides, args),
        "images": len(images),
        "queries": len(queries),
        "recall_at_1": recall_table(searched, sources, edits, args),
        "stages": stage_table(searched, sources, edits, u_searched, folders, query_folders, args),
        "latency_ms": {"median": 1000 * statistics.median(seconds), "p95": 1000 * float(np.percentile(seconds, 95))},
        "bytes_per_image": {"mean": mean, "max": most, "signature": signature.DIM * 4},
        "index_extract_ms": app.extract_ms,
        "thresholds": threshold_table(searched, sources, u_searched, args),
        "fusion": fusion_table(searched, sources, edits, u_searched, folders, query_folders, args),
        "categories": category_check(folders, query_folders, u_searched, args),
    }


def evaluate_at_scale(embedder, root, args):
    """The photo set's combined-edit copies again, with `args.distractors` other dev images indexed beside it:
    recall@1 at each stage of STAGES, and where the original ranked globally; and the category precision@10 of
    --unrelated other images (not indexed), with and without the copy space picking the lead. The other sets index
    a few hundred images; a real index holds thousands, where a heavily edited copy falls further down the global
    ranking."""
    index, _ = pick_images(root, "photo", args.limit, 0, args.seed)
    originals = [img for _, img in index]
    others, unrelated = pick_images(root, "mixed", args.distractors, args.unrelated, args.seed + 1, avoid=originals)
    images = originals + [img for _, img in others]
    app = AppIndex.build(embedder, images, embed_all(embedder, images), names=[p.name for p, _ in index + others])
    queries = build_queries(originals, combined_count(args), seed=args.seed, edits=("combined",))
    searched = search(embedder, app, [q.image for q in queries], args, wanted=(args.k,))
    sources = np.array([q.source for q in queries])
    edits = np.array([q.edit for q in queries])
    stages = []
    for name, stage in STAGES:
        options = {"fused": args.k, **stage}
        stages.append({"stage": name, "combined": float((rerank_top1(searched, args.min_inliers, **options) == sources).mean())})
    sides = np.array([max(originals[q.source].size) for q in queries])
    u_searched = search(embedder, app, [img for _, img in unrelated], args, wanted=(args.k,))
    folders = np.array([path.parent.name for path, _ in index + others])
    query_folders = [path.parent.name for path, _ in unrelated]
    categories = {"unrelated": len(unrelated),
                  **category_check(folders, query_folders, u_searched, args),
                  "precision_at_10_reranked_without_copy_space": category_check(
                      folders, query_folders, u_searched, args, copy_space=False, copy_finds=False)["precision_at_10_reranked"]}
    return {"images": len(images), "photos": len(originals), "distractors": len(others), "queries": len(queries),
            "categories": categories,
            "projection": app.space.projection is not None, "copy_space": app.space.copy_key is not None,
            "by_original_size": size_table(searched, sources, edits, sides, args),
            "global": float((searched.global_first() == sources).mean()),
            "global_at_k": float(searched.global_within(sources, args.k).mean()), "stages": stages,
            "edits": sorted(set(edits.tolist()))}


def recall_table(searched, sources, edits, args):
    """recall@1 (global, re-ranked) and the global recall@k ceiling per edit type, and overall."""
    rows = {"global": searched.global_first() == sources,
            "reranked": rerank_top1(searched, args.min_inliers, fused=args.k) == sources,
            "global_at_k": searched.global_within(sources, args.k)}
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
        table.append({"stage": name, "combined": float(hits[edits == "combined"].mean()), "all": float(hits.mean()),
                      "precision_at_10": cat["precision_at_10_reranked"]})
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
                table.setdefault(name, {})[label] = {"n": int(mask.sum()), "global": float(first[mask].mean()),
                                                     "reranked": float(reranked[mask].mean())}
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
            table.append({"candidates": k, "weight": weight, "combined": float(hits[edits == "combined"].mean()),
                          "all": float(hits.mean()), "precision_at_10": cat["precision_at_10_reranked"]})
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
    print(f"\n{which}: {result['images']} images, {result['queries']} queries, {args.k} candidates fused, "
          f"signatures over the whole set, min_inliers {args.min_inliers}, "
          f"keypoints (side, count) {tunables.SCALES}")
    print(f"{'edit':<10} {'n':>5} {'global@1':>9} {'rerank@1':>9} {f'global@{args.k}':>10}")
    for edit, row in result["recall_at_1"].items():
        print(f"{edit:<10} {row['n']:>5} {row['global']:>9.3f} {row['reranked']:>9.3f} {row['global_at_k']:>10.3f}")
    lat, size, cat = result["latency_ms"], result["bytes_per_image"], result["categories"]
    print(f"added latency per query: median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms; "
          f"stored {size['mean']:.0f} bytes/image (max {size['max']}) + a {size['signature']}-byte signature; "
          f"index-time extract {result['index_extract_ms']:.1f} ms/image")
    print(f"category precision@10 of unrelated queries: global {cat['precision_at_10_global']:.3f}, "
          f"re-ranked {cat['precision_at_10_reranked']:.3f}")
    for band, rows in result["by_original_size"].items():
        print(f"originals {band}: " + "; ".join(f"{label} n={r['n']} global {r['global']:.3f} re-ranked {r['reranked']:.3f}"
                                                 for label, r in rows.items()))
    print(f"{'inliers>=':>9} {'recall@1':>9} {'false copy (edited)':>20} {'false copy (unrelated)':>23} {'queries hit':>12}")
    for th, row in result["thresholds"].items():
        (fe, ne), (fu, nu) = row["false_copy_edited"], row["false_copy_unrelated"]
        qu, nq = row["unrelated_queries_with_false_copy"]
        print(f"{th:>9} {row['recall_at_1']:>9.3f} {f'{fe}/{ne}':>20} {f'{fu}/{nu}':>23} {f'{qu}/{nq}':>12}")
    print(f"{'stage':<45} {'combined@1':>11} {'all@1':>7} {'P@10 unrelated':>15}")
    for row in result["stages"]:
        print(f"{row['stage']:<45} {row['combined']:>11.3f} {row['all']:>7.3f} {row['precision_at_10']:>15.3f}")
    print(f"{'candidates':>10} {'weight':>7} {'combined@1':>11} {'all@1':>7} {'P@10 unrelated':>15}")
    for row in result["fusion"]:
        print(f"{row['candidates']:>10} {row['weight']:>7} {row['combined']:>11.3f} {row['all']:>7.3f} {row['precision_at_10']:>15.3f}")


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEV_IMAGES)
    parser.add_argument("--sets", default="photo,mixed", help="comma-separated: photo, mixed")
    parser.add_argument("--limit", type=int, default=600, help="indexed images per set")
    parser.add_argument("--queries", type=count, default=30, help="edited queries per edit type (11 types)")
    parser.add_argument("--combined-queries", type=count, help="combined-edit queries per set (default: --queries); the "
                        "target's figure, so worth more queries than each single edit")
    parser.add_argument("--unrelated", type=int, default=100, help="non-indexed images for the false-copy rate")
    parser.add_argument("--k", type=int, default=RERANK_CANDIDATES, help="global candidates re-ranked")
    parser.add_argument("--min-inliers", type=int, default=tunables.MIN_INLIERS)
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distractors", type=int, default=3000,
                        help="other dev images indexed beside the photo set for the at-scale check (0: skip it)")
    parser.add_argument("--scales", type=scales, default=tunables.SCALES,
                        help="SIFT sizes to try instead of the app's, as SIDE:KEYPOINTS,... (e.g. 192:256,96:128)")
    parser.add_argument("--json", type=Path)
    return parser


def count(text):
    """--queries, --combined-queries: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("give at least 1")
    return value


def scales(text):
    """--scales: "256:256,128:128" -> ((256, 256), (128, 128))."""
    try:
        pairs = tuple(tuple(int(n) for n in part.split(":")) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give SIDE:KEYPOINTS pairs, e.g. 256:256,128:128") from None
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise argparse.ArgumentTypeError("give SIDE:KEYPOINTS pairs of positive numbers, e.g. 256:256,128:128")
    return pairs


def run(argv=()):
    """Every set's figures (the bench suite's "copies" part calls this with its own query count)."""
    import cv2
    import torch

    from bench.common import load_embedder

    args = parser().parse_args(list(argv))
    tunables.SCALES = args.scales  # this process only: what extract() uses for the index and the queries
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    embedder = load_embedder()
    report = {"settings": {k: str(v) for k, v in vars(args).items()}, "scales": tunables.SCALES,
              "inlier_weight": tunables.INLIER_WEIGHT, "signature_weight": tunables.SIGNATURE_WEIGHT,
              "words": words.WORDS, "word_candidates": tunables.WORDS_FOUND, "sets": {}}
    for which in args.sets.split(","):
        report["sets"][which] = evaluate(embedder, args.root, which, args)
        print_report(which, report["sets"][which], args)
    if args.distractors:
        scale = report["at_scale"] = evaluate_at_scale(embedder, args.root, args)
        print(f"\nphoto + {scale['distractors']} other images ({scale['images']} indexed), {scale['queries']} combined-edit "
              f"copies: global R@1 {scale['global']:.3f}, original in the global top {args.k} {scale['global_at_k']:.3f}")
        for row in scale["stages"]:
            print(f"  {row['stage']:<45} combined R@1 {row['combined']:.3f}")
        for band, rows in scale["by_original_size"].items():
            r = rows["combined"]
            print(f"  originals {band}: n={r['n']} global {r['global']:.3f} re-ranked {r['reranked']:.3f}")
    return report


def main():
    report = run(sys.argv[1:])
    out = parser().parse_args().json
    if out:
        out.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
