"""Worker start-up: refuse to start with missing or unfit weights; load the active model once per process."""

import logging
import sys

from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

log = logging.getLogger(__name__)


@worker_init.connect
def check_weights_before_start(**kwargs):
    from django.conf import settings

    from .embedder import WeightsError, check_weights

    try:
        check_weights(settings.IMGSEARCH_MODEL, settings.IMGSEARCH_WEIGHTS)
    except WeightsError as exc:
        print(f"imgsearch worker cannot start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


@worker_process_init.connect
def load_model(**kwargs):
    # Load now, so the first search does not pay for it. Each pool process opens its own connection.
    from django.conf import settings

    from .embedder import set_threads
    from .spaces import active_space

    set_threads(settings.IMGSEARCH_TORCH_THREADS)
    try:
        active_space()
    except Exception:  # the database may still be starting: the first task loads the model instead
        log.warning("could not load the active model at start-up; the first task will", exc_info=True)


@task_prerun.connect
@task_postrun.connect
def keep_database_connection(**kwargs):
    # Instead of Celery's close after every task (settings.CELERY_DB_REUSE_MAX): Django's own rule for
    # requests, which drops a connection that is broken, in error or older than CONN_MAX_AGE.
    from django.db import close_old_connections

    close_old_connections()
