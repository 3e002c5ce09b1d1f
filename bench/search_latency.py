"""Search latency from POST to `done`, split into queue, embed and k-NN time, at a given index size.

Runs on the bench database: the real images the indexing part embedded, plus synthetic rows (an
IndexedImage with no file and an Embedding drawn as a mixture of real embeddings) up to `size`, for the
active model, so the HNSW index holds `size` vectors. A real Celery search worker (one torch thread, as
`make run` starts it) answers; queries are posted with Django's test client to the real API view, and the
job row is polled until done. Target: median POST->done within 1.3x of (median embed + median k-NN).
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
    """Add synthetic embedded images until the active model has `size` vectors; returns how many were added."""
    from bench.knn_scale import mixtures
    from search.models import Embedding, IndexedImage

    missing = size - Embedding.objects.filter(model_key=model_key).count()
    rng = np.random.default_rng(seed)
    for start in range(0, max(0, missing), 5000):
        count = min(5000, missing - start)
        images = IndexedImage.objects.bulk_create([
            IndexedImage(content_hash=f"synthetic-{seed}-{start + i}", file=f"synthetic/{start + i}.png", title="synthetic",
                         status=IndexedImage.Status.READY) for i in range(count)])
        vectors = mixtures(np.load(seeds_path), count, rng)
        Embedding.objects.bulk_create([Embedding(image=im, model_key=model_key, vector=v) for im, v in zip(images, vectors)])
    return max(0, missing)


def start_worker():
    """A Celery search worker on the bench database and Redis database, as `make run` starts one."""
    env = {**os.environ, "IMGSEARCH_TORCH_THREADS": "1"}
    command = [sys.executable, "-m", "celery", "-A", "imgsearch", "worker", "--queues", "search",
               "--concurrency", "1", "--hostname", "bench-search@%h", "--loglevel", "WARNING"]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def query_file(path):
    """A cropped, shrunk JPEG copy of an indexed image, as a user would upload it."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    from workers.imageio import load_rgb

    img = load_rgb(path, target_size=512)
    w, h = img.size
    img = img.crop((w // 12, h // 12, w - w // 12, h - h // 12)).resize((max(1, w * 2 // 3), max(1, h * 2 // 3)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return SimpleUploadedFile("q.jpg", out.getvalue(), content_type="image/jpeg")


def search_once(client, path, timeout=60):
    """(POST->done ms, server timings) of one search through the API."""
    from search.models import SearchJob

    upload = query_file(path)
    started = time.perf_counter()
    response = client.post("/api/v1/searches/", {"image": upload, "k": 10}, HTTP_HOST="localhost")
    job_id = response.json()["id"]
    while time.perf_counter() - started < timeout:
        job = SearchJob.objects.filter(id=job_id).values("status", "timings", "error").first()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.005)
    elapsed = (time.perf_counter() - started) * 1000
    if job["status"] != "done":
        raise RuntimeError(f"search {job_id} ended {job['status']}: {job['error']}")
    return elapsed, job["timings"]


def measure(paths, warmup=3):
    """POST->done and the server's split over the given query images, after a few warm-up searches."""
    from django.test import Client

    client = Client()
    for path in paths[:warmup]:
        search_once(client, path)
    totals, split = [], []
    for path in paths[warmup:]:
        elapsed, timings = search_once(client, path)
        totals.append(elapsed)
        split.append(timings)
    return totals, split


def run(seeds_path, size=10_000, searches=40):
    """Figures at `size` indexed vectors; needs the indexing part to have made the model active first."""
    from search import reindex

    model_key = reindex.model_active().key
    added = fill_index(size, seeds_path, model_key)
    worker = start_worker()
    try:
        paths = [p for p, _ in labelled_subset(1200)][1::4][: searches + 3]  # not the indexing part's images
        totals, split = measure(paths)
    finally:
        worker.terminate()
        worker.wait(30)
    part = {key: statistics.median(s[key] for s in split) for key in ("queued_ms", "embed_ms", "query_ms")}
    baseline = part["embed_ms"] + part["query_ms"]
    figures = percentiles(totals)
    print(f"  search at {size}: POST->done median {figures['median_ms']} ms, p95 {figures['p95_ms']} ms; "
          f"queue {part['queued_ms']:.0f}, embed {part['embed_ms']:.0f}, k-NN {part['query_ms']:.1f} ms", flush=True)
    return {"indexed": size, "synthetic_rows_added": added, "searches": len(totals), **figures,
            **{f"median_{k}": round(v, 1) for k, v in part.items()},
            "baseline_ms": round(baseline, 1), "ratio": round(figures["median_ms"] / baseline, 3)}
