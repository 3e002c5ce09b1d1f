"""k-nearest-neighbour search over pgvector, one partial HNSW index per embedding model.

Embeddings of every model share one table and an untyped `vector` column; each model gets an expression
index on `(vector::vector(DIM))` restricted to its rows, as pgvector's docs suggest for mixed dimensions.
Queries repeat that expression and inline the model key as a literal so the planner can use the index.
"""

import hashlib
import re
import time

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from .fields import exact_text
from .models import Embedding

# pgvector 0.6 builds HNSW indexes for vectors of up to 2,000 dimensions; wider ones are searched exactly.
HNSW_MAX_DIM = 2000
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
# docs/benchmarks.md: at 1M projected vectors m=24 / ef_construction=96 stopped at recall@10 0.92 even with
# ef_search 800; m=32 / 200 reached 0.961 at ef_search 400 in a 3.5 ms median (build 9 minutes).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
# The copy space's index only has to find a search's few nearest: pgvector's default graph (m=16, ef_construction=64)
# returned 0.989 of the exact 5 nearest for near copies among 10,000 synthetic 256-d vectors, and cost 1.6 ms a row
# to insert against 7 to 14 ms with the graph above (8 / 32: 0.874, 0.6 ms); each indexed image pays it.
COPY_HNSW = (16, 64)
_COPY_PREFIX = "copy:"


def _check(model_key, dim):
    if not _SAFE_KEY.match(model_key):
        raise ValueError(f"unsafe model key {model_key!r}")
    if not 1 <= int(dim) <= 16000:
        raise ValueError(f"bad dimension {dim!r}")


def copy_key(model_key):
    """Where a projected model's copy-space vectors (workers/projection.py) are kept: rows of their own, with their
    own HNSW index (COPY_HNSW), under a key made from the model's (short, so that its index name is never cut)."""
    return _COPY_PREFIX + hashlib.sha256(model_key.encode()).hexdigest()[:16]


def is_copy_key(model_key):
    """Whether a key holds a projection's copy-space vectors (copy_key), not a model's own."""
    return model_key.startswith(_COPY_PREFIX)


def index_name(model_key):
    return "emb_hnsw_" + re.sub(r"[^a-z0-9]+", "_", model_key.lower())[:50]


def ensure_vector_index(model_key, dim, *, wait=True):
    """Create the model's HNSW cosine index once it holds IMGSEARCH_HNSW_MIN_VECTORS vectors; True if it exists.

    Below that an exact scan answers in a millisecond or two, and every vector written to an HNSW index costs
    its graph search (7 to 10 ms at 1280 dimensions on 2 cores: most of what storing an image cost), so small
    indexes go without; one built in bulk later is much cheaper than the same graph grown one insert at a
    time. Safe to call from many workers at once, and cheap once the index exists. With wait=False a build
    another session has under way is not waited for: False comes back at once.
    """
    _check(model_key, dim)
    if dim > HNSW_MAX_DIM:
        return False  # pgvector 0.6 cannot index it; search scans exactly instead
    name = index_name(model_key)
    graph = COPY_HNSW if is_copy_key(model_key) else (HNSW_M, HNSW_EF_CONSTRUCTION)
    statement = sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON search_embedding USING hnsw ((vector::vector({dim})) vector_cosine_ops)"
        " WITH (m = {m}, ef_construction = {ef_construction}) WHERE model_key = {key}"
    ).format(
        name=sql.Identifier(name),
        dim=sql.Literal(int(dim)),
        key=sql.Literal(model_key),
        m=sql.Literal(graph[0]),
        ef_construction=sql.Literal(graph[1]),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        if _index_exists(cursor, model_key):
            return True
        if not _enough_vectors(cursor, model_key):
            return False
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [model_key])
        else:
            cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [model_key])
            if not cursor.fetchone()[0]:
                return False
        cursor.execute(statement.as_string(cursor.connection))
    return True


def needs_vector_index(model_key, dim):
    """Whether ensure_vector_index would build the model's index now (it has enough vectors and none yet)."""
    if dim > HNSW_MAX_DIM:
        return False
    with connection.cursor() as cursor:
        return not _index_exists(cursor, model_key) and _enough_vectors(cursor, model_key)


def _index_exists(cursor, model_key):
    cursor.execute("SELECT 1 FROM pg_class WHERE relname = %s AND relkind = 'i'", [index_name(model_key)])
    return cursor.fetchone() is not None


def _enough_vectors(cursor, model_key):
    wanted = settings.IMGSEARCH_HNSW_MIN_VECTORS
    cursor.execute(
        "SELECT count(*) FROM (SELECT 1 FROM search_embedding WHERE model_key = %s LIMIT %s) AS s", [model_key, wanted]
    )
    return cursor.fetchone()[0] >= wanted


def drop_vector_index(model_key):
    """Drop the model's HNSW index (its vectors stay): for raw vectors only kept to learn projections from."""
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name(model_key))))


# docs/benchmarks.md, m=32 / ef_construction=200: at 100k vectors ef_search 100 gave recall@10 0.978 in 1.8 ms
# (400: 1.000 in 8.5 ms); at 1M, 100 gave 0.946 and 400 0.961 in 3.5 ms. So a wider search once the graph is big.
LARGE_INDEX = 300_000
_sizes = {}  # model key -> (vectors in its HNSW index, when looked up): sizes change slowly


def ef_search_for(vectors):
    """The hnsw.ef_search an index of this many vectors gets: 100, or 400 from LARGE_INDEX on."""
    return 400 if vectors >= LARGE_INDEX else 100


def auto_ef_search(model_key, max_age=300):
    """hnsw.ef_search for the model's index, by its size (ef_search_for)."""
    vectors, seen = _sizes.get(model_key, (0, -max_age))
    if time.monotonic() - seen >= max_age:
        with connection.cursor() as cursor:  # PostgreSQL's own estimate, kept by CREATE INDEX, VACUUM and ANALYZE
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [index_name(model_key)])
            row = cursor.fetchone()
        vectors = row[0] if row else 0
        _sizes[model_key] = (vectors, time.monotonic())
    return ef_search_for(vectors)


def vector_literal(vector):
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def vectors_upsert(model_key, image_ids, vectors):
    """Store the images' vectors of a model (rows of `vectors`, a numpy array), replacing those they have; an image
    deleted meanwhile (from the admin, while a worker embedded it) is skipped.

    One statement a batch, without the ORM: in the indexing pipeline this runs beside the model, and the
    Python time an ORM bulk insert spends on each row held the GIL from the forward pass (bench/indexing_split.py).
    """
    if not len(image_ids):
        return
    _check(model_key, vectors.shape[1])
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO search_embedding (image_id, model_key, vector, created_at)"
            " SELECT t.image_id, %s, t.vector::vector, now() FROM unnest(%s::bigint[], %s::text[]) AS t(image_id, vector)"
            " JOIN search_indexedimage AS i ON i.id = t.image_id"
            " ON CONFLICT (image_id, model_key) DO UPDATE SET vector = EXCLUDED.vector",
            [model_key, [int(i) for i in image_ids], [exact_text(v) for v in vectors]],
        )


def nearest(vector, *, model_key, k, min_score=0.0, categories=()):
    """The k most similar images to `vector` as [(image_id, cosine similarity)], best first.

    With categories, only images carrying one of those tags count. HNSW filters after its candidate
    search, so a selective filter may leave fewer than k: then the query is answered exactly instead.
    """
    dim = len(vector)
    _check(model_key, dim)
    filters, params = _category_filter(categories)
    query = sql.SQL(
        "SELECT image_id, 1 - ({distance}) AS score FROM search_embedding WHERE model_key = {key}{filters}"
        " ORDER BY {distance} LIMIT %s"
    ).format(distance=_distance(dim), key=sql.Literal(model_key), filters=filters)
    literal = vector_literal(vector)
    ef_search = max(settings.IMGSEARCH_HNSW_EF_SEARCH or auto_ef_search(model_key), int(k))
    if categories:
        ef_search = min(1000, max(ef_search, 4 * int(k), 200))
    with transaction.atomic(), connection.cursor() as cursor:
        # ef_search bounds how many candidates HNSW returns; it must be at least k.
        cursor.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
        # With stale statistics (e.g. right after a bulk index) the planner may fetch every row of the model
        # through a btree and sort them; the HNSW scan needs no sort, so discourage sorting.
        cursor.execute("SET LOCAL enable_sort = off")
        statement = query.as_string(cursor.connection)
        cursor.execute(statement, [literal, *params, literal, int(k)])
        rows = cursor.fetchall()
        if categories and len(rows) < k:
            cursor.execute("SET LOCAL enable_indexscan = off")  # exact answer over the filtered images
            cursor.execute("SET LOCAL enable_sort = on")
            cursor.execute(statement, [literal, *params, literal, int(k)])
            rows = cursor.fetchall()
    return [(image_id, float(score)) for image_id, score in rows if score >= min_score]


def _distance(dim):
    """Cosine distance of a stored vector to the query (one %s parameter), cast so the model's HNSW index serves it."""
    return sql.SQL("(vector::vector({dim})) <=> %s::vector({dim})").format(dim=sql.Literal(dim))


def _category_filter(categories):
    """(SQL to append to a WHERE on search_embedding, its parameters): only images carrying one of the categories."""
    if not categories:
        return sql.SQL(""), []
    return sql.SQL(
        " AND image_id IN (SELECT id FROM search_indexedimage WHERE user_tags && %s::varchar[] OR auto_tags && %s::varchar[])"
    ), [list(categories), list(categories)]


def scores_of(vector, image_ids, *, model_key, categories=()):
    """{image_id: cosine similarity to `vector`} of those of the images with a vector of the model (and, with
    categories, one of them), as nearest() scores them."""
    if not image_ids:
        return {}
    dim = len(vector)
    _check(model_key, dim)
    filters, params = _category_filter(categories)
    query = sql.SQL(
        "SELECT image_id, 1 - ({distance}) FROM search_embedding WHERE model_key = %s AND image_id = ANY(%s){filters}"
    ).format(distance=_distance(dim), filters=filters)
    with connection.cursor() as cursor:
        cursor.execute(
            query.as_string(cursor.connection), [vector_literal(vector), model_key, list(image_ids), *params]
        )
        return {image_id: float(score) for image_id, score in cursor.fetchall()}


def stored_vector(image_id, model_key):
    """An indexed image's vector of the model, or None."""
    return Embedding.objects.filter(image_id=image_id, model_key=model_key).values_list("vector", flat=True).first()


def has_vectors(model_key):
    """Whether any image has a vector of the model."""
    return Embedding.objects.filter(model_key=model_key).exists()
