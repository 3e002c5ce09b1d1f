"""Celery tasks: thin wrappers that take ids, call a job function of the workers or a service of search/, and record
the outcome. The web side sends them by name (search/queue.py).

The heavy modules (torch, OpenCV) are imported inside the tasks, so the worker's main process stays light and the
model is loaded in its pool processes only (see workers.signals). Searches go to the "search" queue, everything else
to "index" (settings.CELERY_TASK_ROUTES), each served by its own worker.
"""

import logging

from celery import shared_task

from search import collections, jobs, projections, reindex, versions, vocabulary

log = logging.getLogger(__name__)

# Tasks that are safe to run twice are acknowledged only once done, and put back if their worker dies.
IDEMPOTENT = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(name="workers.run_search", max_retries=0, **IDEMPOTENT)
def run_search(job_id):
    job = jobs.search_job_claim(job_id)
    if job is None:
        return  # taken by a live worker, finished, out of attempts, or deleted
    from .ranking.answer import answer
    from .ranking.query import SearchError

    try:
        answer(job)
    except SearchError as exc:
        jobs.search_job_fail(job_id, str(exc))
    except Exception as exc:  # the worker lives on; the job says what went wrong
        log.exception("search %s failed", job_id)
        jobs.search_job_fail(job_id, f"Internal error while searching ({type(exc).__name__}); please try again.")


@shared_task(name="workers.reap_searches", max_retries=0)
def reap_searches():
    """Beat, every 15 s: re-send searches whose message or worker was lost; fail those past their deadline."""
    counts = jobs.search_jobs_reap()
    if any(counts.values()):
        log.info("reaped searches: %s", counts)


@shared_task(name="workers.embed_images", acks_late=True, autoretry_for=(OSError,), max_retries=3, retry_backoff=True)
def embed_images(image_ids, overwrite=False):
    from .indexing.jobs import images_embed

    embedded, failed = images_embed(image_ids, overwrite=overwrite)
    log.info("embedded %d images, %d failed", embedded, failed)


@shared_task(name="workers.retag_images", acks_late=True, max_retries=0)
def retag_images(image_ids):
    from .indexing.jobs import images_retag

    retagged, failed = images_retag(image_ids)
    log.info("re-tagged %d images, %d unreadable", retagged, failed)


@shared_task(name="workers.reindex_plan", max_retries=0, **IDEMPOTENT)
def reindex_plan(run_id):
    from .indexing.jobs import reindex_plan_run

    reindex_plan_run(run_id)


@shared_task(name="workers.reindex_chunk", bind=True, max_retries=reindex.MAX_ATTEMPTS, **IDEMPOTENT)
def reindex_chunk(self, run_id, number):
    from .indexing.jobs import reindex_chunk_run

    try:
        reindex_chunk_run(run_id, number)
    except Exception as exc:
        # Claiming it again counts the attempt; after the last one its images are counted as failed.
        log.exception("reindex run %s chunk %s failed", run_id, number)
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1)) from None


# Building a million-vector HNSW index takes minutes (docs/benchmarks.md): far past a chunk's time limit.
@shared_task(name="workers.reindex_build_index", max_retries=0, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def reindex_build_index(run_id):
    """The last step of a run with enough vectors for an index: build it, then switch models."""
    reindex.reindex_build_index(run_id)


@shared_task(name="workers.reindex_resume", max_retries=0)
def reindex_resume():
    """Beat, every minute: send again the chunks of runs whose worker died."""
    reindex.reindex_resume()


@shared_task(name="workers.drop_inactive_models", max_retries=0)
def drop_inactive_models(keys=None):
    from search.models import ModelVersion

    chosen = None if keys is None else ModelVersion.objects.filter(key__in=keys)
    models, embeddings = versions.model_versions_drop(chosen)
    log.info("dropped %d embeddings of %d inactive models", embeddings, models)


@shared_task(name="workers.collection_scan", max_retries=0)
def collection_scan(collection_id):
    collections.collection_scan(collection_id)


@shared_task(name="workers.collection_import", acks_late=True, max_retries=0)
def collection_import(collection_id, folder):
    collections.collection_import(collection_id, folder)


@shared_task(name="workers.rescan_collections", max_retries=0)
def rescan_collections():
    """Beat: scan every collection whose folder is marked for rescanning."""
    collections.collections_rescan()


@shared_task(name="workers.follow_duplicates", max_retries=0)
def follow_duplicates():
    """Beat: check the images added since the duplicate finder's last run over the whole index, once it has one."""
    from search.duplicates import duplicate_run_follow

    run = duplicate_run_follow()
    if run is not None:
        log.info("duplicate finder: run %s checks the images added since the last one", run.id)


@shared_task(name="workers.refresh_tag_indexes", max_retries=0)
def refresh_tag_indexes():
    """Beat, and at the end of a reindex run: an index of its own for each common category of the active model."""
    for key, tags in versions.tag_indexes_refresh().items():
        if tags:
            log.info("built the category indexes of %s: %s", key, ", ".join(tags))


@shared_task(name="workers.extract_features", acks_late=True, max_retries=0)
def extract_features(image_ids):
    from .indexing.jobs import images_extract_features

    extracted, unreadable = images_extract_features(image_ids)
    log.info("extracted local features of %d images, %d unreadable", extracted, unreadable)


@shared_task(name="workers.refresh_projection", max_retries=0)
def refresh_projection():
    """Beat: learn a projection for the active model when the index has grown enough (IMGSEARCH_PROJECTION=auto).
    First, an active projection applied before copy-space vectors were stored gets them (learning.copy_vectors_fill)."""
    from .learning import copy_vectors_fill

    filled = copy_vectors_fill()
    if filled:
        log.info("stored the copy-space vectors of %d images", filled)
    due, reason = projections.projection_due()
    if due:
        learn_projection(reason)


@shared_task(name="workers.learn_projection", max_retries=0)
def learn_projection(reason="asked for in the admin"):
    """Learn a projection with its copy space (edited copies embedded here) and start the run that applies it."""
    from .learning import projection_learn

    run, message = projection_learn()
    log.info("projection: %s (%s)", message, reason)


@shared_task(name="workers.refresh_words", max_retries=0)
def refresh_words():
    """Beat: learn the index's visual words once it is large enough (and again as it grows), then queue the images
    still without words of the vocabulary in use."""
    from .learning import words_learn

    due, reason = vocabulary.words_due()
    if due:
        _, message = words_learn()
        log.info("visual words: %s (%s)", message, reason)
    images, tasks = vocabulary.words_missing_send()
    if images:
        log.info("visual words: %d images without them, %d tasks queued", images, tasks)


@shared_task(name="workers.compute_words", acks_late=True, max_retries=0)
def compute_words(image_ids):
    from .learning import words_compute

    stored = words_compute(image_ids)
    log.info("computed the visual words of %d images", stored)


# A run over a large index takes a long while (bench/duplicates.py: about 9 CPU-minutes per 10,000 images, 41
# minutes on the shared 2-core dev machine); delivered again after its worker died, it goes on after its last image.
@shared_task(
    name="workers.find_duplicates", max_retries=0, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60, **IDEMPOTENT
)
def find_duplicates(run_id):
    from search import duplicates as duplicate_rows

    from .duplicates import duplicates_find
    from .spaces import active_space

    try:
        duplicates_find(run_id, active_space())
    except Exception as exc:  # the worker lives on; the run says what went wrong
        log.exception("duplicate finder run %s failed", run_id)
        duplicate_rows.duplicate_run_fail(run_id, f"Internal error ({type(exc).__name__}: {exc}).")
