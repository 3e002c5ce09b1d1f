"""Indexing with the whole machine: `index_images` throughput through `make run`'s workers, and a search's latency
idle against during indexing, for worker configurations side by side in one run.

    IMGSEARCH_DATA_DIR=.local/bench-index .venv/bin/python -m imgsearch.embedded exec -- \\
        .venv/bin/python -m bench.index_load [--images 720] [--rounds 2] [--searches 15] [--photos DIR]
        [--config NAME=VAR=VALUE,VAR=VALUE ...] [--configs default,per-core] [--json out.json]

The photographs: the dev photos of at least 1,000 px (../shared/data/fetch-dev-photos; the smaller ones are
thumbnails, skies and textures) and edited full-size variants of them (crop, quarter turn, mirror, hue, grey, tilt,
caption; bench/copysets.py's edits), each re-encoded as a JPEG of 1,024-1,280 px on its longer side, as a camera
folder of "up to 1,280 px" photos would be. Two folders of --images each, A and B, none a byte-for-byte duplicate;
they are written to a temporary folder (or --photos, kept for the next run) and never committed.

Each configuration is a set of environment variables over `make run`'s (imgsearch.embedded.celery_commands):
"default" is celery_commands' defaults (one index process, nice 10), "per-core" a process per core
(INDEX_WORKER_CONCURRENCY=auto). For each,
on a fresh index: the search and index workers are started as `make run` starts them (no beat or web server:
searches are queued as the site queues them, search.jobs.search_job_create, and timed by the server's own clock,
creation to results); then

1. `manage.py index_images A` runs with no search: images/s from the command's start to its last image embedded or
   failed (it waits for the workers), local features on (the default);
2. --searches searches of edited copies of A's images, one after the other with a short pause: the idle latency;
3. `manage.py index_images B` runs again over the index of A while the same searches go on, one after the other
   with a short pause, from its first stored image until it ends: the latency during indexing.

The configurations run in turn, ABBA across --rounds, so drift in the machine's load falls on both; the figures
are medians over rounds. Also printed: the cores the index worker's processes used during (1) (from /proc), and
the resident memory of each index pool process after (3) (VmRSS; VmHWM the peak). The load averages at start and end
say how noisy the machine was. In `make bench` (bench/run.py, part "index_load") it runs on the bench database.
The system measured, and what is read off the machine, are in bench/index_load_system.py.
"""

import argparse
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.index_load_system import (  # noqa: E402
    Sampler,
    Workers,
    finish_indexing,
    fresh_database,
    index_folder,
    load_averages,
    memory_mib,
    ready_count,
    reset_index,
    search,
    thread_seconds,
    wait_for_quiet,
)

PHOTOS = Path.home() / ".cache" / "imgsearch-dev-photos"
FETCH_PHOTOS = ROOT.parent / "shared" / "data" / "fetch-dev-photos"
MIN_SOURCE_SIDE = 1000  # the dev photos this large; the others are thumbnails, skies and textures of 256-660 px
SIDES = (1024, 1280)  # the longer side of each photo written
TARGET_RATE = 35.0  # images/s (issue 30, item 5)
TARGET_RATIO = 1.5  # a search during indexing against idle
SEARCH_PAUSE = 0.3  # seconds between two searches
# Variables over celery_commands (explicit settings win there): its defaults, and an index process per core.
CONFIGS = {"default": {}, "per-core": {"INDEX_WORKER_CONCURRENCY": "auto"}}
# Not measured here: no beat (nothing of it is due within minutes, and it would learn a projection past 1,000
# images), so no projection or visual words change what indexing does between configurations.
COMMON_ENV = {"IMGSEARCH_PROJECTION": "off", "IMGSEARCH_SEARCH_RATE_ANON": "100000/min"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=720, help="photos in each of the two folders")
    parser.add_argument("--rounds", type=int, default=2, help="passes of each configuration (ABBA order)")
    parser.add_argument("--searches", type=int, default=15, help="idle searches per pass (and distinct queries)")
    parser.add_argument("--photos", type=Path, help="keep the photos here and use them again (default: a temp dir)")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=VAR=VALUE,...",
        help="another configuration: variables over make run's (e.g. c2=INDEX_WORKER_CONCURRENCY=2)",
    )
    parser.add_argument(
        "--configs", help="which configurations, in order (default: default, per-core, then --config's)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=600,
        help="seconds to wait, before each pass and its idle searches, for other processes to leave the CPU alone",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


# --- The photographs ---------------------------------------------------------------------------------------------


def sources():
    """The dev photos with a longer side of at least MIN_SOURCE_SIDE, fetched first where missing."""
    if not (PHOTOS / ".complete").is_file() and FETCH_PHOTOS.is_file():
        subprocess.run([str(FETCH_PHOTOS)], check=True)
    from PIL import Image

    found = []
    for path in sorted(PHOTOS.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        with Image.open(path) as img:
            if max(img.size) >= MIN_SOURCE_SIDE:
                found.append(path)
    if not found:
        raise SystemExit(f"No photographs under {PHOTOS}; run {FETCH_PHOTOS} first.")
    return found


@cache
def _source(path):
    """A source photo as RGB, shrunk to 1,600 px (every variant is written at 1,280 px or less)."""
    from bench.copysets import load_original

    img = load_original(path)
    img.thumbnail((1600, 1600))
    return img


def _variant(job):
    """Write one edited full-size JPEG variant of a source photo."""
    from PIL import Image

    from bench import copysets

    source, target, seed = job
    rng = random.Random(seed)
    img = _source(source)
    for name in rng.sample(
        ("crop", "rotate90", "flip", "colour", "grey", "rotate", "caption", "crop"), rng.randint(1, 2)
    ):
        img = copysets.EDITS[name](img, rng)
    side = rng.randint(*SIDES)
    scale = side / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=rng.randint(80, 95))
    target.write_bytes(out.getvalue())


def make_photos(folder, count, seed):
    """Folders a/ and b/ of `count` edited photos each under folder (kept if already there with these settings)."""
    stamp = folder / "photos.json"
    wanted = {"count": count, "seed": seed, "sides": list(SIDES), "min_source_side": MIN_SOURCE_SIDE}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return folder / "a", folder / "b"
    found = sources()
    jobs = []
    for part, offset in (("a", 0), ("b", 1_000_000)):
        (folder / part).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            source = found[number % len(found)]
            target = folder / part / f"{number:05d}-{source.stem[:40]}.jpg"
            jobs.append((source, target, seed * 10_000_000 + offset + number))
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_variant, jobs, chunksize=16))
    print(f"wrote {len(jobs)} photos from {len(found)} sources in {time.monotonic() - started:.0f} s", flush=True)
    stamp.write_text(json.dumps(wanted))
    return folder / "a", folder / "b"


def queries(folder, count, seed):
    from search.management.commands.measure_search import edited_copy

    paths = sorted(folder.iterdir())
    return [edited_copy(path) for path in random.Random(seed).sample(paths, min(count, len(paths)))]


# --- The passes and the report -----------------------------------------------------------------------------------


def measure(name, config, folders, asked, env, media, logs, quiet_wait):
    """One pass of a configuration: its figures."""
    reset_index(media)
    workers = Workers(config, env, logs)
    try:
        workers.wait_ready()
        # 1. Indexing with no search, once other processes leave the machine alone: throughput, and who used the CPU.
        wait_for_quiet(quiet_wait)
        before_threads = thread_seconds(workers.pool())
        started = time.monotonic()
        with Sampler(workers) as indexing:
            proc, out = index_folder(folders[0], {**env, **config})
            indexing.command = proc
            rate = finish_indexing(proc, out, started, count_files(folders[0]))
        threads = [(b - a) / indexing.elapsed for a, b in zip(before_threads, thread_seconds(workers.pool()))]
        # 2. Idle searches over the index of A.
        time.sleep(2)
        search(asked[0])  # the first search after a start pays for lazy imports
        wait_for_quiet(quiet_wait)
        idle = []
        with Sampler(workers) as idling:
            for query in asked:
                idle.append(search(query))
                time.sleep(SEARCH_PAUSE)
        # 3. Searches while B is indexed.
        indexed = ready_count()
        started = time.monotonic()
        proc, out = index_folder(folders[1], {**env, **config})
        while ready_count() == indexed and proc.poll() is None:  # from its first image embedded on
            time.sleep(0.1)
        busy = []
        with Sampler(workers, proc) as searching:
            while proc.poll() is None:
                busy.append(search(asked[len(busy) % len(asked)]))
                time.sleep(SEARCH_PAUSE)
            rate_searched = finish_indexing(proc, out, started, count_files(folders[1]))
        memory = [memory_mib(pid) for pid in workers.pool()]
    finally:
        workers.stop()
    cores = indexing.cores()
    figures = {
        "config": name,
        "variables": config,
        "index_worker": workers.command,
        "images_per_s": round(rate, 1),
        "images_per_s_with_searches": round(rate_searched, 1),
        "search_idle_ms": _median(idle, "total_ms"),
        "search_busy_ms": _median(busy, "total_ms") if busy else None,
        # Where a search's time goes (the server's split): waiting for the worker, the query's embedding (and its
        # local features), the k-NN query, the re-ranking.
        "search_split_idle_ms": {key: _median(idle, key) for key in SPLIT},
        "search_split_busy_ms": {key: _median(busy, key) for key in SPLIT} if busy else None,
        "searches_busy": len(busy),
        "cores_indexing": cores,
        "index_worker_cores": cores.get("index worker", 0.0),
        "model_thread_cores": round(threads[0], 2),
        "other_thread_cores": round(threads[1], 2),
        "others_cores": cores["others"],
        "index_worker_demand": round(sum(indexing.demand()), 2),
        "index_worker_waited": indexing.demand()[1],
        "others_cores_idle_searches": idling.cores()["others"],
        "others_cores_busy_searches": searching.cores()["others"],
        "index_pool_rss_mib": [rss for rss, _ in memory],
        "index_pool_peak_mib": [peak for _, peak in memory],
    }
    figures["ratio"] = round(figures["search_busy_ms"] / figures["search_idle_ms"], 2) if busy else None
    print(
        f"  {name}: {figures['images_per_s']} img/s ({figures['images_per_s_with_searches']} with searches), "
        f"search idle {figures['search_idle_ms']} ms, during {figures['search_busy_ms']} ms "
        f"({len(busy)} searches), ratio {figures['ratio']}; cores while indexing: {cores} (index pool main threads "
        f"{figures['model_thread_cores']}, their other threads {figures['other_thread_cores']}; index worker demand "
        f"{figures['index_worker_demand']} cores of which waited for {figures['index_worker_waited']}); other processes "
        f"during the searches: {figures['others_cores_idle_searches']} idle, {figures['others_cores_busy_searches']} "
        f"during; split idle {figures['search_split_idle_ms']}, during {figures['search_split_busy_ms']}; "
        f"pool RSS {figures['index_pool_rss_mib']} MiB",
        flush=True,
    )
    return figures


SPLIT = ("queued_ms", "embed_ms", "query_ms", "rerank_ms")


def _median(timings, key):
    values = [t[key] for t in timings if t.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def count_files(folder):
    return sum(1 for p in folder.iterdir() if p.is_file())


def summarize(passes, order):
    """Per configuration: the medians over its passes."""
    rows = []
    for name in order:
        mine = [p for p in passes if p["config"] == name]
        row = {"config": name, "variables": mine[0]["variables"], "index_worker": mine[0]["index_worker"]}
        for key in ("images_per_s", "images_per_s_with_searches", "search_idle_ms", "search_busy_ms", "ratio"):
            values = [p[key] for p in mine if p[key] is not None]
            row[key] = round(statistics.median(values), 2) if values else None
            row[f"{key}_passes"] = [p[key] for p in mine]
        for key in ("index_worker_cores", "index_worker_demand", "others_cores"):
            row[key] = round(statistics.median(p[key] for p in mine), 2)
        row["index_pool_rss_mib"] = max(max(p["index_pool_rss_mib"] or [0]) for p in mine)
        row["index_pool_peak_mib"] = max(max(p["index_pool_peak_mib"] or [0]) for p in mine)
        rows.append(row)
    return rows


def table(rows):
    lines = [
        "| config | index worker | images/s | images/s with searches | search idle median | search during "
        "indexing median | ratio | index worker cores used (demanded) | other processes' cores | RSS per index "
        "pool process (peak) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['index_worker']} {_variables(r['variables'])} | {r['images_per_s']} "
            f"({', '.join(map(str, r['images_per_s_passes']))}) | {r['images_per_s_with_searches']} | "
            f"{r['search_idle_ms']} ms | {r['search_busy_ms']} ms | {r['ratio']} "
            f"({', '.join(map(str, r['ratio_passes']))}) | {r['index_worker_cores']} ({r['index_worker_demand']}) | "
            f"{r['others_cores']} | "
            f"{r['index_pool_rss_mib']} MiB ({r['index_pool_peak_mib']} MiB) |"
        )
    return "\n".join(lines)


def _variables(config):
    return " ".join(f"{k}={v}" for k, v in config.items())


def run(argv=()):
    args = parse_args(list(argv))
    configs = dict(CONFIGS)
    for spec in args.config:
        name, _, variables = spec.partition("=")
        configs[name] = dict(pair.split("=", 1) for pair in variables.split(",") if pair)
    order = args.configs.split(",") if args.configs else list(configs)
    start_load = common.uptime()
    print(f"start: {start_load}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="index-load-"))
    try:
        folders = make_photos(args.photos or work / "photos", args.images, args.seed)
        fresh_database()
        media = work / "media"
        env = {**os.environ, **COMMON_ENV, "MEDIA_ROOT": str(media), "PYTHONUNBUFFERED": "1"}
        asked = queries(folders[0], args.searches, args.seed)
        passes = []
        for number in range(args.rounds):
            for name in order if number % 2 == 0 else order[::-1]:
                print(f"[{time.strftime('%H:%M:%S')}] round {number + 1}, {name} (load {load_averages()})", flush=True)
                passes.append(measure(name, configs[name], folders, asked, env, media, work, args.quiet_wait))
        reset_index(media)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = summarize(passes, order)
    end_load = common.uptime()
    print(f"\n{args.images} photos a folder, {args.rounds} rounds, medians over rounds (each pass in brackets)")
    print(table(rows))
    print(f"\nstart: {start_load}\nend:   {end_load}")
    report = {
        "images": args.images,
        "rounds": args.rounds,
        "configs": rows,
        "passes": passes,
        "target_images_per_s": TARGET_RATE,
        "target_ratio": TARGET_RATIO,
        "uptime_start": start_load,
        "uptime_end": end_load,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    # `kill` stops it as Ctrl-C does: the workers it started are stopped too (index_load_system.Workers.stop).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    run(sys.argv[1:])
