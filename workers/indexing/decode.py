"""Decoding indexed images for the model, in threads that run below the model's (Pillow and OpenCV release the GIL)."""

import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

from django.conf import settings

from search.models import IndexedImage

from ..imageio import ImageDecodeError, load_rgb, make_thumbnail
from . import features as features_module


def _decode_threads():
    """The cores torch leaves free (at least one, at most four): more threads only slowed the model on 2 cores."""
    cores = os.cpu_count() or 1
    return min(4, max(1, cores - (settings.IMGSEARCH_TORCH_THREADS or cores)))


DECODE_NICENESS = 10  # how far below the model's thread the decode threads run


def _below_the_model():
    """Lower this decode thread's priority (on Linux a thread has a nice value of its own), so the model's thread
    keeps its core whenever it can run and decoding fills what is left: with local features on 2 cores, the model ran
    at 32-42 img/s inside the pipeline before, 38-48 after, and the pipeline went from 0.64x to 0.71x of the bare
    forward (medians of 4 alternating passes, each against the bare forward just before it)."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS 0 is the whole process, the model's thread too
        return
    try:  # on Linux, PRIO_PROCESS 0 is the calling thread
        os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + DECODE_NICENESS))
    except OSError:
        pass


decoders = ThreadPoolExecutor(max_workers=_decode_threads(), thread_name_prefix="decode", initializer=_below_the_model)
# With local features an image costs its decode thread more CPU than the model spends on it (SIFT at two sizes), so
# the model waits idle between batches; one thread more fills that time (bench/indexing.py). Also for extracting
# features alone, where no model runs.
feature_decoders = ThreadPoolExecutor(
    max_workers=_decode_threads() + 1, thread_name_prefix="decode-features", initializer=_below_the_model
)


@dataclass
class Decoded:
    image: IndexedImage
    tensor: object = None  # the model's input, or None when the image could not be read
    error: str = ""
    thumbnail: bytes | None = None  # JPEG bytes, for an image that has none yet
    evidence: features_module.Evidence | None = None  # its copy evidence, when asked for


def decode(embedder, with_features, vocabulary, image):
    """Decode one indexed image and prepare what the model and the store need (run in the decode threads)."""
    try:
        pil = load_rgb(image.file.path, target_size=embedder.resize_size, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
    except ImageDecodeError as exc:
        return Decoded(image, error=str(exc))
    except OSError as exc:
        return Decoded(image, error=f"cannot read the stored file: {exc}")
    evidence = features_module.copy_evidence(pil, vocabulary) if image.id in with_features else None
    return Decoded(
        image, embedder.prepare(pil), thumbnail=None if image.thumbnail else make_thumbnail(pil), evidence=evidence
    )


def ahead(fn, items, count, pool):
    """fn(item) for each item in the pool's threads, in order, with at most `count` started ahead."""
    items, started = iter(items), deque()
    for item in islice(items, count):
        started.append(pool.submit(fn, item))
    while started:
        result = started.popleft().result()
        for item in islice(items, 1):
            started.append(pool.submit(fn, item))
        yield result
