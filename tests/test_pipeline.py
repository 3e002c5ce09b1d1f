"""The indexing pipeline's batching (workers.pipeline._embed), with a stand-in model and decoder."""

import numpy as np

from workers import pipeline


class CountingModel:
    """Records the size of each batch it embeds; returns one vector and prediction per image."""

    def __init__(self):
        self.batches = []

    def embed_prepared(self, tensors):
        self.batches.append(list(tensors))
        return np.zeros((len(tensors), 4), np.float32), [None] * len(tensors)


def fake_decode(embedder, with_features, image):
    """Every seventh 'image' (3, 10, 17, ...) cannot be read; the others decode to their own number."""
    if image % 7 == 3:
        return pipeline.Decoded(image, error="unreadable")
    return pipeline.Decoded(image, tensor=image)


def test_the_first_batches_are_smaller_so_the_model_starts_sooner_then_full(monkeypatch, settings):
    """A quarter, a half, then full batches: every readable image is embedded once, in order; the others fail."""
    settings.IMGSEARCH_BATCH_SIZE = 32
    monkeypatch.setattr(pipeline, "_decode", fake_decode)
    model = CountingModel()
    images = list(range(130))
    outcomes, failed = pipeline._embed(images, model)
    assert [len(b) for b in model.batches] == [8, 16, 32, 32, 23]
    embedded = [t for batch in model.batches for t in batch]
    assert embedded == [i for i in images if i % 7 != 3]
    assert [image for image, _ in failed] == [i for i in images if i % 7 == 3]
    assert [len(rows) for rows in outcomes] == [len(b) for b in model.batches]


def test_a_batch_size_of_one_still_embeds_one_image_at_a_time(monkeypatch, settings):
    settings.IMGSEARCH_BATCH_SIZE = 1
    monkeypatch.setattr(pipeline, "_decode", fake_decode)
    model = CountingModel()
    pipeline._embed([0, 1, 2], model)
    assert [len(b) for b in model.batches] == [1, 1, 1]
