"""python manage.py extract_local_features"""

from django.core.management.base import BaseCommand

from search import indexing


class Command(BaseCommand):
    help = (
        "Queue the extraction of local features and signatures (used to recognise copies at search time) for "
        "indexed images that have none, e.g. those indexed before this version. New images get them when they "
        "are indexed."
    )

    def handle(self, **options):
        count, tasks = indexing.queue_missing_features()
        self.stdout.write(
            f"{count} images have no local features or signature; {tasks} tasks queued on the index workers."
        )
