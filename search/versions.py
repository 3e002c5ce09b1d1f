"""Model versions: which model searches embed with (one is active), the vectors each keeps, and dropping those no
run needs. A reindex run (reindex.py) fills a version and makes it the active one."""

import hashlib
import logging

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import filters, knn
from .models import Embedding, ModelVersion, ReindexRun

log = logging.getLogger(__name__)

_SWITCH_LOCK = 7_301_001  # advisory lock: embedding writes (shared) against a model switch (exclusive)


def model_active():
    """The active ModelVersion (without its projection's bytes: every search reads it), or None before any embedding."""
    return ModelVersion.objects.filter(active=True).defer("projection").first()


def model_version_ensure(*, key, arch, weights, dim, activate_if_none=False):
    """Register a model a worker has loaded; with activate_if_none it becomes active where none is."""
    version, _ = ModelVersion.objects.get_or_create(key=key, defaults={"arch": arch, "weights": weights, "dim": dim})
    if activate_if_none and not ModelVersion.objects.filter(active=True).exists():
        try:
            with transaction.atomic():
                ModelVersion.objects.filter(pk=version.pk).update(active=True)
        except IntegrityError:
            pass  # another worker made its model active first; the constraint keeps it to one
    return version


def projected_version(base, data, *, dim, info):
    """The model version of a projection of the raw vectors of the version `base` (the projection's bytes, its output
    dimension, what it was learned from), under a key made from its bytes."""
    key = f"{base.key}:p-{hashlib.sha256(data).hexdigest()[:10]}"
    version, _ = ModelVersion.objects.update_or_create(
        key=key,
        defaults={
            "arch": base.arch,
            "weights": base.weights,
            "dim": dim,
            "base_key": base.key,
            "projection": data,
            "projection_info": {**info, "learned_at": timezone.now().isoformat()},
        },
    )
    return version


def model_activate(key):
    """Make the version the active one, in the caller's transaction (which holds model_switch_lock)."""
    ModelVersion.objects.filter(active=True).exclude(key=key).update(active=False)
    ModelVersion.objects.filter(key=key).update(active=True)


def model_switch_lock(*, shared):
    """Hold, until the transaction ends, the lock that orders embedding writes against a model switch."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [_SWITCH_LOCK])


def default_weights(arch):
    """The weights a run uses when none are named: the active or configured ones for that model, else DEFAULT."""
    active = model_active()
    if active and active.arch == arch:
        return active.weights
    return settings.IMGSEARCH_WEIGHTS if arch == settings.IMGSEARCH_MODEL else "DEFAULT"


def vector_indexes(version):
    """[(model key, dimensions)] of the vectors a model version searches: its own, and for a projection with a copy
    space its copy-space vectors (knn.copy_key)."""
    copy_dims = (version.projection_info or {}).get("copy_dims", 0) if version.base_key else 0
    return [(version.key, version.dim)] + ([(knn.copy_key(version.key), copy_dims)] if copy_dims else [])


def tag_indexes_refresh():
    """Build the indexes the active model's common categories lack (search/filters.py), where the model has an HNSW
    index of its own: {model key: the categories built}."""
    active, built = model_active(), {}
    for key, dim in vector_indexes(active) if active else []:
        if not knn.is_copy_key(key) and dim <= knn.HNSW_MAX_DIM and knn.index_of(key, max_age=0)[0]:
            built[key] = filters.refresh(key, dim)
    return built


def model_versions_drop(versions=None):
    """Delete the embeddings, vector index and row of inactive models no run needs: (models, embeddings).

    Kept: the active model, models a run is building, and the raw vectors a projected one of these is made from.
    """
    building = list(
        ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).values_list("model_key", flat=True)
    )
    needed = ModelVersion.objects.filter(Q(active=True) | Q(key__in=building)).exclude(base_key="")
    keep = [*building, *needed.values_list("base_key", flat=True)]
    versions = (ModelVersion.objects.all() if versions is None else versions).filter(active=False)
    dropped = embeddings = 0
    for version in versions.exclude(key__in=keep).defer("projection"):
        with transaction.atomic():
            for key, _ in vector_indexes(version):
                embeddings += Embedding.objects.filter(model_key=key).delete()[0]
                knn.drop_vector_index(key)
            version.delete()
        dropped += 1
    return dropped, embeddings
