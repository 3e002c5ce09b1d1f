"""The worker's jobs, as plain functions: answer a search, embed or re-tag images, and do a reindex run's parts."""

import logging
import os
import random
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import close_old_connections, transaction
from django.utils import timezone

from search import copywords, indexing, knn, reindex, services
from search.models import Embedding, IndexedImage, LocalFeatures, ModelVersion, ReindexRun
from search.projection import COPY_CANDIDATES, Projection

from . import embedder as embedder_module
from . import edits, localfeatures, signature, words
from .imageio import ImageDecodeError, load_rgb, make_thumbnail

log = logging.getLogger(__name__)


def _decode_threads():
    """The cores torch leaves free (at least one, at most four): more threads only slowed the model on 2 cores."""
    cores = os.cpu_count() or 1
    return min(4, max(1, cores - (settings.IMGSEARCH_TORCH_THREADS or cores)))


DECODE_NICENESS = 10  # how far below the model's thread the decode threads run


def _below_the_model():
    """Lower this decode thread's priority (on Linux a thread has a nice value of its own), so the model's thread
    keeps its core whenever it can run and decoding fills what is left: with local features on 2 cores, the model ran
    at 32-42 img/s inside the pipeline before, 38-48 after, and the pipeline went from 0.64x to 0.71x of the bare
    forward (medians of 4 alternating passes, each against the bare forward just before it)."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS 0 is the whole process, the model's thread too
        return
    try:  # on Linux, PRIO_PROCESS 0 is the calling thread
        os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + DECODE_NICENESS))
    except OSError:
        pass


# Pillow and OpenCV release the GIL, so these threads decode (and extract local features) while torch runs,
# and one thread writes a batch's rows (with its own database connection) while the model embeds the next.
_decoders = ThreadPoolExecutor(max_workers=_decode_threads(), thread_name_prefix="decode", initializer=_below_the_model)
# With local features an image costs its decode thread more CPU than the model spends on it (SIFT at two sizes), so
# the model waits idle between batches; one thread more fills that time (bench/indexing.py). Also for extracting
# features alone, where no model runs.
_feature_decoders = ThreadPoolExecutor(max_workers=_decode_threads() + 1, thread_name_prefix="decode-features",
                                       initializer=_below_the_model)
_stores = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")


class SearchError(Exception):
    """A search that cannot be answered, with a reason a person can act on."""


@dataclass(frozen=True)
class Space:
    """A model version's vectors: its key, the embedder that makes raw vectors, and its projection (None: raw)."""

    key: str
    embedder: object  # workers.embedder.Embedder
    projection: Projection | None

    @property
    def dim(self):
        return self.embedder.dim if self.projection is None else self.projection.dim

    @property
    def base_key(self):
        """Where this model's raw vectors are kept (a projected version keeps them beside its own)."""
        return self.embedder.key

    def vectors(self, raw):
        """This version's vectors (one row each) of raw embeddings (one row each)."""
        return raw if self.projection is None else self.projection.apply(raw)

    @property
    def copy_key(self):
        """Where this version's copy-space vectors are kept (search/knn.py); None without a copy space."""
        has_copy_space = self.projection is not None and self.projection.copy is not None
        return knn.copy_key(self.key) if has_copy_space else None

    def ensure_vector_indexes(self):
        """Build this version's HNSW index, and its copy space's, once there are enough vectors for them."""
        knn.ensure_vector_index(self.key, self.dim)
        if self.copy_key:
            knn.ensure_vector_index(self.copy_key, self.projection.copy.shape[1])


_spaces = {}  # model version key -> Space, loaded once per process


def space_for(version):
    """The Space of a ModelVersion, its model loaded and vector index made sure of once per process."""
    space = _spaces.get(version.key)
    if space is None:
        embedder = embedder_module.get_embedder(version.arch, version.weights)
        if embedder.key not in (version.key, version.base_key):
            raise embedder_module.WeightsError(
                f"The weights of {version.key} changed since it was registered: they now load as {embedder.key}.")
        data = ModelVersion.objects.filter(key=version.key).values_list("projection", flat=True).first()
        projection = Projection.loads(data) if data else None
        space = Space(version.key, embedder, projection)
        space.ensure_vector_indexes()
        _spaces[version.key] = space
    return space


def active_space(key=None):
    """The active model version's Space; on a fresh install the configured model becomes the active one.

    `key`, the active model's key where the caller has just read it (a search's claim), saves the lookup once
    that model's Space is loaded in this process.
    """
    if key in _spaces:
        return _spaces[key]
    version = reindex.model_active()
    if version is None:
        embedder = embedder_module.get_embedder(settings.IMGSEARCH_MODEL, settings.IMGSEARCH_WEIGHTS)
        reindex.model_version_ensure(key=embedder.key, arch=embedder.spec.name, weights=embedder.weights,
                                     dim=embedder.dim, activate_if_none=True)
        version = reindex.model_active()  # ours, or one another worker made active first
    return space_for(version)


# --- Searches ---------------------------------------------------------------------------------------


def search_execute(job):
    """Embed the job's query image with the active model, find its neighbours, verify copies, store the results.

    `job` as services.search_job_claim returns it (with the active model's key).
    """
    try:
        space = active_space(job.active_model_key)
    except embedder_module.WeightsError as exc:
        raise SearchError(f"The search model cannot be loaded: {exc}") from None
    started = time.perf_counter()
    vector, raw, image = query_vector(job, space)
    embedded = time.perf_counter()
    # Re-ranking looks at more candidates than asked for, so a copy outside the top k is brought in.
    rerank_on = job.rerank and settings.IMGSEARCH_LOCAL_FEATURES
    wanted = max(job.k, settings.IMGSEARCH_RERANK_CANDIDATES) if rerank_on else job.k
    candidates = knn.nearest(vector, model_key=space.key, k=wanted, min_score=job.min_score, categories=job.categories)
    queried = time.perf_counter()
    if not candidates and not Embedding.objects.filter(model_key=space.key).exists():
        raise SearchError(f"The index holds no images embedded with {space.key} yet; index some images first.")
    if rerank_on:
        results = rerank(job, image, (vector, raw), space, candidates)[: job.k]
        rerank_ms = (time.perf_counter() - queried) * 1000
    else:
        results, rerank_ms = [(image_id, score, "similar") for image_id, score in candidates], None
    services.search_job_complete(job, results, model_key=space.key, embed_ms=(embedded - started) * 1000,
                                 query_ms=(queried - embedded) * 1000, rerank_ms=rerank_ms)


def query_vector(job, space):
    """(the query's vector, its raw vector, its decoded image): an indexed image's stored vectors (and no image) when
    it has them (its raw vector None where the version keeps none)."""
    if job.source_image_id and not job.query_image:
        stored = services.stored_vector(job.source_image_id, space.key)
        if stored is not None:
            raw = stored if space.projection is None else services.stored_vector(job.source_image_id, space.base_key)
            return stored, raw, None
        source = job.source_image.file
    elif job.query_image:
        source = job.query_image
    else:
        raise SearchError("The image to search with is no longer in the index.")
    image = _load_query(source, space.embedder.resize_size)
    raw = space.embedder.embed([image])[0]  # one row
    return space.vectors(raw)[0], raw[0], image


def _load_query(source, size):
    try:
        with source.open("rb") as f:
            return load_rgb(f, target_size=size, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
    except ImageDecodeError as exc:
        raise SearchError(f"The query image could not be read: {exc}") from None
    except FileNotFoundError:
        raise SearchError("The query image is missing on the server; please upload it again.") from None


def rerank(job, image, vectors, space, candidates):
    """Re-order the k-NN candidates by copy evidence: [(image_id, score, match)], copies first.

    `vectors`: the query's (vector, raw vector). The image whose signature matches the query's best in the whole
    index joins the candidates as the near duplicate (see _near_duplicate), or below SIGNATURE_COPY as a lookalike,
    and so do those whose visual words are nearest the query's and, where the projection has a copy space, those
    nearest it there (see _found_candidates); all of them are verified with local features. With a copy space, the
    lead of the candidates that are not copies is picked on their likeness there (see _copy_scores).
    """
    vector, raw = vectors
    query_features, query_signature = _query_evidence(job, image)
    best, lookalike = signature.near_or_lookalike(knn.signature_match(query_signature))  # in the whole index
    candidates, near = _near_duplicate(job, vector, space, candidates, best)
    candidates, found = _found_candidates(job, (vector, raw), space, candidates, query_features, lookalike)
    if not candidates:
        return []
    features, signatures = _stored_evidence([image_id for image_id, _ in candidates])  # every candidate's, at once
    likeness = signature.likeness(query_signature, [signatures.get(image_id) for image_id, _ in candidates])
    return localfeatures.rerank(candidates, query_features, lambda _ids: features, near=near, likeness=likeness,
                                identical=services.search_job_identical(job, candidates), verified_only=found,
                                lead_scores=_copy_scores(space, raw, candidates))


def _copy_scores(space, raw, candidates):
    """Each candidate's cosine to the query in the projection's copy space (search/projection.py), from the
    candidates' stored copy-space vectors (computed in the database), else from the raw vectors a projected version
    keeps beside its own (a version applied before copy-space vectors were stored); None without a copy space or the
    query's raw vector. A candidate with neither gets -1: it cannot lead."""
    if space.copy_key is None or raw is None:
        return None
    ids = [image_id for image_id, _ in candidates]
    query = space.projection.copy_vectors(raw)[0]
    sims = knn.scores_of(query, ids, model_key=space.copy_key)
    missing = [image_id for image_id in ids if image_id not in sims]
    if missing:
        stored = dict(Embedding.objects.filter(model_key=space.base_key, image_id__in=missing)
                      .values_list("image_id", "vector"))
        if stored:
            sims.update(zip(stored, space.projection.copy_vectors(list(stored.values())) @ query))
    return [float(sims.get(image_id, -1.0)) for image_id in ids]


def _near_duplicate(job, vector, space, candidates, best):
    """(candidates, the near duplicate's position among them or None): `best`, the image whose signature best
    matches the query's where it reaches SIGNATURE_COPY (None: none does), added with its cosine score when it is
    not a candidate already (and not when the search's categories or min_score would leave it out)."""
    _, near = signature.with_near_duplicate([image_id for image_id, _ in candidates], best)
    if near != len(candidates):
        return candidates, near  # none, or already a candidate
    added = _admitted(job, vector, space, [best])
    return [*candidates, *added], near if added else None


def _admitted(job, vector, space, image_ids):
    """[(image_id, cosine score)] of those images the search's categories and min_score let in, in the given order."""
    scores = knn.scores_of(vector, image_ids, model_key=space.key, categories=job.categories)
    return [(image_id, scores[image_id]) for image_id in image_ids
            if image_id in scores and scores[image_id] >= job.min_score]


def _found_candidates(job, vectors, space, candidates, query_features, lookalike):
    """(candidates, the positions of those added): the words.CANDIDATES images whose visual words are nearest the
    query's, as is or mirrored, `lookalike` (the image whose signature matches the query's best, below
    SIGNATURE_COPY; None: none), and the COPY_CANDIDATES nearest the query in the projection's copy space (`vectors`:
    the query's vector and raw vector; none without a copy space or a raw vector), added with their cosine scores where they
    are not candidates already (and not where the search's categories or min_score would leave them out). They stay in
    the results only if verified as copies or if one of them leads the rest on the evidence the candidates are ordered
    by (localfeatures.order): a copy's original that the global vectors rank too low, never a picture that merely looks
    alike among the others."""
    vector, raw = vectors
    vocabulary = copywords.vocabulary()
    ids = [] if lookalike is None else [lookalike]
    if space.copy_key is not None and raw is not None:
        nearest = knn.nearest(space.projection.copy_vectors(raw)[0], model_key=space.copy_key, k=COPY_CANDIDATES,
                              min_score=-1.0)
        ids += [image_id for image_id, _ in nearest]
    if vocabulary is not None and len(query_features):
        queries = [words.aggregate(query_features, vocabulary.centroids, mirrored=mirrored) for mirrored in (False, True)]
        ids = knn.words_nearest(queries, k=words.CANDIDATES) + ids
    taken = {image_id for image_id, _ in candidates}
    added = _admitted(job, vector, space, [i for i in dict.fromkeys(ids) if i not in taken])
    return [*candidates, *added], frozenset(range(len(candidates), len(candidates) + len(added)))


def _stored_evidence(ids):
    """({image_id: Features}, {image_id: signature}) of the images' stored copy evidence, in one query; no Features
    for a record of another version, no signature for an image indexed before signatures existed."""
    features, signatures = {}, {}
    rows = LocalFeatures.objects.filter(image_id__in=ids).values_list("image_id", "data", "signature")
    for image_id, data, sig in rows:
        if sig is not None:
            signatures[image_id] = np.asarray(sig, np.float32)
        try:
            features[image_id] = localfeatures.unpack(bytes(data))
        except ValueError:  # stored by another version: "similar" until extracted again
            pass
    return features, signatures


def _query_evidence(job, image):
    """The query's local features and signature: from its decoded image, else (an indexed image) stored or
    extracted now."""
    if image is None:
        stored = LocalFeatures.objects.filter(image_id=job.source_image_id).values_list("data", "signature").first()
        try:
            if stored is not None and stored[1] is not None:
                return localfeatures.unpack(bytes(stored[0])), np.asarray(stored[1], np.float32)
        except ValueError:
            pass
        image = _load_query(job.source_image.file, localfeatures.WORK_SIDE)
    return localfeatures.extract(image), signature.compute(image)


# --- Embedding indexed images -------------------------------------------------------------------------


@dataclass
class Decoded:
    image: IndexedImage
    tensor: object = None  # the model's input, or None when the image could not be read
    error: str = ""
    thumbnail: bytes | None = None  # JPEG bytes, for an image that has none yet
    features: bytes | None = None  # packed local features, when asked for
    signature: object = None  # with the features: workers.signature
    words: object = None  # with the features, once the index has a vocabulary: workers.words
    words_vocabulary: int | None = None  # the VisualWords id they were computed with


def _decode(embedder, with_features, vocabulary, image):
    """Decode one indexed image and prepare what the model and the store need (run in the decode threads)."""
    try:
        pil = load_rgb(image.file.path, target_size=embedder.resize_size, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
    except ImageDecodeError as exc:
        return Decoded(image, error=str(exc))
    except OSError as exc:
        return Decoded(image, error=f"cannot read the stored file: {exc}")
    features, signature_, words_, words_vocabulary = (_copy_evidence(pil, vocabulary) if image.id in with_features
                                                      else (None, None, None, None))
    return Decoded(image, embedder.prepare(pil), thumbnail=None if image.thumbnail else make_thumbnail(pil),
                   features=features, signature=signature_, words=words_, words_vocabulary=words_vocabulary)


def _copy_evidence(pil, vocabulary):
    """(packed local features, signature, visual words, the id of their vocabulary) of a decoded image, as
    LocalFeatures stores them; no words (None, None) without a vocabulary."""
    features = localfeatures.extract(pil)
    found = None if vocabulary is None else words.aggregate(features, vocabulary.centroids)
    return localfeatures.pack(features), signature.compute(pil), found, None if vocabulary is None else vocabulary.id


def _vocabulary(extracting):
    """The index's vocabulary of visual words when local features are being extracted and one is learned, else None."""
    return copywords.vocabulary() if extracting else None


def _ahead(fn, items, count, pool):
    """fn(item) for each item in the pool's threads, in order, with at most `count` started ahead."""
    items, started = iter(items), deque()
    for item in islice(items, count):
        started.append(pool.submit(fn, item))
    while started:
        result = started.popleft().result()
        for item in islice(items, 1):
            started.append(pool.submit(fn, item))
        yield result


def _embed(images, embedder, *, with_features=frozenset(), store=None):
    """Decode and embed images in batches of up to IMGSEARCH_BATCH_SIZE: (outcomes, [(image, reason)]).

    The decode threads prepare the next batches while the model embeds one, and each embedded batch
    [(Decoded, raw vector, prediction)] goes to `store` on the store thread, so writing it overlaps embedding
    the next (bench/indexing.py measures this pipeline against the bare forward pass). The outcomes are
    store's results per batch, or the batches themselves without a store.
    """
    size = settings.IMGSEARCH_BATCH_SIZE
    outcomes, failed, batch = [], [], []
    # The model waits idle while the first batch is decoded, so the first batches are smaller (a quarter, a half,
    # then full): it starts sooner and the decode threads, faster than the model, still get ahead of it.
    wanted = max(1, size // 4)

    def flush():
        nonlocal wanted
        if batch:
            vectors, predictions = embedder.embed_prepared([d.tensor for d in batch])
            rows = list(zip(batch, vectors, predictions))
            outcomes.append(_stores.submit(_store_in_thread, store, rows) if store else rows)
            batch.clear()
            wanted = min(size, 2 * wanted)

    try:
        pool = _feature_decoders if with_features else _decoders
        decode = partial(_decode, embedder, with_features, _vocabulary(bool(with_features)))
        for decoded in _ahead(decode, images, 2 * size, pool):
            if decoded.tensor is None:
                failed.append((decoded.image, decoded.error))
                continue
            batch.append(decoded)
            if len(batch) >= wanted:
                flush()
        flush()
    finally:  # even when embedding failed, the batches handed over are written (or fail) before we return
        outcomes = [o.result() if isinstance(o, Future) else o for o in outcomes]
    return outcomes, failed


def _store_in_thread(store, rows):
    close_old_connections()  # the store thread's own connection: kept between tasks, dropped when broken
    return store(rows)


def _store_vectors(space, embedded):
    """Upsert the images' vectors of the space, and for a projected space their raw vectors too."""
    if not embedded:
        return
    ids = [d.image.id for d, _, _ in embedded]
    raw = np.stack([vector for _, vector, _ in embedded])
    _store_projected(space, ids, raw)
    if space.projection is not None:  # raw vectors stay complete, to learn the next projection from
        knn.vectors_upsert(space.base_key, ids, raw)


def _store_projected(space, ids, raw):
    """Upsert the images' vectors of the space from their raw vectors (rows), and their copy-space vectors where the
    space's projection has a copy space."""
    knn.vectors_upsert(space.key, ids, space.vectors(raw))
    if space.copy_key:
        knn.vectors_upsert(space.copy_key, ids, space.projection.copy_vectors(raw))


def _store_features(embedded):
    _upsert_features([(d.image, d.features, d.signature, d.words, d.words_vocabulary)
                      for d, _, _ in embedded if d.features is not None])


def _upsert_features(rows):
    """Write LocalFeatures rows [(image, packed features, signature, visual words, their vocabulary's id)], replacing
    what an image already has; an image deleted meanwhile is skipped."""
    if not rows:
        return
    kept = _existing_ids([row[0].id for row in rows])
    LocalFeatures.objects.bulk_create([LocalFeatures(image=image, data=data, signature=sig, words=found,
                                                     words_vocabulary_id=vocabulary)
                                       for image, data, sig, found, vocabulary in rows if image.id in kept],
                                      update_conflicts=True, unique_fields=["image"],
                                      update_fields=["data", "signature", "words", "words_vocabulary", "created_at"])


def _store_ready(embedded):
    """Thumbnails, automatic tags and the ready status of images the active model has embedded."""
    ready = []
    for decoded, _, prediction in embedded:
        image = decoded.image
        if decoded.thumbnail:
            name = f"thumbs/{image.content_hash[:2]}/{image.content_hash}.jpg"
            image.thumbnail.save(name, ContentFile(decoded.thumbnail), save=False)
        ready.append((image.id, image.thumbnail.name, prediction.label, prediction.score, prediction.tag))
    indexing.images_ready(ready, timezone.now())


def _store_failed(failed):
    """Mark images [(image, reason)] that could not be read as failed, with their reason."""
    for image, error in failed:
        image.status, image.error = IndexedImage.Status.FAILED, error[:2000]
    IndexedImage.objects.bulk_update([image for image, _ in failed], ["status", "error"])


def _store_active(space, embedded):
    """One batch of the active model's images, whole: True if another model became active meanwhile."""
    with transaction.atomic():
        reindex.model_switch_lock(shared=True)
        embedded = _still_indexed(embedded)  # no vectors, thumbnails or features of an image deleted meanwhile
        _store_vectors(space, embedded)
        _store_features(embedded)
        _store_ready(embedded)
        active = reindex.model_active()
        return active is not None and active.key != space.key


def _still_indexed(embedded):
    """The rows [(Decoded, vector, prediction)] of images not deleted while the worker embedded them."""
    kept = _existing_ids([decoded.image.id for decoded, _, _ in embedded])
    return [row for row in embedded if row[0].image.id in kept]


def _existing_ids(ids):
    """Which of these image ids are still indexed (the admin may delete an image while a worker embeds it)."""
    return set(IndexedImage.objects.filter(id__in=ids).values_list("id", flat=True))


def _store_beside(space, embedded):
    """One batch of a model a run is building: its vectors (and missing local features) only."""
    _store_vectors(space, embedded)
    _store_features(embedded)


def _feature_ids(images):
    """The ids of images to extract local features of: all of them, unless IMGSEARCH_LOCAL_FEATURES is off."""
    return frozenset(image.id for image in images) if settings.IMGSEARCH_LOCAL_FEATURES else frozenset()


def images_embed(image_ids, *, overwrite=False):
    """Embed images with the active model: vectors, local features, thumbnails, tags, status. Idempotent unless overwrite."""
    space = active_space()
    images = IndexedImage.objects.filter(id__in=image_ids)
    if not overwrite:
        images = images.exclude(embeddings__model_key=space.key)
    images = list(images)
    switched, failed = _embed(images, space.embedder, with_features=_feature_ids(images), store=partial(_store_active, space))
    _store_failed(failed)
    space.ensure_vector_indexes()  # built once the index has grown enough
    if any(switched):  # a reindex run made another model active while we worked: these images need its vectors
        return images_embed(image_ids)
    return len(images) - len(failed), len(failed)


def images_retag(image_ids):
    """Recompute the automatic tags of images with the active model's classifier."""
    batches, failed = _embed(list(IndexedImage.objects.filter(id__in=image_ids)), active_space().embedder)
    embedded = [row for batch in batches for row in batch]
    for decoded, _, prediction in embedded:
        image = decoded.image
        image.auto_label, image.auto_score, image.auto_tags = prediction.label, prediction.score, prediction.auto_tags
    IndexedImage.objects.bulk_update([row[0].image for row in embedded], ["auto_label", "auto_score", "auto_tags"])
    return len(embedded), len(failed)


def images_extract_features(image_ids):
    """Extract and store the copy evidence of images that have none, or no signature (indexed before it existed)."""
    have = LocalFeatures.objects.filter(image_id__in=image_ids, signature__isnull=False).values("image_id")
    images = list(IndexedImage.objects.filter(id__in=image_ids, status=IndexedImage.Status.READY).exclude(id__in=have))
    decoded = list(_feature_decoders.map(partial(_decode_features, _vocabulary(bool(images))), images))
    _upsert_features([(image, *evidence) for image, evidence in decoded if evidence])
    return sum(1 for _, evidence in decoded if evidence), sum(1 for _, evidence in decoded if not evidence)


def _decode_features(vocabulary, image):
    """(image, (packed local features, signature, visual words, their vocabulary's id)), or (image, None) when its
    file cannot be read."""
    try:
        pil = load_rgb(image.file.path, target_size=localfeatures.WORK_SIDE, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
    except (ImageDecodeError, OSError):
        return image, None
    return image, _copy_evidence(pil, vocabulary)


# --- Reindex runs -----------------------------------------------------------------------------------


def reindex_plan_run(run_id):
    """Load the run's model (failing the run if its weights are unusable), register it, and plan the chunks."""
    run = ReindexRun.objects.filter(id=run_id, status=ReindexRun.Status.QUEUED).first()
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
    active = reindex.model_active()
    if active is not None and embedder.key in (active.key, active.base_key):
        return active  # the active model itself, projected or not: a full re-embed
    return reindex.model_version_ensure(key=embedder.key, arch=run.arch, weights=run.weights, dim=embedder.dim)


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
        _, failed = _embed(images, space.embedder, with_features=_feature_ids(images), store=partial(_store_active, space))
        with transaction.atomic():
            _store_failed(failed)
            # An image that cannot be read any more should not be found by its old vector either.
            keys = [key for key in (space.key, space.copy_key) if key]
            Embedding.objects.filter(image__in=[image for image, _ in failed], model_key__in=keys).delete()
        space.ensure_vector_indexes()
        return len(images) - len(failed), _failures(failed), gone
    have = set(Embedding.objects.filter(image_id__in=image_ids, model_key=space.key).values_list("image_id", flat=True))
    todo = [image for image in images if image.id not in have]
    projected = _project_stored(space, todo)
    todo = [image for image in todo if image.id not in projected]
    evidence = LocalFeatures.objects.filter(image__in=todo, signature__isnull=False).values_list("image_id", flat=True)
    missing = _feature_ids(todo) - set(evidence)
    # Beside the active model's vectors: searches do not see them until the run switches models.
    _, failed = _embed(todo, space.embedder, with_features=missing, store=partial(_store_beside, space))
    return len(have) + len(projected) + len(todo) - len(failed), _failures(failed), gone


def _project_stored(space, images):
    """Store a projected space's vectors of images whose raw vectors are kept: no forward pass. Returns their ids."""
    if space.projection is None or not images:
        return set()
    stored = dict(Embedding.objects.filter(image__in=images, model_key=space.base_key).values_list("image_id", "vector"))
    if not stored:
        return set()
    ids = list(stored)
    _store_projected(space, ids, np.stack([stored[i] for i in ids]))
    return set(ids)


def _failures(failed):
    return [{"image_id": image.id, "reason": reason[:500]} for image, reason in failed]


# --- Projections ------------------------------------------------------------------------------------

def projection_copy_pairs(base, count=edits.COPY_PAIRS):
    """(originals, copies): the stored raw vectors of up to `count` ready images of the model version `base`, chosen
    at random, and the raw vectors of an edited copy of each (workers/edits.py), for search.projection.fit. Images
    whose file cannot be read any more are left out."""
    ids = list(Embedding.objects.filter(model_key=base.key, image__status=IndexedImage.Status.READY)
               .values_list("image_id", flat=True))
    rng = random.Random(0)
    ids = rng.sample(ids, min(count, len(ids)))
    embedder = embedder_module.get_embedder(base.arch, base.weights)
    vectors = dict(Embedding.objects.filter(model_key=base.key, image_id__in=ids).values_list("image_id", "vector"))
    originals, copies, batch = [], [], []
    for image in IndexedImage.objects.filter(id__in=list(vectors)).order_by("id").only("id", "file"):
        try:
            pil = load_rgb(image.file.path, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
        except (ImageDecodeError, OSError, ValueError):  # ValueError: a row without a file
            continue
        originals.append(np.asarray(vectors[image.id], np.float32))
        batch.append(edits.edited(pil, rng))
        if len(batch) == 32:  # embedded as they come: a big photo's copies are not all held at once
            copies.append(embedder.embed(batch)[0])
            batch = []
    if batch:
        copies.append(embedder.embed(batch)[0])
    return (np.stack(originals), np.concatenate(copies)) if originals else None
