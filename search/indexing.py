"""The index's images: add files (probe, de-duplicate by content, store, queue for embedding), remove them, record
what the workers made of them, queue their maintenance, and count their tags."""

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Q
from PIL import Image, UnidentifiedImageError

from . import queue
from .models import IndexedImage
from .uploads import SUPPORTED_FORMATS

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


@dataclass
class ScanReport:
    queued: list = field(default_factory=list)  # image ids to embed
    unchanged: int = 0
    duplicates: int = 0
    skipped: list = field(default_factory=list)  # (path, reason)


def iter_files(root):
    """Every regular file under root, in a stable order; hidden files and folders are left out."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def folder_tags(path, root):
    """Folder names between root and the file, as tags: root/animals/cats/x.png -> ["animals", "cats"]."""
    return [part.lower()[:64] for part in path.relative_to(root).parts[:-1]]


def probe(path):
    """(format, width, height) from the file header, or raise ValueError with a reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixel check is ours, below
            with Image.open(path) as img:
                fmt, (width, height) = img.format, img.size
    except Image.DecompressionBombError:
        raise ValueError("too many pixels (a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ValueError("not an image, or a format that is not supported") from None
    except OSError as exc:
        raise ValueError(f"unreadable: {exc}") from None
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError(f"unsupported format {fmt}")
    if width * height > settings.IMGSEARCH_MAX_PIXELS:
        raise ValueError(f"too many pixels ({width}x{height})")
    return fmt, width, height


def file_sha256(path):
    with open(path, "rb") as f:
        return stream_sha256(f)


def stream_sha256(f):
    """The sha256 of an open binary file's bytes from where it stands, as IndexedImage.content_hash holds it."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def image_add(path, *, collection=None, tags=(), report, origin=None):
    """Index one file: skip it if unchanged or a duplicate, else store it and mark it for embedding."""
    path = Path(path).resolve()
    stat = path.stat()
    # An upload (origin "upload:NAME") has no lasting server path, so no change detection either.
    source = origin or str(path)
    known = None if origin else IndexedImage.objects.filter(source_path=source).first()
    if known and known.source_size == stat.st_size and known.source_mtime == stat.st_mtime:
        _merge_tags(known, tags)
        report.unchanged += 1
        return known
    try:
        fmt, width, height = probe(path)
    except ValueError as exc:
        report.skipped.append((source, str(exc)))
        return None
    digest = file_sha256(path)
    same = IndexedImage.objects.filter(content_hash=digest).first()
    if same:
        if known and known != same:
            image_remove(known)  # the file now holds content that is indexed already
        _merge_tags(same, tags)
        report.duplicates += 1
        return same
    with transaction.atomic():
        if known:  # the file at this path changed: its old content leaves the index
            image_remove(known)
        with open(path, "rb") as f:
            name = default_storage.save(f"index/{digest[:2]}/{digest}.{EXTENSIONS[fmt]}", File(f))
        image = IndexedImage.objects.create(
            collection=collection,
            content_hash=digest,
            file=name,
            title=path.stem[:255],
            source_path=source,
            source_size=stat.st_size,
            source_mtime=stat.st_mtime,
            width=width,
            height=height,
            user_tags=list(dict.fromkeys(tags)),
        )
    report.queued.append(image.id)
    return image


def image_remove(image):
    """Delete an image row and its stored files."""
    for stored in (image.file, image.thumbnail):
        if stored:
            stored.storage.delete(stored.name)
    image.delete()


def _merge_tags(image, tags):
    missing = [t for t in tags if t not in image.user_tags]
    if missing:
        image.user_tags = [*image.user_tags, *missing]
        image.save(update_fields=["user_tags"])


def images_ready(rows, now):
    """Mark embedded images ready: rows [(image_id, thumbnail name, auto_label, auto_score, auto tag or "")].

    One statement a batch, without the ORM: the worker runs this beside the model, and bulk_update's per-row
    CASE expressions took ~1.7 ms of Python (the GIL) an image away from the forward pass (bench/indexing_split.py).
    """
    if not rows:
        return
    ids, thumbnails, labels, scores, tags = (list(column) for column in zip(*rows))
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE search_indexedimage AS i SET thumbnail = t.thumbnail, auto_label = t.label, auto_score = t.score,"
            " auto_tags = array_remove(ARRAY[t.tag], '')::varchar(64)[], status = %s, error = '', indexed_at = %s"
            " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::float8[], %s::text[])"
            " AS t(id, thumbnail, label, score, tag) WHERE i.id = t.id",
            [IndexedImage.Status.READY.value, now, ids, thumbnails, labels, scores, tags],
        )


def pending_image_ids():
    """Images stored but not yet embedded (e.g. an earlier run was interrupted)."""
    return list(IndexedImage.objects.filter(status=IndexedImage.Status.PENDING).values_list("id", flat=True))


def embed_enqueue(image_ids, batch_size=None):
    """Queue embedding work in batches; returns the number of tasks sent."""
    return queue.send_batches(queue.EMBED_IMAGES, image_ids, batch_size)


def images_fail(rows):
    """Mark images [(image_id, reason)] that could not be read as failed, with their reason."""
    IndexedImage.objects.bulk_update(
        [
            IndexedImage(id=image_id, status=IndexedImage.Status.FAILED, error=reason[:2000])
            for image_id, reason in rows
        ],
        ["status", "error"],
    )


# --- Maintenance (admin actions and commands) ---------------------------------------------------------------------


def queue_reembed(image_ids, *, batch_size=None):
    """Queue embedding of the images with the active model, overwriting their vectors, thumbnails and tags."""
    return queue.send_batches(queue.EMBED_IMAGES, image_ids, batch_size, overwrite=True)


def queue_retag(image_ids, *, batch_size=None):
    """Queue recomputing the images' automatic tags with the active model's classifier."""
    return queue.send_batches(queue.RETAG_IMAGES, image_ids, batch_size)


def queue_missing_features(*, batch_size=None):
    """Queue copy-evidence extraction for ready images that have none, or no signature: (images, tasks)."""
    missing = Q(local_features__isnull=True) | Q(local_features__signature__isnull=True)
    ids = list(
        IndexedImage.objects.filter(missing, status=IndexedImage.Status.READY)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return len(ids), queue.send_batches(queue.EXTRACT_FEATURES, ids, batch_size)


def tag_counts():
    """Every tag on a ready image with its number of images, most common first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tag, count(DISTINCT id) FROM search_indexedimage, unnest(user_tags || auto_tags) AS tag"
            " WHERE status = 'ready' GROUP BY tag ORDER BY count(DISTINCT id) DESC, tag"
        )
        return [{"tag": tag, "count": count} for tag, count in cursor.fetchall()]
