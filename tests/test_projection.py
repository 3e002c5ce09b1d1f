"""Projections learned from the index (workers/projection.py): fitting, storing, and applying them blue/green."""

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from search import knn, projections, versions
from search.models import Embedding, IndexedImage, ModelVersion, ReindexRun
from workers import learning, projection
from workers.indexing import store
from workers.ranking import tunables
from workers.spaces import Space

from .conftest import edited_copy, wait_for_job


def hidden_classes(n_per_class=40, classes=4, dim=64, seed=0):
    """Vectors whose class shows only in low-variance directions, under large class-blind variation."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    x = rng.normal(size=(len(labels), dim)) * np.r_[np.full(8, 5.0), np.full(dim - 8, 0.3)]
    x[np.arange(len(labels)), 10 + labels] += 1.5  # the class signal: small next to the first eight directions
    return x.astype(np.float32), labels


def precision_at_5(vectors, labels):
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :5]
    return float((labels[top] == labels[:, None]).mean())


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_tags_teach_the_projection_what_the_raw_vectors_hide():
    """Learned from tags, the LDA part separates what raw cosine mixes up, and lifts the blended vector too."""
    x, labels = hidden_classes()
    tags = [[f"class{c}"] for c in labels]
    learned, info = projection.fit(x, tags, pca_dims=16, lda_dims=8, min_images=10)
    assert info["tags"] == ["class0", "class1", "class2", "class3"] and info["lda_dims"] == 8
    raw, blended = precision_at_5(unit(x), labels), precision_at_5(learned.apply(x), labels)
    assert raw < 0.35  # four classes: 0.25 is chance
    assert precision_at_5(unit((x - learned.mean) @ learned.lda), labels) > 0.9
    assert blended > raw + 0.2  # weighted by beta, so untagged kinds of image keep their neighbours


def test_a_projection_without_usable_tags_is_plain_pca_and_keeps_unit_length():
    """No tag on 10 images (or a tag on all of them) leaves the LDA part out; vectors stay unit length."""
    x, _ = hidden_classes()
    tags = [["everything", "rare"] if i < 3 else ["everything"] for i in range(len(x))]
    learned, info = projection.fit(x, tags, pca_dims=16, min_images=10)
    assert learned.lda is None and info["tags"] == [] and learned.dim == 16
    out = learned.apply(x)
    assert out.shape == (len(x), 16) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_a_projection_round_trips_through_its_stored_bytes():
    """dumps/loads give the same vectors; a one-row input gives one row; a wrong width is refused."""
    x, labels = hidden_classes()
    learned, _ = projection.fit(x, [[str(c)] for c in labels], pca_dims=16, lda_dims=8, min_images=10)
    back = projection.Projection.loads(learned.dumps())
    assert np.array_equal(back.apply(x), learned.apply(x)) and back.dim == learned.dim == 24
    assert back.apply(x[0]).shape == (1, 24)
    with pytest.raises(ValueError, match="64-dimensional"):
        back.apply(np.ones(5))


EDIT_NOISE = np.r_[np.full(8, 4.0), np.full(56, 0.1)]  # what an edit changes: mostly directions 0-7


def edited(x, rng):
    """Edited copies of 64-dimensional vectors: large noise in directions 0-7, small elsewhere."""
    return (x + rng.normal(size=x.shape) * EDIT_NOISE).astype(np.float32)


def test_edited_copies_teach_a_copy_space_where_copies_find_their_originals():
    """The copy space whitens away what edits change: fresh copies of other images find their originals there far
    more often than through the PCA part, whose main axes are the edit-prone directions; it round-trips."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 64)) * np.r_[np.full(8, 3.0), np.full(56, 1.0)]).astype(np.float32)
    learned_from = rng.choice(200, 100, replace=False)
    learned, info = projection.fit(
        x, [[]] * len(x), copies=(x[learned_from], edited(x[learned_from], rng)), pca_dims=16, min_images=10
    )
    assert info["copy_pairs"] == 100 and info["copy_dims"] == 64 and learned.copy.shape == (64, 64)
    queries = edited(x, rng)  # new edits, of every image
    pca_hits = (np.argmax(learned.apply(queries) @ learned.apply(x).T, axis=1) == np.arange(200)).mean()
    copy_hits = (np.argmax(learned.copy_vectors(queries) @ learned.copy_vectors(x).T, axis=1) == np.arange(200)).mean()
    assert copy_hits > 0.9 and copy_hits > pca_hits + 0.3
    back = projection.Projection.loads(learned.dumps())
    assert np.array_equal(back.copy_vectors(x), learned.copy_vectors(x)) and back.dim == learned.dim == 16
    assert np.allclose(np.linalg.norm(back.copy_vectors(x[0]), axis=1), 1, atol=1e-5)
    plain, info = projection.fit(x, [[]] * len(x), pca_dims=16, min_images=10)
    assert plain.copy is None and plain.copy_vectors(x) is None and info["copy_pairs"] == info["copy_dims"] == 0
    assert projection.Projection.loads(plain.dumps()).copy is None


def test_too_few_images_are_refused_with_a_reason():
    """Below the minimum the fit raises ProjectionError saying how many it has and needs."""
    x, labels = hidden_classes(n_per_class=5)
    with pytest.raises(projection.ProjectionError, match="20 embedded images; a projection is learned from 100"):
        projection.fit(x, [[]] * len(x), min_images=100)


def test_usable_tags_leave_out_rare_and_all_covering_tags():
    """A tag needs MIN_IMAGES_PER_TAG images and may cover at most half of the tagged ones."""
    tags = [["all", "common"]] * 12 + [["all", "other"]] * 12 + [["all", "rare"]] * 3 + [[]] * 10
    assert projection.usable_tags(tags) == {"common", "other"}


# --- Learning in the index, applied by a reindex run -----------------------------------------------


def raw_index(count, dim=32, key="test:raw", start=0):
    """Ready images with raw vectors of an active model `key`, tagged in two groups (start > 0: more of them)."""
    if not start:
        ModelVersion.objects.create(key=key, arch="mobilenet_v2", weights="x", dim=dim, active=True)
    rng = np.random.default_rng(1 + start)
    for i in range(start, start + count):
        image = IndexedImage.objects.create(
            content_hash=f"h{i}",
            file=f"x/{i}.png",
            title=str(i),
            status=IndexedImage.Status.READY,
            user_tags=["cats" if i % 2 else "dogs"],
        )
        Embedding.objects.create(image=image, model_key=key, vector=unit(rng.normal(size=(1, dim)))[0])


@pytest.mark.django_db
def test_learning_stores_the_projection_with_a_new_model_version_and_starts_its_run(settings):
    """The projection is kept with a version based on the active one; a run to it is queued."""
    settings.IMGSEARCH_PROJECTION_MIN_IMAGES = 30
    raw_index(40)
    run, message = learning.projection_learn(copy_pairs=None)
    assert run is not None and "Learned a projection from 40 images" in message
    version = ModelVersion.objects.get(base_key="test:raw")
    assert version.key.startswith("test:raw:p-") and run.model_key == version.key and run.status == "queued"
    assert (
        version.projection_info["tags"] == ["cats", "dogs"] and version.dim == version.projection_info["pca_dims"] + 32
    )
    learned = projection.Projection.loads(version.projection)
    assert learned.input_dim == 32 and learned.dim == version.dim
    # Another run is under way: learning again is refused, with the reason.
    assert learning.projection_learn(copy_pairs=None) == (
        None,
        f"Reindex run {run.id} is still queued; wait for it or cancel it first.",
    )


@pytest.mark.django_db
def test_learning_with_edited_copies_adds_a_copy_space(settings):
    """copy_pairs is asked for the base version's (originals, copies) and the projection keeps a copy space learned
    from them; the message says so. Too small an index never asks for copies (they cost a model and a minute)."""
    settings.IMGSEARCH_PROJECTION_MIN_IMAGES = 30
    raw_index(20)
    asked = []

    def copy_pairs(base):
        asked.append(base.key)
        vectors = np.stack(list(Embedding.objects.filter(model_key=base.key).values_list("vector", flat=True)[:25]))
        return vectors, unit(vectors + np.random.default_rng(2).normal(size=vectors.shape) * 0.1)

    assert learning.projection_learn(copy_pairs=copy_pairs) == (
        None,
        "20 embedded images; a projection is learned from 30 or more.",
    )
    assert asked == []
    raw_index(20, start=20)
    run, message = learning.projection_learn(copy_pairs=copy_pairs)
    assert asked == ["test:raw"] and "a copy space from 25 edited copies" in message
    version = ModelVersion.objects.get(key=run.model_key)
    assert version.projection_info["copy_pairs"] == 25 and projection.Projection.loads(
        version.projection
    ).copy.shape == (32, 32)


def copy_space_index(count=40):
    """(Space of a projection with a copy space over raw_index(count)'s vectors, image ids, their raw vectors)."""
    from types import SimpleNamespace

    raw_index(count)
    rows = dict(Embedding.objects.filter(model_key="test:raw").values_list("image_id", "vector"))
    ids = sorted(rows)
    x = np.stack([rows[i] for i in ids])
    learned, _ = projection.fit(x, [[]] * len(x), copies=(x[:20], unit(x[:20] + 0.05)), min_images=10)
    return Space("test:raw:p-1", SimpleNamespace(key="test:raw"), learned), ids, x


def lead_scores(space, raw, candidates):
    """The copy space's stage over a table of `candidates` [(image_id, score)] for a query with this raw vector:
    each row's lead score, or None where the stage gave none."""
    from types import SimpleNamespace

    from workers.ranking import copy_space
    from workers.ranking.candidates import GLOBAL, Candidates

    query = SimpleNamespace(
        space=space,
        copy_vector=None if space.copy_key is None or raw is None else space.projection.copy_vectors(raw)[0],
    )
    table = Candidates(query)
    for image_id, score in candidates:
        table.add(image_id, score, GLOBAL)
    copy_space.lead_scores(query, table)
    return [row.lead_score for row in table]


@pytest.mark.django_db
def test_searches_pick_the_lead_on_the_copy_space_likeness_from_the_stored_copy_vectors():
    """The lead scores: each candidate's cosine to the query in the copy space, from its stored copy-space vector,
    else (a version applied before they were stored) from its raw vector; -1 for one with neither; none without a
    copy space or the query's raw vector."""
    from types import SimpleNamespace

    space, ids, x = copy_space_index()
    query = x[3] + 0.01
    expected = space.projection.copy_vectors(x[[3, 7]]) @ space.projection.copy_vectors(query)[0]
    candidates = [(ids[3], 0.5), (ids[7], 0.9), (10**9, 0.99)]
    scores = lead_scores(space, query, candidates)  # no copy-space vectors stored yet: from the raw ones
    assert np.allclose(scores[:2], expected, atol=1e-5) and scores[0] > 0.99 and scores[2] == -1.0
    store.projected(space, ids[:5], x[:5])
    assert Embedding.objects.filter(model_key=knn.copy_key(space.key)).count() == 5
    Embedding.objects.filter(model_key="test:raw", image_id=ids[3]).delete()  # read from its copy-space vector now
    assert np.allclose(lead_scores(space, query, candidates)[:2], expected, atol=1e-5)
    plain, _ = projection.fit(x, [[]] * len(x), min_images=10)
    assert lead_scores(Space("test:raw:p-2", SimpleNamespace(key="test:raw"), plain), query, [(ids[3], 0.5)]) == [None]
    assert lead_scores(space, None, [(ids[3], 0.5)]) == [None]


@pytest.mark.django_db
def test_the_copy_space_brings_in_the_originals_nearest_the_query_there():
    """The copy space's stage adds the COPY_SPACE_FOUND images nearest the query there (as stored with the projected
    vectors), the nearest first, none that is a candidate already, with their global cosines; without the query's
    raw vector or a copy space, none."""
    from types import SimpleNamespace

    from workers.ranking import copy_space
    from workers.ranking.candidates import GLOBAL, Candidates

    space, ids, x = copy_space_index()
    store.projected(space, ids, x)
    raw = x[3] + 0.01
    copy_nearest = [
        i
        for i, _ in knn.nearest(
            space.projection.copy_vectors(raw)[0], model_key=space.copy_key, k=tunables.COPY_SPACE_FOUND, min_score=-1
        )
    ]
    assert copy_nearest[0] == ids[3] and len(copy_nearest) == tunables.COPY_SPACE_FOUND
    vector = space.vectors(raw)[0]

    def found(space, raw):
        query = SimpleNamespace(
            vector=vector,
            space=space,
            categories=(),
            min_score=-1.0,
            copy_vector=None if raw is None or space.copy_key is None else space.projection.copy_vectors(raw)[0],
        )
        table = Candidates(query)
        table.add(ids[9], 0.1, GLOBAL)
        copy_space.nearest(query, table)
        return table

    joined = found(space, raw)
    assert [row.image_id for row in joined] == [ids[9]] + [i for i in copy_nearest if i != ids[9]]
    assert [row.found_elsewhere for row in joined] == [False] + [True] * (len(joined) - 1)
    assert joined.rows[1].score == pytest.approx(float(space.vectors(x[3])[0] @ vector), abs=1e-5)  # its global cosine
    assert found(space, None).ids == [ids[9]]
    plain = Space(space.key, space.embedder, projection.fit(x, [[]] * len(x), min_images=10)[0])
    assert plain.copy_key is None
    assert found(plain, raw).ids == [ids[9]]


@pytest.mark.django_db
def test_the_command_says_so_when_the_model_for_the_edited_copies_cannot_be_loaded(settings):
    """learn_projection embeds the copy space's edited copies with the base model: weights that do not load are a
    message, not a traceback."""
    settings.IMGSEARCH_PROJECTION_MIN_IMAGES = 30
    raw_index(40)  # registered with weights "x", which no model loads
    with pytest.raises(CommandError, match="The model cannot be loaded to embed the copy space's edited copies"):
        call_command("learn_projection", "--no-wait")


@pytest.mark.django_db
def test_the_admin_asks_a_worker_to_learn_a_projection_unless_it_would_be_refused(
    settings, django_capture_on_commit_callbacks
):
    """projection_request (the admin action) sends the learning to a worker, which has the model for the copies; too
    small an index or a run under way is said at once instead."""
    settings.IMGSEARCH_PROJECTION_MIN_IMAGES = 30
    assert projections.projection_request() == (False, "Nothing is indexed yet.")
    raw_index(20)
    assert projections.projection_request() == (False, "20 embedded images; a projection is learned from 30 or more.")
    raw_index(20, start=20)
    with django_capture_on_commit_callbacks() as callbacks:
        sent, message = projections.projection_request()
    assert sent and "A worker is learning a projection" in message and len(callbacks) == 1
    run = ReindexRun.objects.create(arch="mobilenet_v2", weights="x", model_key="test:raw")
    assert projections.projection_request() == (
        False,
        f"Reindex run {run.id} is still queued; wait for it or cancel it first.",
    )


@pytest.mark.django_db
def test_a_projection_is_due_once_the_index_is_big_enough_and_again_when_it_has_grown(settings):
    """auto: due from IMGSEARCH_PROJECTION_MIN_IMAGES on; with a projection, only after 50% growth; never when off."""
    settings.IMGSEARCH_PROJECTION_MIN_IMAGES = 30
    raw_index(20)
    assert projections.projection_due() == (False, "20 images are indexed; a projection is learned from 30.")
    for i in range(20, 40):
        image = IndexedImage.objects.create(content_hash=f"h{i}", file=f"x/{i}.png", title=str(i), status="ready")
        Embedding.objects.create(image=image, model_key="test:raw", vector=np.ones(32) / np.sqrt(32))
    assert projections.projection_due()[0] is True
    ModelVersion.objects.filter(key="test:raw").update(active=False)
    ModelVersion.objects.create(
        key="test:raw:p-1",
        arch="mobilenet_v2",
        weights="x",
        dim=8,
        active=True,
        base_key="test:raw",
        projection=b"x",
        projection_info={"images": 35, "tagged_images": 20},
    )
    assert projections.projection_due() == (False, "The projection is up to date.")
    settings.IMGSEARCH_PROJECTION = "off"
    assert projections.projection_due()[0] is False


@pytest.mark.django_db
def test_dropping_old_models_keeps_the_raw_vectors_of_the_active_projection():
    """The active projected version's base holds the raw vectors new projections are learned from: kept."""
    raw_index(3)
    ModelVersion.objects.filter(key="test:raw").update(active=False)
    ModelVersion.objects.create(
        key="test:raw:p-1", arch="mobilenet_v2", weights="x", dim=8, active=True, base_key="test:raw"
    )
    ModelVersion.objects.create(key="test:other", arch="resnet50", weights="x", dim=8)
    assert versions.model_versions_drop() == (1, 0)
    assert set(ModelVersion.objects.values_list("key", flat=True)) == {"test:raw", "test:raw:p-1"}


@pytest.mark.django_db
def test_a_projection_applied_before_copy_vectors_were_stored_gets_them_from_the_raw_vectors(settings):
    """copy_vectors_fill (the beat): the active projection's images without a copy-space vector get one, projected
    from their raw vectors; nothing to do afterwards, nor for an active model without a copy space."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 4
    space, ids, x = copy_space_index(12)
    assert learning.copy_vectors_fill() == 0  # the raw model is active: no projection
    ModelVersion.objects.update(active=False)
    ModelVersion.objects.create(
        key=space.key,
        arch="mobilenet_v2",
        weights="x",
        dim=space.dim,
        base_key="test:raw",
        active=True,
        projection=space.projection.dumps(),
        projection_info={"copy_dims": 11},
    )
    knn.vectors_upsert(space.key, ids, space.vectors(x))  # projected vectors only, as before this change
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction holds deferred FK checks
    assert learning.copy_vectors_fill(batch=5) == 12
    stored = dict(Embedding.objects.filter(model_key=space.copy_key).values_list("image_id", "vector"))
    # stored as halfvec: each value to the nearest half (search/fields.py)
    assert np.allclose(np.stack([stored[i] for i in ids]), space.projection.copy_vectors(x), atol=1e-3)
    assert not knn.needs_vector_index(space.copy_key, 11)  # and their index is built
    assert learning.copy_vectors_fill() == 0
    Embedding.objects.filter(model_key="test:raw").delete()  # searches now read the copy-space vectors themselves
    assert lead_scores(space, x[3], [(ids[3], 0.5)])[0] > 0.99
    plain = projection.fit(x, [[]] * len(x), min_images=10)[0]
    ModelVersion.objects.filter(key=space.key).update(projection=plain.dumps(), projection_info={})
    Embedding.objects.filter(model_key=space.copy_key).delete()
    assert learning.copy_vectors_fill() == 0 and Space(space.key, space.embedder, plain).copy_key is None


@pytest.mark.django_db
def test_a_replaced_projection_goes_with_its_copy_space_vectors_and_their_index(settings):
    """Dropping an inactive projected version drops its copy-space vectors and their HNSW index too."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 4
    space, ids, x = copy_space_index(12)
    ModelVersion.objects.create(
        key=space.key,
        arch="mobilenet_v2",
        weights="x",
        dim=space.dim,
        base_key="test:raw",
        projection=space.projection.dumps(),
        projection_info={"copy_dims": 11},
    )
    store.projected(space, ids, x)
    assert [(key, dim) for key, dim in versions.vector_indexes(ModelVersion.objects.get(key=space.key))] == [
        (space.key, space.dim),
        (knn.copy_key(space.key), 11),
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction holds deferred FK checks
    space.ensure_vector_indexes()
    assert not knn.needs_vector_index(space.copy_key, 11)  # built, with the sparser graph a few nearest need
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [knn.index_name(space.copy_key)])
        assert "m='16', ef_construction='64'" in cursor.fetchone()[0]
    assert versions.model_versions_drop() == (1, 24)
    assert not Embedding.objects.filter(model_key__in=[space.key, space.copy_key]).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_class WHERE relname = %s", [knn.index_name(space.copy_key)])
        assert cursor.fetchone() is None


@pytest.mark.django_db
def test_the_command_says_why_nothing_was_learned(settings):
    """learn_projection with too few images stops with the reason, not a traceback."""
    settings.IMGSEARCH_PROJECTION_MIN_IMAGES = 30
    raw_index(5)
    with pytest.raises(CommandError, match="5 embedded images; a projection is learned from 30 or more"):
        call_command("learn_projection", "--no-wait")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_learned_projection_is_applied_in_the_background_and_searches_use_it(
    worker, client, photo_folder, settings, capsys
):
    """Real images: the run projects the stored raw vectors, the projected version becomes active, searches use it."""
    settings.IMGSEARCH_PROJECTION_MIN_IMAGES = 10
    call_command("index_images", str(photo_folder), "--tags-from-folders")
    raw = ModelVersion.objects.get(active=True)
    capsys.readouterr()
    call_command("learn_projection")
    assert "is now the active model" in capsys.readouterr().out
    active = ModelVersion.objects.get(active=True)
    assert active.base_key == raw.key and active.dim == 11  # 12 images span 11 directions; no tag has 10 images
    assert Embedding.objects.filter(model_key=active.key).count() == 12
    assert Embedding.objects.filter(model_key=raw.key).count() == 12  # kept: the next projection learns from them
    assert Embedding.objects.filter(model_key=knn.copy_key(active.key)).count() == 12  # its copy space's, for searches
    # Edited copies of the 12 images, embedded by the command, taught it a copy space.
    assert (
        active.projection_info["copy_pairs"] == 12 and projection.Projection.loads(active.projection).copy is not None
    )
    original = IndexedImage.objects.order_by("id")[5]
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("q.jpg", edited_copy(original.source_path), content_type="image/jpeg")
    job = wait_for_job(client, client.post("/api/v1/searches/", {"image": upload, "k": 3}).json()["url"])
    assert job["status"] == "done" and job["results"][0]["image_id"] == original.id
    assert ReindexRun.objects.get(model_key=active.key).status == "done"
