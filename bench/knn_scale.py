"""k-NN at scale: pgvector HNSW against exact search, at the production dimension.

    python bench/knn_scale.py --n 100000 --dim 1280 [--seeds vectors.npy] [--json out.json]

Vectors: without real seeds, a synthetic set shaped like CNN embeddings (non-negative, clustered, a few
hundred effective dimensions); with --seeds (an .npy of real L2-normalised embeddings), each vector is a
random mixture of two real embeddings plus noise. Queries are drawn the same way but are not in the set.
Ground truth is exact cosine search in numpy. Prints one line per setting and writes JSON.
Runs against DATABASE_URL (use `python -m imgsearch.embedded exec -- ...` for the embedded server).
"""

import argparse
import hashlib
import json
import os
import statistics
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector


def synthetic(n, dim, rng, centres=None):
    """Clustered non-negative unit vectors with a low-rank structure, like pooled ReLU features."""
    rank = min(dim, 256)
    if centres is None:
        basis = np.abs(rng.normal(size=(rank, dim))).astype(np.float32)
        centres = np.abs(rng.normal(size=(2000, rank))).astype(np.float32) ** 3 @ basis
    picks = rng.integers(0, len(centres), size=n)
    x = centres[picks] + rng.normal(scale=0.6 * centres.std(), size=(n, dim)).astype(np.float32)
    return normalise(np.maximum(x, 0)), centres


def mixtures(seeds, n, rng):
    """Random two-way mixtures of real embeddings with a little noise, re-normalised."""
    a, b = seeds[rng.integers(0, len(seeds), n)], seeds[rng.integers(0, len(seeds), n)]
    w = rng.uniform(0.5, 1.0, size=(n, 1)).astype(np.float32)
    x = w * a + (1 - w) * b + rng.normal(scale=0.01, size=a.shape).astype(np.float32)
    return normalise(np.maximum(x, 0))


def normalise(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(data, queries, k):
    """Exact top-k by cosine similarity, in chunks so 1M x 1280 fits in memory."""
    best = []
    for q in queries:
        sims = np.concatenate([chunk @ q for chunk in np.array_split(data, max(1, len(data) // 200_000))])
        top = np.argpartition(-sims, k)[:k]
        best.append(set(top[np.argsort(-sims[top])].tolist()))
    return best


def load(conn, data, dim):
    conn.execute("DROP TABLE IF EXISTS bench_knn")
    conn.execute(f"CREATE TABLE bench_knn (id integer PRIMARY KEY, v vector({dim}))")
    started = time.perf_counter()
    with conn.cursor().copy("COPY bench_knn (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "vector"])
        for i, row in enumerate(data):
            copy.write_row((i, row))
    conn.commit()
    return time.perf_counter() - started


def load_half(conn, dim, table="bench_knn_half"):
    """A copy of bench_knn stored as halfvec (as search_embedding stores vectors): (seconds, table bytes)."""
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    started = time.perf_counter()
    conn.execute(f"CREATE TABLE {table} AS SELECT id, v::halfvec({dim}) AS v FROM bench_knn")
    conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    conn.execute(f"ANALYZE {table}")
    conn.commit()
    return time.perf_counter() - started, conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0]


# Operator classes by column type: HNSW over vector, halfvec, and binary_quantize()'s bits (search/knn.py).
OPS = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}


def build(conn, m, ef_construction, table="bench_knn", kind="vector"):
    """(seconds, index bytes) of the cosine HNSW index on the table's column v of type `kind`."""
    conn.execute(f"DROP INDEX IF EXISTS {table}_hnsw")
    return _build(conn, f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (v {OPS[kind]})", m, ef_construction, table)


def build_binary(conn, m, ef_construction, dim, table="bench_knn_half"):
    """(seconds, index bytes) of a Hamming HNSW index on the sign bits of v (binary_quantize), as search/knn.py's."""
    conn.execute(f"DROP INDEX IF EXISTS {table}_hnsw")
    return _build(
        conn,
        f"CREATE INDEX {table}_hnsw ON {table} USING hnsw ((binary_quantize(v)::bit({dim})) bit_hamming_ops)",
        m,
        ef_construction,
        table,
    )


def _build(conn, statement, m, ef_construction, table):
    conn.execute("SET maintenance_work_mem = '8GB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    started = time.perf_counter()
    conn.execute(f"{statement} WITH (m = {m}, ef_construction = {ef_construction})")
    conn.commit()
    size = conn.execute(f"SELECT pg_relation_size('{table}_hnsw')").fetchone()[0]
    return time.perf_counter() - started, size


def query_all(conn, queries, k, ef_search=None, exact=False, table="bench_knn", kind="vector"):
    """(latencies in ms, result id sets) for single queries, as the search worker runs them."""
    conn.execute("SET enable_indexscan = %s" % ("off" if exact else "on"))
    if ef_search:
        conn.execute(f"SET hnsw.ef_search = {ef_search}")
    statement = f"SELECT id FROM {table} ORDER BY v <=> %s::{kind} LIMIT %s"
    return _timed_queries(conn, statement, [(q, k) for q in queries])


def query_binary(conn, queries, k, candidates, dim, table="bench_knn_half"):
    """Binary-quantized k-NN as search/knn.py runs it: the `candidates` nearest sign bits by Hamming distance through
    the index, re-ranked by the cosine of the stored (halfvec) vectors."""
    conn.execute("SET enable_indexscan = on")
    conn.execute(f"SET hnsw.ef_search = {max(40, candidates)}")
    statement = (
        f"SELECT id FROM (SELECT id, v FROM {table} ORDER BY binary_quantize(v)::bit({dim}) <~> binary_quantize(%s::halfvec)"
        f" LIMIT %s) AS c ORDER BY v <=> %s::halfvec LIMIT %s"
    )
    return _timed_queries(conn, statement, [(q, candidates, q, k) for q in queries])


def add_tags(conn, n, shares, rng, table="bench_knn_half"):
    """Tag a random share of the n images with each tag (table bench_knn_tags, GIN-indexed as the app's image tags are),
    and the vector table's rows with their image's (as the app's rows carry them: migration 0016): {tag: the ids}."""
    conn.execute("DROP TABLE IF EXISTS bench_knn_tags")
    conn.execute("CREATE TABLE bench_knn_tags (id integer PRIMARY KEY, tags varchar(100)[] NOT NULL DEFAULT '{}')")
    tagged, tags = {}, [[] for _ in range(n)]
    for tag, share in shares.items():
        tagged[tag] = rng.choice(n, size=max(1, int(n * share)), replace=False)
        for i in tagged[tag]:
            tags[i].append(tag)
    with conn.cursor().copy("COPY bench_knn_tags (id, tags) FROM STDIN") as copy:
        for i, t in enumerate(tags):
            copy.write_row((i, t))
    conn.execute("CREATE INDEX bench_knn_tags_gin ON bench_knn_tags USING gin (tags)")
    conn.execute("ANALYZE bench_knn_tags")
    # The table written again in id order with its tags: an UPDATE would move the tagged rows together at its end,
    # which made the exact answer over them 1.7x faster than over rows tagged as they come (30.95 -> 18.62 ms at 1M).
    conn.execute(f"DROP TABLE IF EXISTS {table}_tagged")
    conn.execute(
        f"CREATE TABLE {table}_tagged AS SELECT h.id, h.v, t.tags FROM {table} AS h JOIN bench_knn_tags AS t"
        " USING (id) ORDER BY h.id"
    )
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {table}_tagged RENAME TO {table}")
    conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    conn.execute(f"ANALYZE {table}")
    conn.commit()
    return tagged


def _tag_clause(conn, tag):
    """search/filters.py's condition of a category's own index, as SQL text."""
    from search.filters import tag_clause

    return tag_clause(tag).as_string(conn)


def build_tag_index(conn, tag, m, ef_construction, table="bench_knn_half"):
    """The tag's own index, as search/filters.py builds it: (build seconds, index bytes)."""
    name = f"{table}_tag_{hashlib.sha256(tag.encode()).hexdigest()[:12]}"
    conn.execute(f"DROP INDEX IF EXISTS {name}")
    started = time.perf_counter()
    conn.execute(
        f"CREATE INDEX {name} ON {table} USING hnsw (v halfvec_cosine_ops)"
        f" WITH (m = {m}, ef_construction = {ef_construction}) WHERE {_tag_clause(conn, tag)}"
    )
    conn.commit()
    return time.perf_counter() - started, conn.execute(f"SELECT pg_relation_size('{name}')").fetchone()[0]


def query_filtered(conn, queries, k, tag, path, *, ef_search=40, max_scan_tuples=20_000, table="bench_knn_half"):
    """(latencies in ms, result id sets) of k-NN among the images carrying `tag`, as search/knn.py answers it by `path`:
    "relaxed_order" or "strict_order" (an HNSW iterative scan), "exact" (the tagged images' vectors, sorted),
    "tag_index" (the tag's own index: build_tag_index)."""
    conn.execute(f"SET hnsw.ef_search = {ef_search}")
    conn.execute(f"SET hnsw.max_scan_tuples = {max_scan_tuples}")
    if path == "exact":
        conn.execute("SET hnsw.iterative_scan = off")
        statement = (  # as search/knn.py's _exact_query: compared in the scan, the tagged ids an array
            f"SELECT id FROM {table} WHERE id = ANY(ARRAY(SELECT id FROM bench_knn_tags WHERE tags && %s::varchar[]))"
            " ORDER BY 1 - (v <=> %s::halfvec) DESC LIMIT %s"
        )
        params = [([tag], q, k) for q in queries]
    elif path == "tag_index":
        conn.execute("SET hnsw.iterative_scan = off")
        conn.execute("SET enable_sort = off")  # as search/knn.py: the index scan, not a sort of the tag's rows
        clause = _tag_clause(conn, tag).replace("%", "%%")  # a literal "%" in a statement with parameters
        statement = (  # search/filters.py's query, for one category
            f"SELECT id, 1 - min(d) AS s FROM ((SELECT id, v <=> %s::halfvec AS d FROM {table} WHERE {clause}"
            " ORDER BY d LIMIT %s)) AS u GROUP BY id ORDER BY s DESC LIMIT %s"
        )
        params = [(q, k, k) for q in queries]
    else:
        conn.execute("SET enable_sort = off")  # as search/knn.py: the planner must take the index's order
        conn.execute(f"SET hnsw.iterative_scan = {path}")
        # relaxed_order may return its rows slightly out of order: pgvector's docs sort them again outside
        statement = (
            f"WITH c AS MATERIALIZED (SELECT id, v <=> %s::halfvec AS d FROM {table} WHERE tags && %s::varchar[]"
            " ORDER BY d LIMIT %s)"
            " SELECT id FROM c ORDER BY d"
        )
        params = [(q, [tag], k) for q in queries]
    try:
        return _timed_queries(conn, statement, params)
    finally:
        conn.execute("SET enable_sort = on")
        conn.execute("SET hnsw.iterative_scan = off")


def _timed_queries(conn, statement, params):
    times, found = [], []
    for p in params:
        started = time.perf_counter()
        rows = conn.execute(statement, p, prepare=True).fetchall()
        times.append((time.perf_counter() - started) * 1000)
        found.append({r[0] for r in rows})
    return times, found


def summary(times):
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seeds", help=".npy of real embeddings to mix (dimension taken from it)")
    parser.add_argument("--builds", default="16:64,24:128", help="m:ef_construction pairs")
    parser.add_argument("--ef-search", default="40,64,100,200")
    parser.add_argument("--exact-queries", type=int, default=20, help="sequential-scan queries for the baseline")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    if args.seeds:
        seeds = np.load(args.seeds).astype(np.float32)
        data, queries = mixtures(seeds, args.n, rng), mixtures(seeds, args.queries, rng)
    else:
        data, centres = synthetic(args.n, args.dim, rng)
        queries, _ = synthetic(args.queries, args.dim, rng, centres)
    dim = data.shape[1]
    started = time.perf_counter()
    truth = exact_top(data, queries, args.k)
    numpy_ms = (time.perf_counter() - started) * 1000 / len(queries)

    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=False)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    report = {
        "n": args.n,
        "dim": dim,
        "k": args.k,
        "queries": len(queries),
        "source": "real mixtures" if args.seeds else "synthetic",
    }
    report["load_s"] = round(load(conn, data, dim), 1)
    table = conn.execute("SELECT pg_total_relation_size('bench_knn')").fetchone()[0]
    report["table_mb"] = round(table / 2**20, 1)
    times, found = query_all(conn, queries[: args.exact_queries], args.k, exact=True)
    report["exact_numpy_ms_per_query"] = round(numpy_ms, 2)
    report["exact_seqscan"] = {**summary(times), "recall": round(recall(found, truth), 4)}
    print(
        f"n={args.n} dim={dim}: load {report['load_s']}s, table {report['table_mb']} MB; exact scan "
        f"median {report['exact_seqscan']['median_ms']} ms, numpy {numpy_ms:.1f} ms/query",
        flush=True,
    )
    report["hnsw"] = []
    for pair in args.builds.split(","):
        m, ef_construction = map(int, pair.split(":"))
        build_s, size = build(conn, m, ef_construction)
        for ef in map(int, args.ef_search.split(",")):
            query_all(conn, queries[:10], args.k, ef_search=ef)  # warm the cache
            times, found = query_all(conn, queries, args.k, ef_search=ef)
            row = {
                "m": m,
                "ef_construction": ef_construction,
                "ef_search": ef,
                "build_s": round(build_s, 1),
                "index_mb": round(size / 2**20, 1),
                "recall": round(recall(found, truth), 4),
                **summary(times),
            }
            report["hnsw"].append(row)
            print(
                f"  hnsw m={m} ef_construction={ef_construction} ef_search={ef}: recall@{args.k} {row['recall']:.3f}, "
                f"median {row['median_ms']} ms, p95 {row['p95_ms']} ms (build {row['build_s']}s, {row['index_mb']} MB)",
                flush=True,
            )
    conn.execute("DROP TABLE bench_knn")
    conn.commit()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return report


def recall(found, truth):
    return sum(len(f & t) for f, t in zip(found, truth)) / sum(len(t) for t in truth)


if __name__ == "__main__":
    main()
