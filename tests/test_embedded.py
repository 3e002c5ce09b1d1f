"""The embedded services launcher (imgsearch/embedded.py): it stops the PostgreSQL it started, even after a crash."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from imgsearch.embedded import forget_dead_handles, wait_while_starting

from .conftest import ROOT

pytestmark = pytest.mark.slow


def dead_pid():
    """The pid of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_forget_dead_handles_keeps_only_living_processes(tmp_path):
    handles = tmp_path / ".handle_pids.json"
    gone = dead_pid()
    handles.write_text(json.dumps([os.getpid(), gone]))
    assert forget_dead_handles(tmp_path) == [gone]
    assert json.loads(handles.read_text()) == [os.getpid()]
    assert forget_dead_handles(tmp_path) == []  # nothing more to forget: the file is left alone
    handles.write_text("not json")
    forget_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == []


def write_postmaster_pid(pgdata, pid, status):
    """A postmaster.pid as PostgreSQL writes it, for the process `pid` in the given state."""
    lines = [str(pid), str(pgdata), str(int(time.time())), "", str(pgdata), "", "0 0", status]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")


def test_a_launcher_waits_while_the_server_is_starting_and_not_after(tmp_path):
    """A server left starting (its launcher killed while pgtune restarted it) is waited for, up to the timeout; one
    ready, one whose process is gone, or none at all is not."""
    for pid, status in ((os.getpid(), "ready"), (dead_pid(), "starting")):
        write_postmaster_pid(tmp_path, pid, status)
        started = time.monotonic()
        wait_while_starting(tmp_path, timeout=5)
        assert time.monotonic() - started < 1
    write_postmaster_pid(tmp_path, os.getpid(), "starting")
    started = time.monotonic()
    wait_while_starting(tmp_path, timeout=1)
    assert time.monotonic() - started >= 1
    (tmp_path / "postmaster.pid").write_text(f"{os.getpid()}\n")  # half written: starting too
    started = time.monotonic()
    wait_while_starting(tmp_path, timeout=0.5)
    assert time.monotonic() - started >= 0.5
    (tmp_path / "postmaster.pid").unlink()
    wait_while_starting(tmp_path, timeout=5)


def postmaster_running(pgdata):
    """Whether the postmaster of pgdata (its postmaster.pid) is alive."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return False
    return True


def test_a_killed_run_does_not_keep_postgres_running_after_the_next_one(tmp_path):
    """A launcher killed outright (kill -9) cannot stop its PostgreSQL; the next run joins that server and, once it
    ends, stops it, instead of counting the dead launcher as a holder forever."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(IMGSEARCH_DATA_DIR=str(tmp_path / "data"), REDIS_URL="redis://127.0.0.1:1/0")
    launcher = [sys.executable, "-m", "imgsearch.embedded", "exec", "--"]
    pgdata = tmp_path / "data" / "pg"
    crashed = subprocess.Popen(
        [*launcher, sys.executable, "-c", "import time; time.sleep(120)"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (
            postmaster_running(pgdata)
            and (pgdata / ".handle_pids.json").exists()
            and crashed.pid in json.loads((pgdata / ".handle_pids.json").read_text() or "[]")
        ):
            assert time.monotonic() < deadline, "the embedded PostgreSQL did not start"
            assert crashed.poll() is None, "the launcher ended early"
            time.sleep(0.2)
    finally:
        os.killpg(crashed.pid, signal.SIGKILL)  # the launcher and its command, no clean-up
        crashed.wait(30)
    assert postmaster_running(pgdata)  # left behind by the killed launcher
    subprocess.run([*launcher, "true"], cwd=ROOT, env=env, check=True, timeout=120, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while postmaster_running(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postmaster_running(pgdata)


def test_a_killed_run_does_not_leave_its_redis_running_after_the_next_one(tmp_path):
    """The redis-server of a launcher killed outright is adopted by the next run, which stops it when it ends."""
    import psutil

    from imgsearch.embedded import redis_answers

    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(IMGSEARCH_DATA_DIR=str(tmp_path / "data"), DATABASE_URL="postgresql://unused@127.0.0.1:1/unused")
    launcher = [sys.executable, "-m", "imgsearch.embedded", "exec", "--"]
    port_file = tmp_path / "data" / "redis" / "port"
    crashed = subprocess.Popen(
        [*launcher, sys.executable, "-c", "import time; time.sleep(120)"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text() and redis_answers(int(port_file.read_text()))):
            assert time.monotonic() < deadline and crashed.poll() is None, "the embedded Redis did not start"
            time.sleep(0.1)
        port = int(port_file.read_text())
        command = [child for child in psutil.Process(crashed.pid).children() if "sleep" in " ".join(child.cmdline())]
    finally:
        crashed.kill()  # the launcher alone: its redis-server lives on
        crashed.wait(30)
    for child in command:
        child.kill()
    assert redis_answers(port)
    subprocess.run([*launcher, "true"], cwd=ROOT, env=env, check=True, timeout=60, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while redis_answers(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis_answers(port)


def test_the_index_worker_uses_every_core_below_the_search_worker(monkeypatch, tmp_path):
    """`make run`'s index worker: one process at nice 10 unless told (INDEX_WORKER_CONCURRENCY, "auto" for Celery's
    one per core; INDEX_WORKER_NICE); WORKER_CONCURRENCY still sets both workers."""
    from imgsearch.embedded import celery_commands

    def index_worker():
        command, env = celery_commands("python", tmp_path)["index worker"]
        return command[: command.index("python")], command[command.index("--concurrency") + 1], env

    for name in ("INDEX_WORKER_CONCURRENCY", "WORKER_CONCURRENCY", "INDEX_WORKER_NICE"):
        monkeypatch.delenv(name, raising=False)
    assert index_worker() == (["nice", "-n", "10"], "1", {"IMGSEARCH_TORCH_THREADS": "1"})
    search, _ = celery_commands("python", tmp_path)["search worker"]
    assert search[0] == "python" and search[search.index("--concurrency") + 1] == "1"
    monkeypatch.setenv("WORKER_CONCURRENCY", "3")  # both workers, as before
    assert index_worker()[1] == "3"
    monkeypatch.setenv("INDEX_WORKER_CONCURRENCY", "auto")
    monkeypatch.setenv("INDEX_WORKER_NICE", "19")
    assert index_worker()[:2] == (["nice", "-n", "19"], "auto")
