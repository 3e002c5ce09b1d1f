"""When the index learns a projection of its vectors (workers/projection.py), and registering one a worker learned
(workers/learning.py) as a model version that a reindex run applies."""

from django.conf import settings

from . import queue, reindex, versions
from .models import Embedding, IndexedImage, ReindexRun

PROJECTION_GROWTH = 1.5  # learn again once the index, or its tagged part, has grown by half


def too_few(images, min_images):
    """Why `images` embedded images are too few to learn a projection from (at least `min_images`), or None."""
    if images < max(min_images, 2):
        return f"{images} embedded images; a projection is learned from {min_images} or more."
    return None


def raw_rows(base_key):
    """The raw vectors of ready images, what a projection of the model is learned from."""
    return Embedding.objects.filter(model_key=base_key, image__status=IndexedImage.Status.READY)


def raw_counts(base_key):
    """(ready images with a raw vector of the model, those of them with given tags)."""
    rows = raw_rows(base_key)
    return rows.count(), rows.exclude(image__user_tags=[]).count()


def projection_due():
    """(due, reason): whether IMGSEARCH_PROJECTION=auto should learn a projection for the active model now."""
    active = versions.model_active()
    if settings.IMGSEARCH_PROJECTION != "auto" or active is None:
        return False, "Projections are off (IMGSEARCH_PROJECTION=off)." if active else "Nothing is indexed yet."
    if reindex.run_under_way():
        return False, "A reindex run is under way."
    images, tagged = raw_counts(active.base_key or active.key)
    minimum = settings.IMGSEARCH_PROJECTION_MIN_IMAGES
    if images < minimum:
        return False, f"{images} images are indexed; a projection is learned from {minimum}."
    if not active.base_key:
        return True, "The active model has no projection yet."
    learned = active.projection_info
    grown = images >= PROJECTION_GROWTH * learned.get("images", 0)
    tags_grown = tagged >= PROJECTION_GROWTH * max(learned.get("tagged_images", 0), 10)
    if grown or tags_grown:
        return True, "The index has grown since the projection was learned."
    return False, "The projection is up to date."


def projection_request():
    """Ask a worker to learn a projection (with its copy space, which needs the model) and start the run that applies
    it: (sent, message). Not sent when the worker would surely refuse: nothing or too little indexed, or a run under
    way."""
    active = versions.model_active()
    if active is None:
        return False, "Nothing is indexed yet."
    images, _ = raw_counts(active.base_key or active.key)
    refused = too_few(images, settings.IMGSEARCH_PROJECTION_MIN_IMAGES) or reindex.run_under_way()
    if refused:
        return False, refused
    queue.send(queue.LEARN_PROJECTION)
    return True, (
        "A worker is learning a projection from the index (edited copies of some images are embedded "
        "first, a minute or so); a reindex run then applies it: see Reindex runs."
    )


def projection_register(base, data, *, dim, info):
    """Store a projection learned from the raw vectors of the model version `base` (its bytes, its output dimension,
    what it was learned from) as a model version of its own, and start the run that applies it: (run, message); run
    None when none could start, and the message says why."""
    version = versions.projected_version(base, data, dim=dim, info=info)
    try:
        run = reindex.reindex_start(ReindexRun(arch=base.arch, weights=base.weights, model_key=version.key))
    except reindex.ReindexError as exc:
        return None, str(exc)
    tags_used = f", {info['lda_dims']} from {len(info['tags'])} tags" if info["lda_dims"] else ""
    copy_space = f", a copy space from {info['copy_pairs']} edited copies" if info["copy_dims"] else ""
    return run, (
        f"Learned a projection from {info['images']} images ({info['pca_dims']} dimensions{tags_used}"
        f"{copy_space}); reindex run {run.id} applies it."
    )
