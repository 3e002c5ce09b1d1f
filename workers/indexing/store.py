"""Writing what the pipeline made: vectors, copy evidence, thumbnails, tags and status, a batch at a time."""

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from search import indexing, knn, versions
from search.models import IndexedImage, LocalFeatures


def vectors(space, ids, raw):
    """Upsert the images' vectors of the space from their raw vectors (rows), and for a projected space their
    raw vectors too (kept complete, to learn the next projection from)."""
    projected(space, ids, raw)
    if space.projection is not None:
        knn.vectors_upsert(space.base_key, ids, raw)


def projected(space, ids, raw):
    """Upsert the images' vectors of the space from their raw vectors (rows), and their copy-space vectors where the
    space's projection has a copy space."""
    knn.vectors_upsert(space.key, ids, space.vectors(raw))
    if space.copy_key:
        knn.vectors_upsert(space.copy_key, ids, space.projection.copy_vectors(raw))


def evidence(rows):
    """Write LocalFeatures rows [(image, features.Evidence)], replacing what an image already has; an image deleted
    meanwhile is skipped."""
    if not rows:
        return
    kept = existing_ids([image.id for image, _ in rows])
    LocalFeatures.objects.bulk_create(
        [
            LocalFeatures(
                image=image,
                data=found.features,
                signature=found.signature,
                words=found.words,
                words_vocabulary_id=found.words_vocabulary,
            )
            for image, found in rows
            if image.id in kept
        ],
        update_conflicts=True,
        unique_fields=["image"],
        update_fields=["data", "signature", "words", "words_vocabulary", "created_at"],
    )


def failed(failures):
    """Mark images [(image, reason)] that could not be read as failed, with their reason."""
    indexing.images_fail([(image.id, reason) for image, reason in failures])


def active_batch(space, embedded):
    """One batch [(Decoded, raw vector, prediction)] of the active model's images, whole: vectors, evidence,
    thumbnails, tags, ready. True if another model became active meanwhile."""
    with transaction.atomic():
        versions.model_switch_lock(shared=True)
        embedded = _still_indexed(embedded)  # no vectors, thumbnails or evidence of an image deleted meanwhile
        # Tags first: a vector row takes its image's tags as it is inserted (migration 0016's trigger); tags set after
        # would update the row again, and every HNSW index of the table would take it a second time.
        _ready(embedded)
        _vectors_and_evidence(space, embedded)
        active = versions.model_active()
        return active is not None and active.key != space.key


def beside(space, embedded):
    """One batch of a model a run is building: its vectors (and missing evidence) only."""
    _vectors_and_evidence(space, embedded)


def _vectors_and_evidence(space, embedded):
    if embedded:
        vectors(space, [d.image.id for d, _, _ in embedded], np.stack([vector for _, vector, _ in embedded]))
    evidence([(d.image, d.evidence) for d, _, _ in embedded if d.evidence is not None])


def _ready(embedded):
    """Thumbnails, automatic tags and the ready status of images the active model has embedded."""
    ready = []
    for decoded, _, prediction in embedded:
        image = decoded.image
        if decoded.thumbnail:
            name = f"thumbs/{image.content_hash[:2]}/{image.content_hash}.jpg"
            image.thumbnail.save(name, ContentFile(decoded.thumbnail), save=False)
        ready.append((image.id, image.thumbnail.name, prediction.label, prediction.score, prediction.tag))
    indexing.images_ready(ready, timezone.now())


def _still_indexed(embedded):
    """The rows [(Decoded, vector, prediction)] of images not deleted while the worker embedded them."""
    kept = existing_ids([decoded.image.id for decoded, _, _ in embedded])
    return [row for row in embedded if row[0].image.id in kept]


def existing_ids(ids):
    """Which of these image ids are still indexed (the admin may delete an image while a worker embeds it)."""
    return set(IndexedImage.objects.filter(id__in=ids).values_list("id", flat=True))
