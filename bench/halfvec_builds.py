"""halfvec against vector over several HNSW builds of each on the same vectors: how much of a recall difference is the
16-bit storage and how much one graph's luck (docs/retrieval.md, "The vector index").

    .venv/bin/python -m imgsearch.embedded exec -- .venv/bin/python -m bench.halfvec_builds [--n 100000] [--builds 3]

bench/knn_bench.py's projected real-embedding mixtures (the quality part's seeds file), the app's graph (m=32,
ef_construction=200); recall@10 against the exact answer over the 32-bit vectors, and that exact answer over the
16-bit ones (what halfvec itself costs). Runs on DATABASE_URL's server (tables bench_knn, bench_knn_half).
"""

import argparse
import os
import statistics
from pathlib import Path

import psycopg
from pgvector.psycopg import register_vector

from bench import knn_scale as ks
from bench.common import CACHE, run_and_save

K = 10


def run(argv=()):
    args = parser().parse_args(list(argv))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imgsearch.settings")
    import django

    django.setup()  # the projection's module (bench.knn_bench.vectors) needs the app's settings
    from bench.knn_bench import half_rounded, vectors

    data, queries = vectors(CACHE / "seeds.npy", args.n, 200)
    truth = ks.exact_top(data, queries, K)
    report = {
        "n": args.n,
        "halfvec_exact_recall": ks.recall(ks.exact_top(*map(half_rounded, (data, queries)), K), truth),
    }
    print(f"  exact top {K} over the 16-bit vectors: recall {report['halfvec_exact_recall']:.4f}", flush=True)
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=False)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    try:
        ks.load(conn, data, data.shape[1])
        ks.load_half(conn, data.shape[1])
        builds = {"vector": [], "halfvec": []}
        for build in range(args.builds):
            for table, kind in (("bench_knn", "vector"), ("bench_knn_half", "halfvec")):
                ks.build(conn, 32, 200, table, kind)
                found = {}
                for ef in args.ef_searches:
                    ks.query_all(conn, queries[:10], K, ef_search=ef, table=table, kind=kind)
                    found[ef] = round(
                        ks.recall(ks.query_all(conn, queries, K, ef, table=table, kind=kind)[1], truth), 4
                    )
                builds[kind].append(found)
                print(f"  build {build + 1} {kind}: recall@{K} by ef_search {found}", flush=True)
                conn.execute(f"DROP INDEX {table}_hnsw")
                conn.commit()
    finally:
        conn.rollback()
        for table in ("bench_knn", "bench_knn_half"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.commit()
        conn.close()
    report["builds"] = builds
    for ef in args.ef_searches:
        means = {kind: statistics.mean(b[ef] for b in runs) for kind, runs in builds.items()}
        print(f"  ef_search {ef}: mean recall vector {means['vector']:.4f}, halfvec {means['halfvec']:.4f}", flush=True)
    return report


def parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--ef-searches", type=int, nargs="+", default=[40, 100, 200])
    parser.add_argument("--json", type=Path)
    return parser


if __name__ == "__main__":
    run_and_save(run, parser)
