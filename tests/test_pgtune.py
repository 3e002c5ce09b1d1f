"""The embedded PostgreSQL's shared_buffers (imgsearch/pgtune.py): a quarter of the memory, taken at its start."""

import os
import subprocess
import sys
import time

import pytest

from imgsearch import pgtune

from .conftest import ROOT
from .test_embedded import postmaster_running


def test_shared_buffers_is_a_quarter_of_the_memory_and_never_below_the_default(monkeypatch):
    monkeypatch.delenv("IMGSEARCH_PG_SHARED_BUFFERS", raising=False)
    assert pgtune.shared_buffers(24 * 2**30) == "6144MB"
    assert pgtune.shared_buffers(256 * 2**20) == "128MB"
    assert pgtune.shared_buffers() == f"{max(128, pgtune.total_memory() // 4 // 2**20)}MB"


def test_shared_buffers_can_be_set_and_a_bad_size_is_refused(monkeypatch):
    monkeypatch.setenv("IMGSEARCH_PG_SHARED_BUFFERS", "512MB")
    assert pgtune.shared_buffers(24 * 2**30) == "512MB"
    for bad in ("lots", "512", "0MB", "1GB; DROP TABLE x"):
        monkeypatch.setenv("IMGSEARCH_PG_SHARED_BUFFERS", bad)
        with pytest.raises(ValueError, match="IMGSEARCH_PG_SHARED_BUFFERS"):
            pgtune.shared_buffers()
    monkeypatch.setenv("IMGSEARCH_PG_SHARED_BUFFERS", "12GB")  # the server could not start: refused
    assert pgtune.shared_buffers(24 * 2**30) == "12GB"
    with pytest.raises(ValueError, match="more than half"):
        pgtune.shared_buffers(16 * 2**30)


def test_a_launcher_given_a_bad_size_says_so_without_a_traceback(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(IMGSEARCH_DATA_DIR=str(tmp_path / "data"), IMGSEARCH_PG_SHARED_BUFFERS="lots")
    done = subprocess.run(
        [sys.executable, "-m", "imgsearch.embedded", "exec", "--", "true"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "IMGSEARCH_PG_SHARED_BUFFERS='lots': a size such as 512MB or 4GB"
    assert not (tmp_path / "data" / "pg").exists()


SHOW = "import os, psycopg; print(psycopg.connect(os.environ['DATABASE_URL']).execute('SHOW shared_buffers').fetchone()[0])"


@pytest.mark.slow
def test_the_embedded_server_takes_its_shared_buffers_when_nothing_else_uses_it(tmp_path):
    """A fresh server restarts at once to take the size; one that another run holds keeps its size until its next
    start, and each run still stops the server it was last to hold."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(IMGSEARCH_DATA_DIR=str(tmp_path / "data"), REDIS_URL="redis://127.0.0.1:1/0")
    launcher = [sys.executable, "-m", "imgsearch.embedded", "exec", "--", sys.executable, "-c"]
    pgdata = tmp_path / "data" / "pg"

    def show(size):
        done = subprocess.run(
            [*launcher, SHOW],
            cwd=ROOT,
            env={**env, "IMGSEARCH_PG_SHARED_BUFFERS": size},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip().splitlines()[-1]

    assert show("160MB") == "160MB"  # a new data folder: restarted with it at once
    assert not postmaster_running(pgdata)  # and stopped at the end, the restarted server too
    holder = subprocess.Popen(
        [*launcher, "import time; time.sleep(60)"],
        cwd=ROOT,
        env={**env, "IMGSEARCH_PG_SHARED_BUFFERS": "160MB"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not postmaster_running(pgdata):
            assert time.monotonic() < deadline, "the embedded PostgreSQL did not start"
            time.sleep(0.2)
        assert show("192MB") == "160MB"  # another run holds the server: no restart under it
    finally:
        holder.terminate()
        holder.wait(30)
    deadline = time.monotonic() + 30
    while postmaster_running(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert show("192MB") == "192MB"  # taken at the next start
