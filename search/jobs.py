"""A search job's life: created (and queued) by the API, claimed by a search worker, completed or failed with a
reason, reaped when its worker was lost. Views and tasks are thin wrappers over these functions; a job's status
changes only here."""

import json
import logging
import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from . import queue, waiting
from .models import IndexedImage, ModelVersion, SearchJob

log = logging.getLogger(__name__)


def search_job_create(
    *,
    image=None,
    source_image=None,
    from_job=None,
    k,
    min_score,
    categories=(),
    rerank=True,
    region=None,
    owner=None,
    session_key="",
):
    """Store a pending job for an upload, an indexed image, or an earlier job's query (region_parse's region of it, or
    all of it); queue it on commit. A refined search gets its own region, or none: the earlier one is not kept."""
    job = SearchJob(
        k=k,
        min_score=min_score,
        categories=list(categories),
        rerank=rerank,
        region=region,
        owner=owner,
        session_key=session_key or "",
    )
    if image is not None:
        job.query_name = (getattr(image, "name", "") or "")[-255:]
        job.query_image.save("query", image, save=False)
    elif from_job is not None:  # refine: same query image, new constraints, no re-upload
        job.query_image.name, job.query_name = from_job.query_image.name, from_job.query_name
        job.source_image = from_job.source_image
    else:
        job.source_image, job.query_name = source_image, source_image.title
    job.save()
    transaction.on_commit(lambda: search_job_enqueue(job.id))
    return job


REGION_KEYS = ("x", "y", "width", "height")
REGION_FORMAT = (
    "Give the region as four numbers x,y,width,height (or a JSON object with those keys): fractions of the image, "
    "0 to 1, from its top left corner."
)


def region_parse(value):
    """A search region from the API, {"x", "y", "width", "height"} in fractions of the image, or None for the whole
    image (no value, or ""); ValueError with a sentence a person can act on otherwise. Accepted: "x,y,width,height",
    a JSON object with those keys (also as text, as a multipart form sends it), or a list of four numbers."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text[0] in "{[" else text.split(",")
        except ValueError:
            raise ValueError(REGION_FORMAT) from None
    if isinstance(value, dict):
        if set(value) != set(REGION_KEYS):
            raise ValueError(REGION_FORMAT)
        value = [value[key] for key in REGION_KEYS]
    if not isinstance(value, (list, tuple)) or len(value) != 4 or any(isinstance(v, bool) for v in value):
        raise ValueError(REGION_FORMAT)
    try:
        x, y, width, height = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(REGION_FORMAT) from None
    if not all(math.isfinite(v) for v in (x, y, width, height)):
        raise ValueError(REGION_FORMAT)
    if width <= 0 or height <= 0:
        raise ValueError("The region is empty: its width and height must be more than 0.")
    slack = 1e-6  # a page's rounding
    if x < 0 or y < 0 or x + width > 1 + slack or y + height > 1 + slack:
        raise ValueError(
            "The region must lie within the image: x, y, width and height are fractions from 0 to 1, with x + width "
            "and y + height at most 1."
        )
    return dict(zip(REGION_KEYS, (round(x, 6), round(y, 6), round(min(width, 1 - x), 6), round(min(height, 1 - y), 6))))


def visible_jobs(request):
    """The search jobs this request may see: a user theirs, a visitor their session's; everyone's only with the
    permission search.view_all_searches (being staff is not enough)."""
    user = request.user
    if user.is_authenticated:
        if user.has_perm("search.view_all_searches"):
            return SearchJob.objects.all()
        return SearchJob.objects.filter(owner=user)
    session_key = request.session.session_key
    if not session_key:
        return SearchJob.objects.none()
    return SearchJob.objects.filter(owner__isnull=True, session_key=session_key)


def job_key(job_id):
    """The secret of an anonymous job: whoever holds it (in the Location its creator was given) may read the job,
    so a client without a cookie jar can follow its search. Derived from SECRET_KEY: nothing to store."""
    return salted_hmac("imgsearch.search-job-key", str(job_id)).hexdigest()[:32]


def keyed_jobs(job_id, key):
    """The anonymous job job_id when key is its secret, else none."""
    if not key or not constant_time_compare(str(key), job_key(job_id)):
        return SearchJob.objects.none()
    return SearchJob.objects.filter(id=job_id, owner__isnull=True)


def search_queue_full():
    """Back-pressure: too many searches wait already, so a new one would only time out."""
    queued = SearchJob.objects.filter(status=SearchJob.Status.PENDING)[: settings.IMGSEARCH_MAX_PENDING_SEARCHES + 1]
    return queued.count() > settings.IMGSEARCH_MAX_PENDING_SEARCHES


def search_job_enqueue(job_id):
    """Send the job to the workers; with the broker down it stays pending and the reaper sends it later."""
    try:
        queue.send_now(queue.RUN_SEARCH, str(job_id))
    except Exception as exc:  # kombu/redis errors: the row is the source of truth, not the queue
        log.warning("could not queue search %s (%s); the reaper will send it", job_id, exc)


def search_job_claim(job_id):
    """Move a pending job, or one whose worker died mid-search, to running; None when it is not ours to run.

    The job comes back with `active_model_key`: the key of the model active as it was claimed (None before any).
    """
    now = timezone.now()
    # A job still "running" past the stale deadline lost its worker (killed, OOM): it may be taken again.
    # One statement that updates and returns the row, and which model is active: a search is short, and every
    # round trip shows (the claim and a separate model lookup were 2.5 ms of a 25 ms search in bench/search_latency.py).
    claimed = SearchJob.objects.raw(
        f"UPDATE {SearchJob._meta.db_table} SET status = %s, started_at = %s, attempts = attempts + 1"
        " WHERE id = %s AND attempts < %s AND (status = %s OR (status = %s AND started_at < %s))"
        f" RETURNING *, (SELECT key FROM {ModelVersion._meta.db_table} WHERE active LIMIT 1) AS active_model_key",
        [
            SearchJob.Status.RUNNING,
            now,
            job_id,
            settings.IMGSEARCH_SEARCH_MAX_ATTEMPTS,
            SearchJob.Status.PENDING,
            SearchJob.Status.RUNNING,
            now - timedelta(seconds=settings.IMGSEARCH_SEARCH_STALE_SECONDS),
        ],
    )
    return next(iter(claimed), None)


def search_jobs_reap(now=None):
    """Beat: re-queue searches whose message or worker was lost, fail those past their deadline; return counts."""
    now = now or timezone.now()
    jobs, status = SearchJob.objects, SearchJob.Status
    stale_running = jobs.filter(
        status=status.RUNNING, started_at__lt=now - timedelta(seconds=settings.IMGSEARCH_SEARCH_STALE_SECONDS)
    )
    failed = {"status": status.FAILED, "finished_at": timezone.now()}
    expired = jobs.filter(
        status=status.PENDING, created_at__lt=now - timedelta(seconds=settings.IMGSEARCH_SEARCH_DEADLINE_SECONDS)
    )
    counts = {"expired": expired.update(**failed, error="No worker picked this search up in time; please try again.")}
    # Claims stop at the limit, so a job still stale here has been interrupted exactly that many times.
    limit = settings.IMGSEARCH_SEARCH_MAX_ATTEMPTS
    counts["interrupted"] = stale_running.filter(attempts__gte=limit).update(
        **failed, error=f"The search was interrupted {limit} times; please try again."
    )
    # Redis is not the source of truth: a pending row whose message vanished (Redis restarted, a publish lost)
    # is sent again. A copy of a message that still exists is harmless, since only one claim can win.
    lost = jobs.filter(
        status=status.PENDING, created_at__lt=now - timedelta(seconds=settings.IMGSEARCH_SEARCH_REQUEUE_SECONDS)
    )
    requeue = [*lost.values_list("id", flat=True), *stale_running.values_list("id", flat=True)]
    for job_id in requeue:
        search_job_enqueue(job_id)
    counts["requeued"] = len(requeue)
    return counts


def search_job_complete(job, results, *, model_key, embed_ms, query_ms, rerank_ms=None):
    """Store the results [(image_id, score, match, evidence)] (evidence may be left out: None), best first, and the
    timings; the job is done."""
    now = timezone.now()
    job.results = [
        {"image_id": image_id, "score": round(score, 6), "match": match, "evidence": evidence}
        for image_id, score, match, evidence in ((*result, None)[:4] for result in results)
    ]
    job.model_key = model_key
    job.timings = {
        "queued_ms": _ms(job.started_at - job.created_at),
        "embed_ms": round(embed_ms, 1),
        "query_ms": round(query_ms, 1),
        "rerank_ms": None if rerank_ms is None else round(rerank_ms, 1),
        "total_ms": _ms(now - job.created_at),
    }
    job.status, job.finished_at = SearchJob.Status.DONE, now
    job.save(update_fields=["results", "model_key", "timings", "status", "finished_at"])  # a trigger announces it


def search_job_wait(job, seconds):
    """Wait up to `seconds` for a pending or running job to end (search.waiting), then reload it."""
    ended = SearchJob.objects.filter(id=job.id, status__in=(SearchJob.Status.DONE, SearchJob.Status.FAILED))
    waiting.wait_for(job.id, seconds, ended.exists)
    job.refresh_from_db()
    return job


def search_job_fail(job_id, reason):
    """Record a readable reason; a job that already finished is left alone."""
    SearchJob.objects.filter(id=job_id).exclude(status=SearchJob.Status.DONE).update(
        status=SearchJob.Status.FAILED, error=str(reason)[:2000], finished_at=timezone.now()
    )


def search_job_results(job):
    """(image, score, match, evidence) of the job's results, best first; images removed since are skipped.

    match is "copy" for a result found to be the same picture, else "similar" (also for jobs stored before
    re-ranking existed); evidence says why a result leads as, or looks like, the query's picture (None for one merely
    similar, and for jobs stored before it was kept).
    """
    images = IndexedImage.objects.in_bulk([r["image_id"] for r in job.results])
    return [
        (images[r["image_id"]], r["score"], r.get("match", "similar"), r.get("evidence"))
        for r in job.results
        if r["image_id"] in images
    ]


def _ms(delta):
    return round(delta.total_seconds() * 1000, 1)
