"""k-NN over pgvector: ordering, filtering, and that the per-model HNSW index is the one used."""

import numpy as np
import pytest
from django.db import connection
from psycopg import sql

from search import knn
from search.models import Embedding, IndexedImage

pytestmark = pytest.mark.django_db


def add_images(vectors, model_key="test:v1"):
    ids = []
    for i, vector in enumerate(vectors):
        image = IndexedImage.objects.create(content_hash=f"{model_key}{i:060d}"[-64:], file=f"x/{i}.png", title=str(i))
        Embedding.objects.create(image=image, model_key=model_key, vector=vector)
        ids.append(image.id)
    return ids


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_nearest_returns_the_closest_first_with_cosine_scores():
    """Results are ordered by cosine similarity, best first, with the similarity as score."""
    rng = np.random.default_rng(0)
    vectors = [unit(rng.normal(size=64)) for _ in range(50)]
    ids = add_images(vectors)
    query = unit(vectors[7] + 0.05 * rng.normal(size=64))
    results = knn.nearest(query, model_key="test:v1", k=5)
    expected = np.argsort([-float(query @ v) for v in vectors])[:5]
    assert [image_id for image_id, _ in results] == [ids[i] for i in expected]
    assert results[0][1] == pytest.approx(float(query @ vectors[7]), abs=1e-5)


def test_min_score_and_k_bound_the_results():
    """Nothing under min_score comes back, and never more than k."""
    ids = add_images([unit([1, 0, 0]), unit([1, 1, 0]), unit([0, 0, 1])])
    results = knn.nearest(unit([1, 0, 0]), model_key="test:v1", k=3, min_score=0.5)
    assert [i for i, _ in results] == ids[:2]
    assert len(knn.nearest(unit([1, 0, 0]), model_key="test:v1", k=1)) == 1


def test_models_do_not_mix():
    """A search only sees embeddings of its own model, whatever their dimension."""
    add_images([unit([1, 0, 0])], model_key="a:1")
    add_images([unit([1, 0, 0, 0])], model_key="b:1")
    assert len(knn.nearest(unit([1, 0, 0]), model_key="a:1", k=10)) == 1
    assert knn.nearest(unit([1, 0, 0]), model_key="c:1", k=10) == []


def test_the_index_is_built_only_once_the_model_has_enough_vectors(settings):
    """Below IMGSEARCH_HNSW_MIN_VECTORS an exact scan answers; at it the HNSW index is built, once."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 30
    rng = np.random.default_rng(3)
    vectors = [unit(rng.normal(size=16)) for _ in range(29)]
    ids = add_images(vectors, model_key="grow:1")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert knn.ensure_vector_index("grow:1", 16) is False
    assert knn.nearest(vectors[4], model_key="grow:1", k=1)[0][0] == ids[4]
    extra = IndexedImage.objects.create(content_hash="grow-30", file="x/30.png", title="30")
    Embedding.objects.create(image=extra, model_key="grow:1", vector=unit(rng.normal(size=16)))
    assert knn.ensure_vector_index("grow:1", 16) is True
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", [knn.index_name("grow:1")])
        assert cursor.fetchone()[0] == 1
    knn.drop_vector_index("grow:1")
    assert knn.nearest(vectors[4], model_key="grow:1", k=1)[0][0] == ids[4]


def test_the_query_plan_uses_the_model_hnsw_index(settings):
    """With the model's index built, PostgreSQL answers the k-NN query from it, not by a scan."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 100
    rng = np.random.default_rng(1)
    add_images([unit(rng.normal(size=32)) for _ in range(200)], model_key="plan:1")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction holds deferred FK checks
    assert knn.ensure_vector_index("plan:1", 32)
    assert knn.ensure_vector_index("plan:1", 32)  # idempotent
    assert explain(knn._hnsw_query("plan:1", 32, sql.SQL("")), [unit(rng.normal(size=32)), 5], knn.index_name("plan:1"))


def explain(statement, args, name):
    """Whether PostgreSQL's plan for one of search.knn's statements (args: numpy vectors, as literals, and numbers)
    goes through the index `name`."""
    args = [knn.vector_literal(a) if isinstance(a, np.ndarray) else a for a in args]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE search_embedding")
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables would otherwise be scanned
        cursor.execute("SET LOCAL enable_sort = off")  # as search.knn.nearest does
        cursor.execute("EXPLAIN " + statement.as_string(cursor.connection), args)
        return name in "\n".join(row[0] for row in cursor.fetchall())


def test_vectors_wider_than_hnsw_allows_are_searched_exactly():
    """Halfvec HNSW takes up to 4,000 dimensions (resnet50's 2,048 get an index); wider ones are searched exactly."""
    rng = np.random.default_rng(2)
    vectors = [unit(rng.normal(size=4096)) for _ in range(5)]
    ids = add_images(vectors, model_key="wide:1")
    assert knn.ensure_vector_index("wide:1", 4096) is False
    assert knn.nearest(vectors[3], model_key="wide:1", k=1)[0][0] == ids[3]


def test_2048_dimensions_get_an_hnsw_index(settings):
    """resnet50's 2,048 dimensions, over pgvector's 2,000 for vector, fit halfvec's HNSW."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 5
    rng = np.random.default_rng(5)
    vectors = [unit(rng.normal(size=2048)) for _ in range(8)]
    ids = add_images(vectors, model_key="r50:1")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert knn.ensure_vector_index("r50:1", 2048) is True
    assert knn.nearest(vectors[6], model_key="r50:1", k=1)[0][0] == ids[6]


def test_unsafe_model_keys_are_refused():
    """Model keys are inlined as SQL literals, so anything but a plain key is refused."""
    with pytest.raises(ValueError):
        knn.nearest(unit([1, 0]), model_key="x'; DROP TABLE search_embedding; --", k=1)


def test_ef_search_widens_once_the_index_is_large(settings, monkeypatch):
    """0 (the default) picks 100 for a small index and 400 for a large one; a configured value wins."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 10
    rng = np.random.default_rng(4)
    add_images([unit(rng.normal(size=8)) for _ in range(20)], model_key="size:1")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert knn.ensure_vector_index("size:1", 8)
    assert knn.auto_ef_search("size:1", max_age=0) == 100
    monkeypatch.setattr(knn, "LARGE_INDEX", 15)
    assert knn.auto_ef_search("size:1", max_age=0) == 400
    assert knn.auto_ef_search("missing:1", max_age=0) == 100  # no index yet


def test_vectors_upsert_stores_the_halves_numpy_rounds_to_and_replaces_old_ones():
    """The pipeline's fast insert stores each value as the float16 numpy rounds it to, and a second store replaces
    the first."""
    rng = np.random.default_rng(11)
    images = [IndexedImage.objects.create(content_hash=f"{i:064d}", file=f"x/{i}.png", title=str(i)) for i in range(3)]
    ids = [image.id for image in images]
    first = rng.normal(size=(3, 1280)).astype(np.float32) * np.float32(1e-2)
    first[0, :4] = [np.float32(1 / 3), np.float32(-7.1e-6), np.float32(60000.5), 0.0]  # a subnormal half, a big one
    knn.vectors_upsert("fast:1", ids, first)
    stored = dict(Embedding.objects.filter(model_key="fast:1").values_list("image_id", "vector"))
    for i, image_id in enumerate(ids):
        assert np.array_equal(np.asarray(stored[image_id], np.float16), first[i].astype(np.float16))
    second = unit(rng.normal(size=1280))[None, :]
    knn.vectors_upsert("fast:1", ids[:1], second)
    assert Embedding.objects.filter(model_key="fast:1").count() == 3
    assert np.array_equal(
        np.asarray(Embedding.objects.get(model_key="fast:1", image_id=ids[0]).vector, np.float16),
        second[0].astype(np.float16),
    )
    knn.vectors_upsert("fast:1", [], np.zeros((0, 1280), np.float32))  # an empty batch writes nothing
    knn.vectors_upsert("fast:1", [ids[1], 10**12], np.concatenate([second, second]))  # an image deleted meanwhile
    assert not Embedding.objects.filter(image_id=10**12).exists()
    with pytest.raises(ValueError):
        knn.vectors_upsert("bad key;", ids[:1], second)


def test_vectors_written_through_the_orm_and_in_bulk_read_back_as_numpy_halves():
    """search.fields.half_text, which the vector columns and vectors_upsert write with, gives PostgreSQL the very halves
    numpy rounds each float32 to (5 digits are enough), through the ORM and in bulk alike."""
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(size=1914), [6.1e-5, -65504, 65504, 1.0009766, -0.0, 1 / 3]])
    vector = values.astype(np.float32)
    image = IndexedImage.objects.create(content_hash="f" * 64, file="x/f.png")
    Embedding.objects.create(image=image, model_key="exact:1", vector=vector)
    knn.vectors_upsert("exact:2", [image.id], vector[None, :])
    for key in ("exact:1", "exact:2"):
        stored = np.asarray(Embedding.objects.get(image=image, model_key=key).vector, np.float16)
        assert stored.tobytes() == vector.astype(np.float16).tobytes()
