"""How k-NN answers a category filter (search.knn.nearest with categories): three ways, by how many images carry them.

- A category's own index: an HNSW index of each (model, common category), over the rows that carry it. A filter on a
  category that a few percent of the images carry is what neither other way does well at a million images: the exact
  answer reads each tagged vector (a few microseconds each: 32 ms for 10,000), and an iterative scan of the model's
  graph finds about 0.9 of the exact answer (docs/benchmarks.md, filtered k-NN). pgvector's advice for filters on a
  few distinct values is a partial index per value; a category's graph holds only its images. Which categories get
  one: those that IMGSEARCH_HNSW_MIN_VECTORS or more of a model's vectors carry, the size from which the model itself
  gets an HNSW index. refresh() builds the missing ones (workers.refresh_tag_indexes: every 15 minutes, and when a
  reindex run ends); each costs the images it holds a second, small graph insert, and its graph's size in memory.
- Fewer tagged images than filter_exact_below(): the exact answer over them.
- Else an iterative scan of the model's index, which goes on until k rows pass.

The filter reads the tags each vector row carries: the image's own, copied by triggers (migration 0016).
"""

import hashlib
import logging
import math
import time

from django.conf import settings
from django.db import connection
from psycopg import sql

log = logging.getLogger(__name__)

# An HNSW scan filters after its graph search, so a selective filter leaves it short of k; pgvector 0.8's iterative
# scans go on until k rows pass (or max_scan_tuples). relaxed_order, sorted again, found more of the exact answer
# than strict_order.
ITERATIVE_SCAN = "relaxed_order"
ITERATIVE_MAX_SCAN_TUPLES = 20_000
FILTER_EXACT_FACTOR = 20
TAGGED = "SELECT id FROM search_indexedimage WHERE user_tags && %s::varchar[] OR auto_tags && %s::varchar[]"


def filter_exact_below(vectors):
    """Below how many tagged images a category filter on an index of `vectors` is answered exactly over them. The
    exact answer reads every tagged image (about 3 us each), the iterative scan walks the graph until k pass (about
    n / tagged nodes a result): the costs cross where the tagged count grows as sqrt(n). bench/pg_cache.py, 1M, 10,000
    tagged: exact 28.4 ms, p95 29.9, recall 1.000; iterative (ef_search 400) 26.9 ms, p95 60.6, recall 0.914. The
    factor puts that point well inside the exact side (20,000 at 1M) for its recall and p95; at 100k it gives 6,324,
    near the 5,000 measured there before (a 1% tag: exact 8.2 ms, iterative 30 ms)."""
    return int(FILTER_EXACT_FACTOR * math.sqrt(max(0, vectors)))


def row_filter(categories):
    """(SQL to append to a WHERE on search_embedding, its parameters): only rows carrying one of the categories."""
    if not categories:
        return sql.SQL(""), []
    return sql.SQL(" AND tags && %s::varchar[]"), [list(categories)]


def tagged_fewer(cursor, categories, n):
    """Whether fewer than n images carry one of the categories (counting stops at n, through the tags' GIN indexes)."""
    cursor.execute(f"SELECT count(*) FROM ({TAGGED} LIMIT %s) AS t", [list(categories), list(categories), n])
    return cursor.fetchone()[0] < n


# --- A category's own index ---------------------------------------------------------------------------------------

# pgvector's default graph: a category's index is small (10,000 vectors at 1% of 1M), and each of its images pays its
# inserts. ef_search 100 on it: docs/benchmarks.md (filtered k-NN, "a category's own index").
TAG_HNSW = (16, 64)
TAG_EF_SEARCH = 100
_PREFIX = "emb_tag_"
_valid = {}  # model key -> (names of its valid category indexes, when looked up)


def _digest(text, length):
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _model_prefix(model_key):
    return f"{_PREFIX}{_digest(model_key, 12)}_"


def index_name(model_key, tag):
    """The category's index of the model: hashed, so that any model key and tag make a short, safe name."""
    return _model_prefix(model_key) + _digest(tag, 16)


def tag_clause(tag):
    """The category's condition, written alike in its index's predicate and in the query (the tag inline: a
    parameter would not do), so the planner can prove the one from the other."""
    return sql.SQL("tags @> ARRAY[{}]::varchar[]").format(sql.Literal(tag))


def _indexes(cursor, model_key):
    """{name: valid} of the model's category indexes (an invalid one: a concurrent build that failed)."""
    cursor.execute(
        "SELECT c.relname, i.indisvalid FROM pg_class AS c JOIN pg_index AS i ON i.indexrelid = c.oid"
        " WHERE starts_with(c.relname, %s)",  # not LIKE: its "_" would match any character
        [_model_prefix(model_key)],
    )
    return dict(cursor.fetchall())


def covered(model_key, tags, max_age=60):
    """Whether each of the categories has a valid index of the model (looked up at most every max_age seconds)."""
    names, seen = _valid.get(model_key, (set(), -max_age))
    if time.monotonic() - seen >= max_age:
        with connection.cursor() as cursor:
            names = {name for name, valid in _indexes(cursor, model_key).items() if valid}
        _valid[model_key] = (names, time.monotonic())
    return bool(tags) and all(index_name(model_key, tag) in names for tag in tags)


def query(model_key, tags, distance):
    """The k nearest of the images carrying one of the categories: each category's k nearest through its index, merged.
    `distance` is the model's cosine distance to the query (one parameter). Parameters: (the query, k) per category,
    then k."""
    parts = [
        sql.SQL(
            "(SELECT image_id, {distance} AS distance FROM search_embedding WHERE model_key = {key} AND {tag}"
            " ORDER BY distance LIMIT %s)"
        ).format(distance=distance, key=sql.Literal(model_key), tag=tag_clause(tag))
        for tag in tags
    ]
    return sql.SQL(
        "SELECT image_id, 1 - min(distance) AS score FROM ({}) AS u GROUP BY image_id ORDER BY score DESC LIMIT %s"
    ).format(sql.SQL(" UNION ALL ").join(parts))


def query_params(literal, tags, k):
    return [value for _ in tags for value in (literal, k)] + [k]


def common_tags(cursor, model_key, at_least):
    """The categories that at least `at_least` of the model's vectors carry."""
    cursor.execute(
        "SELECT tag FROM (SELECT DISTINCT image_id, unnest(tags) AS tag FROM search_embedding WHERE model_key = %s) AS t"
        " GROUP BY tag HAVING count(*) >= %s ORDER BY count(*) DESC",
        [model_key, at_least],
    )
    return [tag for (tag,) in cursor.fetchall()]


def refresh(model_key, dim):
    """Build the missing indexes of the model's common categories (and again those whose build failed); the
    categories built. Outside a transaction each is built CONCURRENTLY, so indexing goes on meanwhile. One session at
    a time per model: another finds the lock held and returns at once."""
    concurrently = sql.SQL("" if connection.in_atomic_block else "CONCURRENTLY")
    built = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", ["tag-indexes:" + model_key])
        if not cursor.fetchone()[0]:
            return built
        try:
            existing = _indexes(cursor, model_key)
            for tag in common_tags(cursor, model_key, max(1, settings.IMGSEARCH_HNSW_MIN_VECTORS)):
                name = index_name(model_key, tag)
                if existing.get(name):
                    continue
                if name in existing:
                    drop_index = sql.SQL("DROP INDEX {} IF EXISTS {}").format(concurrently, sql.Identifier(name))
                    cursor.execute(drop_index.as_string(cursor.connection))
                started = time.monotonic()
                cursor.execute(_statement(model_key, dim, tag, concurrently).as_string(cursor.connection))
                log.info("built the index of category %r of %s in %.2f s", tag, model_key, time.monotonic() - started)
                built.append(tag)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", ["tag-indexes:" + model_key])
    _valid.pop(model_key, None)
    return built


def _statement(model_key, dim, tag, concurrently):
    return sql.SQL(
        "CREATE INDEX {concurrently} IF NOT EXISTS {name} ON search_embedding USING hnsw"
        " ((vector::halfvec({dim})) halfvec_cosine_ops) WITH (m = {m}, ef_construction = {ef_construction})"
        " WHERE model_key = {key} AND {tag}"
    ).format(
        concurrently=concurrently,
        name=sql.Identifier(index_name(model_key, tag)),
        dim=sql.Literal(int(dim)),
        m=sql.Literal(TAG_HNSW[0]),
        ef_construction=sql.Literal(TAG_HNSW[1]),
        key=sql.Literal(model_key),
        tag=tag_clause(tag),
    )


def drop(model_key):
    """Drop the model's category indexes (with its vectors or its own index)."""
    with connection.cursor() as cursor:
        for name in _indexes(cursor, model_key):
            cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)).as_string(cursor.connection))
    _valid.pop(model_key, None)
