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
import statistics
from pathlib import Path

import numpy as np

from bench import benchdb
from bench.common import DEV_IMAGES, RERANK_CANDIDATES, run_and_save
from bench.copysets import EDIT_TYPES, build_queries, pick_images

benchdb.use_once()  # the app's modules below need Django, on the bench database

from bench.appindex import KNN_STAGE, AppIndex
from bench.copy_tables import (
    FUSION_CANDIDATES,
    STAGES,
    badged_first,
    category_check,
    fusion_table,
    print_report,
    recall_table,
    rerank_top1,
    size_table,
    stage_table,
    threshold_table,
)
from workers.ranking import signature, tunables, words
from workers.ranking.candidates import GLOBAL


def combined_count(args):
    """Combined-edit queries per set: --combined-queries, else --queries like every other edit type."""
    return args.combined_queries or args.queries


def edited_queries(images, args):
    """--queries edited copies per single edit type, then combined_count(args) combinations of three (the first
    --queries of them are the same either way: build_queries picks and edits each query on its own)."""
    return build_queries(images, args.queries, seed=args.seed, edits=EDIT_TYPES[:-1]) + build_queries(
        images, combined_count(args), seed=args.seed, edits=("combined",)
    )


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
        stages.append(
            {"stage": name, "combined": float((rerank_top1(searched, args.min_inliers, **options) == sources).mean())}
        )
    sides = np.array([max(originals[q.source].size) for q in queries])
    u_searched = search(embedder, app, [img for _, img in unrelated], args, wanted=(args.k,))
    folders = np.array([path.parent.name for path, _ in index + others])
    query_folders = [path.parent.name for path, _ in unrelated]
    categories = {
        "unrelated": len(unrelated),
        **category_check(folders, query_folders, u_searched, args),
        "precision_at_10_reranked_without_copy_space": category_check(
            folders, query_folders, u_searched, args, copy_space=False, copy_finds=False
        )["precision_at_10_reranked"],
    }
    return {
        "images": len(images),
        "photos": len(originals),
        "distractors": len(others),
        "queries": len(queries),
        "categories": categories,
        "projection": app.space.projection is not None,
        "copy_space": app.space.copy_key is not None,
        "by_original_size": size_table(searched, sources, edits, sides, args),
        "global": float((searched.global_first() == sources).mean()),
        "global_at_k": float(searched.global_within(sources, args.k).mean()),
        "badged": float(badged_first(searched, sources, args).mean()),
        "stages": stages,
        "edits": sorted(set(edits.tolist())),
    }


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEV_IMAGES)
    parser.add_argument("--sets", default="photo,mixed", help="comma-separated: photo, mixed")
    parser.add_argument("--limit", type=int, default=600, help="indexed images per set")
    parser.add_argument("--queries", type=count, default=30, help="edited queries per edit type (11 types)")
    parser.add_argument(
        "--combined-queries",
        type=count,
        help="combined-edit queries per set (default: --queries); the "
        "target's figure, so worth more queries than each single edit",
    )
    parser.add_argument("--unrelated", type=int, default=100, help="non-indexed images for the false-copy rate")
    parser.add_argument("--k", type=int, default=RERANK_CANDIDATES, help="global candidates re-ranked")
    parser.add_argument("--min-inliers", type=int, default=tunables.MIN_INLIERS)
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--distractors",
        type=int,
        default=3000,
        help="other dev images indexed beside the photo set for the at-scale check (0: skip it)",
    )
    parser.add_argument(
        "--scales",
        type=scales,
        default=tunables.SCALES,
        help="SIFT sizes to try instead of the app's, as SIDE:KEYPOINTS,... (e.g. 192:256,96:128)",
    )
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
    report = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "scales": tunables.SCALES,
        "inlier_weight": tunables.INLIER_WEIGHT,
        "signature_weight": tunables.SIGNATURE_WEIGHT,
        "words": words.WORDS,
        "word_candidates": tunables.WORDS_FOUND,
        "sets": {},
    }
    for which in args.sets.split(","):
        report["sets"][which] = evaluate(embedder, args.root, which, args)
        print_report(which, report["sets"][which], args)
    if args.distractors:
        scale = report["at_scale"] = evaluate_at_scale(embedder, args.root, args)
        print(
            f"\nphoto + {scale['distractors']} other images ({scale['images']} indexed), {scale['queries']} combined-edit "
            f"copies: global R@1 {scale['global']:.3f}, original in the global top {args.k} {scale['global_at_k']:.3f}, "
            f"badged first {scale['badged']:.3f}"
        )
        for row in scale["stages"]:
            print(f"  {row['stage']:<45} combined R@1 {row['combined']:.3f}")
        for band, rows in scale["by_original_size"].items():
            r = rows["combined"]
            print(f"  originals {band}: n={r['n']} global {r['global']:.3f} re-ranked {r['reranked']:.3f}")
    return report


if __name__ == "__main__":
    run_and_save(run, parser)
