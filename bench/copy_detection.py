"""Copy detection: does an edited copy of an indexed picture bring back its original first?

    .venv/bin/python -m bench.copy_detection [--sets photo,mixed] [--limit 600] [--queries 30] [--json out.json]

For each set of real images (photo: the tuxpaint and desktop-base pictures that look like photos, i.e. have
many distinct colours; mixed: a sample of tuxpaint, openclipart and desktop-base), it embeds every image with
the global model, builds edited copies (bench/copysets.py) and reports, in one run, recall@1 of the original
for global search alone (exact cosine over the whole set) and for the global top-k re-ranked by local
features (workers/localfeatures.py), per edit type and overall. Also: the latency the re-ranking adds per
query (extract the query's features, unpack and verify k candidates, order them), the bytes stored per image,
and how often a picture that is not a copy is marked "copy": the top-k of unrelated images (same kind, not
indexed) and the other candidates of edited queries, for several inlier thresholds. Run it from the
repository root; the defaults take about 5 minutes on 2 busy cores, --queries 200 about 20.

The global search is average pooling of the raw embedding, what searches use below IMGSEARCH_PROJECTION_MIN_IMAGES
(1,000) indexed images, as for these sets. Recall is also split by the size of the original (its longer side),
because many of the "photos" here are stamps of 50 to 200 pixels whose edited copies are only a few dozen.
"""

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import DEV_IMAGES, RERANK_CANDIDATES
from bench.copysets import EDIT_TYPES, build_queries, load_original
from workers import localfeatures
from workers.imageio import ImageDecodeError
FOLDERS = {"photo": ("tuxpaint", "desktop-base"), "mixed": ("tuxpaint", "openclipart", "desktop-base")}
THRESHOLDS = (6, 8, 10, 12, 15, 20, 30)
FUSION_WEIGHTS = (0.0, 0.01, 0.02, 0.03)  # cosine per sub-threshold inlier; 0 is "non-copies keep the global order"
FUSION_CANDIDATES = (20, 30)


def photo_like(img):
    """A heuristic: photos have many distinct colours, drawings and smooth wallpapers few."""
    thumb = img.copy()
    thumb.thumbnail((128, 128))
    px = np.asarray(thumb) // 4
    codes = (px[..., 0].astype(np.int32) << 12) | (px[..., 1].astype(np.int32) << 6) | px[..., 2]
    return len(np.unique(codes)) >= 600


def thumb_vectors(img):
    """16x16 colour thumbnails of the image and of its mirror image, for spotting duplicates."""
    small = img.resize((16, 16), Image.Resampling.BOX)
    mirror = small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return [np.asarray(t, np.float32).ravel() for t in (small, mirror)]


def pick_images(root, which, limit, extra, seed):
    """(index, unrelated): up to `limit` distinct (path, image) pairs, and `extra` others of the same kind."""
    files = sorted(p for folder in FOLDERS[which] for p in (root / folder).rglob("*") if p.suffix in (".png", ".jpg"))
    random.Random(seed).shuffle(files)
    chosen, thumbs = [], np.zeros((0, 768), np.float32)
    for path in files:
        try:
            img = load_original(path)
        except ImageDecodeError:  # the indexer skips these too (e.g. over the pixel limit)
            continue
        if which == "photo" and not photo_like(img):
            continue
        # The same picture stored twice (another size, or the mirrored stamp) would also be a right answer.
        vectors = thumb_vectors(img)
        if len(thumbs) and min(np.sqrt(((thumbs - v) ** 2).mean(axis=1)).min() for v in vectors) < 12:
            continue
        chosen.append((path, img))
        thumbs = np.vstack([thumbs, vectors[0]])
        if len(chosen) == limit + extra:
            break
    # Too few for both (the photo set): hold `extra` back, but index at least half.
    split = min(limit, max(len(chosen) - extra, len(chosen) // 2))
    return chosen[:split], chosen[split:]


def embed_all(embedder, images, batch=32):
    """L2-normalised global embeddings, one row per image."""
    return np.concatenate([embedder.embed(images[i : i + batch])[0] for i in range(0, len(images), batch)])


def global_top(index_vectors, query_vectors, k):
    """Each query's k nearest index images by exact cosine, best first, and their scores."""
    sims = query_vectors @ index_vectors.T
    top = np.argsort(-sims, axis=1)[:, :k]
    return top, np.take_along_axis(sims, top, axis=1)


def verify_candidates(image, top, scores, blobs, args):
    """(inliers per candidate, seconds): extract, unpack and verify the first k candidates and order them, as a
    search does; the candidates after k (only for the fusion table) are verified once the clock has stopped."""
    started = time.perf_counter()
    query = localfeatures.extract(image)
    inliers = [localfeatures.verify(query, localfeatures.unpack(blobs[i])) for i in top[: args.k]]
    localfeatures.order(list(zip(top[: args.k].tolist(), scores[: args.k].tolist())), inliers, min_inliers=args.min_inliers)
    seconds = time.perf_counter() - started
    inliers += [localfeatures.verify(query, localfeatures.unpack(blobs[i])) for i in top[args.k :]]
    return np.array(inliers), seconds


def search(embedder, images, vectors, blobs, args):
    """(global top candidates, their scores, inliers, seconds per query) for query images: k of them, or as many as
    the fusion table looks at."""
    top, scores = global_top(vectors, embed_all(embedder, images), max(args.k, *FUSION_CANDIDATES))
    results = [verify_candidates(img, t, s, blobs, args) for img, t, s in zip(images, top, scores)]
    inliers, seconds = zip(*results)
    return top, scores, np.array(inliers), seconds


def rerank_top1(top, scores, inliers, min_inliers, weight=localfeatures.INLIER_WEIGHT):
    """Each query's first result after localfeatures.order, from its candidates' global scores and inlier counts."""
    return np.array([
        localfeatures.order(list(zip(t, s)), n, min_inliers=min_inliers, inlier_weight=weight)[0][0]
        for t, s, n in zip(top.tolist(), scores.tolist(), inliers.tolist())
    ])


def evaluate(embedder, root, which, args):
    """Every number of the report for one image set."""
    index, unrelated = pick_images(root, which, args.limit, args.unrelated, args.seed)
    images = [img for _, img in index]
    started = time.perf_counter()
    blobs = [localfeatures.pack(localfeatures.extract(img)) for img in images]
    extract_ms = 1000 * (time.perf_counter() - started) / len(images)
    vectors = embed_all(embedder, images)
    queries = build_queries(images, args.queries, seed=args.seed)
    wide = search(embedder, [q.image for q in queries], vectors, blobs, args)
    sources = np.array([q.source for q in queries])
    edits = np.array([q.edit for q in queries])
    u_wide = search(embedder, [img for _, img in unrelated], vectors, blobs, args)
    (top, scores, inliers), seconds = (a[:, : args.k] for a in wide[:3]), wide[3]  # what a search looks at
    u_top, u_scores, u_inliers = (a[:, : args.k] for a in u_wide[:3])
    folders = np.array([path.parent.name for path, _ in index])
    sides = np.array([max(images[q.source].size) for q in queries])
    return {
        "by_original_size": size_table(top, scores, inliers, sources, edits, sides, args.min_inliers),
        "images": len(images),
        "queries": len(queries),
        "recall_at_1": recall_table(top, scores, inliers, sources, edits, args.min_inliers),
        "latency_ms": {"median": 1000 * statistics.median(seconds), "p95": 1000 * float(np.percentile(seconds, 95))},
        "bytes_per_image": {"mean": float(np.mean([len(b) for b in blobs])), "max": max(len(b) for b in blobs)},
        "index_extract_ms": extract_ms,
        "thresholds": threshold_table(top, scores, inliers, sources, u_inliers),
        "fusion": fusion_table(*wide[:3], sources, edits, u_wide[:3], folders, [p.parent.name for p, _ in unrelated],
                               args.min_inliers),
        "categories": category_check(
            folders, [p.parent.name for p, _ in unrelated], u_top, u_scores, u_inliers, args.min_inliers
        ),
    }


def recall_table(top, scores, inliers, sources, edits, min_inliers):
    """recall@1 (global, re-ranked) and the global recall@k ceiling per edit type, and overall."""
    reranked = rerank_top1(top, scores, inliers, min_inliers) == sources
    rows = {"global": top[:, 0] == sources, "reranked": reranked, "global_at_k": (top == sources[:, None]).any(axis=1)}
    table = {}
    for edit in [*EDIT_TYPES, "all"]:
        mask = edits == edit if edit != "all" else np.ones(len(edits), bool)
        if mask.any():
            table[edit] = {"n": int(mask.sum()), **{name: float(hit[mask].mean()) for name, hit in rows.items()}}
    return table


SIZE_BANDS = (("< 128 px", 0, 128), ("128-255 px", 128, 256), (">= 256 px", 256, 10**9))


def size_table(top, scores, inliers, sources, edits, sides, min_inliers):
    """recall@1 (global, re-ranked) of all queries and of combined edits, by the original's longer side."""
    reranked = rerank_top1(top, scores, inliers, min_inliers) == sources
    table = {}
    for name, low, high in SIZE_BANDS:
        band = (sides >= low) & (sides < high)
        for label, mask in (("all", band), ("combined", band & (edits == "combined"))):
            if mask.any():
                table.setdefault(name, {})[label] = {"n": int(mask.sum()), "global": float((top[mask, 0] == sources[mask]).mean()),
                                                     "reranked": float(reranked[mask].mean())}
    return table


def threshold_table(top, scores, inliers, sources, unrelated, thresholds=THRESHOLDS):
    """Per inlier threshold: recall@1 and how many non-copies are marked "copy"."""
    others = top != sources[:, None]
    return {
        th: {
            "recall_at_1": float((rerank_top1(top, scores, inliers, th) == sources).mean()),
            "false_copy_edited": [int(((inliers >= th) & others).sum()), int(others.sum())],
            "false_copy_unrelated": [int((unrelated >= th).sum()), int(unrelated.size)],
            "unrelated_queries_with_false_copy": [int((unrelated >= th).any(axis=1).sum()), len(unrelated)],
        }
        for th in thresholds
    }


def fusion_table(top, scores, inliers, sources, edits, unrelated, folders, query_folders, min_inliers):
    """How the weight of sub-threshold inliers (localfeatures.INLIER_WEIGHT) and the candidate count trade off.

    For each (candidates, weight): recall@1 of combined edits and of all queries, and the category precision@10
    of the unrelated queries after re-ranking. Fewer candidates are the first ones of the same global top-k.
    """
    u_top, u_scores, u_inliers = unrelated
    table = []
    for k in FUSION_CANDIDATES:
        for weight in FUSION_WEIGHTS:
            hits = rerank_top1(top[:, :k], scores[:, :k], inliers[:, :k], min_inliers, weight) == sources
            cat = category_check(folders, query_folders, u_top[:, :k], u_scores[:, :k], u_inliers[:, :k], min_inliers, weight)
            table.append({"candidates": k, "weight": weight, "combined": float(hits[edits == "combined"].mean()),
                          "all": float(hits.mean()), "precision_at_10": cat["precision_at_10_reranked"]})
    return table


def category_check(folders, query_folders, top, scores, inliers, min_inliers, weight=localfeatures.INLIER_WEIGHT):
    """Folder-category precision@10 of unrelated queries: global order against re-ranked order."""
    before, after = [], []
    for folder, t, s, n in zip(query_folders, top, scores, inliers):
        ranked = localfeatures.order(list(zip(t.tolist(), s.tolist())), n, min_inliers=min_inliers, inlier_weight=weight)
        ranked = [i for i, _, _ in ranked]
        before.append((folders[t[:10]] == folder).mean())
        after.append((folders[ranked[:10]] == folder).mean())
    return {"precision_at_10_global": float(np.mean(before)), "precision_at_10_reranked": float(np.mean(after))}


def print_report(which, result, args):
    """One table per set, then the cost, category and false-copy lines."""
    print(f"\n{which}: {result['images']} images, {result['queries']} queries, "
          f"{args.k} candidates, min_inliers {args.min_inliers}, keypoints (side, count) {localfeatures.SCALES}")
    print(f"{'edit':<10} {'n':>5} {'global@1':>9} {'rerank@1':>9} {f'global@{args.k}':>10}")
    for edit, row in result["recall_at_1"].items():
        print(f"{edit:<10} {row['n']:>5} {row['global']:>9.3f} {row['reranked']:>9.3f} {row['global_at_k']:>10.3f}")
    lat, size, cat = result["latency_ms"], result["bytes_per_image"], result["categories"]
    print(f"added latency per query: median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms; "
          f"stored {size['mean']:.0f} bytes/image (max {size['max']}); "
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
    print(f"{'candidates':>10} {'weight':>7} {'combined@1':>11} {'all@1':>7} {'P@10 unrelated':>15}")
    for row in result["fusion"]:
        print(f"{row['candidates']:>10} {row['weight']:>7} {row['combined']:>11.3f} {row['all']:>7.3f} {row['precision_at_10']:>15.3f}")


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEV_IMAGES)
    parser.add_argument("--sets", default="photo,mixed", help="comma-separated: photo, mixed")
    parser.add_argument("--limit", type=int, default=600, help="indexed images per set")
    parser.add_argument("--queries", type=int, default=30, help="edited queries per edit type (11 types)")
    parser.add_argument("--unrelated", type=int, default=100, help="non-indexed images for the false-copy rate")
    parser.add_argument("--k", type=int, default=RERANK_CANDIDATES, help="global candidates re-ranked")
    parser.add_argument("--min-inliers", type=int, default=localfeatures.MIN_INLIERS)
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    return parser


def run(argv=()):
    """Every set's figures (the bench suite's "copies" part calls this with its own query count)."""
    import cv2
    import torch

    from bench.common import load_embedder

    args = parser().parse_args(list(argv))
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    embedder = load_embedder()
    report = {"settings": {k: str(v) for k, v in vars(args).items()}, "scales": localfeatures.SCALES,
              "inlier_weight": localfeatures.INLIER_WEIGHT, "sets": {}}
    for which in args.sets.split(","):
        report["sets"][which] = evaluate(embedder, args.root, which, args)
        print_report(which, report["sets"][which], args)
    return report


def main():
    report = run(sys.argv[1:])
    out = parser().parse_args().json
    if out:
        out.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
