"""What the index learns from itself, on an index worker (beat and the admin ask for it): a projection of its vectors
with a copy space (workers/projection.py), and its vocabulary of visual words (workers/ranking/words.py).
search/projections.py and search/vocabulary.py decide when; this module does the learning."""

import random

import numpy as np
from django.conf import settings
from django.db import transaction

from search import knn, projections, versions
from search.models import Embedding, IndexedImage, LocalFeatures, ModelVersion, VisualWords

from . import edits
from . import embedder as embedder_module
from .imageio import ImageDecodeError, load_rgb
from .projection import Projection, ProjectionError, fit
from .ranking import tunables, verification, words

# --- A projection and its copy space ---------------------------------------------------------------------------


def raw_sample(base_key):
    """(raw vectors, given tags) of ready images, at most MAX_FIT_VECTORS of them chosen at random."""
    ids = list(projections.raw_rows(base_key).values_list("id", flat=True))
    if len(ids) > tunables.MAX_FIT_VECTORS:
        ids = np.random.default_rng(0).choice(ids, tunables.MAX_FIT_VECTORS, replace=False).tolist()
    vectors, tags = [], []
    for start in range(0, len(ids), 5000):
        rows = Embedding.objects.filter(id__in=ids[start : start + 5000]).values_list("vector", "image__user_tags")
        for vector, image_tags in rows:
            vectors.append(vector)
            tags.append(image_tags)
    return np.array(vectors, np.float32).reshape(len(vectors), -1), tags


def copy_pairs(base, count=tunables.COPY_PAIRS):
    """(originals, copies): the stored raw vectors of up to `count` ready images of the model version `base`, chosen
    at random, and the raw vectors of an edited copy of each (workers/edits.py), for projection.fit. Images whose
    file cannot be read any more are left out."""
    ids = list(
        Embedding.objects.filter(model_key=base.key, image__status=IndexedImage.Status.READY).values_list(
            "image_id", flat=True
        )
    )
    rng = random.Random(0)
    ids = rng.sample(ids, min(count, len(ids)))
    embedder = embedder_module.get_embedder(base.arch, base.weights)
    vectors = dict(Embedding.objects.filter(model_key=base.key, image_id__in=ids).values_list("image_id", "vector"))
    originals = []

    def readable():  # decoded one at a time: a big photo's copies are not all held at once
        for image in IndexedImage.objects.filter(id__in=list(vectors)).order_by("id").only("id", "file"):
            try:
                pil = load_rgb(image.file.path, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
            except (ImageDecodeError, OSError, ValueError):  # ValueError: a row without a file
                continue
            originals.append(np.asarray(vectors[image.id], np.float32))
            yield pil

    copies = edited_copies(embedder, readable(), rng)
    return (np.stack(originals), copies) if originals else None


def edited_copies(embedder, images, rng):
    """The raw vectors of an edited copy of each image (workers/edits.py, drawing on `rng` in order), embedded 32 at a
    time as they come."""
    copies, batch = [], []
    for img in images:
        batch.append(edits.edited(img, rng))
        if len(batch) == 32:
            copies.append(embedder.embed(batch)[0])
            batch = []
    if batch:
        copies.append(embedder.embed(batch)[0])
    return np.concatenate(copies) if copies else np.zeros((0, embedder.dim), np.float32)


def projection_learn(copy_pairs=copy_pairs):
    """Learn a projection of the active model's raw vectors from the index, and start the run that applies it.

    `copy_pairs(base)`, given the ModelVersion of the raw vectors, returns (originals, edited copies) as raw vectors
    for the copy space (those of copy_pairs above, by default); None: no copy space. Returns (run, message); run is
    None when nothing was started, and the message says why.
    """
    active = versions.model_active()
    if active is None:
        return None, "Nothing is indexed yet."
    base = ModelVersion.objects.get(key=active.base_key) if active.base_key else active
    vectors, tags = raw_sample(base.key)
    minimum = settings.IMGSEARCH_PROJECTION_MIN_IMAGES
    copies = copy_pairs(base) if copy_pairs is not None and len(vectors) >= minimum else None
    try:
        learned, info = fit(vectors, tags, copies=copies, min_images=minimum)
    except ProjectionError as exc:
        return None, str(exc)
    return projections.projection_register(base, learned.dumps(), dim=learned.dim, info=info)


def copy_vectors_fill(batch=5000):
    """Store the active projection's copy-space vectors of images that have its projected vectors but none there (a
    projection applied before copy-space vectors were stored), from their raw vectors: no model needed. Returns how
    many were stored. Cheap when nothing is missing: two counts."""
    version = versions.model_active()
    copy_space = versions.vector_indexes(version)[1:] if version is not None else []  # [(key, dimensions)] or none
    if not copy_space:
        return 0
    [(key, dim)] = copy_space
    have = Embedding.objects.filter(model_key=key)
    if have.count() >= Embedding.objects.filter(model_key=version.key).count():
        return 0
    learned = Projection.loads(ModelVersion.objects.values_list("projection", flat=True).get(key=version.key))
    missing = list(
        Embedding.objects.filter(model_key=version.key)
        .exclude(image_id__in=have.values("image_id"))
        .values_list("image_id", flat=True)
    )
    stored = 0
    for start in range(0, len(missing), batch):
        raw = dict(
            Embedding.objects.filter(
                model_key=version.base_key, image_id__in=missing[start : start + batch]
            ).values_list("image_id", "vector")
        )
        if raw:
            knn.vectors_upsert(key, list(raw), learned.copy_vectors(list(raw.values())))
            stored += len(raw)
    knn.ensure_vector_index(key, dim)
    return stored


# --- Visual words ------------------------------------------------------------------------------------------------


def words_learn(*, seed=0):
    """Learn the vocabulary from a sample of the index's descriptors and store it in place of any other: (VisualWords,
    message), or (None, why not)."""
    ids = list(LocalFeatures.objects.order_by("image_id").values_list("image_id", flat=True))
    if len(ids) > tunables.WORDS_FIT_IMAGES:  # read only the sample's records
        ids = sorted(np.random.default_rng(seed).choice(ids, tunables.WORDS_FIT_IMAGES, replace=False).tolist())
    images = list(stored_features(ids).values())
    try:
        learned = words.learn_from(images, seed=seed)
    except words.VocabularyError as exc:
        return None, str(exc)
    info = {"images": len(images), "words": words.WORDS, "sample_limit": tunables.WORDS_FIT_IMAGES}
    with transaction.atomic():
        # Words of any other vocabulary mean nothing now: cleared, so they cannot crowd the words' nearest neighbours.
        LocalFeatures.objects.exclude(words=None).update(words=None, words_vocabulary=None)
        vocabulary_row = VisualWords.objects.create(words=words.dumps(learned), info=info)
        VisualWords.objects.exclude(id=vocabulary_row.id).delete()
    return vocabulary_row, f"Learned {words.WORDS} visual words from the keypoints of {len(images)} images."


def words_compute(image_ids):
    """Compute and store the images' words from their stored local features: how many were stored."""
    vocabulary = words.vocabulary()
    if vocabulary is None:
        return 0
    rows = [
        LocalFeatures(
            image_id=image_id, words=words.aggregate(features, vocabulary.centroids), words_vocabulary_id=vocabulary.id
        )
        for image_id, features in stored_features(list(image_ids)).items()
    ]
    LocalFeatures.objects.bulk_update(rows, ["words", "words_vocabulary"])
    return len(rows)


def stored_features(image_ids):
    """{image_id: Features} of the images' stored local features, in id order, read 200 records at a time; records
    of another version are skipped (extracted again later, and their words then)."""
    found = {}
    for start in range(0, len(image_ids), 200):
        batch = verification.stored_evidence(image_ids[start : start + 200])
        found.update((image_id, batch[image_id][0]) for image_id in sorted(batch) if batch[image_id][0] is not None)
    return found
