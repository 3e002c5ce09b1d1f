"""k-nearest-neighbour search over pgvector, one partial HNSW index per embedding model.

Embeddings of every model share one table and an untyped `halfvec` column (16-bit floats: half the table and index
of `vector` at the same recall, docs/benchmarks.md); each model gets an expression index on `(vector::halfvec(DIM))`
restricted to its rows, as pgvector's docs suggest for mixed dimensions. From IMGSEARCH_HNSW_BINARY_FROM vectors a
projected model's index holds only its vectors' sign bits (binary_quantize) and a search re-ranks the nearest of
those by the stored vectors. Queries repeat the index's expression and inline the model key as a literal so the
planner can use it.
"""

import hashlib
import logging
import re
import time

from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from . import filters, replica
from .fields import half_text
from .models import Embedding

log = logging.getLogger(__name__)

# pgvector 0.8 builds HNSW indexes of halfvec up to 4,000 dimensions (vector: 2,000); wider ones are searched exactly.
HNSW_MAX_DIM = 4000
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
# At 1M projected vectors m=24 / ef_construction=96 stopped at recall@10 0.92 even with ef_search 800 (2026-11-30).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
# The copy space's index only has to find a search's few nearest: pgvector's default graph (m=16, ef_construction=64)
# returned 0.989 of the exact 5 nearest for near copies among 10,000 synthetic 256-d vectors, and cost 1.6 ms a row
# to insert against 7 to 14 ms with the graph above (8 / 32: 0.874, 0.6 ms); each indexed image pays it.
COPY_HNSW = (16, 64)
_COPY_PREFIX = "copy:"
# The binary index's graph and how many of its nearest (Hamming distance of the sign bits) a search re-ranks by the
# stored vectors. At 1M (docs/benchmarks.md): m=24 / ef_construction=128 with 800 candidates found recall@10 0.963 in
# 7.0 ms from 435 MB, 0.21x the vector HNSW's 2,026 MB (400: 0.901); m=32 0.964 in 8.3 ms from 524 MB (0.26x): the
# links are most of an entry; pgvector's default graph (16 / 64, 333 MB) 0.912 with 800.
BINARY_HNSW = (24, 128)
BINARY_CANDIDATES = 800


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


def binary_index_name(model_key):
    """The model's binary-quantized index (sign bits, Hamming HNSW), which takes index_name's place from
    IMGSEARCH_HNSW_BINARY_FROM vectors."""
    return "emb_bits_" + re.sub(r"[^a-z0-9]+", "_", model_key.lower())[:50]


def is_centred(model_key):
    """Whether the model's vectors have a zero mean, so that their signs carry information: a projection's and its copy
    space's (workers/projection.py subtracts the raw vectors' mean; search.versions keys them '<base>:p-<hash>').
    Raw CNN features are pooled after a ReLU: all their sign bits are ones, and a binary index of them finds nothing."""
    return is_copy_key(model_key) or ":p-" in model_key


def ensure_vector_index(model_key, dim, *, wait=True):
    """Create the model's HNSW cosine index once it holds IMGSEARCH_HNSW_MIN_VECTORS vectors, and from
    IMGSEARCH_HNSW_BINARY_FROM replace it by a binary-quantized one (a centred model's only); True if one exists.

    Below that an exact scan answers in a millisecond or two, and every vector written to an HNSW index costs
    its graph search (7 to 10 ms at 1280 dimensions on 2 cores: most of what storing an image cost), so small
    indexes go without; one built in bulk later is much cheaper than the same graph grown one insert at a
    time. Safe to call from many workers at once, and cheap once the index exists. With wait=False a build
    another session has under way is not waited for: False comes back at once.
    """
    _check(model_key, dim)
    with transaction.atomic(), connection.cursor() as cursor:
        binary = _index_due(cursor, model_key, dim)
        if binary is None:
            return _index_of(cursor, model_key)[0] is not None
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [model_key])
        else:
            cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [model_key])
            if not cursor.fetchone()[0]:
                return False
        if _index_due(cursor, model_key, dim) is None:  # another worker built it meanwhile
            return True
        if binary:
            cursor.execute(_index_statement(model_key, dim, binary=True).as_string(cursor.connection))
            cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name(model_key))))
        else:
            cursor.execute(_index_statement(model_key, dim, binary=False).as_string(cursor.connection))
    _indexes.pop(model_key, None)
    return True


def needs_vector_index(model_key, dim):
    """Whether ensure_vector_index would build an index of the model now (none yet and enough vectors, or a binary one
    now due)."""
    with connection.cursor() as cursor:
        return _index_due(cursor, model_key, dim) is not None


def _index_due(cursor, model_key, dim):
    """None if the model needs no new index; else whether the one due is binary-quantized."""
    kind, vectors = _index_of(cursor, model_key)
    if kind == "binary":
        return None
    if kind == "hnsw":
        return True if _binary_due(model_key, vectors) else None
    if not _enough_vectors(cursor, model_key, settings.IMGSEARCH_HNSW_MIN_VECTORS):
        return None
    binary = _binary_due(model_key, settings.IMGSEARCH_HNSW_BINARY_FROM) and _enough_vectors(
        cursor, model_key, settings.IMGSEARCH_HNSW_BINARY_FROM
    )
    return binary if binary or dim <= HNSW_MAX_DIM else None  # wider than HNSW takes: searched exactly


def _binary_due(model_key, vectors):
    wanted = settings.IMGSEARCH_HNSW_BINARY_FROM
    return bool(wanted) and vectors >= wanted and is_centred(model_key)


def _index_statement(model_key, dim, *, binary):
    """CREATE INDEX of the model's HNSW index: cosine over its halfvec vectors, or Hamming over their sign bits."""
    if binary:
        name, expression, graph = (
            binary_index_name(model_key),
            "(binary_quantize(vector)::bit({dim})) bit_hamming_ops",
            BINARY_HNSW,
        )
    else:
        graph = COPY_HNSW if is_copy_key(model_key) else (HNSW_M, HNSW_EF_CONSTRUCTION)
        name, expression = index_name(model_key), "(vector::halfvec({dim})) halfvec_cosine_ops"
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON search_embedding USING hnsw (" + expression + ")"
        " WITH (m = {m}, ef_construction = {ef_construction}) WHERE model_key = {key}"
    ).format(
        name=sql.Identifier(name),
        dim=sql.Literal(int(dim)),
        key=sql.Literal(model_key),
        m=sql.Literal(graph[0]),
        ef_construction=sql.Literal(graph[1]),
    )


def _index_of(cursor, model_key):
    """(which index the model's vectors have: "binary", "hnsw" or None, the vectors PostgreSQL counts in it)."""
    cursor.execute(
        "SELECT relname, reltuples FROM pg_class WHERE relkind = 'i' AND relname IN (%s, %s)",
        [index_name(model_key), binary_index_name(model_key)],
    )
    found = dict(cursor.fetchall())
    if binary_index_name(model_key) in found:
        return "binary", max(0, found[binary_index_name(model_key)])
    if index_name(model_key) in found:
        return "hnsw", max(0, found[index_name(model_key)])
    return None, 0


def _enough_vectors(cursor, model_key, wanted):
    cursor.execute(
        "SELECT count(*) FROM (SELECT 1 FROM search_embedding WHERE model_key = %s LIMIT %s) AS s", [model_key, wanted]
    )
    return cursor.fetchone()[0] >= wanted


def drop_vector_index(model_key):
    """Drop the model's index and its categories' (its vectors stay): for raw vectors only kept to learn projections
    from."""
    with connection.cursor() as cursor:
        for name in (index_name(model_key), binary_index_name(model_key)):
            cursor.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
    filters.drop(model_key)
    _indexes.pop(model_key, None)


# docs/benchmarks.md, m=32 / ef_construction=200: at 100k vectors ef_search 100 gave recall@10 0.978 in 1.8 ms
# (400: 1.000 in 8.5 ms); at 1M, 100 gave 0.946 and 400 0.961 in 3.5 ms. So a wider search once the graph is big.
LARGE_INDEX = 300_000
_indexes = {}  # model key -> (its index's kind, vectors in it, when looked up): they change slowly


def ef_search_for(vectors):
    """The hnsw.ef_search an index of this many vectors gets: 100, or 400 from LARGE_INDEX on."""
    return 400 if vectors >= LARGE_INDEX else 100


def index_of(model_key, max_age=60):
    """(the model's index kind: "binary", "hnsw" or None, its vectors), looked up at most every max_age seconds."""
    kind, vectors, seen = _indexes.get(model_key, (None, 0, -max_age))
    if time.monotonic() - seen >= max_age:
        with connection.cursor() as cursor:  # PostgreSQL's own estimate, kept by CREATE INDEX, VACUUM and ANALYZE
            kind, vectors = _index_of(cursor, model_key)
        _indexes[model_key] = (kind, vectors, time.monotonic())
    return kind, vectors


def auto_ef_search(model_key, max_age=60):
    """hnsw.ef_search for the model's index, by its size (ef_search_for)."""
    return ef_search_for(index_of(model_key, max_age)[1])


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
            " SELECT t.image_id, %s, t.vector::halfvec, now() FROM unnest(%s::bigint[], %s::text[]) AS t(image_id, vector)"
            " JOIN search_indexedimage AS i ON i.id = t.image_id"
            " ON CONFLICT (image_id, model_key) DO UPDATE SET vector = EXCLUDED.vector",
            [model_key, [int(i) for i in image_ids], [half_text(v) for v in vectors]],
        )


def nearest(vector, *, model_key, k, min_score=0.0, categories=()):
    """The k most similar images to `vector` as [(image_id, cosine similarity)], best first.

    With categories, only images carrying one of those tags count: where each has an index of its own
    (search/filters.py), through those; else where fewer than filter_exact_below(the index's vectors) images carry
    them, the answer is exact over those; else an iterative index scan goes on through the graph until k of them pass.
    Should an index scan come back short of k, the answer is exact.
    """
    dim, k = len(vector), int(k)
    _check(model_key, dim)
    kind, vectors = index_of(model_key)
    literal = half_text(vector)
    by_tag = bool(categories) and filters.covered(model_key, categories)

    def query(db):  # a read a replica may answer (search.replica)
        with transaction.atomic(using=db.alias), db.cursor() as cursor:
            if by_tag:
                cursor.execute("SET LOCAL enable_sort = off")  # the categories' index scans, not a sort of their rows
                cursor.execute(f"SET LOCAL hnsw.ef_search = {max(filters.TAG_EF_SEARCH, k)}")
                statement = filters.query(model_key, categories, _distance(dim))
                cursor.execute(statement.as_string(cursor.connection), filters.query_params(literal, categories, k))
                rows = cursor.fetchall()
                cursor.execute("SET LOCAL enable_sort = on")
            elif categories and filters.tagged_fewer(cursor, categories, filters.filter_exact_below(vectors)):
                rows = None  # few enough to read them all: the exact answer, below
            else:
                rows = _approximate(cursor, model_key, dim, literal, k, categories, kind, vectors)
            exact = bool(categories) and (rows is None or ((kind or by_tag) and len(rows) < k))
            if exact and rows is not None:  # docs/benchmarks.md counts how often: the "short" column of filtered k-NN
                log.info("k-NN: the index scan found %d of %d among %s; answering exactly", len(rows), k, categories)
            if exact:
                statement, tagged = _exact_query(model_key, dim, categories)
                cursor.execute(statement.as_string(cursor.connection), [literal, *tagged, k])
                rows = cursor.fetchall()
            return rows

    rows = replica.read(query)
    return [(image_id, float(score)) for image_id, score in rows if score >= min_score]


def _approximate(cursor, model_key, dim, literal, k, categories, kind, vectors):
    """The k nearest through the model's index (HNSW or binary; an iterative scan with categories), or exact without
    one: its rows."""
    where, params = filters.row_filter(categories)
    # With stale statistics (e.g. right after a bulk index) the planner may fetch every row of the model through a
    # btree and sort them; the HNSW scan needs no sort, so discourage sorting.
    cursor.execute("SET LOCAL enable_sort = off")
    if categories:
        cursor.execute(f"SET LOCAL hnsw.iterative_scan = {filters.ITERATIVE_SCAN}")
        cursor.execute(f"SET LOCAL hnsw.max_scan_tuples = {filters.ITERATIVE_MAX_SCAN_TUPLES}")
    if kind == "binary":
        # ef_search bounds how many candidates HNSW returns: all those re-ranked
        cursor.execute(f"SET LOCAL hnsw.ef_search = {max(BINARY_CANDIDATES, k)}")
        statement, args = _binary_query(model_key, dim, where), [literal, *params, literal, BINARY_CANDIDATES, k]
    else:
        ef_search = max(settings.IMGSEARCH_HNSW_EF_SEARCH or ef_search_for(vectors), k)
        cursor.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
        statement, args = _hnsw_query(model_key, dim, where), [literal, *params, k]
    cursor.execute(statement.as_string(cursor.connection), args)
    rows = cursor.fetchall()
    cursor.execute("SET LOCAL enable_sort = on")
    return rows


def _hnsw_query(model_key, dim, where):
    """The k nearest through the model's HNSW index. An iterative scan in
    relaxed_order may give its rows slightly out of order: they are sorted again, as pgvector's docs do.

    Parameters: the query, the filter's, k.
    """
    return sql.SQL(
        "WITH c AS MATERIALIZED (SELECT image_id, {distance} AS distance FROM search_embedding"
        " WHERE model_key = {key}{where} ORDER BY distance LIMIT %s)"
        " SELECT image_id, 1 - distance AS score FROM c ORDER BY distance"
    ).format(distance=_distance(dim), key=sql.Literal(model_key), where=where)


def _binary_query(model_key, dim, where):
    """The k nearest of the candidates nearest by the sign bits' Hamming distance, through the model's binary index
    re-ranked by the cosine of the stored vectors. Parameters: the query, the filter's, the query, candidates, k."""
    return sql.SQL(
        "SELECT image_id, 1 - ({distance}) AS score FROM (SELECT image_id, vector FROM search_embedding"
        " WHERE model_key = {key}{where}"
        " ORDER BY binary_quantize(vector)::bit({dim}) <~> binary_quantize(%s::halfvec({dim})) LIMIT %s) AS c"
        " ORDER BY score DESC LIMIT %s"
    ).format(distance=_distance(dim), dim=sql.Literal(dim), key=sql.Literal(model_key), where=where)


def _exact_query(model_key, dim, categories):
    """(the exact k nearest of the model's vectors, of images with one of the categories if any; its parameters but
    the query's and k). Each vector is compared in the scan that reads it, the tagged ids looked up once as an array;
    ordered by score, which no index gives. Parameters: the query, the categories', k."""
    where, params = sql.SQL(""), []
    if categories:
        where = sql.SQL(" AND image_id = ANY(ARRAY({}))").format(sql.SQL(filters.TAGGED))
        params = [list(categories), list(categories)]
    statement = sql.SQL(
        "SELECT image_id, 1 - ({distance}) AS score FROM search_embedding WHERE model_key = {key}{where}"
        " ORDER BY score DESC LIMIT %s"
    ).format(distance=_distance(dim), key=sql.Literal(model_key), where=where)
    return statement, params


def _distance(dim):
    """Cosine distance of a stored vector to the query (one %s parameter), cast so the model's HNSW index serves it."""
    return sql.SQL("(vector::halfvec({dim})) <=> %s::halfvec({dim})").format(dim=sql.Literal(dim))


def scores_of(vector, image_ids, *, model_key, categories=()):
    """{image_id: cosine similarity to `vector`} of those of the images with a vector of the model (and, with
    categories, one of them), as nearest() scores them."""
    if not image_ids:
        return {}
    dim = len(vector)
    _check(model_key, dim)
    where, params = filters.row_filter(categories)
    query = sql.SQL(
        "SELECT image_id, 1 - ({distance}) FROM search_embedding WHERE model_key = %s AND image_id = ANY(%s){filters}"
    ).format(distance=_distance(dim), filters=where)

    def scores(db):  # a read a replica may answer (search.replica)
        with db.cursor() as cursor:
            cursor.execute(query.as_string(cursor.connection), [half_text(vector), model_key, list(image_ids), *params])
            return {image_id: float(score) for image_id, score in cursor.fetchall()}

    return replica.read(scores)


def stored_vector(image_id, model_key):
    """An indexed image's vector of the model, or None."""
    return Embedding.objects.filter(image_id=image_id, model_key=model_key).values_list("vector", flat=True).first()


def has_vectors(model_key):
    """Whether any image has a vector of the model."""
    return Embedding.objects.filter(model_key=model_key).exists()
