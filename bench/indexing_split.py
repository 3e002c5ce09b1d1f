"""Where the indexing pipeline's time goes: the model inside it, waiting for decoded images, and the store thread.

    IMGSEARCH_DATA_DIR=.local/bench-run .venv/bin/python -m imgsearch.embedded exec -- .venv/bin/python -m bench.indexing_split

The pipeline of bench/indexing.py (local features off, 1 torch thread, 512 dev images in tasks of 256), with the
model's and the store's calls timed, against the bare forward in the same run; then the same passes with the store
left out (nothing written), which shows what the store thread's Python costs the model (it holds the GIL, which the
forward pass needs between its operations). Runs on a fresh bench database (bench.benchdb), dropped at the end.
"""

import argparse
import time
from contextlib import contextmanager


class Clock:
    """Seconds spent in the wrapped calls, summed."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed_call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed_call


@contextmanager
def instrumented(store):
    """Time the model's and the store's calls in the indexing pipeline; with store=False, write nothing."""
    from workers import embedder
    from workers.indexing import embed

    model, writes = Clock(), Clock()
    saved = embedder.Embedder.embed_prepared, embed._store_in_thread
    embedder.Embedder.embed_prepared = model.wrap(saved[0])
    embed._store_in_thread = writes.wrap(saved[1] if store else lambda store, rows: False)
    try:
        yield model, writes
    finally:
        embedder.Embedder.embed_prepared, embed._store_in_thread = saved


def run(count=512, repeats=3):
    import torch
    from django.conf import settings

    from bench.common import labelled_subset
    from bench.indexing import bare_forward, decode, forget, store_originals
    from workers.indexing.jobs import images_embed
    from workers.spaces import active_space

    torch.set_num_threads(1)
    settings.IMGSEARCH_LOCAL_FEATURES = False
    batch, task = settings.IMGSEARCH_BATCH_SIZE, settings.IMGSEARCH_TASK_SIZE
    paths = [p for p, _ in labelled_subset(3 * (count + batch))][::3][: count + batch]
    ids = store_originals(paths)
    images_embed(ids[:batch])  # warm-up: loads the model and registers it
    embedder = active_space().embedder
    tensors, _ = decode(embedder, paths)
    tasks = [ids[batch:][i : i + task] for i in range(0, count, task)]
    for _ in range(repeats):
        for store in (True, False):
            bare = bare_forward(embedder, tensors, batch)
            forget(ids[batch:])
            with instrumented(store) as (model, writes):
                started = time.perf_counter()
                for t in tasks:
                    images_embed(t)
                wall = time.perf_counter() - started
            waited = wall - model.seconds
            print(
                f"  store {'on ' if store else 'off'}: pipeline {count / wall:.1f} img/s ({count / wall / bare:.2f}x of the "
                f"bare forward's {bare:.1f}); the model inside it {count / model.seconds:.1f} img/s; the model's thread "
                f"outside the model {waited * 1000 / count:.2f} ms an image; store thread {writes.seconds * 1000 / count:.2f} "
                "ms an image",
                flush=True,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from bench import benchdb

    benchdb.use_bench_database()
    try:
        run(args.images, args.repeats)
    finally:
        benchdb.drop()


if __name__ == "__main__":
    main()
