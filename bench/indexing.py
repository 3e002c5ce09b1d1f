"""Indexing throughput: the worker's full pipeline against the model's bare batched forward pass.

Baseline: `_features` on pre-decoded, pre-processed tensors, batch 32. Pipeline: the real
`workers.pipeline.images_embed` on the same images in batches of 32 (decode in its thread pool, resize,
embed, thumbnails, tags, vectors stored in PostgreSQL). Needs the bench database (bench.benchdb).
The first batch of each warms up and is not counted.
"""

import torch

from bench.common import labelled_subset, timed

BATCH = 32


def decode(embedder, paths):
    """(pre-processed tensors, images/s of decoding and pre-processing alone, one thread)."""
    from workers.imageio import load_rgb

    def load(path):
        return embedder.preprocess(load_rgb(path, target_size=embedder.resize_size))

    tensors, seconds = timed(lambda: torch.stack([load(p) for p in paths]))
    return tensors, len(paths) / seconds


def bare_forward(embedder, tensors):
    """Images/s of the forward pass alone over pre-decoded tensors, excluding the warm-up batch."""
    from workers.embedder import _features

    batches = list(torch.split(tensors, BATCH))
    with torch.inference_mode():
        _features(embedder.net, embedder.spec.family, batches[0])
        _, seconds = timed(lambda: [_features(embedder.net, embedder.spec.family, b) for b in batches[1:]])
    return (len(tensors) - len(batches[0])) / seconds


def store_originals(paths):
    """Add the files to the bench index as index_images does (not timed); returns their ids in order."""
    from search.indexing import ScanReport, image_add

    report = ScanReport()
    return [image_add(p, report=report).id for p in paths]


def pipeline(ids):
    """Images/s of images_embed over batches of ids, excluding the warm-up batch."""
    from workers.pipeline import images_embed

    batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
    images_embed(batches[0])
    _, seconds = timed(lambda: [images_embed(b) for b in batches[1:]])
    return (len(ids) - len(batches[0])) / seconds


def run(count=192):
    """Both figures on the same `count` dev images (every 4th of the labelled subset, so sizes are mixed)."""
    from workers.pipeline import active_embedder

    paths = [p for p, _ in labelled_subset(4 * count)][::4][:count]
    ids = store_originals(paths)
    embedder = active_embedder()  # the very model object images_embed will use
    tensors, decode_rate = decode(embedder, paths)
    bare = bare_forward(embedder, tensors)
    full = pipeline(ids)
    print(f"  indexing: bare forward {bare:.1f} img/s, pipeline {full:.1f} img/s ({full / bare:.2f}x); "
          f"decoding alone {decode_rate:.1f} img/s", flush=True)
    return {"images": len(paths), "batch": BATCH, "torch_threads": torch.get_num_threads(),
            "decode_only_img_s": round(decode_rate, 2), "bare_forward_img_s": round(bare, 2), "pipeline_img_s": round(full, 2), "ratio": round(full / bare, 3)}
