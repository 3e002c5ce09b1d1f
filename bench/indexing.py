"""Indexing throughput: the worker's full pipeline against the model's bare batched forward pass.

Baseline: `_features` on pre-decoded, pre-processed tensors, batch IMGSEARCH_BATCH_SIZE (32). Pipeline: the real
`workers.indexing.jobs.images_embed` on the same images in tasks of IMGSEARCH_TASK_SIZE (256), as index_images
sends them: decoding, resizing, thumbnails and local features in its decode threads, ahead of the model;
embedding; vectors, local features, tags and status written to PostgreSQL by its store thread while the model
embeds the next batch. Each image is new to the index for every timed pass (its rows and thumbnail are
removed first), so every pass does the whole work.

Both are measured with 1 torch thread, as `make run` and docker-compose start the index worker (a worker per
core), and with 2, torch's default on this machine; and the pipeline with local features (the default, for
copy detection, with their visual words, as in an index that has learned its vocabulary) and without them
(IMGSEARCH_LOCAL_FEATURES=0). Needs the bench database (bench.benchdb).
"""

import statistics

import torch

from bench.common import labelled_subset, timed

THREADS = (1, 2)


def decode(embedder, paths):
    """(pre-processed tensors, images/s of decoding and pre-processing alone, one thread)."""
    from workers.imageio import load_rgb

    def load(path):
        return embedder.preprocess(load_rgb(path, target_size=embedder.resize_size))

    tensors, seconds = timed(lambda: torch.stack([load(p) for p in paths]))
    return tensors, len(paths) / seconds


def bare_forward(embedder, tensors, batch):
    """Images/s of the forward pass alone over pre-decoded tensors, excluding the warm-up batch."""
    from workers.embedder import _features

    batches = list(torch.split(tensors, batch))
    with torch.inference_mode():
        _features(embedder.net, embedder.spec.family, batches[0])
        _, seconds = timed(lambda: [_features(embedder.net, embedder.spec.family, b) for b in batches[1:]])
    return (len(tensors) - len(batches[0])) / seconds


def store_originals(paths):
    """Add the files to the bench index as index_images does (not timed); returns their ids in order."""
    from search.indexing import ScanReport, image_add

    report = ScanReport()
    return [image_add(p, report=report).id for p in paths]


def forget(ids):
    """Make the images new to the index again: no vectors, local features or thumbnail."""
    from search.models import Embedding, IndexedImage, LocalFeatures

    Embedding.objects.filter(image_id__in=ids).delete()
    LocalFeatures.objects.filter(image_id__in=ids).delete()
    for image in IndexedImage.objects.filter(id__in=ids).exclude(thumbnail=""):
        image.thumbnail.storage.delete(image.thumbnail.name)
    IndexedImage.objects.filter(id__in=ids).update(thumbnail="", status="pending")


def pipeline(ids, task_size):
    """Images/s of images_embed over tasks of ids, as the index worker runs them."""
    from workers.indexing.jobs import images_embed

    forget(ids)
    tasks = [ids[i : i + task_size] for i in range(0, len(ids), task_size)]
    _, seconds = timed(lambda: [images_embed(t) for t in tasks])
    return len(ids) / seconds


def run(count=512, repeats=5):
    """Both figures on `count` dev images (every 3rd of the labelled subset, so sizes are mixed), per thread count,
    with local features (the default) and without (IMGSEARCH_LOCAL_FEATURES=0: the pipeline of decode, resize,
    embed and store alone). Each ratio is the median of `repeats` passes, each pipeline pass against the mean of the
    bare forward measured just before and just after it: on this shared machine the bare forward alone drifted by
    up to 20% between passes a minute apart (80-99 img/s), and one pipeline pass against the bare forward before
    it varied by +-0.07x."""
    from django.conf import settings

    from workers.indexing.jobs import images_embed
    from workers.learning import words_learn
    from workers.spaces import active_space

    batch, task = settings.IMGSEARCH_BATCH_SIZE, settings.IMGSEARCH_TASK_SIZE
    paths = [p for p, _ in labelled_subset(3 * (count + batch))][::3][: count + batch]
    ids = store_originals(paths)
    images_embed(ids[:batch])  # warm-up: loads the model, registers it, creates its vector index
    # An index of IMGSEARCH_WORDS_MIN_IMAGES images or more has learned its visual words, and every image indexed
    # afterwards gets its words in the pipeline (and into their HNSW index): learned here from the warm-up batch.
    words_learn()
    embedder = active_space().embedder  # the very model object images_embed uses
    tensors, decode_rate = decode(embedder, paths)
    rows = []
    for threads in THREADS:
        torch.set_num_threads(threads)
        passes = {True: [], False: []}  # local features on/off -> [(bare, pipeline)], each pair measured together
        for _ in range(repeats):
            before = bare_forward(embedder, tensors, batch)
            for features in (True, False):
                settings.IMGSEARCH_LOCAL_FEATURES = features
                full = pipeline(ids[batch:], task)
                after = bare_forward(embedder, tensors, batch)
                passes[features].append(((before + after) / 2, full))
                before = after
        for features, pairs in passes.items():
            ratios = [full / bare for bare, full in pairs]
            bare, full = (statistics.median(x) for x in zip(*pairs))
            rows.append(
                {
                    "torch_threads": threads,
                    "local_features": features,
                    "bare_forward_img_s": round(bare, 2),
                    "pipeline_img_s": round(full, 2),
                    "ratio": round(statistics.median(ratios), 3),
                    "ratios": [round(r, 3) for r in ratios],
                }
            )
            print(
                f"  indexing, {threads} torch thread(s), local features {'on' if features else 'off'}: bare forward "
                f"{bare:.1f} img/s, pipeline {full:.1f} img/s (median of {repeats} ratios: {statistics.median(ratios):.2f}x; "
                f"each {', '.join(f'{r:.2f}' for r in ratios)})",
                flush=True,
            )
    settings.IMGSEARCH_LOCAL_FEATURES = True
    torch.set_num_threads(max(THREADS))
    print(f"  decoding + pre-processing alone (1 thread): {decode_rate:.1f} img/s", flush=True)
    return {
        "images": count,
        "batch": batch,
        "task_size": task,
        "repeats": repeats,
        "decode_only_img_s": round(decode_rate, 2),
        "runs": rows,
    }
