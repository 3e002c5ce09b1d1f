"""Model versions and background reindex runs: start, plan, count chunks, switch models, cancel, resume.

A run re-embeds every ready image with one model, a chunk per task on the "index" queue, beside the active
model's vectors (blue/green). When its last chunk is counted the run's model becomes the active one in one
transaction; searches read the active model per search, so they switch at once. Every step is guarded by
the rows' status, so a task delivered twice changes nothing and a lost one is sent again (reindex_resume).
"""

import hashlib
import logging
from datetime import timedelta

import numpy as np

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from workers.registry import MODELS

from . import knn, projection
from .models import Embedding, IndexedImage, ModelVersion, ReindexChunk, ReindexRun

log = logging.getLogger(__name__)

Status = ReindexRun.Status
CHUNKS_IN_FLIGHT = 4  # queued per run at a time: enough for a few index workers, and new images are not starved
MAX_ATTEMPTS = 3  # deliveries of one chunk before its images are counted as failed
DROP_GRACE_SECONDS = 10  # searches that read the old active model just before a switch finish well within this
_SWITCH_LOCK = 7_301_001  # advisory lock: embedding writes (shared) against a model switch (exclusive)
_START_LOCK = 7_301_002  # advisory lock: one run started at a time


class ReindexError(ValueError):
    """A run that cannot be started, with a sentence fit to show the operator."""


# --- Model versions ---------------------------------------------------------------------------------


def model_active():
    """The active ModelVersion (without its projection's bytes: every search reads it), or None before any embedding."""
    return ModelVersion.objects.filter(active=True).defer("projection").first()


def model_version_ensure(*, key, arch, weights, dim, activate_if_none=False):
    """Register a model a worker has loaded; with activate_if_none it becomes active where none is."""
    version, _ = ModelVersion.objects.get_or_create(key=key, defaults={"arch": arch, "weights": weights, "dim": dim})
    if activate_if_none and not ModelVersion.objects.filter(active=True).exists():
        try:
            with transaction.atomic():
                ModelVersion.objects.filter(pk=version.pk).update(active=True)
        except IntegrityError:
            pass  # another worker made its model active first; the constraint keeps it to one
    return version


def model_switch_lock(*, shared):
    """Hold, until the transaction ends, the lock that orders embedding writes against a model switch."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [_SWITCH_LOCK])


def default_weights(arch):
    """The weights a run uses when none are named: the active or configured ones for that model, else DEFAULT."""
    active = model_active()
    if active and active.arch == arch:
        return active.weights
    return settings.IMGSEARCH_WEIGHTS if arch == settings.IMGSEARCH_MODEL else "DEFAULT"


def vector_indexes(version):
    """[(model key, dimensions)] of the vectors a model version searches: its own, and for a projection with a copy
    space its copy-space vectors (search/knn.copy_key)."""
    copy_dims = (version.projection_info or {}).get("copy_dims", 0) if version.base_key else 0
    return [(version.key, version.dim)] + ([(knn.copy_key(version.key), copy_dims)] if copy_dims else [])


def model_versions_drop(versions=None):
    """Delete the embeddings, vector index and row of inactive models no run needs: (models, embeddings).

    Kept: the active model, models a run is building, and the raw vectors a projected one of these is made from.
    """
    building = list(ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).values_list("model_key", flat=True))
    needed = ModelVersion.objects.filter(Q(active=True) | Q(key__in=building)).exclude(base_key="")
    keep = [*building, *needed.values_list("base_key", flat=True)]
    versions = (ModelVersion.objects.all() if versions is None else versions).filter(active=False).exclude(key__in=keep).defer("projection")
    dropped = embeddings = 0
    for version in versions:
        with transaction.atomic():
            for key, _ in vector_indexes(version):
                embeddings += Embedding.objects.filter(model_key=key).delete()[0]
                knn.drop_vector_index(key)
            version.delete()
        dropped += 1
    return dropped, embeddings


# --- Runs -------------------------------------------------------------------------------------------


def _run_under_way():
    """Why a new run cannot start now (another is under way), or None."""
    current = ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).first()
    return f"Reindex run {current.id} is still {current.status}; wait for it or cancel it first." if current else None


def reindex_start(run):
    """Save a new run and queue its planning on an index worker; refused while another run is under way."""
    if run.arch not in MODELS:
        raise ReindexError(f"Unknown model {run.arch!r}; choose one of: {', '.join(MODELS)}.")
    run.weights = (run.weights or "").strip() or default_weights(run.arch)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_START_LOCK])
        busy = _run_under_way()
        if busy:
            raise ReindexError(busy)
        run.status, run.chunk_size = Status.QUEUED, settings.IMGSEARCH_TASK_SIZE
        run.save()
        transaction.on_commit(lambda: _send_plan(run.id))
    return run


def reindex_plan(run_id, *, model_key):
    """Claim a queued run: cut the ready images into chunks and send the first few. None if not queued."""
    now = timezone.now()
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().filter(id=run_id, status=Status.QUEUED).first()
        if run is None:
            return None  # planned already, cancelled, or gone
        active = model_active()
        ids = list(IndexedImage.objects.filter(status=IndexedImage.Status.READY).order_by("id").values_list("id", flat=True))
        _chunks_create(run, ids, first_number=0)
        run.model_key, run.overwrite = model_key, bool(active and active.key == model_key)
        run.status, run.total, run.started_at, run.heartbeat_at = Status.RUNNING, len(ids), now, now
        run.save()
        _dispatch_or_finish(run)
    return run


def reindex_chunk_claim(run_id, number):
    """Mark a chunk started and return (run, chunk); None when the run is not running or the chunk is counted."""
    now = timezone.now()
    with transaction.atomic():
        run = ReindexRun.objects.filter(id=run_id, status=Status.RUNNING).first()
        chunk = run and ReindexChunk.objects.select_for_update().filter(run=run, number=number, finished_at=None).first()
        if not chunk:
            return None
        exhausted = chunk.attempts >= MAX_ATTEMPTS
        if not exhausted:
            chunk.attempts, chunk.started_at = chunk.attempts + 1, now
            chunk.save(update_fields=["attempts", "started_at"])
            ReindexRun.objects.filter(id=run_id).update(heartbeat_at=now)
    if exhausted:  # it failed, or killed its worker, every time: count its images as failed
        reindex_chunk_give_up(chunk, f"gave up after {MAX_ATTEMPTS} attempts")
        return None
    return run, chunk


def reindex_chunk_finish(chunk, *, done, failures, gone=0):
    """Count a chunk's outcome exactly once, send the next chunk, and finish the run after its last one."""
    now = timezone.now()
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().get(id=chunk.run_id)
        counted = ReindexChunk.objects.filter(id=chunk.id, finished_at=None).update(
            finished_at=now, done=done, failures=failures, gone=gone
        )
        if not counted:
            return run  # a second delivery of a chunk already counted
        shown = (run.failures + failures)[: ReindexRun.MAX_FAILURES_SHOWN]
        ReindexRun.objects.filter(id=run.id).update(
            done=F("done") + done, failed=F("failed") + len(failures), total=F("total") - gone,
            failures=shown, heartbeat_at=now,
        )
        run.refresh_from_db()
        if run.status == Status.RUNNING:
            _dispatch_or_finish(run)
    run.refresh_from_db()
    return run


def reindex_chunk_give_up(chunk, reason):
    """Count every image of a chunk that cannot be done as failed, with the reason."""
    present = set(IndexedImage.objects.filter(id__in=chunk.image_ids).values_list("id", flat=True))
    failures = [{"image_id": image_id, "reason": reason} for image_id in chunk.image_ids if image_id in present]
    return reindex_chunk_finish(chunk, done=0, failures=failures, gone=len(chunk.image_ids) - len(present))


def reindex_fail(run_id, reason):
    """End a queued or running run as failed, with the reason; the active model stays as it was."""
    return bool(ReindexRun.objects.filter(id=run_id, status__in=ReindexRun.ACTIVE_STATUSES).update(
        status=Status.FAILED, error=str(reason)[:2000], finished_at=timezone.now()
    ))


def reindex_cancel(run_id):
    """Stop a queued or running run: its chunks still queued return without work. False if it had ended."""
    return bool(ReindexRun.objects.filter(id=run_id, status__in=ReindexRun.ACTIVE_STATUSES).update(
        status=Status.CANCELLED, finished_at=timezone.now()
    ))


def reindex_resume(stall_seconds=None):
    """Send again the work of runs that made no progress for a while (a worker died with it). Returns runs nudged."""
    cutoff = timezone.now() - timedelta(seconds=stall_seconds or settings.IMGSEARCH_REINDEX_STALL_SECONDS)
    stalled = ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).annotate(
        seen=Coalesce("heartbeat_at", "created_at")).filter(seen__lt=cutoff)
    nudged = 0
    for run_id in stalled.values_list("id", flat=True):
        nudged += _resume(run_id, cutoff)
    return nudged


def _resume(run_id, cutoff):
    now = timezone.now()
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().filter(id=run_id, status__in=ReindexRun.ACTIVE_STATUSES).first()
        if run is None or (run.heartbeat_at or run.created_at) >= cutoff:
            return 0  # ended, or moved on, since the sweep looked
        run.heartbeat_at = now
        run.save(update_fields=["heartbeat_at"])
        if run.status == Status.QUEUED:
            transaction.on_commit(lambda: _send_plan(run.id))
            return 1
        lost = list(run.chunks.filter(queued_at__isnull=False, finished_at=None).values_list("number", flat=True))
        run.chunks.filter(number__in=lost).update(queued_at=now)
        for number in lost:
            transaction.on_commit(lambda number=number: _send_chunk(run.id, number))
        _dispatch_or_finish(run)
    log.warning("reindex run %s stalled; sent chunks %s again", run_id, lost)
    return 1


def _chunks_create(run, ids, *, first_number):
    size = run.chunk_size
    ReindexChunk.objects.bulk_create([
        ReindexChunk(run=run, number=first_number + n, image_ids=ids[start : start + size])
        for n, start in enumerate(range(0, len(ids), size))
    ])


def _dispatch_or_finish(run):
    """Keep CHUNKS_IN_FLIGHT chunks queued; when none is left unfinished, finish the run. Caller holds the run row."""
    chunks = run.chunks.filter(finished_at=None)
    if not chunks.exists():
        return _finish(run)
    room = CHUNKS_IN_FLIGHT - chunks.filter(queued_at__isnull=False).count()
    numbers = list(chunks.filter(queued_at=None).order_by("number").values_list("number", flat=True)[: max(room, 0)])
    run.chunks.filter(number__in=numbers).update(queued_at=timezone.now())
    for number in numbers:
        transaction.on_commit(lambda number=number: _send_chunk(run.id, number))


def _finish(run):
    """Embed what the snapshot missed, else make the run's model active. Caller holds the run row."""
    model_switch_lock(shared=False)  # no embedding write with the old model may slip past the check below
    failed = {f["image_id"]: f["reason"] for chunk in run.chunks.all() for f in chunk.failures}
    embedded = Embedding.objects.filter(model_key=run.model_key).values("image_id")
    missing = list(IndexedImage.objects.filter(status=IndexedImage.Status.READY).exclude(id__in=embedded)
                   .exclude(id__in=list(failed)).order_by("id").values_list("id", flat=True))
    if missing:  # images indexed while the run went on
        last = run.chunks.order_by("-number").values_list("number", flat=True).first()
        _chunks_create(run, missing, first_number=last + 1)
        ReindexRun.objects.filter(id=run.id).update(total=F("total") + len(missing))
        return _dispatch_or_finish(run)
    # Images the new model could not read cannot be found once it is active: say so on the image.
    unreadable = IndexedImage.objects.filter(id__in=list(failed)).exclude(id__in=embedded)
    for image in unreadable:
        image.status, image.error = IndexedImage.Status.FAILED, failed[image.id][:2000]
    IndexedImage.objects.bulk_update(unreadable, ["status", "error"])
    version = ModelVersion.objects.defer("projection").get(key=run.model_key)
    # The run's vector indexes are built in one go from all its vectors (cheaper than growing them one insert at a
    # time), by a task of its own: at a million vectors it takes minutes, longer than a chunk may run.
    if any(knn.needs_vector_index(key, dim) for key, dim in vector_indexes(version)):
        transaction.on_commit(lambda: _send("workers.reindex_build_index", run.id))
        return
    ModelVersion.objects.filter(active=True).exclude(key=run.model_key).update(active=False)
    ModelVersion.objects.filter(key=run.model_key).update(active=True)
    ReindexRun.objects.filter(id=run.id).update(status=Status.DONE, finished_at=timezone.now())
    log.info("reindex run %s done: %s is the active model", run.id, run.model_key)
    if run.drop_old:
        transaction.on_commit(lambda: _send("workers.drop_inactive_models", countdown=DROP_GRACE_SECONDS))
        return
    # Projections replaced by this one are derived data (learned again at will): their vectors go. Searches use
    # the projected vectors now, so the raw ones need no index: each new image no longer pays for its graph.
    if version.base_key:
        knn.drop_vector_index(version.base_key)
    replaced = list(ModelVersion.objects.filter(base_key=version.base_key or version.key, active=False)
                    .exclude(base_key="").values_list("key", flat=True))
    if replaced:
        transaction.on_commit(lambda: _send("workers.drop_inactive_models", replaced, countdown=DROP_GRACE_SECONDS))


def reindex_build_index(run_id):
    """Build the vector indexes of a run whose chunks are all counted, then finish the run (switch models)."""
    run = ReindexRun.objects.filter(id=run_id, status=Status.RUNNING).first()
    if run is None:
        return None
    ReindexRun.objects.filter(id=run_id).update(heartbeat_at=timezone.now())
    version = ModelVersion.objects.defer("projection").get(key=run.model_key)
    for key, dim in vector_indexes(version):
        # ensure_vector_index says False both for "too few vectors" and "another worker is building it": ask first.
        if knn.needs_vector_index(key, dim) and not knn.ensure_vector_index(key, dim, wait=False):
            return run  # another worker is building it (a resend after a long build): that one finishes the run
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().filter(id=run_id, status=Status.RUNNING).first()
        if run is not None and not run.chunks.filter(finished_at=None).exists():
            _finish(run)
    return ReindexRun.objects.get(id=run_id)


def _send(name, *args, countdown=None):
    from imgsearch.celery import app

    app.send_task(name, args=args, countdown=countdown)


def _send_plan(run_id):
    _send("workers.reindex_plan", run_id)


def _send_chunk(run_id, number):
    _send("workers.reindex_chunk", run_id, number)


# --- Projections -----------------------------------------------------------------------------------

PROJECTION_GROWTH = 1.5  # learn again once the index, or its tagged part, has grown by half


def projection_due():
    """(due, reason): whether IMGSEARCH_PROJECTION=auto should learn a projection for the active model now."""
    active = model_active()
    if settings.IMGSEARCH_PROJECTION != "auto" or active is None:
        return False, "Projections are off (IMGSEARCH_PROJECTION=off)." if active else "Nothing is indexed yet."
    if ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).exists():
        return False, "A reindex run is under way."
    images, tagged = _raw_counts(active.base_key or active.key)
    if images < settings.IMGSEARCH_PROJECTION_MIN_IMAGES:
        return False, f"{images} images are indexed; a projection is learned from {settings.IMGSEARCH_PROJECTION_MIN_IMAGES}."
    if not active.base_key:
        return True, "The active model has no projection yet."
    learned = active.projection_info
    if images >= PROJECTION_GROWTH * learned.get("images", 0) or tagged >= PROJECTION_GROWTH * max(learned.get("tagged_images", 0), 10):
        return True, "The index has grown since the projection was learned."
    return False, "The projection is up to date."


def _raw_rows(base_key):
    """The raw vectors of ready images, what a projection of the model is learned from."""
    return Embedding.objects.filter(model_key=base_key, image__status=IndexedImage.Status.READY)


def _raw_counts(base_key):
    """(ready images with a raw vector of the model, those of them with given tags)."""
    rows = _raw_rows(base_key)
    return rows.count(), rows.exclude(image__user_tags=[]).count()


def projection_learn(copy_pairs=None):
    """Learn a projection of the active model's raw vectors from the index, and start the run that applies it.

    `copy_pairs(base)`, given the ModelVersion of the raw vectors, returns (originals, edited copies) as raw vectors
    for the projection's copy space (workers.pipeline.projection_copy_pairs: it needs the model, so only a worker
    or a command passes it); None: no copy space. Returns (run, message); run is None when nothing was started, and
    the message says why.
    """
    active = model_active()
    if active is None:
        return None, "Nothing is indexed yet."
    base = ModelVersion.objects.get(key=active.base_key) if active.base_key else active
    vectors, tags = _raw_sample(base.key)
    minimum = settings.IMGSEARCH_PROJECTION_MIN_IMAGES
    copies = copy_pairs(base) if copy_pairs is not None and len(vectors) >= minimum else None
    try:
        learned, info = projection.fit(vectors, tags, copies=copies, min_images=minimum)
    except projection.ProjectionError as exc:
        return None, str(exc)
    data = learned.dumps()
    key = f"{base.key}:p-{hashlib.sha256(data).hexdigest()[:10]}"
    info["learned_at"] = timezone.now().isoformat()
    ModelVersion.objects.update_or_create(key=key, defaults={
        "arch": base.arch, "weights": base.weights, "dim": learned.dim, "base_key": base.key, "projection": data,
        "projection_info": info,
    })
    try:
        run = reindex_start(ReindexRun(arch=base.arch, weights=base.weights, model_key=key))
    except ReindexError as exc:
        return None, str(exc)
    tags_used = f", {info['lda_dims']} from {len(info['tags'])} tags" if info["lda_dims"] else ""
    copy_space = f", a copy space from {info['copy_pairs']} edited copies" if info["copy_dims"] else ""
    return run, (f"Learned a projection from {info['images']} images ({info['pca_dims']} dimensions{tags_used}"
                 f"{copy_space}); reindex run {run.id} applies it.")


def copy_vectors_fill(batch=5000):
    """Store the active projection's copy-space vectors of images that have its projected vectors but none there (a
    projection applied before copy-space vectors were stored), from their raw vectors: no model needed. Returns how
    many were stored. Cheap when nothing is missing: two counts."""
    version = model_active()
    copy_space = vector_indexes(version)[1:] if version is not None else []  # [(its key, its dimensions)] or none
    if not copy_space:
        return 0
    [(key, dim)] = copy_space
    have = Embedding.objects.filter(model_key=key)
    if have.count() >= Embedding.objects.filter(model_key=version.key).count():
        return 0
    learned = projection.Projection.loads(ModelVersion.objects.values_list("projection", flat=True).get(key=version.key))
    missing = list(Embedding.objects.filter(model_key=version.key).exclude(image_id__in=have.values("image_id"))
                   .values_list("image_id", flat=True))
    stored = 0
    for start in range(0, len(missing), batch):
        raw = dict(Embedding.objects.filter(model_key=version.base_key, image_id__in=missing[start : start + batch])
                   .values_list("image_id", "vector"))
        if raw:
            knn.vectors_upsert(key, list(raw), learned.copy_vectors(list(raw.values())))
            stored += len(raw)
    knn.ensure_vector_index(key, dim)
    return stored


def projection_request():
    """Ask a worker to learn a projection (with its copy space, which needs the model) and start the run that applies
    it: (sent, message). Not sent when projection_learn would surely refuse: nothing or too little indexed, or a
    run under way."""
    active = model_active()
    if active is None:
        return False, "Nothing is indexed yet."
    images, _ = _raw_counts(active.base_key or active.key)
    refused = projection.too_few(images, settings.IMGSEARCH_PROJECTION_MIN_IMAGES) or _run_under_way()
    if refused:
        return False, refused
    transaction.on_commit(lambda: _send("workers.learn_projection"))
    return True, ("A worker is learning a projection from the index (edited copies of some images are embedded "
                  "first, a minute or so); a reindex run then applies it: see Reindex runs.")


def _raw_sample(base_key):
    """(raw vectors, given tags) of ready images, at most projection.MAX_FIT_VECTORS of them chosen at random."""
    ids = list(_raw_rows(base_key).values_list("id", flat=True))
    if len(ids) > projection.MAX_FIT_VECTORS:
        ids = np.random.default_rng(0).choice(ids, projection.MAX_FIT_VECTORS, replace=False).tolist()
    vectors, tags = [], []
    for start in range(0, len(ids), 5000):
        for vector, image_tags in Embedding.objects.filter(id__in=ids[start : start + 5000]).values_list("vector", "image__user_tags"):
            vectors.append(vector)
            tags.append(image_tags)
    return np.array(vectors, np.float32).reshape(len(vectors), -1), tags


# --- Image maintenance (admin actions) ----------------------------------------------------------------


def images_reembed(image_ids, *, batch_size=None):
    """Queue embedding of the images with the active model, overwriting their vectors, thumbnails and tags."""
    return _send_batches("workers.embed_images", image_ids, batch_size, overwrite=True)


def images_retag(image_ids, *, batch_size=None):
    """Queue recomputing the images' automatic tags with the active model's classifier."""
    return _send_batches("workers.retag_images", image_ids, batch_size)


def images_extract_missing_features(*, batch_size=None):
    """Queue copy-evidence extraction for ready images that have none, or no signature: (images, tasks)."""
    missing = Q(local_features__isnull=True) | Q(local_features__signature__isnull=True)
    ids = list(IndexedImage.objects.filter(missing, status=IndexedImage.Status.READY)
               .order_by("id").values_list("id", flat=True))
    return len(ids), _send_batches("workers.extract_features", ids, batch_size)


def _send_batches(name, image_ids, batch_size, **kwargs):
    from imgsearch.celery import app

    ids, size = list(image_ids), batch_size or settings.IMGSEARCH_TASK_SIZE
    batches = [ids[i : i + size] for i in range(0, len(ids), size)]
    for batch in batches:
        transaction.on_commit(lambda batch=batch: app.send_task(name, args=(batch,), kwargs=kwargs))
    return len(batches)
