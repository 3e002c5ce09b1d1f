"""Indexing with the whole machine: `index_images` throughput through `make run`'s workers, and a search's latency
idle against during indexing, for worker configurations side by side in one run.

    IMGSEARCH_DATA_DIR=.local/bench-index .venv/bin/python -m imgsearch.embedded exec -- \\
        .venv/bin/python -m bench.index_load [--images 720] [--rounds 2] [--searches 15] [--photos DIR]
        [--config NAME=VAR=VALUE,VAR=VALUE ...] [--configs before,after] [--json out.json]

The photographs: the dev photos of at least 1,000 px (../shared/data/fetch-dev-photos; the smaller ones are
thumbnails, skies and textures) and edited full-size variants of them (crop, quarter turn, mirror, hue, grey, tilt,
caption; bench/copysets.py's edits), each re-encoded as a JPEG of 1,024-1,280 px on its longer side, as a camera
folder of "up to 1,280 px" photos would be. Two folders of --images each, A and B, none a byte-for-byte duplicate;
they are written to a temporary folder (or --photos, kept for the next run) and never committed.

Each configuration is a set of environment variables over `make run`'s (imgsearch.embedded.celery_commands):
"before" is the worker set-up as it was (one index process, nice 10), "after" celery_commands' defaults now. For each,
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
"""

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from imgsearch.embedded import celery_commands, data_dir  # noqa: E402

PHOTOS = Path.home() / ".cache" / "imgsearch-dev-photos"
FETCH_PHOTOS = ROOT.parent / "shared" / "data" / "fetch-dev-photos"
MIN_SOURCE_SIDE = 1000  # the dev photos this large; the others are thumbnails, skies and textures of 256-660 px
SIDES = (1024, 1280)  # the longer side of each photo written
TARGET_RATE = 35.0  # images/s (issue 30, item 5)
TARGET_RATIO = 1.5  # a search during indexing against idle
SEARCH_PAUSE = 0.3  # seconds between two searches
# The worker set-up before issue 30's item 5, as variables over celery_commands (explicit settings win there).
BEFORE = {"INDEX_WORKER_CONCURRENCY": "1", "INDEX_WORKER_NICE": "10"}
CONFIGS = {"before": BEFORE, "after": {}}
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
    parser.add_argument("--configs", help="which configurations, in order (default: before, after, then --config's)")
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


# --- The database ------------------------------------------------------------------------------------------------


def fresh_database():
    """A fresh, migrated bench database (bench/benchdb.py) for this process and the workers it starts."""
    from django.apps import apps

    from bench import benchdb

    if not apps.ready:
        benchdb.use_bench_database()
        return
    from django.core.management import call_command
    from django.db import connections

    connections.close_all()
    benchdb.recreate(os.environ["DATABASE_URL"])  # under bench/run.py: the last part, the earlier ones' index gone
    call_command("migrate", verbosity=0)


def reset_index(media):
    """No images, searches or features: every pass starts from an empty index (the model version stays)."""
    from search.models import IndexedImage, SearchJob

    for job in SearchJob.objects.exclude(query_image=""):
        job.query_image.delete(save=False)
    SearchJob.objects.all().delete()
    IndexedImage.objects.all().delete()
    shutil.rmtree(media, ignore_errors=True)
    media.mkdir(parents=True)


# --- The processes -----------------------------------------------------------------------------------------------


@contextmanager
def environment(values):
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield dict(os.environ)
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Workers:
    """The search and index workers as `make run` starts them (celery_commands), with a configuration's variables."""

    def __init__(self, config, env, logs):
        self.procs, self.logs = {}, {}
        with environment({**env, **config}):
            commands = celery_commands(sys.executable, data_dir())
            for name in ("search worker", "index worker"):
                command, defaults = commands[name]
                # As run_service: explicit settings win over the programs' defaults (the configuration's too).
                self.logs[name] = logs / f"{name.replace(' ', '-')}.log"
                with open(self.logs[name], "w") as out:
                    self.procs[name] = subprocess.Popen(
                        command,
                        cwd=ROOT,
                        env={**defaults, **os.environ},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
        command = commands["index worker"][0]
        nice = command[2] if command[0] == "nice" else "0"
        self.command = f"nice {nice}, {command[command.index('--concurrency') + 1]} processes"

    def wait_ready(self, timeout=300):
        deadline = time.monotonic() + timeout
        for name, log in self.logs.items():
            while not re.search(r"\bready\.", log.read_text(errors="replace")):
                if self.procs[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the {name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.2)

    def pool(self, name="index worker"):
        """The pids of a worker's pool processes (the main process's children)."""
        pid = self.procs[name].pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def group(self, name):
        """Every pid of a worker's process group (its main process and pool)."""
        return [pid for pid, group in _process_groups() if group == self.procs[name].pid]

    def stop(self):
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGKILL)  # a pool process left behind


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _process_groups():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            yield int(entry.name), int(fields[2])


def thread_seconds(pids):
    """(the main threads', the other threads') CPU seconds of these processes: a pool process embeds in its main
    thread; its decode and store threads are the others."""
    main = other = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if task.name == str(pid):
                main += seconds
            else:
                other += seconds
    return main, other


class Sampler:
    """CPU seconds by who used them, sampled in a thread: the index worker (its process group), the search worker,
    the index_images command, PostgreSQL, the rest of this run, and every other process on the machine (others).
    Sampling every half second, a process that exits loses at most its last half second.

    Also the index worker's demand for CPU, which other processes on a shared machine do not hide: each of its
    threads' time on a CPU plus its time runnable but waiting for one (/proc/<pid>/task/<tid>/schedstat). A thread
    that sleeps (the GIL, an empty queue, the database) demands nothing; on an idle machine, demand is what it gets."""

    def __init__(self, workers=None, command=None):
        self.workers, self.command = workers, command
        self.seen, self.kind = {}, {}  # (pid, start time): [cpu seconds at first sight, last cpu seconds]
        self.threads = {}  # (pid, tid): [(run, wait) ns at first sight, (run, wait) ns last]
        self.stop_event, self.thread = threading.Event(), None

    def __enter__(self):
        self.started, self.wall, self.machine_start = time.monotonic(), time.time(), _machine_busy()
        self.sample()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()
        self.sample()
        self.elapsed, self.machine_end = time.monotonic() - self.started, _machine_busy()

    def loop(self):
        while not self.stop_event.wait(0.5):
            self.sample()

    def sample(self):
        groups = {}
        if self.workers:
            groups = {pid: name for name in self.workers.procs for pid in self.workers.group(name)}
        for pid, name in groups.items():
            if name == "index worker":
                self.schedstat(pid)
        for proc in _own_processes():
            try:
                times = proc.cpu_times()
                key = (proc.pid, proc.create_time())
                if key not in self.seen:
                    new = proc.create_time() >= self.wall - 0.1  # started since: all its CPU counts
                    self.seen[key] = [0.0 if new else times.user + times.system, 0.0]
                    name = proc.name()
                    command = self.command.pid if self.command else None
                    self.kind[key] = groups.get(proc.pid) or (
                        "index_images" if proc.pid == command else "postgres" if name == "postgres" else "this run"
                    )
                self.seen[key][1] = times.user + times.system
            except psutil.Error:
                continue

    def schedstat(self, pid):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                run, wait = (int(v) for v in (task / "schedstat").read_text().split()[:2])
            except (OSError, ValueError):
                continue
            key = (pid, task.name)
            self.threads.setdefault(key, [(run, wait), None])[1] = (run, wait)

    def demand(self):
        """(cores the index worker ran on, cores it waited for) on average."""
        run = sum(last[0] - first[0] for first, last in self.threads.values() if last)
        wait = sum(last[1] - first[1] for first, last in self.threads.values() if last)
        return round(run / 1e9 / self.elapsed, 2), round(wait / 1e9 / self.elapsed, 2)

    def cores(self):
        """{who: cores used on average}, "others" included."""
        used = {}
        for key, (first, last) in self.seen.items():
            used[self.kind[key]] = used.get(self.kind[key], 0.0) + max(0.0, last - first)
        used["others"] = max(0.0, self.machine_end - self.machine_start - sum(used.values()))
        return {who: round(seconds / self.elapsed, 2) for who, seconds in used.items()}


def _own_processes():
    """This run's processes: those under the `imgsearch.embedded exec` that started it (Redis, the workers, the
    command), and its PostgreSQL (a daemon, under init)."""
    roots = [psutil.Process(os.getppid())]
    folder = str(data_dir() / "pg")
    for proc in psutil.process_iter(["cmdline"]):
        if folder in " ".join(proc.info["cmdline"] or []):
            roots.append(proc)
    found = {}
    for root in roots:
        try:
            for proc in [root, *root.children(recursive=True)]:
                found[proc.pid] = proc
        except psutil.Error:
            continue
    return found.values()


def _machine_busy():
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + getattr(times, "steal", 0.0)


def wait_for_quiet(limit, most=0.3):
    """Wait (up to limit seconds) until other processes use less than `most` cores over 5 s; their cores then."""
    deadline = time.monotonic() + limit
    while True:
        with Sampler() as sampler:
            time.sleep(5)
        others = sampler.cores()["others"]
        if others < most or time.monotonic() > deadline:
            return others
        print(f"  waiting: other processes use {others} cores ({_load()})", flush=True)
        time.sleep(10)


def memory_mib(pid):
    """(VmRSS, VmHWM) of a process in MiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M))
    return round(int(values.get("VmRSS", 0)) / 1024), round(int(values.get("VmHWM", 0)) / 1024)


# --- Indexing and searching --------------------------------------------------------------------------------------


def index_folder(folder, env):
    """Start `manage.py index_images folder` (the real command; it waits for the workers)."""
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by finish_indexing)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "index_images", str(folder)],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    return proc, out


def finish_indexing(proc, out, started, expected):
    code = proc.wait()
    elapsed = time.monotonic() - started
    out.seek(0)
    text = out.read()
    out.close()
    done = re.search(r"Indexed (\d+) images .*?(\d+) failed", text)
    if code or not done or int(done.group(1)) != expected:
        raise RuntimeError(f"index_images ended {code}, expected {expected} images:\n{text[-3000:]}")
    return expected / elapsed


def search(query, timeout=120):
    """One search as the site queues it; the server's time from the job's creation to its results (ms)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from search import jobs
    from search.models import SearchJob

    job = jobs.search_job_create(image=SimpleUploadedFile("q.jpg", query, "image/jpeg"), k=10, min_score=0.0)
    deadline = time.monotonic() + timeout
    while job.status not in (SearchJob.Status.DONE, SearchJob.Status.FAILED):
        if time.monotonic() > deadline:
            raise RuntimeError("a search took over two minutes; is the search worker running?")
        time.sleep(0.01)
        job.refresh_from_db()
    if job.status == SearchJob.Status.FAILED:
        raise RuntimeError(f"a search failed: {job.error}")
    return job.timings


def queries(folder, count, seed):
    from search.management.commands.measure_search import edited_copy

    paths = sorted(folder.iterdir())
    return [edited_copy(path) for path in random.Random(seed).sample(paths, min(count, len(paths)))]


def ready_count():
    from search.models import IndexedImage

    return IndexedImage.objects.filter(status=IndexedImage.Status.READY).count()


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
                print(f"[{time.strftime('%H:%M:%S')}] round {number + 1}, {name} (load {_load()})", flush=True)
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


def _load():
    return common.uptime().split("load average:")[-1].strip()


if __name__ == "__main__":
    # `kill` stops it as Ctrl-C does: the workers it started are stopped too (Workers.stop).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    run(sys.argv[1:])
