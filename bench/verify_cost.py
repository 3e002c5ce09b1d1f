"""What re-ranking costs per search on real photographs, before and after issue 30's changes, in one run.

    IMGSEARCH_DATA_DIR=.local/bench-verify .venv/bin/python -m imgsearch.embedded exec -- \\
        .venv/bin/python -m bench.verify_cost [--distractors 600] [--per-photo 3] [--profile] [--batches 1,2,4,8,16,32]
        [--json out.json]

One index, built as the app builds it (bench/appindex.py): every dev photograph (../shared/data/fetch-dev-photos;
among them the same wallpaper at several sizes) and --distractors dev images (bench/copysets.py's "mixed" set, no
twin of a photo), so the candidates a search verifies are the realistic mix of photos and drawings. Two query sets of
combinations of three edits (bench/copysets.py): copies of the photographs of 1,024 pixels or more on the longer side
(--per-photo each), and as many copies of the indexed dev images. Each query is ranked twice through the app's own
ranking (workers.ranking.rank), "before" (the behaviour before issue 30: BEFORE below) and "after" (the production
default), interleaved query by query and the order alternated, on one process and one database, so the machine's load
weighs on both alike. The re-ranking time is bench/copy_detection.py's: every stage
after the global k-NN, fusion included (the search's rerank_ms). Recall@1: the original first, or another size of the
same picture (twin_of over the 8 turns); "badged": that result also marked "copy" ("Same picture").

Then, on the photo queries: where the time goes (--profile: one more pass of each mode under cProfile, apart from the
timed ones, and each part's cumulative milliseconds per search), and what each number of candidates per product
(tunables.MATCH_BATCH) costs the matching of a search's candidates (--batches, their inliers compared too).
"""

import argparse
import cProfile
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench import benchdb
from bench.common import DEV_IMAGES, run_and_save, uptime
from bench.copysets import build_queries, dev_photos, pick_images, thumb_vectors, twin_of

LARGE = 1024  # the photographs whose copies are searched: this many pixels or more on the longer side


def _own_media_folder():
    """Standalone, keep the thumbnails this part indexes under its own IMGSEARCH_DATA_DIR, not under make bench's
    .local/bench-run (another bench running there at the same time writes the same thumbnail names)."""
    from django.apps import apps

    from imgsearch import embedded

    if not apps.ready:
        benchdb.CACHE = embedded.data_dir() / "cache"


_own_media_folder()
benchdb.use_once()  # the app's modules below need Django, on the bench database

from bench.appindex import KNN_STAGE, AppIndex  # noqa: E402
from bench.copy_detection import embed_all  # noqa: E402
from workers.ranking import tunables  # noqa: E402
from workers.ranking.query import Query  # noqa: E402
from workers.ranking.stages import rank  # noqa: E402


@contextmanager
def overridden(values):
    """The tunables set to `values` for the block, as they were after."""
    saved = {name: getattr(tunables, name) for name in values}
    for name, value in values.items():
        setattr(tunables, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(tunables, name, value)


# The behaviour before issue 30: one candidate's product at a time, the query's evidence from its full decoded image
# (the production values of these tunables are the "after").
BEFORE = {"MATCH_BATCH": 0, "QUERY_SIDE": None}
MODES = {"before": BEFORE, "after": {}}


def rerank_ms(ranking):
    """The search's rerank_ms: every stage after the global k-NN, fusion included."""
    return sum(ms for stage, ms in ranking.timings.items() if stage != KNN_STAGE)


def ranked(app, img, vector, mode):
    """The app's Ranking of one query in one mode, its evidence computed afresh."""
    query = Query.of_image(img, vector, app.space, k=20, wanted=20)
    with overridden(MODES[mode]):
        return query, rank(query)


def search_both(app, queries, raw):
    """{mode: [(first result's position or -1, its match, rerank ms, stage timings)]} of each query ranked in each
    mode, the two interleaved query by query (the first mode alternating)."""
    out = {mode: [] for mode in MODES}
    order = list(MODES)
    for number, (img, vector) in enumerate(zip(queries, raw)):
        for mode in order if number % 2 == 0 else order[::-1]:
            _, ranking = ranked(app, img, vector, mode)
            first = ranking.results[0] if ranking.results else None
            out[mode].append(
                (
                    -1 if first is None else app.position[first[0]],
                    None if first is None else first[2],
                    rerank_ms(ranking),
                    ranking.timings,
                )
            )
    return out


# The parts of a search's re-ranking the profile is read for: (label, function's file, name), cumulative time.
PARTS = (
    ("query keypoints (SIFT at 256 and 128 px)", "verification.py", "extract"),
    ("  of which SIFT itself", "~", "<method 'detectAndCompute' of 'cv2.Feature2D' objects>"),
    ("query signature", "signature.py", "compute"),
    ("signature in the whole index (database)", "signature.py", "best_in_index"),
    ("visual words (aggregate + database)", "words.py", "nearest"),
    ("stored evidence read and unpacked", "verification.py", "stored_evidence"),
    ("verification stage: stored evidence, matching", "verification.py", "inliers"),
    ("  of which products (cv2.gemm)", "~", "<gemm>"),
    ("  of which ratio tests' partition", "fromnumeric.py", "partition"),
    ("  of which RANSAC", "~", "<estimateAffinePartial2D>"),
    ("appearance check", "appearance.py", "check"),
    ("  of which the query's working image", "query.py", "working"),
    ("  of which candidates' thumbnails", "appearance.py", "stored_pixels"),
    ("the global k-NN (not re-ranking)", "global_knn.py", "nearest"),
)


def profile(app, queries, raw):
    """{mode: {part: cumulative ms per search}} of one more pass of each mode under cProfile (PARTS), interleaved as
    the timed passes are."""
    import pstats

    profilers, order, out = {mode: cProfile.Profile() for mode in MODES}, list(MODES), {}
    for number, (img, vector) in enumerate(zip(queries, raw)):
        for mode in order if number % 2 == 0 else order[::-1]:
            profilers[mode].enable()
            ranked(app, img, vector, mode)
            profilers[mode].disable()
    for mode, profiler in profilers.items():
        stats = pstats.Stats(profiler).stats
        out[mode] = {
            label: round(
                1000 * sum(v[3] for (f, _, n), v in stats.items() if n == name and f.endswith(file)) / len(queries), 2
            )
            for label, file, name in PARTS
        }
        out[mode]["total (everything profiled)"] = round(1000 * sum(v[2] for v in stats.values()) / len(queries), 2)
    return out


def batch_sweep(app, queries, raw, batches):
    """{batch: median ms per search} of matching each query's candidates (their stored keypoints, as the stage reads
    them) with verification.match_many at each number of candidates per product, interleaved per query; and whether
    every batch found the same inliers."""
    from workers.ranking import verification

    times, same = {b: [] for b in batches}, True
    for number, (img, vector) in enumerate(zip(queries, raw)):
        query, ranking = ranked(app, img, vector, "after")
        stored = [f for f, _ in ranking.candidates.stored_evidence().values() if f is not None]
        inliers = set()
        for b in batches if number % 2 == 0 else batches[::-1]:
            started = time.perf_counter()
            found = verification.match_many(query.features, stored, batch=b)
            times[b].append(1000 * (time.perf_counter() - started))
            inliers.add(tuple(m.inliers for m in found))
        same = same and len(inliers) == 1
    return {"median_ms": {b: round(statistics.median(t), 2) for b, t in times.items()}, "same_inliers": same}


def figures(found, sources, same):
    """Median and p95 re-ranking ms, recall@1 and badged first of one mode's searches; `same[i]`: the positions that
    count as query i's original (it and its other sizes)."""
    ms = [one[2] for one in found]
    hits = [one[0] in same[s] for one, s in zip(found, sources)]
    stages = {}
    for one in found:
        for stage, value in one[3].items():
            stages.setdefault(stage, []).append(value)
    return {
        "median_ms": round(statistics.median(ms), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "mean_ms": round(float(np.mean(ms)), 1),
        "recall_at_1": round(float(np.mean(hits)), 3),
        "badged_first": round(float(np.mean([h and one[1] == "copy" for h, one in zip(hits, found)])), 3),
        "stage_median_ms": {stage: round(statistics.median(v), 2) for stage, v in stages.items()},
        "stage_mean_ms": {stage: round(float(np.mean(v)), 2) for stage, v in stages.items()},
    }


def same_picture_groups(images):
    """For each image, the positions of the images that are the same picture (itself included): another size of it,
    turned or mirrored (twin_of over the 8 turns)."""
    views = [thumb_vectors(img, turns=True) for img in images]
    firsts = np.array([v[0] for v in views], np.float32)
    return [
        {j for j in range(len(images)) if j == i or twin_of(firsts[j : j + 1], views[i])} for i in range(len(images))
    ]


def run(argv=()):
    args = parser().parse_args(list(argv))
    import cv2
    import torch

    from bench.common import load_embedder

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    embedder = load_embedder()
    photo_set = dev_photos()
    photo_images = [img for _, img in photo_set]
    others, _ = pick_images(args.root, "mixed", args.distractors, 0, args.seed, avoid=photo_images)
    images = photo_images + [img for _, img in others]
    names = [p.name for p, _ in photo_set] + [p.name for p, _ in others]
    load_start = uptime()
    app = AppIndex.build(embedder, images, embed_all(embedder, images), names=names, projection=False)
    same = same_picture_groups(photo_images) + [{len(photo_images) + n} for n in range(len(others))]
    large = [n for n, img in enumerate(photo_images) if max(img.size) >= LARGE]
    photo_queries = build_queries(
        [photo_images[n] for n in large], args.per_photo * len(large), seed=args.seed, edits=("combined",)
    )
    photo_sources = [large[q.source] for q in photo_queries]
    dev_queries = build_queries(images[len(photo_images) :], len(photo_queries), seed=args.seed, edits=("combined",))
    dev_sources = [len(photo_images) + q.source for q in dev_queries]
    report = {
        "indexed": {"photos": len(photo_images), "dev images": len(others), "photos searched": len(large)},
        "query_sides": {
            "photos": statistics.median(max(q.image.size) for q in photo_queries),
            "dev": statistics.median(max(q.image.size) for q in dev_queries),
        },
        "load_at_start": load_start.split("load average:")[-1].strip(),
        "sets": {},
    }
    photo_raw = None
    for name, queries, sources in (("photos", photo_queries, photo_sources), ("dev", dev_queries, dev_sources)):
        imgs = [q.image for q in queries]
        raw = embed_all(embedder, imgs)
        photo_raw = raw if photo_raw is None else photo_raw
        searched = search_both(app, imgs, raw)
        report["sets"][name] = {
            "queries": len(queries),
            **{mode: figures(found, sources, same) for mode, found in searched.items()},
            "same_first": sum(
                (b[0], b[1]) == (a[0], a[1]) for b, a in zip(searched["before"], searched["after"])
            ),  # queries whose first result and its match are the same in both modes
        }
    report["load_at_end"] = uptime().split("load average:")[-1].strip()
    imgs = [q.image for q in photo_queries]
    if args.profile:
        report["profile_ms_per_search"] = profile(app, imgs, photo_raw)
    if args.batches:
        report["batches"] = batch_sweep(app, imgs, photo_raw, args.batches)
    print_report(report)
    return report


def print_report(report):
    i = report["indexed"]
    print(
        f"  index: {i['photos']} photographs + {i['dev images']} dev images; load average {report['load_at_start']}"
        f" at the start, {report['load_at_end']} at the end"
    )
    for name, r in report["sets"].items():
        b, a = r["before"], r["after"]
        print(
            f"  {name} ({r['queries']} combined-edit copies, median side {report['query_sides'][name]} px):"
            f" re-ranking median {b['median_ms']} -> {a['median_ms']} ms, p95 {b['p95_ms']} -> {a['p95_ms']} ms;"
            f" recall@1 {b['recall_at_1']:.3f} -> {a['recall_at_1']:.3f},"
            f" badged first {b['badged_first']:.3f} -> {a['badged_first']:.3f}"
        )
        print(f"    the same first result and match in both: {r['same_first']} of {r['queries']}")
        for stage in b["stage_mean_ms"]:
            print(
                f"    {stage:<28} mean {b['stage_mean_ms'][stage]:7.2f} -> {a['stage_mean_ms'][stage]:7.2f} ms,"
                f" median {b['stage_median_ms'][stage]:7.2f} -> {a['stage_median_ms'][stage]:7.2f} ms"
            )

    prof = report.get("profile_ms_per_search")
    if prof:
        print("  photos, cProfile, cumulative ms per search (before -> after):")
        for label in prof["before"]:
            print(f"    {label:<45} {prof['before'][label]:7.2f} -> {prof['after'][label]:7.2f}")
    sweep = report.get("batches")
    if sweep:
        print(
            "  photos, matching a search's candidates, median ms by candidates per product: "
            + ", ".join(f"{b}: {ms}" for b, ms in sweep["median_ms"].items())
            + f" (the same inliers at every batch: {'yes' if sweep['same_inliers'] else 'NO'})"
        )


def batches(text):
    """--batches: "1,2,8" -> (1, 2, 8)."""
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give whole numbers, e.g. 1,2,4,8") from None


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEV_IMAGES)
    parser.add_argument("--distractors", type=int, default=600, help="dev images indexed beside the photographs")
    parser.add_argument("--per-photo", type=int, default=3, help="combined-edit copies of each large photograph")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="where the photo searches' time goes, both modes")
    parser.add_argument(
        "--batches", type=batches, default=(), help="candidates per product to time the matching at, e.g. 1,2,4,8,16"
    )
    parser.add_argument("--json", type=Path)
    return parser


if __name__ == "__main__":
    run_and_save(run, parser)
