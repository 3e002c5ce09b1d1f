"""The duplicate finder's rows: runs (start, claim, progress, finish), the pairs they verified, the groups those pairs
make, and a person's two answers to a group: keep one picture (the others leave the index, files and vectors too) or
"not the same picture" (remembered, never proposed again). Once a run over the whole index has finished, the images
indexed after it are checked by themselves (duplicate_run_follow, on Celery beat).

A run ranks each image of its scope as a search by it would be ranked (workers/duplicates.py) and keeps the pairs
that search would badge "Same picture". Groups are the connected components of the kept pairs; a pair a person said
is not the same picture is never stored again. Exact byte copies cannot be in the index twice: image_add keeps one
row per content hash, so every group here is of different files.
"""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import indexing, queue
from .models import Collection, DistinctPair, DuplicatePair, DuplicateRun, IndexedImage

Status = DuplicateRun.Status
STALE_SECONDS = 300  # a running run without progress for this long lost its worker: a redelivered task goes on
_START_LOCK = 7_301_030  # advisory lock: one run started at a time


class DuplicateError(ValueError):
    """An action or run that cannot be done, with a sentence fit to show the operator."""


# --- Runs -------------------------------------------------------------------------------------------


def duplicate_run_start(*, collection=None, only_new=True, user=None):
    """A new run over the index or one collection, queued on an index worker; refused while another is under way."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_START_LOCK])
        current = DuplicateRun.objects.filter(status__in=DuplicateRun.ACTIVE_STATUSES).first()
        if current and _stalled(current):  # its worker died and no redelivery took it over, or it was never sent
            duplicate_run_fail(current.id, "No progress for a while: its worker stopped. A new run was started.")
        elif current:
            raise DuplicateError(
                _("Duplicate finder run %(id)s is still %(status)s; wait for it to end.")
                % {"id": current.id, "status": current.status}
            )
        run = DuplicateRun.objects.create(collection=collection, only_new=only_new, started_by=user)
        queue.send_find_duplicates(run.id)
    return run


def _stalled(run):
    """Whether an active run has shown no sign of life (claimed, or progress written) for STALE_SECONDS."""
    return (run.heartbeat_at or run.created_at) < timezone.now() - timedelta(seconds=STALE_SECONDS)


def _scope(collection_id):
    """The ready images of a collection, or of the whole index (None)."""
    images = IndexedImage.objects.filter(status=IndexedImage.Status.READY)
    return images if collection_id is None else images.filter(collection_id=collection_id)


def duplicate_run_claim(run_id, *, model_key):
    """Claim a queued run (planning which images it checks), or a running one whose worker was lost (it goes on after
    its last image); None if another worker has it, it ended, or it is gone."""
    now = timezone.now()
    with transaction.atomic():
        run = DuplicateRun.objects.select_for_update().filter(id=run_id).first()
        if run is None or run.status not in DuplicateRun.ACTIVE_STATUSES:
            return None
        if run.status == Status.RUNNING and not _stalled(run):
            return None  # a live worker has it
        else:
            run.after_id = _checked_up_to(run) if run.only_new else 0
            run.up_to_id = _scope(run.collection_id).aggregate(newest=Max("id"))["newest"] or 0
            run.cursor_id = run.after_id
            run.total = _scope(run.collection_id).filter(id__gt=run.after_id, id__lte=run.up_to_id).count()
            run.started_at = now
        run.status, run.model_key, run.heartbeat_at = Status.RUNNING, model_key, now
        run.save()
    return run


def _checked_up_to(run):
    """The newest image id that finished runs covering this run's scope (the whole index, or its collection) checked."""
    covering = DuplicateRun.objects.filter(status=Status.DONE).exclude(id=run.id)
    if run.collection_id is not None:
        covering = covering.filter(Q(collection__isnull=True) | Q(collection_id=run.collection_id))
    else:
        covering = covering.filter(collection__isnull=True)
    return covering.aggregate(newest=Max("up_to_id"))["newest"] or 0


def duplicate_run_next_ids(run, size):
    """The next `size` image ids the run has to check, in id order."""
    return list(
        _scope(run.collection_id)
        .filter(id__gt=run.cursor_id, id__lte=run.up_to_id)
        .order_by("id")
        .values_list("id", flat=True)[:size]
    )


def duplicate_run_record(run, *, last_id, done, failed, pairs):
    """Count a batch of checked images and keep its verified pairs [(image_id, image_id, inliers)], those a person
    said are not the same picture left out; the number of new pairs."""
    ordered = {}
    for a, b, inliers in pairs:
        key = (min(a, b), max(a, b))
        ordered[key] = max(inliers, ordered.get(key, 0))
    ids = {i for key in ordered for i in key}
    with transaction.atomic():
        present = set(IndexedImage.objects.filter(id__in=ids).values_list("id", flat=True))
        known = _distinct_pairs(ids) | set(
            DuplicatePair.objects.filter(image_a__in=ids, image_b__in=ids).values_list("image_a", "image_b")
        )
        rows = [
            DuplicatePair(image_a_id=a, image_b_id=b, inliers=inliers, run_id=run.id)
            for (a, b), inliers in ordered.items()
            if (a, b) not in known and a in present and b in present
        ]
        DuplicatePair.objects.bulk_create(rows, ignore_conflicts=True)  # a pair two workers found at once: kept once
        run.cursor_id, run.done, run.failed = last_id, run.done + done, run.failed + failed
        run.pairs_found += len(rows)
        run.heartbeat_at = timezone.now()
        fields = ("cursor_id", "done", "failed", "pairs_found", "heartbeat_at")
        DuplicateRun.objects.filter(id=run.id).update(**{f: getattr(run, f) for f in fields})
    return len(rows)


def duplicate_run_finish(run_id):
    DuplicateRun.objects.filter(id=run_id, status=Status.RUNNING).update(status=Status.DONE, finished_at=timezone.now())


def duplicate_run_fail(run_id, reason):
    DuplicateRun.objects.filter(id=run_id, status__in=DuplicateRun.ACTIVE_STATUSES).update(
        status=Status.FAILED, error=reason[:2000], finished_at=timezone.now()
    )


def new_images_count(collection_id=None):
    """Ready images of the scope that no finished run covering it has checked yet."""
    run = DuplicateRun(collection_id=collection_id)
    return _scope(collection_id).filter(id__gt=_checked_up_to(run)).count()


def duplicate_run_follow():
    """Keep the groups current as images are added (Celery beat, workers.follow_duplicates): once a run over the whole
    index has finished, an "only new" run starts whenever ready images newer than the last checked exist and no run
    is under way. The run started, or None. Before the first whole-index run nothing starts: an owner who never
    opened the finder is not made to pay for it."""
    if not DuplicateRun.objects.filter(status=Status.DONE, collection__isnull=True).exists():
        return None
    if not new_images_count():
        return None
    try:
        return duplicate_run_start(only_new=True)
    except DuplicateError:  # a run is under way: the next beat looks again
        return None


# --- Groups -----------------------------------------------------------------------------------------


def _distinct_pairs(image_ids):
    """The pairs (a, b), a < b, among the images that a person said are not the same picture."""
    return set(
        DistinctPair.objects.filter(image_a__in=image_ids, image_b__in=image_ids).values_list("image_a", "image_b")
    )


def _pairs(collection_id=None):
    """The verified pairs [(a, b, inliers)] with both images in the scope (None: the whole index)."""
    pairs = DuplicatePair.objects.all()
    if collection_id is not None:
        pairs = pairs.filter(image_a__collection_id=collection_id, image_b__collection_id=collection_id)
    return list(pairs.values_list("image_a", "image_b", "inliers"))


def duplicate_groups(collection_id=None):
    """The groups of the same picture in the scope: lists of image ids (connected components of the verified pairs),
    the largest groups first, then by their first image."""
    return duplicate_groups_of((a, b) for a, b, _inliers in _pairs(collection_id))


def duplicate_groups_of(pairs):
    """The connected components of pairs (a, b) of image ids, each sorted, the largest first, then by first id."""
    parent = {}

    def root(i):
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups = {}
    for i in parent:
        groups.setdefault(root(i), []).append(i)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def group_of(image_id, collection_id=None):
    """The group (sorted ids) the image is in within the scope, or None."""
    return next((g for g in duplicate_groups(collection_id) if image_id in g), None)


# --- A person's answers -----------------------------------------------------------------------------


def _checked_image(image_id, collection_id):
    """The image of an action, or DuplicateError saying why it cannot be acted on."""
    try:
        image_id = int(image_id)
    except (TypeError, ValueError):
        raise DuplicateError(_("%(value)r is not an image id.") % {"value": image_id}) from None
    image = IndexedImage.objects.filter(id=image_id).select_related("collection").first()
    if image is None:
        raise DuplicateError(_("Image %(id)s is not in the index (unknown, or removed already).") % {"id": image_id})
    if collection_id is not None and image.collection_id != collection_id:
        raise DuplicateError(
            _("Image %(id)s is in another collection (%(theirs)s) than this group's (%(ours)s).")
            % {
                "id": image_id,
                "theirs": image.collection.name if image.collection else _("none"),
                "ours": Collection.objects.filter(id=collection_id).values_list("name", flat=True).first(),
            }
        )
    return image


def _the_group(image, shown, collection_id):
    """The images of the group as the page showed it (`shown`) that are still in the image's group."""
    group = group_of(image.id, collection_id)
    if group is None:
        raise DuplicateError(_("Image %(id)s is in no group of duplicates any more.") % {"id": image.id})
    try:
        shown = {int(i) for i in shown}
    except (TypeError, ValueError):
        raise DuplicateError(_("The group's image ids are not valid.")) from None
    if image.id not in shown:
        raise DuplicateError(_("Image %(id)s is not in the group shown.") % {"id": image.id})
    return [i for i in group if i in shown]


def _collection_id(value):
    if value in (None, ""):
        return None
    try:
        collection_id = int(value)
    except (TypeError, ValueError):
        raise DuplicateError(_("%(value)r is not a collection id.") % {"value": value}) from None
    if not Collection.objects.filter(id=collection_id).exists():
        raise DuplicateError(_("Collection %(id)s does not exist.") % {"id": collection_id})
    return collection_id


def duplicates_keep(image_id, shown, *, collection=None):
    """Keep one picture of a group: the group's other images shown with it leave the index (rows, vectors, files:
    indexing.image_remove). Returns how many were removed."""
    collection_id = _collection_id(collection)
    image = _checked_image(image_id, collection_id)
    others = [i for i in _the_group(image, shown, collection_id) if i != image.id]
    removed = 0
    with transaction.atomic():
        for other in IndexedImage.objects.filter(id__in=others).select_for_update():
            indexing.image_remove(other)
            removed += 1
    return removed


def duplicates_not_same(image_id, shown, *, collection=None, user=None):
    """The image is not the same picture as the rest of its group shown: each of those pairs is remembered and
    forgotten as a duplicate. Returns how many pairs were remembered."""
    collection_id = _collection_id(collection)
    image = _checked_image(image_id, collection_id)
    others = [i for i in _the_group(image, shown, collection_id) if i != image.id]
    keys = [(min(image.id, o), max(image.id, o)) for o in others]
    with transaction.atomic():
        DistinctPair.objects.bulk_create(
            [DistinctPair(image_a_id=a, image_b_id=b, decided_by=user) for a, b in keys], ignore_conflicts=True
        )
        DuplicatePair.objects.filter(Q(image_a=image.id) | Q(image_b=image.id)).filter(
            Q(image_a__in=others) | Q(image_b__in=others)
        ).delete()
    return len(keys)
