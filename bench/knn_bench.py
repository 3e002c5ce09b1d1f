"""k-NN at scale through bench/knn_scale.py: pgvector HNSW settings against exact search, on real-embedding mixtures.

The vectors are two-way mixtures of the quality subset's real GAP embeddings (saved by bench/quality.py), put
through the projection learned from that subset and its folder tags (workers/projection.py), so their
dimension and distribution are those of a production index of that size (raw 1280-dimensional vectors are
only searched below IMGSEARCH_PROJECTION_MIN_IMAGES images). `raw=True` keeps the raw vectors.
Runs on the server DATABASE_URL names (table bench_knn).
"""

import os
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bench import knn_scale as ks

TARGET = {"recall": 0.95, "median_ms": 10.0}


def vectors(seeds_path, n, queries, seed=0, raw=False):
    """(data, queries) drawn as knn_scale's real mixtures, projected as production projects them unless raw."""
    from workers.projection import Projection

    rng = np.random.default_rng(seed)
    seeds = np.load(seeds_path).astype(np.float32)
    learned = None if raw else Projection.loads(seeds_path.with_suffix(".projection.npz").read_bytes())

    def draw(count):  # in chunks: 1M raw vectors and their temporaries would not fit in memory at once
        chunks = []
        for start in range(0, count, 100_000):
            chunk = ks.mixtures(seeds, min(100_000, count - start), rng)
            chunks.append(chunk if raw else learned.apply(chunk))
        return np.concatenate(chunks)

    return draw(n), draw(queries)


def exact_baseline(conn, data, queries, k, exact_queries):
    """Ground truth (numpy) and the exact sequential-scan figures."""
    truth, numpy_s = _timed(ks.exact_top, data, queries, k)
    times, found = ks.query_all(conn, queries[:exact_queries], k, exact=True)
    return truth, {
        **ks.summary(times),
        "recall": round(ks.recall(found, truth[:exact_queries]), 4),
        "numpy_ms_per_query": round(numpy_s * 1000 / len(queries), 2),
    }


def _timed(fn, *args):
    started = time.perf_counter()
    return fn(*args), time.perf_counter() - started


def hnsw_rows(conn, queries, truth, k, builds, ef_searches):
    """One row per (m, ef_construction, ef_search): recall@k, median/p95, build time and index size."""
    rows = []
    for m, ef_construction in builds:
        build_s, size = ks.build(conn, m, ef_construction)
        used = uses_index(conn, queries[0], k)
        for ef in ef_searches:
            ks.query_all(conn, queries[:10], k, ef_search=ef)  # warm the cache
            times, found = ks.query_all(conn, queries, k, ef_search=ef)
            row = {
                "m": m,
                "ef_construction": ef_construction,
                "ef_search": ef,
                "build_s": round(build_s, 1),
                "index_mb": round(size / 2**20, 1),
                "uses_index": used,
                "recall": round(ks.recall(found, truth), 4),
                **ks.summary(times),
            }
            rows.append(row)
            print(
                f"    m={m} efc={ef_construction} ef_search={ef}: recall@{k} {row['recall']:.3f} median {row['median_ms']} ms "
                f"p95 {row['p95_ms']} ms (build {row['build_s']} s, {row['index_mb']} MB)",
                flush=True,
            )
    return rows


def uses_index(conn, query, k):
    """Whether the planner answers the benchmark's query with the HNSW index (not a scan and sort)."""
    conn.execute("SET enable_indexscan = on")
    plan = conn.execute("EXPLAIN SELECT id FROM bench_knn ORDER BY v <=> %s LIMIT %s", (query, k)).fetchall()
    return any("bench_knn_hnsw" in line[0] for line in plan)


def run(
    seeds_path,
    n=100_000,
    builds=((16, 64), (24, 96)),
    ef_searches=(40, 64, 100, 200),
    queries=200,
    k=10,
    exact_queries=20,
    raw=False,
):
    """All figures at n vectors of the production dimension (the seeds' with raw); drops its table afterwards."""
    data, qs = vectors(seeds_path, n, queries, raw=raw)
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=False)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    try:
        load_s = ks.load(conn, data, data.shape[1])
        table_mb = conn.execute("SELECT pg_total_relation_size('bench_knn')").fetchone()[0] / 2**20
        truth, exact = exact_baseline(conn, data, qs, k, exact_queries)
        print(f"  k-NN n={n}: load {load_s:.0f} s, exact seq scan median {exact['median_ms']} ms", flush=True)
        rows = hnsw_rows(conn, qs, truth, k, builds, ef_searches)
    finally:
        conn.rollback()
        conn.execute("DROP TABLE IF EXISTS bench_knn")
        conn.commit()
        conn.close()
    from django.conf import settings

    from search.knn import ef_search_for

    return {
        "n": n,
        "dim": int(data.shape[1]),
        "k": k,
        "queries": len(qs),
        "source": "real mixtures" + ("" if raw else ", projected"),
        "app_ef_search": settings.IMGSEARCH_HNSW_EF_SEARCH or ef_search_for(n),
        "load_s": round(load_s, 1),
        "table_mb": round(table_mb, 1),
        "exact_seqscan": exact,
        "hnsw": rows,
        "choice": choose(rows),
    }


def choose(rows):
    """The fastest setting (by median) that reaches the recall target; else the one with the best recall."""
    good = [r for r in rows if r["recall"] >= TARGET["recall"]]
    return min(good, key=lambda r: r["median_ms"]) if good else max(rows, key=lambda r: r["recall"])
