"""The index's visual words (workers/ranking/words.py), as the database keeps them: whether the vocabulary is due
to be learned, and which images still lack words of the one in use.

Beat runs workers.refresh_words every 15 minutes: once IMGSEARCH_WORDS_MIN_IMAGES images have local features it
learns the vocabulary (workers/learning.py), and again each time the index has grown by half (RELEARN_GROWTH) while
the vocabulary was learned from fewer images than its sample may hold (its info's "sample_limit"), so the first few
hundred images do not decide the words of a large index; then it queues the images whose words are missing (those stored before the vocabulary,
or computed with another one) to the index worker. New images get their words as they are indexed.
"""

from django.conf import settings

from . import queue
from .models import LocalFeatures, VisualWords

RELEARN_GROWTH = 1.5  # learn again once this many times the images the vocabulary was learned from have features


def latest_id():
    """The id of the vocabulary in use (the latest learned), or None."""
    return VisualWords.objects.order_by("-id").values_list("id", flat=True).first()


def words_due():
    """(due, reason): whether the index should learn its vocabulary now (the first time, or again as it grew)."""
    if not settings.IMGSEARCH_LOCAL_FEATURES:
        return False, "Local features are off (IMGSEARCH_LOCAL_FEATURES=0)."
    images = LocalFeatures.objects.count()
    latest = VisualWords.objects.order_by("-id").only("info").first()
    if latest is None:
        if images < settings.IMGSEARCH_WORDS_MIN_IMAGES:
            return False, (
                f"{images} images have local features; visual words are learned from "
                f"{settings.IMGSEARCH_WORDS_MIN_IMAGES}."
            )
        return True, f"{images} images have local features."
    learned_from = int(latest.info.get("images", 0))
    if learned_from >= latest.info.get("sample_limit", float("inf")):  # a full sample: learning again changes little
        return False, f"The vocabulary is learned (from {learned_from} images)."
    again = max(learned_from + 1, int(RELEARN_GROWTH * learned_from))
    if images < again:
        return False, (
            f"The vocabulary is learned from {learned_from} images; it is learned again once {again} have "
            f"local features ({images} now)."
        )
    return True, f"The index has grown from {learned_from} to {images} images since the vocabulary was learned."


def words_missing():
    """Ids of images with local features but without words of the vocabulary in use, while there is one: those stored
    before it was learned, and those a task computed with the one before (learned again meanwhile)."""
    latest = latest_id()
    if latest is None:
        return []
    return list(
        LocalFeatures.objects.exclude(words__isnull=False, words_vocabulary=latest)
        .order_by("image_id")
        .values_list("image_id", flat=True)
    )


def words_missing_send(*, batch_size=None):
    """Queue computing the words of the images without them to the index worker: (images, tasks)."""
    missing = words_missing()
    return len(missing), queue.send_batches(queue.COMPUTE_WORDS, missing, batch_size)
