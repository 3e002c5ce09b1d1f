"""Category filters through a category's own index (search/filters.py): the vector rows carry their images' tags
(migration 0016's triggers), common categories get a partial HNSW index each, and a filtered search goes through
them."""

import importlib

import numpy as np
import pytest
from django.db import connection

from search import filters, indexing, knn, versions
from search.models import Embedding, IndexedImage, ModelVersion

pytestmark = pytest.mark.django_db

tags_migration = importlib.import_module("search.migrations.0016_embedding_tags")
KEY = "cats:1"


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def image(i, user_tags=(), auto_tags=()):
    return IndexedImage.objects.create(
        content_hash=f"{i:064d}", file=f"x/{i}.png", title=str(i), user_tags=list(user_tags), auto_tags=list(auto_tags)
    )


def row_tags(image_id, model_key=KEY):
    return Embedding.objects.get(image_id=image_id, model_key=model_key).tags


def exact(vectors, ids, query, k, among):
    """The exact k nearest ids by cosine of the halves the database holds, among the indexes `among`."""
    sims = np.asarray(vectors, np.float16).astype(np.float32) @ np.asarray(query, np.float16).astype(np.float32)
    return [ids[i] for i in np.argsort(-sims) if i in among][:k]


def test_a_vector_row_carries_its_images_tags_whichever_way_either_is_written():
    """Inserted through the ORM or the indexing pipeline's bulk SQL, a row takes the image's tags; the image's tags
    changed by save(), update() or the pipeline's bulk UPDATE reach its rows, of every model."""
    first, second = image(1, ["beach"], ["seashore"]), image(2)
    Embedding.objects.create(image=first, model_key=KEY, vector=unit([1, 0, 0]))
    knn.vectors_upsert(KEY, [second.id], unit([[0, 1, 0]]))
    knn.vectors_upsert("other:1", [first.id], unit([[0, 0, 1]]))
    assert row_tags(first.id) == ["beach", "seashore"] and row_tags(first.id, "other:1") == ["beach", "seashore"]
    assert row_tags(second.id) == []

    first.user_tags = ["dunes"]
    first.save()
    assert row_tags(first.id) == ["dunes", "seashore"] and row_tags(first.id, "other:1") == ["dunes", "seashore"]
    IndexedImage.objects.filter(id=second.id).update(user_tags=["cat"])
    assert row_tags(second.id) == ["cat"]
    indexing.images_ready([(second.id, "", "tabby", 0.9, "tabby")], first.created_at)
    assert row_tags(second.id) == ["cat", "tabby"]
    knn.vectors_upsert(KEY, [second.id], unit([[0, 1, 1]]))  # a new vector keeps the tags
    assert row_tags(second.id) == ["cat", "tabby"]


def test_the_migration_gives_existing_rows_their_tags_and_keeps_their_hnsw_indexes():
    """Rows there before migration 0016 get their images' tags; the table's HNSW indexes, dropped for the update,
    are there again with the same definition."""
    rows = [image(i, [f"t{i % 2}"]) for i in range(3)]
    knn.vectors_upsert(KEY, [r.id for r in rows], unit(np.eye(3)))
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(knn._index_statement(KEY, 3, binary=False).as_string(cursor.connection))
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [knn.index_name(KEY)])
        before = cursor.fetchone()
        cursor.execute("UPDATE search_embedding SET tags = '{}'")  # as the column was added
    with connection.schema_editor() as editor:
        tags_migration.fill(None, editor)
    assert [row_tags(r.id) for r in rows] == [["t0"], ["t1"], ["t0"]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [knn.index_name(KEY)])
        assert cursor.fetchone() == before


@pytest.fixture
def categories(settings):
    """300 images in an HNSW index: "cat" on every fifth (60), "dog" on the others (240), "rare" on 10 of the cats;
    a category is common from 50 images."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 50
    rng = np.random.default_rng(11)
    vectors = unit(rng.normal(size=(300, 24)))
    tags = [(["cat"] if i % 5 == 0 else ["dog"]) + (["rare"] if i % 30 == 0 else []) for i in range(300)]
    ids = [image(i, tags[i]).id for i in range(300)]
    knn.vectors_upsert(KEY, ids, vectors)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction holds deferred FK checks
        cursor.execute("ANALYZE search_embedding")
    assert knn.ensure_vector_index(KEY, 24)
    among = {name: {i for i in range(300) if name in tags[i]} for name in ("cat", "dog", "rare")}
    return vectors, ids, among, rng


def index_names():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'emb_tag_%%'")
        return {name for (name,) in cursor.fetchall()}


def test_each_common_category_gets_an_index_of_its_own_once(categories):
    """refresh() builds the indexes of the categories with IMGSEARCH_HNSW_MIN_VECTORS vectors or more, the commonest
    first, and none again; a rare category has none."""
    assert filters.refresh(KEY, 24) == ["dog", "cat"]
    assert index_names() == {filters.index_name(KEY, "dog"), filters.index_name(KEY, "cat")}
    assert filters.covered(KEY, ["cat"]) and filters.covered(KEY, ["cat", "dog"])
    assert not filters.covered(KEY, ["rare"]) and not filters.covered(KEY, ["cat", "rare"])
    assert filters.refresh(KEY, 24) == []


def test_a_search_in_indexed_categories_goes_through_their_indexes_and_finds_the_exact_answer(categories, monkeypatch):
    """With every category indexed, nearest() asks neither the tag count nor the exact answer; each category's query
    is an index scan of its own index; the answer over one category or two is the exact one."""
    vectors, ids, among, rng = categories
    filters.refresh(KEY, 24)
    monkeypatch.setattr(filters, "tagged_fewer", lambda *a: pytest.fail("counted the tagged images"))
    monkeypatch.setattr(knn, "_exact_query", lambda *a: pytest.fail("answered exactly"))
    for _ in range(5):
        query = unit(rng.normal(size=24))
        found = knn.nearest(query, model_key=KEY, k=8, min_score=-1, categories=["cat"])
        assert [i for i, _ in found] == exact(vectors, ids, query, 8, among["cat"])
        found = knn.nearest(query, model_key=KEY, k=8, min_score=-1, categories=["cat", "dog"])
        assert [i for i, _ in found] == exact(vectors, ids, query, 8, among["cat"] | among["dog"])
    statement = filters.query(KEY, ["cat", "dog"], knn._distance(24))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")  # as nearest() does
        literal = "[" + ",".join(["0.2"] * 24) + "]"
        cursor.execute(
            "EXPLAIN " + statement.as_string(cursor.connection), filters.query_params(literal, ["c", "d"], 8)
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {filters.index_name(KEY, 'cat')}" in plan
    assert f"Index Scan using {filters.index_name(KEY, 'dog')}" in plan


def test_a_category_without_an_index_is_answered_as_before(categories):
    """A rare category (no index of its own), alone or beside an indexed one, is answered the other ways, exactly."""
    vectors, ids, among, rng = categories
    filters.refresh(KEY, 24)
    query = unit(rng.normal(size=24))
    found = knn.nearest(query, model_key=KEY, k=20, min_score=-1, categories=["rare"])
    assert [i for i, _ in found] == exact(vectors, ids, query, 20, among["rare"])
    found = knn.nearest(query, model_key=KEY, k=8, min_score=-1, categories=["rare", "cat"])
    assert [i for i, _ in found] == exact(vectors, ids, query, 8, among["cat"])


def test_an_image_tagged_later_is_found_through_its_categorys_index(categories):
    """The index follows the rows: an image that takes the category after the build is found under it."""
    vectors, ids, among, rng = categories
    filters.refresh(KEY, 24)
    dog = next(i for i in range(300) if i not in among["cat"])
    IndexedImage.objects.filter(id=ids[dog]).update(user_tags=["dog", "cat"])
    found = knn.nearest(vectors[dog], model_key=KEY, k=1, categories=["cat"])
    assert found[0][0] == ids[dog]


def test_a_failed_build_is_built_again_and_dropping_the_models_index_drops_its_categories(categories):
    """An index left invalid (a concurrent build that failed) does not count and is built again; drop_vector_index
    takes the categories' indexes with the model's."""
    filters.refresh(KEY, 24)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [filters.index_name(KEY, "cat")]
        )
    filters._valid.clear()
    assert not filters.covered(KEY, ["cat"])
    assert filters.refresh(KEY, 24) == ["cat"]
    assert filters.covered(KEY, ["cat"])
    knn.drop_vector_index(KEY)
    assert index_names() == set()


def test_the_active_models_categories_are_refreshed_where_it_has_an_index(categories):
    """versions.tag_indexes_refresh() builds for the active model once it has an HNSW index of its own."""
    ModelVersion.objects.create(key=KEY, arch="test", weights="x", dim=24, active=True)
    assert versions.tag_indexes_refresh() == {KEY: ["dog", "cat"]}
    knn.drop_vector_index(KEY)
    assert versions.tag_indexes_refresh() == {}


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_index_is_built_concurrently(settings):
    """As the worker runs it (autocommit): CREATE INDEX CONCURRENTLY, valid and used."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 20
    rng = np.random.default_rng(3)
    vectors = unit(rng.normal(size=(40, 8)))
    ids = [image(i, ["cat"] if i % 2 else ["dog"]).id for i in range(40)]
    knn.vectors_upsert(KEY, ids, vectors)
    assert sorted(filters.refresh(KEY, 8)) == ["cat", "dog"]
    assert filters.covered(KEY, ["cat", "dog"])
    query = unit(rng.normal(size=8))
    found = knn.nearest(query, model_key=KEY, k=5, min_score=-1, categories=["cat"])
    assert [i for i, _ in found] == exact(vectors, ids, query, 5, {i for i in range(40) if i % 2})
    knn.drop_vector_index(KEY)
