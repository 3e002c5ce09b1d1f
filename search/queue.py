"""The one place that sends work to the workers: Celery tasks by name (workers/tasks.py defines them), so no module
of the web side imports the workers. Each is sent once the current transaction commits, unless said otherwise."""

from django.conf import settings
from django.db import transaction

from imgsearch.celery import app

RUN_SEARCH = "workers.run_search"
EMBED_IMAGES = "workers.embed_images"
RETAG_IMAGES = "workers.retag_images"
EXTRACT_FEATURES = "workers.extract_features"
COMPUTE_WORDS = "workers.compute_words"
COLLECTION_SCAN = "workers.collection_scan"
COLLECTION_IMPORT = "workers.collection_import"
REINDEX_PLAN = "workers.reindex_plan"
REINDEX_CHUNK = "workers.reindex_chunk"
REINDEX_BUILD_INDEX = "workers.reindex_build_index"
DROP_INACTIVE_MODELS = "workers.drop_inactive_models"
LEARN_PROJECTION = "workers.learn_projection"
NAMES = (
    RUN_SEARCH,
    EMBED_IMAGES,
    RETAG_IMAGES,
    EXTRACT_FEATURES,
    COMPUTE_WORDS,
    COLLECTION_SCAN,
    COLLECTION_IMPORT,
    REINDEX_PLAN,
    REINDEX_CHUNK,
    REINDEX_BUILD_INDEX,
    DROP_INACTIVE_MODELS,
    LEARN_PROJECTION,
)


def send_now(name, *args, countdown=None, **kwargs):
    """Send a task at once (the caller handles a broker that is down)."""
    app.send_task(name, args=args, kwargs=kwargs or None, countdown=countdown)


def send(name, *args, countdown=None, **kwargs):
    """Send a task once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send_now(name, *args, countdown=countdown, **kwargs))


def send_batches(name, image_ids, batch_size=None, **kwargs):
    """Send one task per batch of image ids (IMGSEARCH_TASK_SIZE by default) on commit; returns how many."""
    ids, size = list(image_ids), batch_size or settings.IMGSEARCH_TASK_SIZE
    batches = [ids[i : i + size] for i in range(0, len(ids), size)]
    for batch in batches:
        send(name, batch, **kwargs)
    return len(batches)


FIND_DUPLICATES = "workers.find_duplicates"
REFRESH_TAG_INDEXES = "workers.refresh_tag_indexes"
NAMES += (FIND_DUPLICATES, REFRESH_TAG_INDEXES)


def send_find_duplicates(run_id):
    """Queue a duplicate finder run (search/duplicates.py) on an index worker, on commit."""
    send(FIND_DUPLICATES, run_id)
