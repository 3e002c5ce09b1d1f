"""The worker's two jobs, as plain functions: answer a search, and embed a batch of indexed images."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from search import knn, services
from search.models import Embedding, IndexedImage

from . import embedder as embedder_module
from .imageio import ImageDecodeError, load_rgb, make_thumbnail

log = logging.getLogger(__name__)

# Pillow releases the GIL while decoding, so a few threads keep the model fed.
_decoders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="decode")


_prepared = set()


def get_embedder():
    """The process's model, with its version row and vector index made sure of once."""
    embedder = embedder_module.get_embedder()
    services.model_version_register(key=embedder.key, arch=embedder.spec.name, weights=embedder.weights, dim=embedder.dim)
    if embedder.key not in _prepared:
        knn.ensure_vector_index(embedder.key, embedder.dim)
        _prepared.add(embedder.key)
    return embedder


class SearchError(Exception):
    """A search that cannot be answered, with a reason a person can act on."""


def search_execute(job):
    """Embed the job's query image, find its neighbours, store results and timings."""
    embedder = get_embedder()
    started = time.perf_counter()
    vector = query_vector(job, embedder)
    embedded = time.perf_counter()
    if not services.embeddings_count(embedder.key):
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


def _decode(image):
    """(image, PIL image or None, error) for one indexed image."""
    try:
        pil = load_rgb(image.file.path, target_size=embedder_module.get_embedder().resize_size, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
        return image, pil, ""
    except ImageDecodeError as exc:
        return image, None, str(exc)
    except OSError as exc:
        return image, None, f"cannot read the stored file: {exc}"


def images_embed(image_ids):
    """Embed the given images with the worker's model; already-embedded ones are skipped (idempotent)."""
    embedder = get_embedder()
    done = Embedding.objects.filter(image_id__in=image_ids, model_key=embedder.key).values_list("image_id", flat=True)
    todo = IndexedImage.objects.filter(id__in=image_ids).exclude(id__in=list(done))
    decoded = list(_decoders.map(_decode, todo))
    failed = [(image, error) for image, pil, error in decoded if pil is None]
    good = [(image, pil) for image, pil, _ in decoded if pil is not None]
    vectors, predictions = embedder.embed([pil for _, pil in good]) if good else ([], [])
    now = timezone.now()
    for (image, pil), prediction in zip(good, predictions):
        if not image.thumbnail:
            thumb = make_thumbnail(pil)
            image.thumbnail.save(f"thumbs/{image.content_hash[:2]}/{image.content_hash}.jpg", ContentFile(thumb), save=False)
        image.auto_label, image.auto_score, image.auto_tags = prediction.label, prediction.score, [prediction.category]
        image.status, image.error, image.indexed_at = IndexedImage.Status.READY, "", now
    for image, error in failed:
        image.status, image.error = IndexedImage.Status.FAILED, error[:2000]
    with transaction.atomic():
        Embedding.objects.bulk_create(
            [Embedding(image=image, model_key=embedder.key, vector=vector) for (image, _), vector in zip(good, vectors)],
            update_conflicts=True, unique_fields=["image", "model_key"], update_fields=["vector"],
        )
        fields = ["thumbnail", "auto_label", "auto_score", "auto_tags", "status", "error", "indexed_at"]
        IndexedImage.objects.bulk_update([image for image, _ in good] + [image for image, _ in failed], fields)
    return len(good), len(failed)
