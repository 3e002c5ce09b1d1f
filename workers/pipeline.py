"""The worker's jobs, as plain functions: answer a search, embed or re-tag images, and do a reindex run's parts."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from search import knn, reindex, services
from search.models import Embedding, IndexedImage, ReindexRun

from . import embedder as embedder_module
from .imageio import ImageDecodeError, load_rgb, make_thumbnail

log = logging.getLogger(__name__)

# Pillow releases the GIL while decoding, so a few threads keep the model fed.
_decoders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="decode")


_prepared = set()


class SearchError(Exception):
    """A search that cannot be answered, with a reason a person can act on."""


def load_embedder(arch, weights):
    """A model loaded once per process, with its vector index made sure of once."""
    embedder = embedder_module.get_embedder(arch, weights)
    if embedder.key not in _prepared:
        knn.ensure_vector_index(embedder.key, embedder.dim)
        _prepared.add(embedder.key)
    return embedder


def active_embedder():
    """The active model's embedder; on a fresh install the configured model becomes the active one."""
    version = reindex.model_active()
    if version is None:
        embedder = load_embedder(settings.IMGSEARCH_MODEL, settings.IMGSEARCH_WEIGHTS)
        reindex.model_version_ensure(key=embedder.key, arch=embedder.spec.name, weights=embedder.weights,
                                     dim=embedder.dim, activate_if_none=True)
        version = reindex.model_active()  # ours, or one another worker made active first
        if version.key == embedder.key:
            return embedder
    return load_embedder(version.arch, version.weights)


# --- Searches ---------------------------------------------------------------------------------------


def search_execute(job):
    """Embed the job's query image with the active model, find its neighbours, store results and timings."""
    try:
        embedder = active_embedder()
    except embedder_module.WeightsError as exc:
        raise SearchError(f"The search model cannot be loaded: {exc}") from None
    started = time.perf_counter()
    vector = query_vector(job, embedder)
    embedded = time.perf_counter()
    if not Embedding.objects.filter(model_key=embedder.key).exists():
        raise SearchError(f"The index holds no images embedded with {embedder.key} yet; index some images first.")
    results = knn.nearest(vector, model_key=embedder.key, k=job.k, min_score=job.min_score, categories=job.categories)
    done = time.perf_counter()
    services.search_job_complete(
        job, results, model_key=embedder.key, embed_ms=(embedded - started) * 1000, query_ms=(done - embedded) * 1000
    )


def query_vector(job, embedder):
    """The query's embedding: an indexed image's stored one when it has it, else the decoded file's."""
    if job.source_image_id and not job.query_image:
        stored = services.stored_vector(job.source_image_id, embedder.key)
        if stored is not None:
            return stored
        source = job.source_image.file
    elif job.query_image:
        source = job.query_image
    else:
        raise SearchError("The image to search with is no longer in the index.")
    try:
        with source.open("rb") as f:
            image = load_rgb(f, target_size=embedder.resize_size, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
    except ImageDecodeError as exc:
        raise SearchError(f"The query image could not be read: {exc}") from None
    except FileNotFoundError:
        raise SearchError("The query image is missing on the server; please upload it again.") from None
    return embedder.embed([image])[0][0]


# --- Embedding indexed images -------------------------------------------------------------------------


def _decode(embedder, image):
    """(image, PIL image or None, error) for one indexed image."""
    try:
        pil = load_rgb(image.file.path, target_size=embedder.resize_size, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
        return image, pil, ""
    except ImageDecodeError as exc:
        return image, None, str(exc)
    except OSError as exc:
        return image, None, f"cannot read the stored file: {exc}"


def _embed(images, embedder):
    """Decode and embed images: ([(image, PIL image, vector, prediction)], [(image, reason)])."""
    decoded = list(_decoders.map(partial(_decode, embedder), images))
    failed = [(image, error) for image, pil, error in decoded if pil is None]
    good = [(image, pil) for image, pil, _ in decoded if pil is not None]
    vectors, predictions = embedder.embed([pil for _, pil in good]) if good else ([], [])
    return [(image, pil, v, p) for (image, pil), v, p in zip(good, vectors, predictions)], failed


def _store_vectors(embedder, embedded):
    Embedding.objects.bulk_create(
        [Embedding(image=image, model_key=embedder.key, vector=vector) for image, _, vector, _ in embedded],
        update_conflicts=True, unique_fields=["image", "model_key"], update_fields=["vector"],
    )


def _store_images(embedded, failed):
    """Thumbnails, automatic tags and status of images the active model has embedded (or failed to read)."""
    now = timezone.now()
    for image, pil, _, prediction in embedded:
        if not image.thumbnail:
            thumb = make_thumbnail(pil)
            image.thumbnail.save(f"thumbs/{image.content_hash[:2]}/{image.content_hash}.jpg", ContentFile(thumb), save=False)
        image.auto_label, image.auto_score, image.auto_tags = prediction.label, prediction.score, [prediction.category]
        image.status, image.error, image.indexed_at = IndexedImage.Status.READY, "", now
    for image, error in failed:
        image.status, image.error = IndexedImage.Status.FAILED, error[:2000]
    fields = ["thumbnail", "auto_label", "auto_score", "auto_tags", "status", "error", "indexed_at"]
    IndexedImage.objects.bulk_update([row[0] for row in embedded] + [image for image, _ in failed], fields)


def images_embed(image_ids, *, overwrite=False):
    """Embed images with the active model: vectors, thumbnails, tags, status. Idempotent unless overwrite."""
    embedder = active_embedder()
    images = IndexedImage.objects.filter(id__in=image_ids)
    if not overwrite:
        images = images.exclude(embeddings__model_key=embedder.key)
    embedded, failed = _embed(list(images), embedder)
    with transaction.atomic():
        reindex.model_switch_lock(shared=True)
        _store_vectors(embedder, embedded)
        _store_images(embedded, failed)
        active = reindex.model_active()
        switched = active is not None and active.key != embedder.key
    if switched:  # a reindex run made another model active while we worked: these images need its vectors
        return images_embed(image_ids)
    return len(embedded), len(failed)


def images_retag(image_ids):
    """Recompute the automatic tags of images with the active model's classifier."""
    embedder = active_embedder()
    embedded, failed = _embed(list(IndexedImage.objects.filter(id__in=image_ids)), embedder)
    for image, _, _, prediction in embedded:
        image.auto_label, image.auto_score, image.auto_tags = prediction.label, prediction.score, [prediction.category]
    IndexedImage.objects.bulk_update([row[0] for row in embedded], ["auto_label", "auto_score", "auto_tags"])
    return len(embedded), len(failed)


# --- Reindex runs -----------------------------------------------------------------------------------


def reindex_plan_run(run_id):
    """Load the run's model (failing the run if its weights are unusable), register it, and plan the chunks."""
    run = ReindexRun.objects.filter(id=run_id, status=ReindexRun.Status.QUEUED).first()
    if run is None:
        return None
    try:
        embedder = load_embedder(run.arch, run.weights)
    except embedder_module.WeightsError as exc:
        reindex.reindex_fail(run_id, str(exc))
        return None
    reindex.model_version_ensure(key=embedder.key, arch=run.arch, weights=run.weights, dim=embedder.dim)
    knn.ensure_vector_index(embedder.key, embedder.dim)  # again: it may have been dropped with an old model
    return reindex.reindex_plan(run_id, model_key=embedder.key)


def reindex_chunk_run(run_id, number):
    """Embed one chunk of a run with the run's model and count it; a chunk already counted is left alone."""
    claimed = reindex.reindex_chunk_claim(run_id, number)
    if claimed is None:
        return None
    run, chunk = claimed
    try:
        embedder = load_embedder(run.arch, run.weights)
    except embedder_module.WeightsError as exc:
        return reindex.reindex_fail(run_id, str(exc))
    if embedder.key != run.model_key:
        return reindex.reindex_fail(run_id, f"The weights changed since the run started ({run.model_key} is now {embedder.key}).")
    done, failures, gone = chunk_embed(run, chunk.image_ids, embedder)
    return reindex.reindex_chunk_finish(chunk, done=done, failures=failures, gone=gone)


def chunk_embed(run, image_ids, embedder):
    """Embed a chunk's images: (images done, failures [{image_id, reason}], images removed since the plan)."""
    images = list(IndexedImage.objects.filter(id__in=image_ids))
    gone = len(set(image_ids)) - len(images)
    if run.overwrite:  # the active model itself: a full re-embed, as for new images
        embedded, failed = _embed(images, embedder)
        with transaction.atomic():
            _store_vectors(embedder, embedded)
            _store_images(embedded, failed)
            # An image that cannot be read any more should not be found by its old vector either.
            Embedding.objects.filter(image__in=[image for image, _ in failed], model_key=embedder.key).delete()
        return len(embedded), _failures(failed), gone
    have = set(Embedding.objects.filter(image_id__in=image_ids, model_key=run.model_key).values_list("image_id", flat=True))
    embedded, failed = _embed([image for image in images if image.id not in have], embedder)
    _store_vectors(embedder, embedded)  # beside the active model's vectors; searches do not see them yet
    return len(have) + len(embedded), _failures(failed), gone


def _failures(failed):
    return [{"image_id": image.id, "reason": reason[:500]} for image, reason in failed]
