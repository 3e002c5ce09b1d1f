"""The order in which a search is answered: the stages below, in turn, then fusion (fusion.py) orders what they
found. Each stage is a function of (query, candidates): it adds candidates, or fills in evidence on them. Dropping a
stage is deleting its line."""

import time
from dataclasses import dataclass

from . import appearance, copy_space, fusion, global_knn, identical, signature, verification, words
from .candidates import Candidates

STAGES = (
    global_knn.nearest,  # the k-NN of the query's vector: max(k, IMGSEARCH_RERANK_CANDIDATES) similar candidates
    signature.near_duplicate,  # the best 16x16 signature match of the whole index at SIGNATURE_COPY or more: a copy
    words.nearest,  # the WORDS_FOUND images whose visual words are nearest the query's
    signature.lookalike,  # the best signature match below SIGNATURE_COPY
    copy_space.nearest,  # the COPY_SPACE_FOUND images nearest in the projection's copy space, once it has one
    verification.inliers,  # SIFT keypoints matched and a RANSAC transform fitted: each candidate's inliers
    signature.likeness,  # each candidate's signature likeness to the query's
    copy_space.lead_scores,  # each candidate's cosine in the copy space, where the lead is picked
    identical.mark,  # the query's very file
    appearance.check,  # of the verified copies, those distinct and alike enough to be called the same picture
)
PLAIN = (global_knn.nearest,)  # a search without re-ranking (rerank=false, or IMGSEARCH_LOCAL_FEATURES=0)


@dataclass
class Ranking:
    results: list  # [(image_id, score, match)], best first, at most query.k
    candidates: Candidates  # every candidate with the evidence gathered on it
    timings: dict  # stage name -> milliseconds, "fusion" too


def rank(query, stages=STAGES):
    """Run the stages over the query, then order their candidates (fusion.fuse)."""
    candidates, timings = Candidates(query), {}
    for stage in stages:
        started = time.perf_counter()
        stage(query, candidates)
        timings[f"{stage.__module__.rsplit('.', 1)[-1]}.{stage.__name__}"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    results = fusion.fuse(candidates)[: query.k]
    timings["fusion"] = (time.perf_counter() - started) * 1000
    return Ranking(results, candidates, timings)
