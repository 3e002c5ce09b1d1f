"""Worker start-up: refuse to start with missing or unfit weights; load the model once per process."""

import sys

from celery.signals import worker_init, worker_process_init


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
    # Load now, so the first search does not pay for it; database set-up waits for the first task.
    from .embedder import get_embedder

    get_embedder()
