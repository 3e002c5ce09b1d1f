"""The model's forward pass over a task's images, in batches, with the decode threads ahead of it and each embedded
batch handed to the store thread."""

from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

from django.conf import settings
from django.db import close_old_connections

from . import decode, features

stores = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")


def embed(images, embedder, *, with_features=frozenset(), store=None):
    """Decode and embed images in batches of up to IMGSEARCH_BATCH_SIZE: (outcomes, [(image, reason)]).

    The decode threads prepare the next batches while the model embeds one, and each embedded batch
    [(Decoded, raw vector, prediction)] goes to `store` on the store thread, so writing it overlaps embedding
    the next (bench/indexing.py measures this pipeline against the bare forward pass). The outcomes are
    store's results per batch, or the batches themselves without a store.
    """
    size = settings.IMGSEARCH_BATCH_SIZE
    outcomes, failed, batch = [], [], []
    # The model waits idle while the first batch is decoded, so the first batches are smaller (a quarter, a half,
    # then full): it starts sooner and the decode threads, faster than the model, still get ahead of it.
    wanted = max(1, size // 4)

    def flush():
        nonlocal wanted
        if batch:
            vectors, predictions = embedder.embed_prepared([d.tensor for d in batch])
            rows = list(zip(batch, vectors, predictions))
            outcomes.append(stores.submit(_store_in_thread, store, rows) if store else rows)
            batch.clear()
            wanted = min(size, 2 * wanted)

    try:
        pool = decode.feature_decoders if with_features else decode.decoders
        prepare = partial(decode.decode, embedder, with_features, features.vocabulary_for(bool(with_features)))
        for decoded in decode.ahead(prepare, images, 2 * size, pool):
            if decoded.tensor is None:
                failed.append((decoded.image, decoded.error))
                continue
            batch.append(decoded)
            if len(batch) >= wanted:
                flush()
        flush()
    finally:  # even when embedding failed, the batches handed over are written (or fail) before we return
        outcomes = [o.result() if isinstance(o, Future) else o for o in outcomes]
    return outcomes, failed


def _store_in_thread(store, rows):
    close_old_connections()  # the store thread's own connection: kept between tasks, dropped when broken
    return store(rows)
