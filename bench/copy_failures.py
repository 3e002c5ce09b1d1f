"""Which edited copies re-ranking still misses, and why: one line per query whose original is not first.

    .venv/bin/python -m imgsearch.embedded exec -- .venv/bin/python -m bench.copy_failures [--set photo] [--seed 0]
        [--queries 100] [--edits combined]

Builds the same set and queries as bench/copy_detection.py (same seed, same picks) and searches them as the app
does. For each failure it prints the edits, the original (path and size), where the original ranked globally
(">N" when outside the candidates searched), its inliers, and what came first instead: its match, inliers and how
alike its signature is to the original's (near 1: two files of the same picture, e.g. colour variants that a grey
edit makes identical). For deciding what the next improvement of copy search should target; not a report part.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from bench import (
    copy_detection,  # first: it points Django at the bench database
    copy_tables,
)
from bench.appindex import AppIndex
from bench.common import DEV_IMAGES
from bench.copysets import EDIT_TYPES, FOLDERS, build_queries
from workers.ranking import signature


def failures(args):
    """[(query, original path, original size, global rank or None, inliers of the original, first id, match,
    inliers of the first, signature likeness of first and original)] and the number of queries."""
    import cv2
    import torch

    from bench.common import load_embedder

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    options = copy_detection.parser().parse_args(["--seed", str(args.seed), "--limit", str(args.limit)])
    index, _ = copy_detection.pick_images(args.root, args.set, options.limit, options.unrelated, args.seed)
    images = [img for _, img in index]
    embedder = load_embedder()
    app = AppIndex.build(embedder, images, copy_detection.embed_all(embedder, images), names=[p.name for p, _ in index])
    signatures = np.stack([signature.compute(img) for img in images])
    queries = build_queries(images, args.queries, seed=args.seed, edits=tuple(args.edits.split(",")))
    searched = copy_detection.search(embedder, app, [q.image for q in queries], options, wanted=(options.k,))
    ranked = copy_tables.ranked_lists(searched, options.min_inliers, fused=options.k)
    rows = []
    for query, results, top, one in zip(queries, ranked, searched.top, searched.searched):
        first, _, match = results[0]
        if first == query.source:
            continue
        counts = {app.position[row.image_id]: row.inliers for row in one.first.candidates}
        rank = top.index(query.source) if query.source in top else None
        likeness = float(signature.similarities(signatures[query.source], signatures[first : first + 1])[0])
        rows.append(
            (
                query,
                index[query.source][0],
                images[query.source].size,
                rank,
                counts.get(query.source),
                index[first][0],
                match,
                counts.get(first),
                likeness,
                len(top),
            )
        )
    return rows, len(queries)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEV_IMAGES)
    parser.add_argument("--set", default="photo", choices=sorted(FOLDERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=600, help="indexed images")
    parser.add_argument("--queries", type=int, default=100, help="edited copies per edit type")
    parser.add_argument("--edits", default="combined", help=f"comma-separated, of: {', '.join(EDIT_TYPES)}")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    rows, total = failures(args)
    for query, path, size, rank, inliers, first, match, first_inliers, likeness, searched in rows:
        where = f"#{rank + 1}" if rank is not None else f">{searched}"
        print(
            f"{query.steps:<24} original {path.relative_to(args.root)} {size[0]}x{size[1]}, global {where}, "
            f"inliers {inliers if inliers is not None else '-'} | first {first.relative_to(args.root)} {match}, inliers "
            f"{first_inliers if first_inliers is not None else '-'}, signature likeness to the original {likeness:.3f}"
        )
    print(f"{len(rows)} of {total} queries miss their original ({args.set}, seed {args.seed})")


if __name__ == "__main__":
    sys.exit(main())
