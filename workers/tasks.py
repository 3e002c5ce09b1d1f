"""Celery tasks: thin wrappers that fetch a row, call workers.pipeline, and record the outcome.

This module imports no torch, so the web process may import it to queue tasks; the model is loaded in
the worker process only (see workers.signals).
"""

import logging

from celery import shared_task

from search import services

log = logging.getLogger(__name__)


@shared_task(name="workers.run_search", acks_late=True, max_retries=0)
def run_search(job_id):
    job = services.search_job_claim(job_id)
    if job is None:
        return  # already taken by another worker, finished, or deleted
    from .pipeline import SearchError, search_execute

    try:
        search_execute(job)
    except SearchError as exc:
        services.search_job_fail(job_id, str(exc))
    except Exception as exc:  # the worker lives on; the job says what went wrong
        log.exception("search %s failed", job_id)
        services.search_job_fail(job_id, f"Internal error while searching ({type(exc).__name__}); please try again.")


@shared_task(name="workers.embed_images", acks_late=True, autoretry_for=(OSError,), max_retries=3, retry_backoff=True)
def embed_images(image_ids):
    from .pipeline import images_embed

    embedded, failed = images_embed(image_ids)
    log.info("embedded %d images, %d failed", embedded, failed)
