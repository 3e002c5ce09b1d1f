"""Run the benchmark suite and write docs/benchmarks.json, docs/benchmarks.md and plots.

    make bench          # quality, memory, indexing, search latency at 10k, k-NN at 100k (~15 min on 2 cores)
    make bench-large    # adds search latency at 100k and k-NN at 1M vectors (hours on 2 cores)

Runs against DATABASE_URL / REDIS_URL (make starts embedded servers under .local/bench-run); every part
that needs the database uses a throw-away database `imgsearch_bench` on that server. A part that fails is
recorded in the report with its error and the others still run.
"""

import argparse
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import benchdb, common, report  # noqa: E402

DOCS = common.ROOT / "docs"


def part(name, results, load, fn, *args, **kwargs):
    """Run one part, recording its figures (or its error), duration and the load average when it started."""
    load[name] = common.uptime().split("load average:")[-1].strip()
    print(f"[{time.strftime('%H:%M:%S')}] {name} (load {load[name]})", flush=True)
    started = time.perf_counter()
    try:
        results[name] = fn(*args, **kwargs)
    except Exception as exc:
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    results[name]["duration_s"] = round(time.perf_counter() - started, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="also k-NN at 1M vectors and search latency at 100k")
    parser.add_argument("--only", help="comma-separated parts to run (quality,memory,indexing,search,knn)")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--knn-n", type=int, default=100_000, help="vectors for the default k-NN part")
    parser.add_argument("--search-size", type=int, default=10_000, help="indexed vectors for the search latency part")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {"quality", "memory", "indexing", "search", "knn"}
    rep = {"machine": common.machine(), "large": args.large, "parts": {}, "load": {}}
    results, load = rep["parts"], rep["load"]
    seeds = common.CACHE / "seeds.npy"

    if "quality" in wanted or not seeds.is_file():
        from bench import quality
        part("quality", results, load, quality.run, seeds_path=seeds)
    benchdb.use_bench_database()  # Django on a fresh database from here on
    if "memory" in wanted:
        from bench import memory
        part("memory", results, load, memory.run)
    if "indexing" in wanted or "search" in wanted:
        from bench import indexing
        part("indexing", results, load, indexing.run)
    if "search" in wanted:
        from bench import search_latency
        part("search", results, load, search_latency.run, seeds, size=args.search_size)
        if args.large:
            part("search_large", results, load, search_latency.run, seeds, size=100_000)
    if "knn" in wanted:
        from bench import knn_bench
        part("knn", results, load, knn_bench.run, seeds, n=args.knn_n)
        if args.large:
            part("knn_large", results, load, knn_bench.run, seeds, n=1_000_000, builds=((16, 64), (24, 128)))
    benchdb.drop()
    rep["uptime_end"] = common.uptime()
    rep["summary"] = report.summary(results)
    report.write(rep, args.out)
    print((args.out / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
