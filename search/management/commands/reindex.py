"""python manage.py reindex --model NAME [--weights W] [--drop-old] [--no-wait]"""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from imgsearch.backbones import MODELS
from search import reindex
from search.models import ReindexRun


class Command(BaseCommand):
    help = (
        "Re-embed every indexed image with a model in the background, beside the current vectors; "
        "searches switch to it when the run is done."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, choices=sorted(MODELS), help="the backbone to embed with")
        parser.add_argument(
            "--weights",
            default="",
            help="a torchvision weights name or a .pth path "
            "(default: the active or configured weights of that model, else DEFAULT)",
        )
        parser.add_argument("--drop-old", action="store_true", help="drop the other models' embeddings once done")
        parser.add_argument("--no-wait", action="store_true", help="start the run and return at once")

    def handle(self, model, weights, drop_old, no_wait, **options):
        if weights.strip().lower() == "random":
            self.stderr.write(
                self.style.WARNING("Random weights: for tests only; searches will find nothing meaningful.")
            )
        try:
            run = reindex.reindex_start(ReindexRun(arch=model, weights=weights, drop_old=drop_old))
        except reindex.ReindexError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Reindex run {run.id} queued: {run.arch} with weights {run.weights}.")
        self.watch(run, no_wait)

    def watch(self, run, no_wait):
        """Follow the run to its summary, unless told not to wait; Ctrl-C stops watching, not the run."""
        if no_wait:
            self.stdout.write("Follow it in the admin (Reindex runs); it goes on in the background.")
            return
        try:
            run = self.follow(run)
        except KeyboardInterrupt:
            self.stdout.write(f"\nStopped watching; run {run.id} goes on. Cancel it in the admin if you must.")
            return
        self.summary(run)

    def follow(self, run):
        """A progress bar over the run's row until it ends."""
        bar = tqdm(total=run.total or None, desc="reindexing", unit="img", disable=None)
        while run.status in ReindexRun.ACTIVE_STATUSES:
            time.sleep(0.5)
            run.refresh_from_db()
            if run.total and bar.total != run.total:
                bar.total = run.total
            bar.set_postfix(failed=run.failed, rate=f"{run.rate or 0:.1f}/s", refresh=False)
            bar.update(run.processed - bar.n)
        bar.close()
        return run

    def summary(self, run):
        if run.status == ReindexRun.Status.FAILED:
            raise CommandError(f"Reindex run {run.id} failed: {run.error}")
        if run.status == ReindexRun.Status.CANCELLED:
            raise CommandError(f"Reindex run {run.id} was cancelled after {run.processed} of {run.total} images.")
        seconds = (run.finished_at - run.started_at).total_seconds()
        self.stdout.write(
            self.style.SUCCESS(
                f"Reindexed {run.done} images with {run.model_key} in {seconds:.1f}s ({run.rate or 0:.1f} images/s), "
                f"{run.failed} failed. {run.model_key} is now the active model."
            )
        )
        for failure in run.failures[:20]:
            self.stdout.write(f"  image {failure['image_id']}: {failure['reason']}")
        if run.drop_old:
            self.stdout.write(f"The other models' embeddings are dropped in {reindex.DROP_GRACE_SECONDS}s.")
