"""Visual words: the index's vocabulary learned from its own keypoints, each image's words, and the copy candidates
they add to a search that the global k-NN did not return."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
from django.core.management import call_command

from search import vocabulary as bookkeeping
from search.models import Embedding, IndexedImage, LocalFeatures, VisualWords
from workers import learning
from workers.imageio import load_rgb
from workers.ranking import fusion, signature, tunables, verification, words
from workers.ranking.candidates import GLOBAL, Candidates

from .conftest import candidates_table, search_upload
from .test_copies import mirrored_turned_copy


def features_of(path):
    return verification.extract(load_rgb(path, target_size=tunables.WORK_SIDE))


def copy_features(path):
    return verification.extract(load_rgb(io.BytesIO(mirrored_turned_copy(path))))


@pytest.fixture
def photos(photo_folder):
    """(paths, their local features, a vocabulary learned from them)."""
    paths = sorted(photo_folder.rglob("*.png"))
    features = [features_of(p) for p in paths]
    return paths, features, words.learn(np.concatenate([words.descriptors(f) for f in features]))


def test_words_are_unit_vectors_and_a_picture_without_keypoints_has_none(photos):
    _, features, vocabulary = photos
    assert vocabulary.shape == (words.WORDS, 128) and words.DIM <= 2000  # pgvector's limit for an HNSW index
    vector = words.aggregate(features[0], vocabulary)
    assert vector.shape == (words.DIM,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    empty = verification.Features((verification.EMPTY, verification.EMPTY))
    assert not words.aggregate(empty, vocabulary).any()


def test_a_mirrored_turned_cropped_copy_s_words_are_nearest_its_original_s(photos):
    """Each copy, aggregated with its descriptors as is and mirrored (as searches query), is nearest its own original
    among the 12 pictures; without the mirrored aggregate fewer are, since mirroring changes every descriptor."""
    paths, features, vocabulary = photos
    index = np.stack([words.aggregate(f, vocabulary) for f in features])
    both, direct_only = 0, 0
    for i, path in enumerate(paths):
        copy = copy_features(path)
        direct = index @ words.aggregate(copy, vocabulary)
        mirrored = index @ words.aggregate(copy, vocabulary, mirrored=True)
        both += int(np.maximum(direct, mirrored).argmax() == i)
        direct_only += int(direct.argmax() == i)
    assert both >= 11 and direct_only < both


def test_a_vocabulary_needs_enough_descriptors_and_round_trips(photos):
    _, features, vocabulary = photos
    with pytest.raises(words.VocabularyError, match="too few"):
        words.learn(words.descriptors(features[0])[:10])
    assert np.array_equal(words.loads(words.dumps(vocabulary)), vocabulary)
    with pytest.raises(ValueError, match="bytes"):
        words.loads(b"\0" * 100)


def test_a_candidate_found_by_words_stays_only_when_verified_or_leading_on_its_evidence():
    """fusion.fuse: candidates found only in the whole index are dropped unless they are verified copies, or lead the
    rest by the same measure as the global candidates (cosine plus the credit of a few inliers and of likeness)."""

    def order(candidates, inliers, found, likeness=None):
        return fusion.fuse(candidates_table(candidates, inliers=inliers, found=found, likeness=likeness))

    candidates = [(1, 0.9), (2, 0.8), (3, 0.3), (4, 0.2)]
    ranked = order(candidates, [0, 0, 40, 3], {2, 3})
    assert ranked == [(3, 0.3, "copy"), (1, 0.9, "similar"), (2, 0.8, "similar")]
    candidates = [(1, 0.5), (2, 0.45), (3, 0.4), (4, 0.35)]
    ranked = order(candidates, [0, 0, 0, 9], {3})  # 0.35 + 9 x 0.02 > 0.5
    assert ranked == [(4, 0.35, "similar"), (1, 0.5, "similar"), (2, 0.45, "similar"), (3, 0.4, "similar")]
    ranked = order(candidates, [0, 0, 0, 9], {2, 3}, likeness=[0.0, 0.0, 0.9, 0.0])  # 0.4 + 0.2 x 0.9 leads
    assert ranked == [(3, 0.4, "similar"), (1, 0.5, "similar"), (2, 0.45, "similar")]
    ranked = order(candidates, [0, 0, 0, 4], {3})  # 0.43 < 0.5: dropped
    assert ranked == [(1, 0.5, "similar"), (2, 0.45, "similar"), (3, 0.4, "similar")]


@pytest.mark.django_db(transaction=True)
def test_the_vocabulary_is_learned_once_the_index_is_large_enough_and_every_image_gets_its_words(photos, settings):
    paths, features, _ = photos
    ids = []
    for i, f in enumerate(features):
        image = IndexedImage.objects.create(content_hash=f"h{i}", file=f"{i}.png", status=IndexedImage.Status.READY)
        LocalFeatures.objects.create(image=image, data=verification.pack(f))
        ids.append(image.id)
    settings.IMGSEARCH_WORDS_MIN_IMAGES = 13
    assert bookkeeping.words_due() == (False, "12 images have local features; visual words are learned from 13.")
    assert bookkeeping.words_missing() == [] and words.vocabulary() is None
    settings.IMGSEARCH_WORDS_MIN_IMAGES = 12
    assert bookkeeping.words_due()[0]
    learned, message = learning.words_learn()
    assert (
        message == f"Learned {words.WORDS} visual words from the keypoints of 12 images."
        and learned.info["images"] == 12
    )
    assert bookkeeping.words_due() == (
        False,
        "The vocabulary is learned from 12 images; it is learned again once 18 have local features (12 now).",
    )
    assert bookkeeping.words_missing() == ids
    assert learning.words_compute(ids) == 12 and bookkeeping.words_missing() == []
    vocabulary = words.vocabulary()
    for image_id, f in zip(ids, features):
        stored = np.asarray(LocalFeatures.objects.get(image_id=image_id).words, np.float32)
        assert np.allclose(stored, words.aggregate(f, vocabulary.centroids), atol=1e-3)  # stored as halfvec
    settings.IMGSEARCH_LOCAL_FEATURES = False
    assert not bookkeeping.words_due()[0]


@pytest.mark.django_db
def test_the_vocabulary_is_learned_again_as_the_index_grows_and_words_of_another_are_computed_again(photos, settings):
    """From 8 images to 12 (half as many again) the index learns its words again and every image gets words of the new
    vocabulary, also one a task computed with the old vocabulary after it was replaced; a vocabulary learned from as
    many images as its sample may hold is kept however the index grows, and one learned before that limit was
    recorded is learned again once more."""
    _, features, _ = photos
    ids = []

    def add(batch):
        for f in batch:
            image = IndexedImage.objects.create(
                content_hash=f"h{len(ids)}", file=f"{len(ids)}.png", status=IndexedImage.Status.READY
            )
            LocalFeatures.objects.create(image=image, data=verification.pack(f))
            ids.append(image.id)

    add(features[:8])
    settings.IMGSEARCH_WORDS_MIN_IMAGES = 8
    first, _ = learning.words_learn()
    learning.words_compute(bookkeeping.words_missing())
    add(features[8:11])
    assert bookkeeping.words_due() == (
        False,
        "The vocabulary is learned from 8 images; it is learned again once 12 have local features (11 now).",
    )
    add(features[11:])
    assert bookkeeping.words_due() == (
        True,
        "The index has grown from 8 to 12 images since the vocabulary was learned.",
    )
    old = words.vocabulary()
    second, _ = learning.words_learn()
    assert second.info["images"] == 12 and list(VisualWords.objects.values_list("id", flat=True)) == [second.id]
    assert bookkeeping.words_missing() == ids  # the old vocabulary's words were cleared with it
    late = LocalFeatures.objects.get(image_id=ids[0])  # a task that held the old vocabulary stores its words now
    late.words, late.words_vocabulary_id = words.aggregate(features[0], old.centroids), first.id
    late.save()
    assert bookkeeping.words_missing() == ids
    assert learning.words_compute(ids) == 12 and bookkeeping.words_missing() == []
    assert set(LocalFeatures.objects.values_list("words_vocabulary", flat=True)) == {second.id}
    assert np.allclose(
        np.asarray(LocalFeatures.objects.get(image_id=ids[0]).words, np.float32),
        words.aggregate(features[0], words.vocabulary().centroids),
        atol=1e-3,  # stored as halfvec
    )
    assert not bookkeeping.words_due()[0]
    assert second.info["sample_limit"] == tunables.WORDS_FIT_IMAGES
    full = tunables.WORDS_FIT_IMAGES
    VisualWords.objects.filter(id=second.id).update(info={"images": full, "words": words.WORDS, "sample_limit": full})
    assert bookkeeping.words_due() == (False, f"The vocabulary is learned (from {full} images).")
    VisualWords.objects.filter(id=second.id).update(info={"images": 8, "words": words.WORDS})  # an older vocabulary
    assert bookkeeping.words_due() == (
        True,
        "The index has grown from 8 to 12 images since the vocabulary was learned.",
    )


@pytest.mark.django_db(transaction=True)
def test_words_bring_in_an_original_the_k_nn_did_not_return(photos):
    """An original that is not among the k-NN candidates joins them, with its own cosine score, when its words are
    among the nearest the copy's; the search's categories and min_score still hold for it. (In-process: the session's
    worker would answer a search as well as any worker started with fewer candidates.)"""
    paths, features, vocabulary = photos
    VisualWords.objects.create(words=words.dumps(vocabulary))
    rows = []
    for i, f in enumerate(features):
        image = IndexedImage.objects.create(
            content_hash=f"h{i}", file=f"{i}.png", user_tags=[paths[i].parent.name], status=IndexedImage.Status.READY
        )
        LocalFeatures.objects.create(image=image, data=verification.pack(f), words=words.aggregate(f, vocabulary))
        Embedding.objects.create(
            image=image, model_key="test-space", vector=[0.6, 0.8, 0.0] if i == 0 else [0.0, 1.0, 0.0]
        )
        rows.append(image.id)
    space = SimpleNamespace(key="test-space", copy_key=None)  # no copy space
    copy = copy_features(paths[0])

    def found(lookalike=None, categories=(), min_score=0.0):
        """The candidates after the words' and the lookalike's stages, the global k-NN having returned rows[1]."""
        query = SimpleNamespace(
            vector=[1.0, 0.0, 0.0],
            space=space,
            categories=categories,
            min_score=min_score,
            features=copy,
            signature_match=None if lookalike is None else (lookalike, 0.5),
        )
        table = Candidates(query)  # cosine 0.6 to the original, 0 to the rest
        table.add(rows[1], 0.0, GLOBAL)
        words.nearest(query, table)
        signature.lookalike(query, table)
        return [(row.image_id, row.score) for row in table], [row.image_id for row in table if row.found_elsewhere]

    joined, added = found()
    assert joined[0] == (rows[1], 0.0) and added == [i for i, _ in joined[1:]]
    assert len(joined) <= 1 + tunables.WORDS_FOUND
    assert (rows[0], pytest.approx(0.6, abs=1e-3)) in joined[1:]  # vectors stored as halfvec
    assert rows[0] in found(min_score=0.5)[1]
    assert rows[0] not in found(min_score=0.7)[1]
    other_category = next(p.parent.name for p in paths if p.parent.name != paths[0].parent.name)
    assert rows[0] not in found(categories=[other_category])[1]
    assert [i for i, _ in found(lookalike=rows[0])[0]].count(rows[0]) == 1  # found by both: joins once
    VisualWords.objects.all().delete()
    assert found() == ([(rows[1], 0.0)], [])
    # The signature's best match below SIGNATURE_COPY joins the same way, with or without words; never twice.
    assert found(lookalike=rows[0]) == ([(rows[1], 0.0), (rows[0], pytest.approx(0.6, abs=1e-3))], [rows[0]])  # halfvec
    assert found(lookalike=rows[1]) == ([(rows[1], 0.0)], [])  # a candidate already
    assert found(lookalike=rows[0], min_score=0.7) == ([(rows[1], 0.0)], [])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_once_learned_new_images_get_words_as_they_are_indexed_and_copies_are_still_found(
    worker, client, photo_folder, tmp_path, settings
):
    """Through the real worker: the index learns its words (the beat task, here called directly), images indexed
    afterwards get theirs in the pipeline, and a copy search with words in use still brings the original first."""
    import time

    from workers.tasks import refresh_words

    first = sorted(photo_folder.rglob("*.png"))
    later = tmp_path / "later"
    later.mkdir()
    for path in first[-3:]:
        path.rename(later / path.name)
    call_command("index_images", str(photo_folder))
    settings.IMGSEARCH_WORDS_MIN_IMAGES = 9
    refresh_words()  # learns, then queues the 9 images' words to the worker
    assert VisualWords.objects.count() == 1
    deadline = time.monotonic() + 60
    while LocalFeatures.objects.filter(words=None).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not LocalFeatures.objects.filter(words=None).exists()
    call_command("index_images", str(later))
    assert LocalFeatures.objects.count() == 12 and not LocalFeatures.objects.filter(words=None).exists()
    assert bookkeeping.words_missing() == []  # the pipeline stored which vocabulary it computed them with
    moved = later / first[-1].name
    original = IndexedImage.objects.get(source_path=str(moved))
    job = search_upload(client, mirrored_turned_copy(moved), k=5)
    assert job["status"] == "done", job["error"]
    assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (original.id, "copy")
    assert len(job["results"]) == 5


@pytest.mark.django_db
def test_the_admin_lists_the_vocabulary_with_how_many_images_have_words_and_can_delete_it(admin_client, photos):
    _, features, vocabulary = photos
    learned = VisualWords.objects.create(words=words.dumps(vocabulary), info={"images": 12, "words": words.WORDS})
    for i, f in enumerate(features[:3]):
        image = IndexedImage.objects.create(content_hash=f"h{i}", file=f"{i}.png", status=IndexedImage.Status.READY)
        LocalFeatures.objects.create(
            image=image,
            data=verification.pack(f),
            words=words.aggregate(f, vocabulary) if i else None,
            words_vocabulary=learned if i else None,
        )
    page = admin_client.get("/admin/search/visualwords/").content.decode()
    assert f"{words.WORDS} words, the keypoints of 12 images" in page
    assert '<td class="field-images_with_words">2</td>' in page
    assert "it is learned again once 18 have local features (3 now)." in page
    assert admin_client.get("/admin/search/visualwords/add/").status_code == 403
    admin_client.post(f"/admin/search/visualwords/{learned.id}/delete/", {"post": "yes"})
    assert not VisualWords.objects.exists() and bookkeeping.words_due()[1] == (
        "3 images have local features; visual words are learned from 200."
    )
