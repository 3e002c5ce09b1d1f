"""Background reindex runs: start, plan, count chunks, switch models, cancel, resume.

A run re-embeds every ready image with one model, a chunk per task on the "index" queue, beside the active
model's vectors (blue/green). When its last chunk is counted the run's model becomes the active one in one
transaction; searches read the active model per search, so they switch at once. Every step is guarded by
the rows' status, so a task delivered twice changes nothing and a lost one is sent again (reindex_resume).
The worker's side of a run (loading its model, embedding a chunk) is workers/indexing/jobs.py.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from imgsearch.backbones import MODELS

from . import indexing, knn, queue, versions
from .models import Embedding, IndexedImage, ModelVersion, ReindexChunk, ReindexRun

log = logging.getLogger(__name__)

Status = ReindexRun.Status
CHUNKS_IN_FLIGHT = 4  # queued per run at a time: enough for a few index workers, and new images are not starved
MAX_ATTEMPTS = 3  # deliveries of one chunk before its images are counted as failed
DROP_GRACE_SECONDS = 10  # searches that read the old active model just before a switch finish well within this
_START_LOCK = 7_301_002  # advisory lock: one run started at a time


class ReindexError(ValueError):
    """A run that cannot be started, with a sentence fit to show the operator."""


# --- Runs -------------------------------------------------------------------------------------------


def run_under_way():
    """Why a new run cannot start now (another is under way), or None."""
    current = ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).first()
    return f"Reindex run {current.id} is still {current.status}; wait for it or cancel it first." if current else None


def reindex_start(run):
    """Save a new run and queue its planning on an index worker; refused while another run is under way."""
    if run.arch not in MODELS:
        raise ReindexError(f"Unknown model {run.arch!r}; choose one of: {', '.join(MODELS)}.")
    run.weights = (run.weights or "").strip() or versions.default_weights(run.arch)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_START_LOCK])
        busy = run_under_way()
        if busy:
            raise ReindexError(busy)
        run.status, run.chunk_size = Status.QUEUED, settings.IMGSEARCH_TASK_SIZE
        run.save()
        queue.send(queue.REINDEX_PLAN, run.id)
    return run


def queued_run(run_id):
    """The run if it is still queued (not planned yet, cancelled or gone), else None."""
    return ReindexRun.objects.filter(id=run_id, status=Status.QUEUED).first()


def reindex_plan(run_id, *, model_key):
    """Claim a queued run: cut the ready images into chunks and send the first few. None if not queued."""
    now = timezone.now()
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().filter(id=run_id, status=Status.QUEUED).first()
        if run is None:
            return None  # planned already, cancelled, or gone
        active = versions.model_active()
        ids = list(
            IndexedImage.objects.filter(status=IndexedImage.Status.READY).order_by("id").values_list("id", flat=True)
        )
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
        chunk = (
            run and ReindexChunk.objects.select_for_update().filter(run=run, number=number, finished_at=None).first()
        )
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
            done=F("done") + done,
            failed=F("failed") + len(failures),
            total=F("total") - gone,
            failures=shown,
            heartbeat_at=now,
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
    return bool(
        ReindexRun.objects.filter(id=run_id, status__in=ReindexRun.ACTIVE_STATUSES).update(
            status=Status.FAILED, error=str(reason)[:2000], finished_at=timezone.now()
        )
    )


def reindex_cancel(run_id):
    """Stop a queued or running run: its chunks still queued return without work. False if it had ended."""
    return bool(
        ReindexRun.objects.filter(id=run_id, status__in=ReindexRun.ACTIVE_STATUSES).update(
            status=Status.CANCELLED, finished_at=timezone.now()
        )
    )


def reindex_resume(stall_seconds=None):
    """Send again the work of runs that made no progress for a while (a worker died with it). Returns runs nudged."""
    cutoff = timezone.now() - timedelta(seconds=stall_seconds or settings.IMGSEARCH_REINDEX_STALL_SECONDS)
    stalled = (
        ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES)
        .annotate(seen=Coalesce("heartbeat_at", "created_at"))
        .filter(seen__lt=cutoff)
    )
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
            queue.send(queue.REINDEX_PLAN, run.id)
            return 1
        lost = list(run.chunks.filter(queued_at__isnull=False, finished_at=None).values_list("number", flat=True))
        run.chunks.filter(number__in=lost).update(queued_at=now)
        for number in lost:
            queue.send(queue.REINDEX_CHUNK, run.id, number)
        _dispatch_or_finish(run)
    log.warning("reindex run %s stalled; sent chunks %s again", run_id, lost)
    return 1


def _chunks_create(run, ids, *, first_number):
    size = run.chunk_size
    ReindexChunk.objects.bulk_create(
        [
            ReindexChunk(run=run, number=first_number + n, image_ids=ids[start : start + size])
            for n, start in enumerate(range(0, len(ids), size))
        ]
    )


def _dispatch_or_finish(run):
    """Keep CHUNKS_IN_FLIGHT chunks queued; when none is left unfinished, finish the run. Caller holds the run row."""
    chunks = run.chunks.filter(finished_at=None)
    if not chunks.exists():
        return _finish(run)
    room = CHUNKS_IN_FLIGHT - chunks.filter(queued_at__isnull=False).count()
    numbers = list(chunks.filter(queued_at=None).order_by("number").values_list("number", flat=True)[: max(room, 0)])
    run.chunks.filter(number__in=numbers).update(queued_at=timezone.now())
    for number in numbers:
        queue.send(queue.REINDEX_CHUNK, run.id, number)


def _finish(run):
    """Embed what the snapshot missed, else make the run's model active. Caller holds the run row."""
    versions.model_switch_lock(shared=False)  # no embedding write with the old model may slip past the check below
    failed = {f["image_id"]: f["reason"] for chunk in run.chunks.all() for f in chunk.failures}
    embedded = Embedding.objects.filter(model_key=run.model_key).values("image_id")
    missing = list(
        IndexedImage.objects.filter(status=IndexedImage.Status.READY)
        .exclude(id__in=embedded)
        .exclude(id__in=list(failed))
        .order_by("id")
        .values_list("id", flat=True)
    )
    if missing:  # images indexed while the run went on
        last = run.chunks.order_by("-number").values_list("number", flat=True).first()
        _chunks_create(run, missing, first_number=last + 1)
        ReindexRun.objects.filter(id=run.id).update(total=F("total") + len(missing))
        return _dispatch_or_finish(run)
    # Images the new model could not read cannot be found once it is active: say so on the image.
    unreadable = IndexedImage.objects.filter(id__in=list(failed)).exclude(id__in=embedded).values_list("id", flat=True)
    indexing.images_fail([(image_id, failed[image_id]) for image_id in unreadable])
    version = ModelVersion.objects.defer("projection").get(key=run.model_key)
    # The run's vector indexes are built in one go from all its vectors (cheaper than growing them one insert at a
    # time), by a task of its own: at a million vectors it takes minutes, longer than a chunk may run.
    if any(knn.needs_vector_index(key, dim) for key, dim in versions.vector_indexes(version)):
        queue.send(queue.REINDEX_BUILD_INDEX, run.id)
        return
    versions.model_activate(run.model_key)
    ReindexRun.objects.filter(id=run.id).update(status=Status.DONE, finished_at=timezone.now())
    queue.send(queue.REFRESH_TAG_INDEXES)  # the new model's common categories get their indexes
    log.info("reindex run %s done: %s is the active model", run.id, run.model_key)
    if run.drop_old:
        queue.send(queue.DROP_INACTIVE_MODELS, countdown=DROP_GRACE_SECONDS)
        return
    # Projections replaced by this one are derived data (learned again at will): their vectors go. Searches use
    # the projected vectors now, so the raw ones need no index: each new image no longer pays for its graph.
    if version.base_key:
        knn.drop_vector_index(version.base_key)
    replaced = list(
        ModelVersion.objects.filter(base_key=version.base_key or version.key, active=False)
        .exclude(base_key="")
        .values_list("key", flat=True)
    )
    if replaced:
        queue.send(queue.DROP_INACTIVE_MODELS, replaced, countdown=DROP_GRACE_SECONDS)


def reindex_build_index(run_id):
    """Build the vector indexes of a run whose chunks are all counted, then finish the run (switch models)."""
    run = ReindexRun.objects.filter(id=run_id, status=Status.RUNNING).first()
    if run is None:
        return None
    ReindexRun.objects.filter(id=run_id).update(heartbeat_at=timezone.now())
    version = ModelVersion.objects.defer("projection").get(key=run.model_key)
    for key, dim in versions.vector_indexes(version):
        # ensure_vector_index says False both for "too few vectors" and "another worker is building it": ask first.
        if knn.needs_vector_index(key, dim) and not knn.ensure_vector_index(key, dim, wait=False):
            return run  # another worker is building it (a resend after a long build): that one finishes the run
    with transaction.atomic():
        run = ReindexRun.objects.select_for_update().filter(id=run_id, status=Status.RUNNING).first()
        if run is not None and not run.chunks.filter(finished_at=None).exists():
            _finish(run)
    return ReindexRun.objects.get(id=run_id)
