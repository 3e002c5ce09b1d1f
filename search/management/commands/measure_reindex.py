"""python manage.py measure_reindex [--searches 20] [--model NAME] [--weights W]

Against a running deployment (e.g. `make run`, with images indexed): times searches while the system is idle,
then starts a reindex run and times the same searches while it runs, and reports the run's throughput.
Latency is the server's own, from the job's creation to its results (SearchJob.timings.total_ms).
"""

import random
import statistics
import time

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError

from search import jobs, reindex, versions
from search.models import IndexedImage, ReindexRun, SearchJob

from .measure_search import edited_copy, percentile


class Command(BaseCommand):
    help = "Measure reindex throughput and search latency during a reindex against idle, in one run."

    def add_arguments(self, parser):
        parser.add_argument("--searches", type=int, default=20, help="searches in each phase")
        parser.add_argument("--model", help="the model to reindex with (default: the active one)")
        parser.add_argument("--weights", default="", help="its weights (default: the active or configured ones)")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, searches, model, weights, seed, **options):
        ids = list(IndexedImage.objects.filter(status="ready").values_list("id", flat=True))
        if len(ids) < 50:
            raise CommandError("Index a few hundred images first (index_images), so the run lasts long enough.")
        active = versions.model_active()
        images = IndexedImage.objects.in_bulk(random.Random(seed).sample(ids, min(searches, len(ids))))
        queries = [edited_copy(image.file.path) for image in images.values()]
        self.search(queries[0])  # the search worker has its model loaded from here on
        idle = [self.search(q) for q in queries]
        run = reindex.reindex_start(ReindexRun(arch=model or active.arch, weights=weights))
        while ReindexRun.objects.get(id=run.id).status == ReindexRun.Status.QUEUED:
            time.sleep(0.2)
        busy = []
        while len(busy) < searches and ReindexRun.objects.get(id=run.id).status == ReindexRun.Status.RUNNING:
            busy.append(self.search(queries[len(busy) % len(queries)]))
        run = self.wait(run)
        self.report(run, idle, busy)

    def search(self, data):
        """One search with an uploaded image, to its end; the server's timings of it (ms)."""
        job = jobs.search_job_create(image=SimpleUploadedFile("q.jpg", data, "image/jpeg"), k=10, min_score=0.0)
        deadline = time.monotonic() + 120
        while job.status not in (SearchJob.Status.DONE, SearchJob.Status.FAILED):
            if time.monotonic() > deadline:
                raise CommandError("A search took over two minutes; are the workers running (make run)?")
            time.sleep(0.01)
            job.refresh_from_db()
        if job.status == SearchJob.Status.FAILED:
            raise CommandError(f"A search failed: {job.error}")
        return job.timings

    def wait(self, run):
        while run.status in ReindexRun.ACTIVE_STATUSES:
            time.sleep(0.5)
            run.refresh_from_db()
        if run.status != ReindexRun.Status.DONE:
            raise CommandError(f"The reindex run ended {run.status}: {run.error}")
        return run

    def report(self, run, idle, busy):
        seconds = (run.finished_at - run.started_at).total_seconds()
        self.stdout.write(
            f"reindex: {run.done} images with {run.model_key} in {seconds:.1f}s = {run.rate:.1f} images/s "
            f"({run.failed} failed)"
        )
        for name, timings in (("idle", idle), ("during reindex", busy)):
            if timings:
                total = [t["total_ms"] for t in timings]
                split = ", ".join(
                    f"{key} {statistics.median(t[key] for t in timings):.0f}"
                    for key in ("queued_ms", "embed_ms", "query_ms")
                )
                self.stdout.write(
                    f"search latency {name}: median {statistics.median(total):.0f} ms, "
                    f"p95 {percentile(total, 0.95):.0f} ms over {len(total)} searches (medians: {split})"
                )
        if not busy:
            self.stdout.write("The run ended before a search could be timed during it; index more images.")
