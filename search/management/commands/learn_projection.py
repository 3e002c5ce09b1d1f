"""python manage.py learn_projection [--no-wait]"""

from django.core.management.base import CommandError

from search import reindex

from .reindex import Command as ReindexCommand


class Command(ReindexCommand):
    help = ("Learn a projection of the active model's vectors from the index and its given tags (search/projection.py), "
            "then apply it in a background reindex run; searches switch to it when the run is done.")

    def add_arguments(self, parser):
        parser.add_argument("--no-wait", action="store_true", help="start the run and return at once")

    def handle(self, no_wait, **options):
        run, message = reindex.projection_learn()
        if run is None:
            raise CommandError(message)
        self.stdout.write(message)
        self.watch(run, no_wait)
