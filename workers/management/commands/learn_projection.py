"""python manage.py learn_projection [--no-wait]"""

from django.core.management.base import CommandError

from search.management.commands.reindex import Command as ReindexCommand


class Command(ReindexCommand):
    help = (
        "Learn a projection of the active model's vectors from the index and its given tags (workers/projection.py), "
        "with a copy space from edited copies of some indexed images (embedded here, a minute or so), then apply "
        "it in a background reindex run; searches switch to it when the run is done."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-wait", action="store_true", help="start the run and return at once")

    def handle(self, no_wait, **options):
        from workers.embedder import WeightsError
        from workers.learning import projection_learn  # the model, for the copy space's edited copies

        try:
            run, message = projection_learn()
        except WeightsError as exc:
            raise CommandError(f"The model cannot be loaded to embed the copy space's edited copies: {exc}") from None
        if run is None:
            raise CommandError(message)
        self.stdout.write(message)
        self.watch(run, no_wait)
