"""The index worker's jobs, as plain functions the tasks call: embed new images, re-tag them, extract missing copy
evidence, and plan and embed a reindex run's chunks."""

from functools import partial

import numpy as np
from django.db import transaction

from search import reindex, versions
from search.models import Embedding, IndexedImage, LocalFeatures, ModelVersion

from .. import embedder as embedder_module
from ..spaces import active_space, space_for
from . import decode, features, store
from .embed import embed


def images_embed(image_ids, *, overwrite=False):
    """Embed images with the active model: vectors, copy evidence, thumbnails, tags, status. Idempotent unless
    overwrite. Returns (embedded, failed)."""
    space = active_space()
    images = IndexedImage.objects.filter(id__in=image_ids)
    if not overwrite:
        images = images.exclude(embeddings__model_key=space.key)
    images = list(images)
    switched, failed = embed(
        images, space.embedder, with_features=features.feature_ids(images), store=partial(store.active_batch, space)
    )
    store.failed(failed)
    space.ensure_vector_indexes()  # built once the index has grown enough
    if any(switched):  # a reindex run made another model active while we worked: these images need its vectors
        return images_embed(image_ids)
    return len(images) - len(failed), len(failed)


def images_retag(image_ids):
    """Recompute the automatic tags of images with the active model's classifier. Returns (re-tagged, unreadable)."""
    batches, failed = embed(list(IndexedImage.objects.filter(id__in=image_ids)), active_space().embedder)
    embedded = [row for batch in batches for row in batch]
    for decoded, _, prediction in embedded:
        image = decoded.image
        image.auto_label, image.auto_score, image.auto_tags = prediction.label, prediction.score, prediction.auto_tags
    IndexedImage.objects.bulk_update([row[0].image for row in embedded], ["auto_label", "auto_score", "auto_tags"])
    return len(embedded), len(failed)


def images_extract_features(image_ids):
    """Extract and store the copy evidence of images that have none, or no signature (indexed before it existed).
    Returns (extracted, unreadable)."""
    have = LocalFeatures.objects.filter(image_id__in=image_ids, signature__isnull=False).values("image_id")
    images = list(IndexedImage.objects.filter(id__in=image_ids, status=IndexedImage.Status.READY).exclude(id__in=have))
    read = partial(features.decode_evidence, features.vocabulary_for(bool(images)))
    decoded = list(decode.feature_decoders.map(read, images))
    store.evidence([(image, evidence) for image, evidence in decoded if evidence])
    return sum(1 for _, evidence in decoded if evidence), sum(1 for _, evidence in decoded if not evidence)


# --- Reindex runs (search/reindex.py keeps their rows) -----------------------------------------------------------


def reindex_plan_run(run_id):
    """Load the run's model (failing the run if its weights are unusable), register it, and plan the chunks."""
    run = reindex.queued_run(run_id)
    if run is None:
        return None
    try:
        space = space_for(_run_target(run))
    except embedder_module.WeightsError as exc:
        reindex.reindex_fail(run_id, str(exc))
        return None
    return reindex.reindex_plan(run_id, model_key=space.key)


def _run_target(run):
    """The model version a run fills: the one it names (a projection), the active one it re-embeds, or a new one."""
    if run.model_key:
        return ModelVersion.objects.get(key=run.model_key)
    embedder = embedder_module.get_embedder(run.arch, run.weights)
    active = versions.model_active()
    if active is not None and embedder.key in (active.key, active.base_key):
        return active  # the active model itself, projected or not: a full re-embed
    return versions.model_version_ensure(key=embedder.key, arch=run.arch, weights=run.weights, dim=embedder.dim)


def reindex_chunk_run(run_id, number):
    """Embed one chunk of a run with the run's model and count it; a chunk already counted is left alone."""
    claimed = reindex.reindex_chunk_claim(run_id, number)
    if claimed is None:
        return None
    run, chunk = claimed
    version = ModelVersion.objects.filter(key=run.model_key).first()
    if version is None:
        return reindex.reindex_fail(run_id, f"The model version {run.model_key} was removed while the run went on.")
    try:
        space = space_for(version)
    except embedder_module.WeightsError as exc:
        return reindex.reindex_fail(run_id, str(exc))
    done, failures, gone = chunk_embed(run, chunk.image_ids, space)
    return reindex.reindex_chunk_finish(chunk, done=done, failures=failures, gone=gone)


def chunk_embed(run, image_ids, space):
    """Embed a chunk's images: (images done, failures [{image_id, reason}], images removed since the plan)."""
    images = list(IndexedImage.objects.filter(id__in=image_ids))
    gone = len(set(image_ids)) - len(images)
    if run.overwrite:  # the active model itself: a full re-embed, as for new images
        _, failed = embed(
            images, space.embedder, with_features=features.feature_ids(images), store=partial(store.active_batch, space)
        )
        with transaction.atomic():
            store.failed(failed)
            # An image that cannot be read any more should not be found by its old vector either.
            keys = [key for key in (space.key, space.copy_key) if key]
            Embedding.objects.filter(image__in=[image for image, _ in failed], model_key__in=keys).delete()
        space.ensure_vector_indexes()
        return len(images) - len(failed), _failures(failed), gone
    have = set(Embedding.objects.filter(image_id__in=image_ids, model_key=space.key).values_list("image_id", flat=True))
    todo = [image for image in images if image.id not in have]
    projected = project_stored(space, todo)
    todo = [image for image in todo if image.id not in projected]
    stored = LocalFeatures.objects.filter(image__in=todo, signature__isnull=False).values_list("image_id", flat=True)
    missing = features.feature_ids(todo) - set(stored)
    # Beside the active model's vectors: searches do not see them until the run switches models.
    _, failed = embed(todo, space.embedder, with_features=missing, store=partial(store.beside, space))
    return len(have) + len(projected) + len(todo) - len(failed), _failures(failed), gone


def project_stored(space, images):
    """Store a projected space's vectors of images whose raw vectors are kept: no forward pass. Returns their ids."""
    if space.projection is None or not images:
        return set()
    stored = dict(
        Embedding.objects.filter(image__in=images, model_key=space.base_key).values_list("image_id", "vector")
    )
    if not stored:
        return set()
    ids = list(stored)
    store.projected(space, ids, np.stack([stored[i] for i in ids]))
    return set(ids)


def _failures(failed):
    return [{"image_id": image.id, "reason": reason[:500]} for image, reason in failed]
