"""The indexing pipeline's batching (workers/indexing/embed.py), with a stand-in model and decoder."""

import os
import sys

import numpy as np
import pytest

from workers.indexing import decode, embed, jobs


class CountingModel:
    """Records the size of each batch it embeds; returns one vector and prediction per image."""

    def __init__(self):
        self.batches = []

    def embed_prepared(self, tensors):
        self.batches.append(list(tensors))
        return np.zeros((len(tensors), 4), np.float32), [None] * len(tensors)


def fake_decode(embedder, with_features, vocabulary, image):
    """Every seventh 'image' (3, 10, 17, ...) cannot be read; the others decode to their own number."""
    if image % 7 == 3:
        return decode.Decoded(image, error="unreadable")
    return decode.Decoded(image, tensor=image)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
@pytest.mark.parametrize("pool", ["decoders", "feature_decoders"])
def test_decode_threads_run_below_the_model_s_thread(pool):
    """The model's thread (the caller's) keeps its priority; the decode threads are niced, or capped at 19."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    threads = getattr(decode, pool)
    nice_values = {threads.submit(os.getpriority, os.PRIO_PROCESS, 0).result() for _ in range(8)}
    assert nice_values == {min(19, own + decode.DECODE_NICENESS)}
    assert os.getpriority(os.PRIO_PROCESS, 0) == own


def test_the_first_batches_are_smaller_so_the_model_starts_sooner_then_full(monkeypatch, settings):
    """A quarter, a half, then full batches: every readable image is embedded once, in order; the others fail."""
    settings.IMGSEARCH_BATCH_SIZE = 32
    monkeypatch.setattr(decode, "decode", fake_decode)
    model = CountingModel()
    images = list(range(130))
    outcomes, failed = embed.embed(images, model)
    assert [len(b) for b in model.batches] == [8, 16, 32, 32, 23]
    embedded = [t for batch in model.batches for t in batch]
    assert embedded == [i for i in images if i % 7 != 3]
    assert [image for image, _ in failed] == [i for i in images if i % 7 == 3]
    assert [len(rows) for rows in outcomes] == [len(b) for b in model.batches]


def test_a_batch_size_of_one_still_embeds_one_image_at_a_time(monkeypatch, settings):
    settings.IMGSEARCH_BATCH_SIZE = 1
    monkeypatch.setattr(decode, "decode", fake_decode)
    model = CountingModel()
    embed.embed([0, 1, 2], model)
    assert [len(b) for b in model.batches] == [1, 1, 1]


def thumbnails_of(image):
    """The thumbnail files stored for an image's content (a name taken gets a suffix)."""
    from django.conf import settings

    return {(p.name, p.stat().st_mtime_ns) for p in (settings.MEDIA_ROOT / "thumbs").glob(f"*/{image.content_hash}*")}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_image_deleted_while_its_batch_is_embedded_is_skipped_and_the_rest_stored(
    photo_folder, settings, monkeypatch
):
    """The admin deletes an image while a worker embeds it: its batch is still stored, without it (no vector, local
    features or thumbnail), rather than the whole batch failing on the missing image."""
    from django.db import connections

    from search.indexing import ScanReport, image_add
    from search.models import Embedding, IndexedImage, LocalFeatures

    settings.IMGSEARCH_MODEL, settings.IMGSEARCH_WEIGHTS = "mobilenet_v2", "random"
    report = ScanReport()
    images = [image_add(path, report=report) for path in sorted(photo_folder.rglob("*.png"))[:4]]
    doomed = images[1]
    ahead = decode.ahead

    def decoded_then_deleted(*args):  # the batch is stored once all four are decoded: the deletion comes first
        for decoded in ahead(*args):
            if decoded.image.id == doomed.id:
                IndexedImage.objects.filter(id=doomed.id).delete()  # committed: the store thread sees it
            yield decoded

    monkeypatch.setattr(decode, "ahead", decoded_then_deleted)
    thumbnails_before = thumbnails_of(doomed)
    try:
        jobs.images_embed([image.id for image in images])
    finally:
        embed.stores.submit(connections.close_all).result()  # the store thread's connection to the test database
    kept = [image.id for image in images if image.id != doomed.id]
    assert sorted(IndexedImage.objects.filter(status="ready").values_list("id", flat=True)) == kept
    assert sorted(Embedding.objects.values_list("image_id", flat=True)) == kept
    assert sorted(LocalFeatures.objects.values_list("image_id", flat=True)) == kept
    assert thumbnails_of(doomed) == thumbnails_before  # none written for it (earlier tests may have left one)
