"""The index's visual words (workers/words.py): the vocabulary, learned from the index's own keypoints, and each
image's words computed from its stored local features.

Beat runs workers.refresh_words every 15 minutes: once IMGSEARCH_WORDS_MIN_IMAGES images have local features it
learns the vocabulary, and again each time the index has grown by half (RELEARN_GROWTH) while the vocabulary was
learned from fewer than words.FIT_IMAGES images, so the first few hundred images do not decide the words of a
large index; then it queues the images whose words are missing (those stored before the vocabulary, or computed
with another one) to the index worker. New images get their words as they are indexed.
"""

from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import transaction

from workers import localfeatures, words

from .models import LocalFeatures, VisualWords
from .reindex import _send_batches

RELEARN_GROWTH = 1.5  # learn again once this many times the images the vocabulary was learned from have features


class Vocabulary(NamedTuple):
    id: int  # the VisualWords row, stored beside the words computed with it
    centroids: np.ndarray  # (words.WORDS, 128), for words.aggregate


_cached = None  # this process's Vocabulary


def _latest_id():
    """The id of the vocabulary in use (the latest learned), or None."""
    return VisualWords.objects.order_by("-id").values_list("id", flat=True).first()


def vocabulary():
    """The Vocabulary in use (the latest learned), or None before one is learned; read once per process and row."""
    global _cached
    latest = _latest_id()
    if latest is None:
        return None
    if _cached is None or _cached.id != latest:
        _cached = Vocabulary(latest, words.loads(bytes(VisualWords.objects.get(id=latest).words)))
    return _cached


def words_due():
    """(due, reason): whether the index should learn its vocabulary now (the first time, or again as it grew)."""
    if not settings.IMGSEARCH_LOCAL_FEATURES:
        return False, "Local features are off (IMGSEARCH_LOCAL_FEATURES=0)."
    images = LocalFeatures.objects.count()
    latest = VisualWords.objects.order_by("-id").only("info").first()
    if latest is None:
        if images < settings.IMGSEARCH_WORDS_MIN_IMAGES:
            return False, (f"{images} images have local features; visual words are learned from "
                           f"{settings.IMGSEARCH_WORDS_MIN_IMAGES}.")
        return True, f"{images} images have local features."
    learned_from = int(latest.info.get("images", 0))
    if learned_from >= words.FIT_IMAGES:
        return False, f"The vocabulary is learned (from {learned_from} images)."
    again = max(learned_from + 1, int(RELEARN_GROWTH * learned_from))
    if images < again:
        return False, (f"The vocabulary is learned from {learned_from} images; it is learned again once {again} have "
                       f"local features ({images} now).")
    return True, f"The index has grown from {learned_from} to {images} images since the vocabulary was learned."


def words_learn(*, seed=0):
    """Learn the vocabulary from a sample of the index's descriptors and store it in place of any other: (VisualWords,
    message), or (None, why not)."""
    ids = list(LocalFeatures.objects.order_by("image_id").values_list("image_id", flat=True))
    if len(ids) > words.FIT_IMAGES:  # read only the sample's records
        ids = sorted(np.random.default_rng(seed).choice(ids, words.FIT_IMAGES, replace=False).tolist())
    images = list(_stored_features(ids).values())
    try:
        learned = words.learn_from(images, seed=seed)
    except words.VocabularyError as exc:
        return None, str(exc)
    info = {"images": len(images), "words": words.WORDS}
    with transaction.atomic():
        # Words of any other vocabulary mean nothing now: cleared, so they cannot crowd the words' nearest neighbours.
        LocalFeatures.objects.exclude(words=None).update(words=None, words_vocabulary=None)
        vocabulary_row = VisualWords.objects.create(words=words.dumps(learned), info=info)
        VisualWords.objects.exclude(id=vocabulary_row.id).delete()
    return vocabulary_row, f"Learned {words.WORDS} visual words from the keypoints of {len(images)} images."


def _stored_features(image_ids):
    """{image_id: Features} of the images' stored local features, in id order, read 200 records at a time; records
    of another version are skipped (extracted again later, and their words then)."""
    found = {}
    for start in range(0, len(image_ids), 200):
        rows = LocalFeatures.objects.filter(image_id__in=image_ids[start : start + 200]).order_by("image_id")
        for image_id, data in rows.values_list("image_id", "data"):
            try:
                found[image_id] = localfeatures.unpack(bytes(data))
            except ValueError:
                continue
    return found


def words_missing():
    """Ids of images with local features but without words of the vocabulary in use, while there is one: those stored
    before it was learned, and those a task computed with the one before (learned again meanwhile)."""
    latest = _latest_id()
    if latest is None:
        return []
    return list(LocalFeatures.objects.exclude(words__isnull=False, words_vocabulary=latest).order_by("image_id")
                .values_list("image_id", flat=True))


def words_missing_send(*, batch_size=None):
    """Queue computing the words of the images without them to the index worker: (images, tasks)."""
    missing = words_missing()
    return len(missing), _send_batches("workers.compute_words", missing, batch_size)


def words_compute(image_ids):
    """Compute and store the images' words from their stored local features: how many were stored."""
    vocab = vocabulary()
    if vocab is None:
        return 0
    rows = [LocalFeatures(image_id=image_id, words=words.aggregate(features, vocab.centroids),
                          words_vocabulary_id=vocab.id)
            for image_id, features in _stored_features(list(image_ids)).items()]
    LocalFeatures.objects.bulk_update(rows, ["words", "words_vocabulary"])
    return len(rows)
