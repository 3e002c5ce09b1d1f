"""Answering a search job: its query embedded with the active model, ranked, and the results stored on the job."""

import time

from django.conf import settings

from search import jobs

from ..embedder import WeightsError
from ..spaces import active_space
from .fusion import evidence
from .query import Query, SearchError
from .stages import PLAIN, STAGES, rank

KNN = "global_knn.nearest"  # the stage whose time is the job's query_ms; the others' (and fusion's) are its rerank_ms


def answer(job):
    """Rank the job's query and complete the job; SearchError says why a search cannot be answered.

    `job` as jobs.search_job_claim returns it (with the active model's key).
    """
    try:
        space = active_space(job.active_model_key)
    except WeightsError as exc:
        raise SearchError(f"The search model cannot be loaded: {exc}") from None
    rerank = job.rerank and settings.IMGSEARCH_LOCAL_FEATURES
    started = time.perf_counter()
    query = Query.of_job(job, space, rerank=rerank)
    embed_ms = (time.perf_counter() - started) * 1000
    ranking = rank(query, STAGES if rerank else PLAIN)
    knn_ms = ranking.timings[KNN]
    results = [
        (image_id, score, match, evidence(ranking.candidates.get(image_id), query))
        for image_id, score, match in ranking.results
    ]
    jobs.search_job_complete(
        job,
        results,
        model_key=space.key,
        embed_ms=embed_ms,
        query_ms=knn_ms,
        rerank_ms=sum(ranking.timings.values()) - knn_ms if rerank else None,
    )
