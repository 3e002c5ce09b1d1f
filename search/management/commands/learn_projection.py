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
        if no_wait:
            self.stdout.write("Follow it in the admin (Reindex runs); it goes on in the background.")
            return
        try:
            run = self.follow(run)
        except KeyboardInterrupt:
            self.stdout.write(f"\nStopped watching; run {run.id} goes on. Cancel it in the admin if you must.")
            return
        self.summary(run)
