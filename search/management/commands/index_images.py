"""python manage.py index_images PATH [--tags-from-folders] [--collection NAME]"""

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from search import indexing
from search.models import Collection, IndexedImage


class Command(BaseCommand):
    help = "Index the images under PATH: store, thumbnail, tag and embed them (embedding runs on the Celery workers)."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--tags-from-folders", action="store_true", help="tag each image with its folder names")
        parser.add_argument("--collection", help="add the images to this named collection")
        parser.add_argument(
            "--batch-size", type=int, default=settings.IMGSEARCH_TASK_SIZE, help="images per worker task"
        )
        parser.add_argument("--no-wait", action="store_true", help="queue the work and return at once")

    def handle(self, path, tags_from_folders, collection, batch_size, no_wait, **options):
        root = Path(path).expanduser().resolve()
        if not root.is_dir():
            raise CommandError(f"{path} is not a folder.")
        if collection:
            collection, _ = Collection.objects.get_or_create(name=collection, defaults={"source_path": str(root)})
        started = time.monotonic()
        report = self.scan(root, collection, tags_from_folders, batch_size)
        queued = list(dict.fromkeys(report.queued))
        self.stdout.write(
            f"{len(queued)} to embed, {report.unchanged} unchanged, {report.duplicates} duplicates, "
            f"{len(report.skipped)} skipped"
        )
        for source, reason in report.skipped[:20]:
            self.stdout.write(f"  skipped {source}: {reason}")
        if len(report.skipped) > 20:
            self.stdout.write(f"  ... and {len(report.skipped) - 20} more skipped")
        if queued and not no_wait:
            self.wait(queued, started)

    def scan(self, root, collection, tags_from_folders, batch_size):
        """Walk the folder, store new files, and queue them in batches while the walk goes on."""
        report = indexing.ScanReport()
        sent = 0
        # Images stored by an interrupted earlier run are queued again first.
        report.queued.extend(indexing.pending_image_ids())
        for path in tqdm(list(indexing.iter_files(root)), desc="scanning", unit="file", disable=None):
            tags = indexing.folder_tags(path, root) if tags_from_folders else ()
            indexing.image_add(path, collection=collection, tags=tags, report=report)
            if len(report.queued) - sent >= batch_size:
                indexing.embed_enqueue(report.queued[sent:], batch_size)
                sent = len(report.queued)
        indexing.embed_enqueue(report.queued[sent:], batch_size)
        return report

    def wait(self, ids, started):
        """A progress bar over the queued images until the workers have embedded or failed them all."""
        images = IndexedImage.objects.filter(id__in=ids)
        bar = tqdm(total=len(ids), desc="embedding", unit="img", disable=None)
        finished = failed = 0
        while finished < len(ids):
            time.sleep(0.5)
            failed = images.filter(status=IndexedImage.Status.FAILED).count()
            finished = failed + images.filter(status=IndexedImage.Status.READY).count()
            bar.set_postfix(failed=failed)
            bar.update(finished - bar.n)
        bar.close()
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Indexed {finished - failed} images in {elapsed:.1f}s ({(finished - failed) / elapsed:.1f} images/s), {failed} failed."
            )
        )
        for image in images.filter(status=IndexedImage.Status.FAILED)[:20]:
            self.stdout.write(f"  failed {image.source_path}: {image.error}")
