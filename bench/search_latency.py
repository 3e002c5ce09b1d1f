"""Search latency from POST to `done`, split into queue, embed, k-NN and re-ranking time, at a given index size.

Runs on the bench database: the real images the indexing part embedded, plus synthetic rows up to `size` (an
IndexedImage with no file, the tags of a real image, a raw vector drawn as a mixture of real embeddings, and
the local features, signature and visual words of a real image, so re-ranking costs what it costs in production,
where an index of this size has its words). Then, as in
production at that size, a projection is learned from the index and applied by a reindex run, so searches
use the projected vectors. A real Celery worker (one torch thread, as `make run` starts it) answers; queries
are posted with Django's test client to the real API view, and the job row is polled until done.

Measured with re-ranking (the default) and without. Target: median POST->done within 1.3x of the work a
search must do: median embed + median k-NN (+ median re-ranking, where it is on).
"""

import io
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from bench.common import ROOT, labelled_subset, percentiles

TARGET_RATIO = 1.3


def fill_index(size, seeds_path, model_key, seed=0):
    """Add synthetic images until the model has `size` raw vectors; returns how many were added."""
    import json

    from search.models import Embedding, IndexedImage, LocalFeatures

    missing = size - Embedding.objects.filter(model_key=model_key).count()
    rng = np.random.default_rng(seed)
    seeds, tags = np.load(seeds_path), json.loads(seeds_path.with_suffix(".tags.json").read_text())
    index_words()
    blobs = [(bytes(d), s, w) for d, s, w in LocalFeatures.objects.values_list("data", "signature", "words")]
    first_number = IndexedImage.objects.filter(content_hash__startswith="synthetic-").count()  # a second fill goes on
    for start in range(first_number, first_number + max(0, missing), 5000):
        count = min(5000, first_number + missing - start)
        first, second = rng.integers(0, len(seeds), count), rng.integers(0, len(seeds), count)
        weight = rng.uniform(0.5, 1.0, size=(count, 1)).astype(np.float32)
        vectors = np.maximum(weight * seeds[first] + (1 - weight) * seeds[second], 0)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        images = IndexedImage.objects.bulk_create(
            [
                IndexedImage(
                    content_hash=f"synthetic-{seed}-{start + i}",
                    file=f"synthetic/{start + i}.png",
                    title="synthetic",
                    status=IndexedImage.Status.READY,
                    user_tags=tags[first[i]],
                )
                for i in range(count)
            ]
        )
        Embedding.objects.bulk_create(
            [Embedding(image=im, model_key=model_key, vector=v) for im, v in zip(images, vectors)]
        )
        evidence = [blobs[i] for i in rng.integers(len(blobs), size=count)]
        LocalFeatures.objects.bulk_create(
            [LocalFeatures(image=im, data=d, signature=s, words=w) for im, (d, s, w) in zip(images, evidence)]
        )
    return max(0, missing)


def index_words():
    """Give the real images their visual words, as an index has them from IMGSEARCH_WORDS_MIN_IMAGES images on:
    the vocabulary learned (unless the indexing part already did) and every image's words computed."""
    from search import vocabulary
    from workers import learning
    from workers.ranking import words

    if words.vocabulary() is None:
        learning.words_learn()
    learning.words_compute(vocabulary.words_missing())


def apply_projection(timeout=1800):
    """Learn the index's projection, with its copy space as a worker learns it (from the real images among those
    sampled: the synthetic rows have no file to make an edited copy of), and wait until the worker's run has made it
    the active model. The run stores each image's copy-space vector beside its projected one, and searches then
    verify the copy space's nearest too and pick their lead there."""
    from search.models import ReindexRun
    from workers.learning import projection_learn

    run, message = projection_learn()
    print(f"  {message}", flush=True)
    if run is None:
        raise RuntimeError(message)
    deadline = time.monotonic() + timeout
    while run.status in ReindexRun.ACTIVE_STATUSES and time.monotonic() < deadline:
        time.sleep(1)
        run.refresh_from_db()
    if run.status != ReindexRun.Status.DONE:
        raise RuntimeError(f"the projection run ended {run.status}: {run.error}")
    return run


def start_worker():
    """A Celery worker for searches (and the projection run) on the bench database, as `make run` starts one."""
    env = {**os.environ, "IMGSEARCH_TORCH_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "imgsearch",
        "worker",
        "--queues",
        "search,index",
        "--concurrency",
        "1",
        "--hostname",
        "bench-search@%h",
        "--loglevel",
        "WARNING",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def query_file(path):
    """A cropped, shrunk JPEG copy of an indexed image, as a user would upload it."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from workers.imageio import load_rgb

    img = load_rgb(path, target_size=512)
    w, h = img.size
    img = img.crop((w // 12, h // 12, w - w // 12, h - h // 12)).resize((max(1, w * 2 // 3), max(1, h * 2 // 3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return SimpleUploadedFile("q.jpg", out.getvalue(), content_type="image/jpeg")


def search_once(client, path, rerank, timeout=60):
    """(POST->done ms, server timings, client overhead) of one search through the API, followed as the page
    follows it (?wait).

    The client overhead splits the client's clock around the server's (same machine, same wall clock): the POST's
    handling before the job row exists, and from the results being stored (the job's finished_at) until the
    client has them (the row's update and its notification, the waiting GET waking, the answer's rendering)."""
    from search.models import SearchJob

    upload = query_file(path)
    started, sent = time.perf_counter(), time.time()
    response = client.post("/api/v1/searches/", {"image": upload, "k": 10, "rerank": rerank}, HTTP_HOST="localhost")
    url = f"/api/v1/searches/{response.json()['id']}/?wait=10"
    while time.perf_counter() - started < timeout:
        job = client.get(url, HTTP_HOST="localhost").json()
        if job["status"] in ("done", "failed"):
            break
    elapsed, seen = (time.perf_counter() - started) * 1000, time.time()
    if job["status"] != "done":
        raise RuntimeError(f"search {job['id']} ended {job['status']}: {job['error']}")
    row = SearchJob.objects.get(id=job["id"])
    overhead = {
        "before_job_ms": (row.created_at.timestamp() - sent) * 1000,
        "after_done_ms": (seen - row.finished_at.timestamp()) * 1000,
    }
    return elapsed, job["timings"], overhead


def measure(paths, rerank, warmup=3):
    """POST->done and the server's split over the given query images, after a few warm-up searches."""
    from django.test import Client

    client = Client()
    for path in paths[:warmup]:
        search_once(client, path, rerank)
    totals, split = [], []
    for path in paths[warmup:]:
        elapsed, timings, overhead = search_once(client, path, rerank)
        totals.append(elapsed)
        split.append({**timings, **overhead})
    return totals, split


def figures(totals, split, rerank):
    """Percentiles, the median split and the ratios against the work a search must do.

    Two clocks: the client's (from sending the POST until it sees the job done, so it includes the POST's own
    handling and the GET that waits for the answer) and the server's (timings.total_ms: from the job's creation while the POST is
    handled until its results are stored).
    """
    keys = ("queued_ms", "embed_ms", "query_ms", "total_ms", "before_job_ms", "after_done_ms") + (
        ("rerank_ms",) if rerank else ()
    )
    part = {key: statistics.median(s[key] for s in split) for key in keys}
    baseline = part["embed_ms"] + part["query_ms"] + part.get("rerank_ms", 0)
    client, server = percentiles(totals), percentiles([s["total_ms"] for s in split])
    return {
        **client,
        "server_median_ms": server["median_ms"],
        "server_p95_ms": server["p95_ms"],
        **{f"median_{k}": round(v, 1) for k, v in part.items()},
        "baseline_ms": round(baseline, 1),
        "ratio": round(client["median_ms"] / baseline, 3),
        "server_ratio": round(server["median_ms"] / baseline, 3),
        "searches": len(totals),
    }


def run(seeds_path, size=10_000, searches=40):
    """Figures at `size` indexed vectors, with and without re-ranking; needs the indexing part's model and images."""
    from django.conf import settings

    from search import versions

    active = versions.model_active()
    added = fill_index(size, seeds_path, active.base_key or active.key)  # raw vectors, as the index worker stores them
    worker = start_worker()
    try:
        apply_projection()
        active = versions.model_active()
        paths = [p for p, _ in labelled_subset(1200)][1::4][: searches + 3]  # not the indexing part's images
        result = {
            "indexed": size,
            "synthetic_rows_added": added,
            "model": active.key,
            "dim": active.dim,
            "rerank_candidates": settings.IMGSEARCH_RERANK_CANDIDATES,
        }
        for rerank in (True, False):
            result["reranked" if rerank else "plain"] = figures(*measure(paths, rerank), rerank)
    finally:
        worker.terminate()
        worker.wait(30)
    for name in ("reranked", "plain"):
        f = result[name]
        print(
            f"  search at {size} ({name}): POST->done median {f['median_ms']} ms (server {f['server_median_ms']}), p95 {f['p95_ms']} ms; queue "
            f"{f['median_queued_ms']:.0f}, embed {f['median_embed_ms']:.0f}, k-NN {f['median_query_ms']:.1f}, "
            f"re-rank {f.get('median_rerank_ms', 0):.1f} ms; {f['ratio']:.2f}x of the work; client clock around the "
            f"server's: {f['median_before_job_ms']:.1f} ms before the job, {f['median_after_done_ms']:.1f} ms after",
            flush=True,
        )
    return result
