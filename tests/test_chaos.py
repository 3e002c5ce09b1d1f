"""Chaos: `python -m imgsearch.embedded run` (what `make run` starts) keeps serving while each of its processes is
killed with SIGKILL in turn, clients searching all along; Ctrl-C then stops everything, leaving no process behind."""

import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import psutil
import psycopg
import pytest
from django.core.management import call_command

from bench import load
from imgsearch.embedded import free_port, redis_answers

from .conftest import ROOT, WEIGHTS
from .test_embedded import postmaster_running
from .test_reliability import broker, create_job, wait_for_status, workers  # noqa: F401  (fixtures, used by name)

pytestmark = pytest.mark.slow

IMAGES = 64  # indexed first, then embedded again by the reindex run during which the index worker is killed
CLIENTS = 4  # searching all along (bench/load.py's client: its own session, polls its job to the end)
RECOVERY_SECONDS = 10  # the site answers again within this after any kill
INTERRUPTED = "The search was interrupted 3 times; please try again."  # the one reason a search may fail here
ENV = {
    "DEBUG": "1",
    "IMGSEARCH_WEIGHTS": str(WEIGHTS),
    "PYTHONUNBUFFERED": "1",
    # Short so the test need not wait minutes: a search on a killed worker is sent again by the next reaper sweep
    # (beat, every 15 s), and a reindex chunk lost with its worker by the next resume (every minute).
    "IMGSEARCH_SEARCH_STALE_SECONDS": "5",
    "IMGSEARCH_SEARCH_REQUEUE_SECONDS": "5",
    "IMGSEARCH_REINDEX_STALL_SECONDS": "10",
    "IMGSEARCH_TASK_SIZE": "4",  # many chunks, so the run is still going when its worker is killed
    "IMGSEARCH_SEARCH_RATE_ANON": "100000/min",
}
UNSHARED = ("DATABASE_URL", "REDIS_URL", "MEDIA_ROOT", "QUERY_ROOT", "INCOMING_ROOT")  # the run makes its own


class Run:
    """`python -m imgsearch.embedded run` on its own data folder (its own PostgreSQL and Redis) and port."""

    def __init__(self, tmp_path):
        self.data, self.port, self.log = tmp_path / "data", free_port(), tmp_path / "run.log"
        self.url = f"http://127.0.0.1:{self.port}"
        # Not the test session's servers or folders: the run starts its own under its data folder.
        inherited = {k: v for k, v in os.environ.items() if k not in UNSHARED}
        self.env = {**inherited, **ENV, "IMGSEARCH_DATA_DIR": str(self.data), "IMGSEARCH_PORT": str(self.port)}
        self.seen = set()  # every process of the run ever seen, for the check that none outlives it
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "imgsearch.embedded", "run"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals meant for the test (Ctrl-C) do not reach it
            )

    def text(self):
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern, start=0, timeout=60):
        """The first match of pattern in the log past offset start, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.compile(pattern).search(self.text(), start)
            if found:
                return found
            assert self.proc.poll() is None, f"the run ended:\n{self.text()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the run's log within {timeout}s:\n{self.text()[start:][-3000:]}")

    def exec(self, *command, timeout=300, **options):
        """A command beside the run, on its servers (`python -m imgsearch.embedded exec`, as the README says)."""
        launcher = [sys.executable, "-m", "imgsearch.embedded", "exec", "--"]
        return subprocess.run([*launcher, *command], cwd=ROOT, env=self.env, timeout=timeout, **options)

    def note_processes(self):
        try:
            self.seen.update(child.pid for child in psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass

    def stop(self, timeout=90):
        """Ctrl-C, as a user stops `make run`; its exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)


@pytest.fixture
def run(tmp_path):
    run = Run(tmp_path)
    yield run
    if run.proc.poll() is None:  # the test failed before its own Ctrl-C
        try:
            run.stop()
        except subprocess.TimeoutExpired:
            run.proc.kill()
    for pid in run.seen:  # a failed test leaves nothing running either
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Clients:
    """bench/load.py's clients, recording when each search ended and how, and a prober of the home page."""

    def __init__(self, run, queries):
        self.run, self.deadline, self.lock = run, load.Deadline(3600, grace=180), threading.Lock()
        self.counts, self.answers, self.failures, self.site, self.cuts = Counter(), [], Counter(), [], []
        self.threads = [
            threading.Thread(target=load.client, args=(run.url, queries, self.deadline, self.record, seed))
            for seed in range(CLIENTS)
        ]
        self.threads.append(threading.Thread(target=self.probe))
        for thread in self.threads:
            thread.start()

    def record(self, key, latency=None, kind=None):
        with self.lock:
            self.counts[key] += 1
            if key in ("done", "failed"):
                self.answers.append(time.monotonic())
            if key == "failed":
                self.failures[kind] += 1
            elif kind:
                self.counts[f"{key}: {kind}"] += 1
                if kind.startswith("POST cut"):
                    self.cuts.append(time.monotonic())

    def probe(self):
        """The home page, every 0.2 s, and the run's processes."""
        while time.monotonic() < self.deadline.stop_at:
            self.site.append((time.monotonic(), load.site_answers(self.run.url)))
            self.run.note_processes()
            time.sleep(0.2)

    def answered_since(self, moment):
        with self.lock:
            return sum(1 for t in self.answers if t > moment)

    def wait_for_answers(self, moment, count=3, timeout=120):
        deadline = time.monotonic() + timeout
        while self.answered_since(moment) < count:
            assert time.monotonic() < deadline, f"fewer than {count} searches answered in {timeout}s: {self.counts}"
            time.sleep(0.2)

    def finish(self):
        self.deadline.stop_now()
        for thread in self.threads:
            thread.join()


def kill(run, victim):
    """SIGKILL a process of the run by name (bench/load.py finds it as `ps` shows it); the moment and the pid."""
    return time.monotonic(), load.kill(run.proc.pid, victim)


def recovery(clients, killed):
    """Wait until the home page answered 200 after a kill (an answer from a dying process's leftover counts here)."""
    deadline = killed + 60
    while not any(t > killed and answered for t, answered in list(clients.site)):
        assert time.monotonic() < deadline, "the site did not answer within 60 s of a kill"
        time.sleep(0.2)


def outage(site, start, end):
    """The longest time in (start, end] that the home page went without answering 200, from the probes started then."""
    probes = [(t, answered) for t, answered in site if start < t <= end]
    if not probes:
        return end - start
    marks = [start, *(t for t, answered in probes if answered)]
    return max([b - a for a, b in zip(marks, marks[1:])] + [probes[-1][0] - marks[-1]])


def restarted(run, name, pid, start):
    """The supervisor's lines for a process killed with SIGKILL: what died, its exit code, and the restart."""
    run.wait_for_log(rf"the {name} \(pid {pid}\) was killed by SIGKILL \(exit code -9\)", start)
    run.wait_for_log(rf"started the {name} again \(restart \d+, pid \d+\)", start)


def chaos_images(dev_images, tmp_path):
    folder = tmp_path / "images"
    files = sorted((dev_images / "tuxpaint").rglob("*.png"))
    for path in random.Random(32).sample(files, IMAGES):
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / path.parent.name / path.name).write_bytes(path.read_bytes())
    return folder


def test_make_run_keeps_serving_while_each_of_its_processes_is_killed(run, dev_images, tmp_path):
    """kill -9 in turn of the search worker, the index worker during a reindex run, beat, a web (gunicorn) worker
    and the web server: each is started again with a log line, the site answers within 10 s of each kill, every
    search started ends (done, or failed only as interrupted), the run counts each image once, nothing stays
    pending, and Ctrl-C stops every process and both servers."""
    assert load.site_answers(run.url, timeout=1) is False
    deadline = time.monotonic() + 300  # first start: a new database, migrations, the model loaded twice
    while not load.site_answers(run.url):
        assert run.proc.poll() is None and time.monotonic() < deadline, run.text()[-3000:]
        time.sleep(0.5)
    run.wait_for_log(r"search@\S+ ready")
    run.wait_for_log(r"index@\S+ ready")
    database_url = run.exec("sh", "-c", "echo $DATABASE_URL", capture_output=True, text=True).stdout.split()[-1]
    folder = chaos_images(dev_images, tmp_path)
    run.exec(sys.executable, "manage.py", "index_images", str(folder), check=True, capture_output=True)

    clients, began = Clients(run, load.load_queries(folder, 20)), time.monotonic()
    try:
        clients.wait_for_answers(began)
        # The search worker, while searches come in: its main process (the one `ps` shows the user; it takes the
        # pool process with it). A search it was running is sent again by the reaper and done on attempt 2.
        start = len(run.text())
        killed, pid = kill(run, "search worker")
        kills = {"search worker": killed}
        recovery(clients, killed)
        restarted(run, "search worker", pid, start)
        clients.wait_for_answers(killed)

        # The index worker, once a reindex run has counted its first chunk; the beat's resume sends its lost work.
        reindex = subprocess.Popen(
            [sys.executable, "-m", "imgsearch.embedded", "exec", "--"]
            + [sys.executable, "manage.py", "reindex", "--model", "mobilenet_v2", "--weights", str(WEIGHTS)],
            cwd=ROOT,
            env=run.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        start = len(run.text())
        run.wait_for_log(r"Task workers\.reindex_chunk\[\S+\] succeeded", start)
        killed, pid = kill(run, "index worker")
        kills["index worker"] = killed
        recovery(clients, killed)
        restarted(run, "index worker", pid, start)
        summary = reindex.communicate(timeout=300)[0]
        assert reindex.returncode == 0, summary

        # Beat: started again, it goes on sending the reaper.
        start = len(run.text())
        killed, pid = kill(run, "beat")
        kills["beat"] = killed
        recovery(clients, killed)
        restarted(run, "beat", pid, start)
        run.wait_for_log(r"started the beat again[\s\S]*Sending due task reap-searches", start)

        # A web worker: gunicorn starts another; then the web server itself (gunicorn's master): the supervisor.
        start = len(run.text())
        killed, pid = kill(run, "web worker")
        kills["web worker"] = killed
        recovery(clients, killed)
        noticed = run.wait_for_log(rf"Worker \(pid:{pid}\) was sent SIGKILL", start)
        run.wait_for_log(r"Booting worker with pid", noticed.end())
        start = len(run.text())
        killed, pid = kill(run, "web server")
        kills["web server"] = killed
        recovery(clients, killed)
        restarted(run, "web server", pid, start)
        clients.wait_for_answers(killed)
    finally:
        clients.finish()

    counts, failures = clients.counts, clients.failures
    # A POST refused or cut by the kill of a web worker or the web server started no search the client knows of: an
    # error a user would see, allowed only within RECOVERY_SECONDS of those kills; any other error fails the test.
    cut = len(clients.cuts)
    answers = sorted(clients.answers)
    # Until the next kill (the last: until the clients stopped), the longest time the site went without answering.
    ends = [*list(kills.values())[1:], clients.deadline.stop_at]
    recovered = {name: outage(clients.site, killed, end) for (name, killed), end in zip(kills.items(), ends)}
    longest_gap = max(b - a for a, b in zip(answers, answers[1:]))
    print(
        f"\nchaos: searches started {counts['started']}, answered {counts['done'] + counts['failed']} "
        f"(done {counts['done']}, failed {counts['failed']}: {dict(failures)}), errors {counts['error']} "
        f"({cut} POSTs refused or cut by a web kill), "
        f"lost {counts['lost']}; longest gap without an answer {longest_gap:.1f} s; longest time the site did not "
        "answer after the kill of the " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in recovered.items())
    )
    assert counts["started"] > 0 and counts["started"] == counts["done"] + counts["failed"], counts
    assert counts["error"] == cut and counts["lost"] == 0, counts
    web_kills = (kills["web worker"], kills["web server"])
    assert all(any(0 <= t - k <= RECOVERY_SECONDS for k in web_kills) for t in clients.cuts), (web_kills, clients.cuts)
    assert set(failures) <= {INTERRUPTED}, failures
    assert all(seconds <= RECOVERY_SECONDS for seconds in recovered.values()), recovered
    assert re.search(rf"Reindexed {IMAGES} images .* 0 failed", summary), summary

    with psycopg.connect(database_url) as db:
        searches = dict(db.execute("SELECT status, count(*) FROM search_searchjob GROUP BY status").fetchall())
        run_row = db.execute("SELECT status, total, done, failed FROM search_reindexrun").fetchall()
        images = db.execute("SELECT status, count(*) FROM search_indexedimage GROUP BY status").fetchall()
        per_image = db.execute(
            "SELECT count(*), count(DISTINCT e.image_id) FROM search_embedding e"
            " JOIN search_modelversion m ON m.key = e.model_key AND m.active"
        ).fetchone()
    assert not {"pending", "running"} & set(searches), searches  # nothing left pending
    assert searches.get("done", 0) >= counts["done"], searches
    assert run_row == [("done", IMAGES, IMAGES, 0)] and images == [("ready", IMAGES)], (run_row, images)
    assert per_image == (IMAGES, IMAGES)  # one vector per image of the active model: each counted once

    run.note_processes()
    pgdata = run.data / "pg"
    redis_port = int((run.data / "redis" / "port").read_text())
    assert run.stop() == 0, run.text()[-3000:]
    assert "Stopped." in run.text()
    time.sleep(1)
    left = [pid for pid in run.seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not left, [psutil.Process(pid).cmdline() for pid in left]
    assert not postmaster_running(pgdata) and not redis_answers(redis_port)


@pytest.mark.django_db(transaction=True)
def test_a_pool_process_past_the_memory_limit_is_replaced_and_searches_go_on(
    request, worker_env, photo_folder, monkeypatch
):
    """With IMGSEARCH_WORKER_MAX_MEMORY_MB below what a pool process holds once the model is loaded (~480 MiB), Celery
    replaces it after every task; every search is still answered."""
    monkeypatch.setitem(worker_env, "IMGSEARCH_WORKER_MAX_MEMORY_MB", "256")
    worker = request.getfixturevalue("workers")()  # test_reliability's: real workers on a private Redis
    call_command("index_images", str(photo_folder), stdout=io.StringIO(), stderr=io.StringIO())
    for path in sorted(photo_folder.rglob("*.png"))[:2]:
        job = wait_for_status(create_job(path.read_bytes()).id, {"done", "failed"})
        assert job.status == "done" and job.results, job.error
    # Celery numbers its pool processes: each task ran in a new one (the default limit keeps ForkPoolWorker-1). The
    # worker logs a task's success just after the job's row says done.
    succeeded = r"ForkPoolWorker-(\d+)\] Task workers\.(?:run_search|embed_images)\[\S+\] succeeded"
    deadline = time.monotonic() + 10
    while len(ran_in := re.findall(succeeded, "".join(worker.recent))) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(ran_in) == 3 and len(set(ran_in)) == 3, ran_in
