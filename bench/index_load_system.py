"""The system bench/index_load.py measures, and its readings of the machine: the bench database and an empty index
for each pass; the search and index workers as `make run` starts them (Workers); the `index_images` command and
searches queued as the site queues them; who used the CPU (Sampler: /proc and psutil by process, the index worker's
demand from schedstat), the index pool's threads and memory (/proc), and the load averages."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench import common
from imgsearch.embedded import celery_commands, data_dir

ROOT = common.ROOT

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
        print(f"  waiting: other processes use {others} cores ({load_averages()})", flush=True)
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
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("a search took over two minutes; is the search worker running?")
        jobs.search_job_wait(job, min(left, 10))  # the job's end notified, as the site's ?wait is (no polling)
    if job.status == SearchJob.Status.FAILED:
        raise RuntimeError(f"a search failed: {job.error}")
    return job.timings


def ready_count():
    from search.models import IndexedImage

    return IndexedImage.objects.filter(status=IndexedImage.Status.READY).count()


def load_averages():
    return common.uptime().split("load average:")[-1].strip()
