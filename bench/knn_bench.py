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


def half_rounded(x):
    """The vectors as halfvec stores them (16-bit floats), back in 32 bits: the exact answer over them is what halfvec
    storage itself costs in recall, apart from any one HNSW graph's luck."""
    return x.astype(np.float16).astype(np.float32)


def _timed(fn, *args):
    started = time.perf_counter()
    return fn(*args), time.perf_counter() - started


def hnsw_rows(conn, queries, truth, k, builds, ef_searches, table="bench_knn", kind="vector"):
    """One row per (m, ef_construction, ef_search): recall@k, median/p95, build time and index size."""
    rows = []
    for m, ef_construction in builds:
        build_s, size = ks.build(conn, m, ef_construction, table, kind)
        used = uses_index(conn, queries[0], k, table, kind)
        for ef in ef_searches:
            ks.query_all(conn, queries[:10], k, ef_search=ef, table=table, kind=kind)  # warm the cache
            times, found = ks.query_all(conn, queries, k, ef_search=ef, table=table, kind=kind)
            row = {
                "type": kind,
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
                f"    {kind} m={m} efc={ef_construction} ef_search={ef}: recall@{k} {row['recall']:.3f} "
                f"median {row['median_ms']} ms p95 {row['p95_ms']} ms (build {row['build_s']} s, {row['index_mb']} MB)",
                flush=True,
            )
    return rows


def uses_index(conn, query, k, table="bench_knn", kind="vector"):
    """Whether the planner answers the benchmark's query with the HNSW index (not a scan and sort)."""
    conn.execute("SET enable_indexscan = on")
    plan = conn.execute(f"EXPLAIN SELECT id FROM {table} ORDER BY v <=> %s::{kind} LIMIT %s", (query, k)).fetchall()
    return any(f"{table}_hnsw" in line[0] for line in plan)


def binary_rows(conn, n, queries, truth, k, builds, candidates, dim):
    """Binary quantization (search/knn.py's quantized index) on bench_knn_half: per build and number of candidates
    re-ranked, recall@k, median/p95, build time, index size and bytes per image (index; table the re-ranking reads)."""
    rows = []
    for m, ef_construction in builds:
        build_s, size = ks.build_binary(conn, m, ef_construction, dim)
        table = conn.execute("SELECT pg_total_relation_size('bench_knn_half')").fetchone()[0] - size  # + primary key
        for c in candidates:
            ks.query_binary(conn, queries[:10], k, c, dim)  # warm the cache
            times, found = ks.query_binary(conn, queries, k, c, dim)
            row = {
                "m": m,
                "ef_construction": ef_construction,
                "candidates": c,
                "build_s": round(build_s, 1),
                "index_mb": round(size / 2**20, 1),
                "index_bytes_per_image": round(size / n),
                "table_bytes_per_image": round(table / n),
                "recall": round(ks.recall(found, truth), 4),
                **ks.summary(times),
            }
            rows.append(row)
            print(
                f"    bit m={m} efc={ef_construction} candidates={c}: recall@{k} {row['recall']:.3f} median "
                f"{row['median_ms']} ms p95 {row['p95_ms']} ms (build {row['build_s']} s, {row['index_mb']} MB)",
                flush=True,
            )
    return rows


def filtered_rows(conn, data, queries, k, tagged, variants):
    """k-NN among the images of one tag (a random share of them) through the halfvec HNSW index: per tag and way
    (search/knn.py's iterative scans, the exact scan of the tagged images, the tag's own index, and the app's choice
    between them), recall@k against the exact answer, median/p95, and how many queries the scan left short of k; the
    tag's own index's build time and size."""
    from search.filters import TAG_HNSW

    rows = []
    for tag, ids in tagged.items():
        ids = np.sort(ids)
        truth = [{int(ids[i]) for i in t} for t in ks.exact_top(data[ids], queries, k)]
        build_s, index_bytes = ks.build_tag_index(conn, tag, *TAG_HNSW)
        print(f"    {tag}: its own index built in {build_s:.1f} s, {index_bytes / 2**20:.1f} MB", flush=True)
        for name, options in variants:
            if options == "app":
                times, found, short = app_filtered(conn, queries, k, tag, len(data), len(ids))
            else:
                ks.query_filtered(conn, queries[:5], k, tag, **options)  # warm the cache
                times, found = ks.query_filtered(conn, queries, k, tag, **options)
                short = sum(len(f) < k for f in found)
            row = {
                "tag": tag,
                "tagged": len(ids),
                "tag_index_build_s": round(build_s, 2),
                "tag_index_mb": round(index_bytes / 2**20, 2),
                "way": name,
                "recall": round(ks.recall(found, truth), 4),
                "short": short,
                **ks.summary(times),
            }
            rows.append(row)
            print(
                f"    {tag} ({len(ids)} images) {name}: recall@{k} {row['recall']:.3f} median {row['median_ms']} ms "
                f"p95 {row['p95_ms']} ms, {short} of {len(queries)} short of {k}",
                flush=True,
            )
    return rows


def app_filtered(conn, queries, k, tag, n, tagged):
    """search/knn.py's choice for a category filter, on the benchmark's tables of n vectors: a tag that `tagged` (at
    least IMGSEARCH_HNSW_MIN_VECTORS) images carry has its own index (search/filters.py's refresh), searched with
    TAG_EF_SEARCH; else count the tagged images up to filter_exact_below(n); fewer: the exact answer over them; else an
    iterative scan with the ef_search of an index of n vectors. Exact if an index scan comes back short. (latencies,
    found, queries that needed the exact last resort)."""
    from django.conf import settings

    from search.filters import ITERATIVE_MAX_SCAN_TUPLES, ITERATIVE_SCAN, TAG_EF_SEARCH, filter_exact_below
    from search.knn import ef_search_for

    times, found, short, exact_below = [], [], 0, filter_exact_below(n)
    own_index = tagged >= settings.IMGSEARCH_HNSW_MIN_VECTORS
    probe = "SELECT count(*) FROM (SELECT 1 FROM bench_knn_tags WHERE tags && %s::varchar[] LIMIT %s) AS t"
    for q in queries:
        started = time.perf_counter()
        few = not own_index and conn.execute(probe, ([tag], exact_below), prepare=True).fetchone()[0] < exact_below
        if own_index:
            way = dict(path="tag_index", ef_search=max(TAG_EF_SEARCH, k))
        elif few:
            way = dict(path="exact")
        else:
            way = dict(path=ITERATIVE_SCAN, max_scan_tuples=ITERATIVE_MAX_SCAN_TUPLES, ef_search=ef_search_for(n))
        _, (rows,) = ks.query_filtered(conn, [q], k, tag, **way)
        if len(rows) < k and not few:
            short += 1
            _, (rows,) = ks.query_filtered(conn, [q], k, tag, path="exact")
        times.append((time.perf_counter() - started) * 1000)
        found.append(rows)
    return times, found, short


FILTER_VARIANTS = (
    ("iterative relaxed_order, ef_search 40", dict(path="relaxed_order")),
    ("iterative relaxed_order, ef_search 100", dict(path="relaxed_order", ef_search=100)),
    ("iterative strict_order, ef_search 40", dict(path="strict_order")),
    ("iterative relaxed_order, max_scan_tuples 100,000", dict(path="relaxed_order", max_scan_tuples=100_000)),
    ("exact over the tagged images", dict(path="exact")),
    ("the tag's own index (search/filters.py), ef_search 100", dict(path="tag_index", ef_search=100)),
    ("app (search/knn.py's choice)", "app"),
)


def run(
    seeds_path,
    n=100_000,
    builds=((32, 200),),
    ef_searches=(40, 100, 200, 400),
    queries=200,
    k=10,
    exact_queries=20,
    raw=False,
    binary_builds=((16, 64),),
    candidates=(40, 100, 200, 400),
    shares=(("1%", 0.01), ("0.1%", 0.001)),
    filtered_queries=100,
):
    """All figures at n vectors of the production dimension (the seeds' with raw), vector against halfvec storage,
    filtered k-NN and binary quantization; drops its tables afterwards. The last of `builds` is the app's graph: the
    filtered queries use it."""
    import search.knn  # noqa: F401 -- now, so that the whole part measures the settings it started with

    data, qs = vectors(seeds_path, n, queries, raw=raw)
    dim = int(data.shape[1])
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=False)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
    try:
        load_s = ks.load(conn, data, dim)
        table_mb = conn.execute("SELECT pg_total_relation_size('bench_knn')").fetchone()[0] / 2**20
        truth, exact = exact_baseline(conn, data, qs, k, exact_queries)
        exact["halfvec_recall"] = round(ks.recall(ks.exact_top(*(half_rounded(x) for x in (data, qs)), k), truth), 4)
        print(f"  k-NN n={n}: load {load_s:.0f} s, exact seq scan median {exact['median_ms']} ms", flush=True)
        rows = hnsw_rows(conn, qs, truth, k, builds, ef_searches)
        conn.execute("DROP INDEX bench_knn_hnsw")
        half_s, half_bytes = ks.load_half(conn, dim)
        conn.execute("DROP TABLE bench_knn")  # out of the cache: the halfvec figures are measured alone
        conn.commit()
        print(f"  halfvec table {half_bytes / 2**20:.0f} MB against {table_mb:.0f} MB", flush=True)
        tagged = ks.add_tags(conn, n, dict(shares), np.random.default_rng(1))  # before its graph: rows with tags
        rows += hnsw_rows(conn, qs, truth, k, builds, ef_searches, table="bench_knn_half", kind="halfvec")
        filtered = filtered_rows(conn, data, qs[:filtered_queries], k, tagged, FILTER_VARIANTS)
        binary = binary_rows(conn, n, qs, truth, k, binary_builds, candidates, dim)
    finally:
        conn.rollback()
        for table in ("bench_knn", "bench_knn_half", "bench_knn_tags"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()
    from django.conf import settings

    from search.knn import ef_search_for

    return {
        "n": n,
        "dim": dim,
        "k": k,
        "queries": len(qs),
        "source": "real mixtures" + ("" if raw else ", projected"),
        "app_ef_search": settings.IMGSEARCH_HNSW_EF_SEARCH or ef_search_for(n),
        "shared_buffers": buffers,  # PostgreSQL's cache: imgsearch/pgtune.py's size on the embedded server
        "load_s": round(load_s, 1),
        "table_mb": round(table_mb, 1),
        "halfvec_table_mb": round(half_bytes / 2**20, 1),
        "exact_seqscan": exact,
        "hnsw": rows,
        "choice": choose(rows),
        "filtered": filtered,
        "binary": binary,
    }


def choose(rows):
    """The fastest setting (by median) that reaches the recall target; else the one with the best recall."""
    good = [r for r in rows if r["recall"] >= TARGET["recall"]]
    return min(good, key=lambda r: r["median_ms"]) if good else max(rows, key=lambda r: r["recall"])
