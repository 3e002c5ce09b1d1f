"""Run the benchmark suite and write docs/benchmarks.json, docs/benchmarks.md and plots.

    make bench          # quality, copies, badges, re-ranking cost (verify), memory, indexing, search latency at 10k,
                        # k-NN at 100k (~45 min on 2 cores)
    make bench-large    # adds search latency at 100k and k-NN at 1M vectors (hours on 2 cores)
    make bench BENCH_ARGS="--only knn_large"   # measure some parts again, keeping the others of the last report

A default run keeps the large parts of the last report (each part states its own date and commit).

Runs against DATABASE_URL / REDIS_URL (make starts embedded servers under .local/bench-run); every part
uses a throw-away database `imgsearch_bench` on that server (the copies and quality parts index into it too). A part that fails is
recorded in the report with its error and the others still run.
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import benchdb, common, report  # noqa: E402

DOCS = common.ROOT / "docs"


PARTS = (
    "quality",
    "copies",
    "badges",
    "verify",
    "duplicates",
    "memory",
    "indexing",
    "search",
    "knn",
    "gpu",
    "index_load",
)
LARGE_PARTS = ("search_large", "knn_large")


def part(name, results, load, fn, *args, **kwargs):
    """Run one part, recording its figures (or its error), duration, date, commit and the load average at its start."""
    load[name] = common.uptime().split("load average:")[-1].strip()
    print(f"[{time.strftime('%H:%M:%S')}] {name} (load {load[name]})", flush=True)
    started = time.perf_counter()
    try:
        results[name] = fn(*args, **kwargs)
    except Exception as exc:
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    machine = common.machine()
    results[name].update(
        duration_s=round(time.perf_counter() - started, 1),
        measured=f"{machine['date']}, {machine['commit']}, {machine['cpu']}",
    )


def duplicates_apart():
    """bench/duplicates.py in a process of its own: it moves MEDIA_ROOT before the storage is first used, which this
    process's earlier parts have done, and starts from a fresh bench database. Its sheets (a sample of the groups
    drawn side by side, for the check by eye the closing notes state) go under .local/bench-run/duplicate-sheets."""
    import subprocess

    from django.db import connections

    connections.close_all()  # the bench database is made again there
    out = common.ROOT / ".local" / "bench-run" / "duplicates.json"
    sheets = out.parent / "duplicate-sheets"
    command = [sys.executable, "-m", "bench.duplicates", "--json", str(out), "--sheets", str(sheets)]
    subprocess.run(command, cwd=common.ROOT, check=True)
    return {"sets": json.loads(out.read_text())}


def _suite_position(name):
    """Where a part comes in the report: the order the suite runs them in (a large part after its small one)."""
    order = [each for part in PARTS for each in (part, f"{part}_large") if each in PARTS + LARGE_PARTS]
    return order.index(name) if name in order else len(order)


def previous_report(folder, only, large=False):
    """What of the last report a run keeps: with --only, every part it does not run again; a default run keeps the
    large parts (hours of measuring, each shown with its own date and commit); --large starts afresh."""
    path = folder / "benchmarks.json"
    if large or not path.is_file():
        return {"parts": {}, "load": {}}
    last = json.loads(path.read_text())
    if only:
        return last
    return {key: {name: value for name, value in last[key].items() if name in LARGE_PARTS} for key in ("parts", "load")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="also k-NN at 1M vectors and search latency at 100k")
    parser.add_argument(
        "--only",
        help=f"comma-separated parts to run again ({','.join(PARTS + LARGE_PARTS)}); the "
        "report keeps the other parts of the last one",
    )
    parser.add_argument("--copy-queries", type=int, default=100, help="edited queries per edit type in the copies part")
    parser.add_argument(
        "--copy-combined-queries",
        type=int,
        default=300,
        help="combined-edit queries per set in the copies part (the target's figure)",
    )
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--knn-n", type=int, default=100_000, help="vectors for the default k-NN part")
    parser.add_argument("--search-size", type=int, default=10_000, help="indexed vectors for the search latency part")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else set(PARTS) | (set(LARGE_PARTS) if args.large else set())
    unknown = wanted - set(PARTS + LARGE_PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    last = previous_report(args.out, args.only, large=args.large and not args.only)
    large = args.large or bool((wanted | set(last["parts"])) & set(LARGE_PARTS))  # measured now, or kept from before
    rep = {"machine": common.machine(), "large": large, "parts": last["parts"], "load": last["load"]}
    results, load = rep["parts"], rep["load"]
    seeds = common.CACHE / "seeds.npy"

    benchdb.use_bench_database()  # Django on a fresh database: the parts index and search as the app does
    if "quality" in wanted or not seeds.with_suffix(".projection.npz").is_file():
        from bench import quality

        part("quality", results, load, quality.run, seeds_path=seeds)
    if "copies" in wanted:
        from bench import copy_detection

        part(
            "copies",
            results,
            load,
            copy_detection.run,
            ["--queries", str(args.copy_queries), "--combined-queries", str(args.copy_combined_queries)],
        )
    if "badges" in wanted:
        from bench import badges

        part("badges", results, load, badges.run)
    if "verify" in wanted:
        from bench import verify_cost

        part("verify", results, load, verify_cost.run, ["--profile"])
    if "duplicates" in wanted:
        part("duplicates", results, load, duplicates_apart)
    from bench import appindex

    appindex.reset()  # the index the quality, copies and badges parts left: the other parts build their own
    if "gpu" in wanted:  # where torch sees no GPU this records only that
        from bench import gpu

        part("gpu", results, load, gpu.run)
    if "memory" in wanted:
        from bench import memory

        part("memory", results, load, memory.run)
    if wanted & {"indexing", "search", "search_large"}:
        from bench import indexing

        part("indexing", results, load, indexing.run)  # the searches need its model and real images
    if wanted & {"search", "search_large"}:
        from bench import search_latency

        # search_large grows the index the search part leaves, already projected. Alone, it would first give the
        # raw model's 100k vectors of 1280 dimensions an HNSW index (over half an hour here) before projecting.
        part("search", results, load, search_latency.run, seeds, size=args.search_size)
        if "search_large" in wanted:
            part("search_large", results, load, search_latency.run, seeds, size=100_000)
    if wanted & {"knn", "knn_large"}:
        from bench import knn_bench

        if "knn" in wanted:
            part(
                "knn",
                results,
                load,
                knn_bench.run,
                seeds,
                n=args.knn_n,
                builds=((32, 200),),
                ef_searches=(40, 100, 200, 400),
                binary_builds=((16, 64), (24, 128)),
                candidates=(100, 200, 400, 800),
            )
        if "knn_large" in wanted:
            # At 1M, m=16/ef_construction=64 and 24/96 stopped at recall@10 0.90 whatever ef_search (2026-11-30
            # run): the graph needs more links to find its way across a million vectors. Only the app's graph is
            # built now, as vector and as halfvec, then the binary-quantized index.
            part(
                "knn_large",
                results,
                load,
                knn_bench.run,
                seeds,
                n=1_000_000,
                builds=((32, 200),),
                ef_searches=(100, 200, 400, 800),
                binary_builds=((16, 64), (24, 128)),
                candidates=(100, 200, 400, 800),
            )
    if "index_load" in wanted:  # last: it starts from a fresh bench database, and runs make run's workers on it
        from bench import index_load

        part("index_load", results, load, index_load.run)
    benchdb.drop()
    rep["uptime_end"] = common.uptime()
    for key in ("parts", "load"):  # kept parts first in the dict: back to the suite's order
        rep[key] = {name: rep[key][name] for name in sorted(rep[key], key=_suite_position)}
    rep["summary"] = report.summary(rep["parts"])
    report.write(rep, args.out)
    print((args.out / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
