"""k-NN with pgvector 0.8: category filters through iterative index scans (exact when they fall short), the
binary-quantized index of large projected models, and the migration that stores vectors as halfvec."""

import importlib

import numpy as np
import pytest
from django.db import connection

from search import filters, knn
from search.models import Embedding, IndexedImage

pytestmark = pytest.mark.django_db

halfvec_migration = importlib.import_module("search.migrations.0013_halfvec_vectors")


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def add_images(vectors, model_key, tags=None):
    ids = []
    for i, vector in enumerate(vectors):
        image = IndexedImage.objects.create(
            content_hash=f"{model_key}{i:060d}"[-64:],
            file=f"x/{i}.png",
            title=str(i),
            user_tags=tags[i] if tags else [],
        )
        Embedding.objects.create(image=image, model_key=model_key, vector=vector)
        ids.append(image.id)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction holds deferred FK checks
        cursor.execute("ANALYZE search_embedding")
    return ids


def exact(vectors, ids, query, k, among=None):
    """The exact k nearest ids by cosine of the halves the database holds (numpy)."""
    halves = np.asarray(vectors, np.float16).astype(np.float32)
    sims = halves @ np.asarray(query, np.float16).astype(np.float32)
    order = [i for i in np.argsort(-sims) if among is None or i in among]
    return [ids[i] for i in order[:k]]


@pytest.fixture
def tagged(settings):
    """300 images in an HNSW index, every fifth tagged "cat"."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 100
    rng = np.random.default_rng(7)
    vectors = unit(rng.normal(size=(300, 24)))
    tags = [["cat"] if i % 5 == 0 else ["dog"] for i in range(300)]
    ids = add_images(vectors, "filter:1", tags)
    assert knn.ensure_vector_index("filter:1", 24)
    return vectors, ids, {i for i in range(300) if i % 5 == 0}, rng


def test_a_category_filter_on_many_images_goes_through_an_iterative_scan_and_finds_k(tagged, monkeypatch):
    """Past filter_exact_below() tagged images the iterative scan answers: k results, all tagged, the exact ones."""
    vectors, ids, cats, rng = tagged
    monkeypatch.setattr(filters, "filter_exact_below", lambda vectors: 10)
    executed = []
    monkeypatch.setattr(knn, "_exact_query", lambda *a: executed.append(a) or pytest.fail("answered exactly"))
    for _ in range(5):
        query = unit(rng.normal(size=24))
        found = knn.nearest(query, model_key="filter:1", k=8, min_score=-1, categories=["cat"])
        assert [i for i, _ in found] == exact(vectors, ids, query, 8, cats)
    assert not executed


def test_an_iterative_scan_that_stops_short_is_answered_exactly(tagged, monkeypatch):
    """When hnsw.max_scan_tuples stops the scan before k tagged images are found, the exact answer comes back."""
    vectors, ids, cats, rng = tagged
    monkeypatch.setattr(filters, "filter_exact_below", lambda vectors: 10)
    monkeypatch.setattr(filters, "ITERATIVE_MAX_SCAN_TUPLES", 1)
    query = unit(rng.normal(size=24))
    found = knn.nearest(query, model_key="filter:1", k=30, min_score=-1, categories=["cat"])
    assert [i for i, _ in found] == exact(vectors, ids, query, 30, cats)


def test_a_rare_category_is_answered_exactly_over_its_images(tagged):
    """Below filter_exact_below() tagged images (346 of 300 vectors) the answer is exact over them, however few: all of
    them if fewer than k."""
    vectors, ids, cats, rng = tagged
    query = unit(rng.normal(size=24))
    found = knn.nearest(query, model_key="filter:1", k=100, min_score=-1, categories=["cat"])
    assert [i for i, _ in found] == exact(vectors, ids, query, 100, cats)
    assert len(found) == 60
    assert knn.nearest(query, model_key="filter:1", k=5, categories=["nobody"]) == []


def test_the_exact_answer_takes_more_tagged_images_as_the_index_grows_as_its_square_root():
    """An exact answer costs each tagged image, an iterative scan about n / tagged graph nodes a result: they cross
    where the tagged count grows as sqrt(n)."""
    assert filters.filter_exact_below(1_000_000) == 20_000
    assert filters.filter_exact_below(100_000) == 6_324
    assert filters.filter_exact_below(4 * 1_000_000) == 2 * filters.filter_exact_below(1_000_000)
    assert filters.filter_exact_below(0) == 0


@pytest.fixture
def projected(settings):
    """400 centred vectors (as a projection's are) of a projected model's key, past IMGSEARCH_HNSW_BINARY_FROM."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 100
    settings.IMGSEARCH_HNSW_BINARY_FROM = 300
    rng = np.random.default_rng(9)
    vectors = unit(rng.normal(size=(400, 64)))
    return vectors, add_images(vectors, "mobilenet:p-0123456789"), rng


def test_a_projected_model_past_binary_from_gets_a_binary_index_instead_of_hnsw(projected):
    """The sign bits' Hamming index replaces the halfvec HNSW one; searches re-rank its candidates by the stored
    vectors, so the scores are cosines and the order theirs."""
    vectors, ids, rng = projected
    key = "mobilenet:p-0123456789"
    assert knn.ensure_vector_index(key, 64)
    assert knn.index_of(key, max_age=0)[0] == "binary"
    assert not knn.needs_vector_index(key, 64)
    query = unit(vectors[17] + 0.1 * rng.normal(size=64))
    found = knn.nearest(query, model_key=key, k=10)
    assert found[0][0] == ids[17]
    assert [i for i, _ in found] == exact(vectors, ids, query, 10)  # 400 candidates: all of them here
    halves = np.asarray(vectors[17], np.float16).astype(np.float32)
    assert found[0][1] == pytest.approx(float(halves @ np.asarray(query, np.float16).astype(np.float32)), abs=2e-3)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [knn.index_name(key)])
        assert cursor.fetchone()[0] == 0  # the HNSW index is gone


def test_the_binary_query_goes_through_the_binary_index(projected):
    """PostgreSQL answers search.knn's binary statement from the model's Hamming index."""
    from psycopg import sql

    from tests.test_knn import explain

    vectors, ids, rng = projected
    key = "mobilenet:p-0123456789"
    assert knn.ensure_vector_index(key, 64)
    statement = knn._binary_query(key, 64, sql.SQL(""))
    assert explain(statement, [vectors[0], vectors[0], 40, 10], knn.binary_index_name(key))


def test_an_hnsw_index_turns_binary_once_the_model_grows_past_binary_from(projected, settings):
    """A model indexed with HNSW gets its binary index when its HNSW index counts IMGSEARCH_HNSW_BINARY_FROM vectors."""
    vectors, ids, rng = projected
    key = "mobilenet:p-0123456789"
    settings.IMGSEARCH_HNSW_BINARY_FROM = 1000
    assert knn.ensure_vector_index(key, 64)
    assert knn.index_of(key, max_age=0)[0] == "hnsw"
    settings.IMGSEARCH_HNSW_BINARY_FROM = 400
    assert knn.needs_vector_index(key, 64)
    assert knn.ensure_vector_index(key, 64)
    assert knn.index_of(key, max_age=0)[0] == "binary"
    assert knn.nearest(vectors[3], model_key=key, k=1)[0][0] == ids[3]


def test_raw_vectors_never_get_a_binary_index(settings):
    """Raw CNN features are non-negative (sign bits all ones): their model keeps its HNSW index at any size."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 10
    settings.IMGSEARCH_HNSW_BINARY_FROM = 10
    rng = np.random.default_rng(4)
    add_images(unit(np.abs(rng.normal(size=(20, 16)))), "mobilenet:raw")
    assert knn.ensure_vector_index("mobilenet:raw", 16)
    assert knn.index_of("mobilenet:raw", max_age=0)[0] == "hnsw"
    assert knn.is_centred("copy:0123456789abcdef") and knn.is_centred("m:p-0123456789")


def test_the_migration_converts_rows_and_indexes_to_halfvec_and_back():
    """Migration 0013 on a table with rows and HNSW indexes: every vector kept (to the nearest half), the indexes
    rebuilt over halfvec with the same graph, and back to vector when reversed."""
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(30, 16)))
    ids = add_images(vectors, "mig:1")
    editor = type("Editor", (), {"connection": connection})()
    halfvec_migration.convert(editor, half=False)  # as before the migration: vector columns and indexes
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE INDEX emb_hnsw_mig_1 ON search_embedding USING hnsw ((vector::vector(16)) vector_cosine_ops)"
            " WITH (m = 32, ef_construction = 200) WHERE model_key = 'mig:1'"
        )
    halfvec_migration.convert(editor, half=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'emb_hnsw_mig_1'")
        definition = cursor.fetchone()[0]
        cursor.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = 'words'")
        assert cursor.fetchone()[0] == "halfvec(1920)"
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'localfeatures_signature_hnsw'")
        assert "halfvec_ip_ops" in cursor.fetchone()[0]
    assert "halfvec(16)" in definition and "halfvec_cosine_ops" in definition and "ef_construction='200'" in definition
    stored = dict(Embedding.objects.filter(model_key="mig:1").values_list("image_id", "vector"))
    assert all(np.array_equal(np.asarray(stored[i], np.float16), v.astype(np.float16)) for i, v in zip(ids, vectors))
    knn._indexes.clear()
    assert knn.nearest(vectors[5], model_key="mig:1", k=1)[0][0] == ids[5]
