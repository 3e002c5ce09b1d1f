"""Collections: check a server folder, scan it into the index, and import files or zips uploaded in the admin.

The web request only checks and stores what it is given; scanning, unpacking and registering run on the
"index" queue, and embedding is queued from there.
"""

import logging
import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.db import connection
from django.utils import timezone
from django.utils.text import get_valid_filename

from . import indexing, queue
from .models import Collection, IndexedImage

log = logging.getLogger(__name__)

MAX_ARCHIVE_FILES = 10_000
MAX_ARCHIVE_BYTES = 4 * 1024**3  # uncompressed, all members together
MAX_MEMBER_BYTES = 256 * 1024**2  # uncompressed, one member
_SCAN_LOCK = 7_301_003  # advisory lock class: one scan of a collection at a time


class ArchiveRejected(ValueError):
    """An archive that will not be unpacked, with a sentence fit to show the operator."""


# --- Folders ---------------------------------------------------------------------------------------


def folder_check(path):
    """The absolute form of a folder a collection may index, or ValueError saying why not.

    Only folders under IMGSEARCH_IMPORT_ROOTS (none while it is unset), and never one of the service's own: indexed
    images are copied under MEDIA_ROOT, which is public, so a folder of query uploads would publish them.
    """
    roots = settings.IMGSEARCH_IMPORT_ROOTS
    if not roots:
        raise ValueError(
            "No server folder may be indexed until IMGSEARCH_IMPORT_ROOTS names the folders that may be "
            "(comma-separated, e.g. IMGSEARCH_IMPORT_ROOTS=/srv/pictures); until then, use Add images."
        )
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        raise ValueError("Give the folder's absolute path on the server, e.g. /srv/pictures.")
    folder = folder.resolve()  # links followed: the folder is where its files really are
    if not _under_roots(folder):
        raise ValueError(f"Only folders under {', '.join(map(str, roots))} may be indexed (IMGSEARCH_IMPORT_ROOTS).")
    _private_check(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder the server can read.")
    return str(folder)


def _private_check(folder):
    """ValueError when the folder lies in, or holds, the service's own data (media, queries, uploads)."""
    names = ("MEDIA_ROOT", "QUERY_ROOT", "INCOMING_ROOT", "DATA_DIR")
    private = {name: Path(getattr(settings, name)).resolve() for name in names}
    for name, path in private.items():
        if _within(folder, path):
            raise ValueError(f"{folder} lies in the service's own data ({name}: {path}); it is never indexed.")
    for name, path in private.items():
        if _within(path, folder):
            raise ValueError(f"{folder} holds the service's own data ({name}: {path}); it is never indexed.")


def _within(path, folder):
    """Whether path is folder or lies under it (both already resolved)."""
    return path == folder or folder in path.parents


def _under_roots(folder):
    return any(_within(folder, Path(root).resolve()) for root in settings.IMGSEARCH_IMPORT_ROOTS)


def collection_scan_enqueue(collection):
    """Scan the collection's folder on an index worker once the current transaction commits."""
    queue.send(queue.COLLECTION_SCAN, collection.id)


def collections_rescan():
    """Queue a scan of every collection whose folder is marked for rescanning; returns how many."""
    collections = list(Collection.objects.filter(rescan=True).exclude(source_path=""))
    for collection in collections:
        collection_scan_enqueue(collection)
    return len(collections)


def collection_scan(collection_id):
    """Index new and changed files of the collection's folder and queue their embedding; None if busy or gone."""
    collection = Collection.objects.filter(id=collection_id).exclude(source_path="").first()
    if collection is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_SCAN_LOCK, collection.id])
        if not cursor.fetchone()[0]:
            return None  # another worker is scanning it right now
    try:
        root = Path(collection.source_path).resolve()
        problem = _scan_refusal(root)
        if problem:
            return _scan_done(collection, None, problem)
        report = indexing.ScanReport()
        for path in indexing.iter_files(root):
            if not _within(path.resolve(), root):  # the root holds none of the service's data (_scan_refusal)
                report.skipped.append((path, "a link that leads out of the folder"))
                continue
            tags = indexing.folder_tags(path, root) if collection.tags_from_folders else ()
            indexing.image_add(path, collection=collection, tags=tags, report=report)
        return _scan_done(collection, report)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_SCAN_LOCK, collection.id])


def _scan_refusal(root):
    """Why a collection's folder is not scanned now (the settings may have changed since it was saved), or "".

    A folder saved by `index_images` while no roots were set is still scanned, but never the service's own data.
    """
    if settings.IMGSEARCH_IMPORT_ROOTS and not _under_roots(root):
        return f"Not scanned: {root} is not under IMGSEARCH_IMPORT_ROOTS."
    try:
        _private_check(root)
    except ValueError as exc:
        return f"Not scanned: {exc}"
    if not root.is_dir():
        return f"The folder {root} is missing or unreadable."
    return ""


def _scan_done(collection, report, problem=""):
    """Queue the new images' embedding and write a one-line summary on the collection."""
    if report is not None:
        stuck = IndexedImage.objects.filter(collection=collection, status=IndexedImage.Status.PENDING)
        queued = list(dict.fromkeys([*report.queued, *stuck.values_list("id", flat=True)]))
        indexing.embed_enqueue(queued, settings.IMGSEARCH_TASK_SIZE)
        problem = summary(report, len(queued))
    collection.scanned_at, collection.scan_summary = timezone.now(), problem[:500]
    collection.save(update_fields=["scanned_at", "scan_summary"])
    return report


def summary(report, queued):
    """A short account of a scan, e.g. "3 new, 10 unchanged, 1 duplicate, 1 skipped (a.txt: not an image)"."""
    text = f"{queued} new, {report.unchanged} unchanged, {report.duplicates} duplicates, {len(report.skipped)} skipped"
    if report.skipped:
        text += " (" + "; ".join(f"{Path(p).name}: {reason}" for p, reason in report.skipped[:3]) + ")"
    return text


# --- Uploads ---------------------------------------------------------------------------------------


def upload_store(collection, files):
    """Keep uploaded files (images or zips) in a fresh folder under INCOMING_ROOT and queue their import."""
    folder = uuid.uuid4().hex
    for number, upload in enumerate(files):
        # A generated folder per file: the client's name is kept (for the title) but never trusted as a path.
        target = Path(settings.INCOMING_ROOT) / folder / str(number) / _safe_name(upload.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for piece in upload.chunks():
                out.write(piece)
    queue.send(queue.COLLECTION_IMPORT, collection.id, folder)
    return folder


def collection_import(collection_id, folder):
    """Unpack the zips of an upload folder, index its images into the collection, queue embedding, clean up."""
    root = Path(settings.INCOMING_ROOT) / folder
    collection = Collection.objects.filter(id=collection_id).first()
    if collection is None or not root.is_dir():
        shutil.rmtree(root, ignore_errors=True)
        return None
    report = indexing.ScanReport()
    try:
        for item in sorted(root.iterdir()):
            for upload in list(item.iterdir()):  # unpacking adds a folder beside each zip
                if zipfile.is_zipfile(upload):
                    _import_archive(collection, upload, report)
                else:
                    indexing.image_add(upload, collection=collection, report=report, origin=f"upload:{upload.name}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return _scan_done(collection, report)


def _import_archive(collection, archive, report):
    """Index the images of one uploaded zip; a refused archive is reported as skipped."""
    unpacked = archive.with_name(archive.name + ".d")
    try:
        report.skipped.extend(archive_extract(archive, unpacked))
    except ArchiveRejected as exc:
        report.skipped.append((archive.name, str(exc)))
        return
    for path in indexing.iter_files(unpacked):
        tags = indexing.folder_tags(path, unpacked) if collection.tags_from_folders else ()
        origin = f"upload:{archive.name}/{path.relative_to(unpacked)}"[:1000]
        indexing.image_add(path, collection=collection, tags=tags, report=report, origin=origin)


def archive_check(archive):
    """Refuse, from its directory alone, a file that is not a zip or holds too many or too large files."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError):
        raise ArchiveRejected("This file is not a readable zip archive.") from None
    if len(members) > MAX_ARCHIVE_FILES:
        raise ArchiveRejected(f"The archive holds {len(members):,} files; the limit is {MAX_ARCHIVE_FILES:,}.")
    declared = sum(m.file_size for m in members)
    if declared > MAX_ARCHIVE_BYTES:
        raise ArchiveRejected(
            f"The archive unpacks to {declared / 1024**3:.1f} GB; the limit is {MAX_ARCHIVE_BYTES // 1024**3} GB."
        )
    return members


def archive_extract(archive, dest):
    """Unpack a zip's files under dest: [(name, reason)] of those left out; ArchiveRejected, leaving nothing, for a bomb."""
    # The limits are enforced on the bytes written, not on the sizes the archive declares.
    skipped, written = [], 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in archive_check(archive):
                target = _member_path(member, dest)
                if isinstance(target, str):
                    skipped.append((member.filename, target))
                    continue
                if member.file_size > MAX_MEMBER_BYTES:
                    skipped.append((member.filename, f"larger than {MAX_MEMBER_BYTES // 1024**2} MB"))
                    continue
                written += _extract_member(zf, member, target, MAX_ARCHIVE_BYTES - written)
    except ArchiveRejected:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:  # RuntimeError: encrypted members
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveRejected(f"The archive could not be unpacked: {exc}") from None
    return skipped


def _member_path(member, dest):
    """Where a member goes under dest (a Path), or the reason it is left out (a str)."""
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a symbolic link"
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ":" in (parts[0] if parts else "") or ".." in parts:
        return "an unsafe path (absolute or leading out of the archive)"
    if any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return "a hidden file"
    return Path(dest).joinpath(*(_safe_name(part) for part in parts))


def _extract_member(zf, member, target, budget):
    """Copy one member out, stopping at the per-file and whole-archive limits; returns its size."""
    limit, size = min(MAX_MEMBER_BYTES, budget), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(member) as src, open(target, "wb") as out:
        while piece := src.read(1 << 20):
            size += len(piece)
            if size > limit:
                raise ArchiveRejected(
                    "The archive unpacks to more than its size says, or more than the limit: refused as a zip bomb."
                )
            out.write(piece)
    return size


def _safe_name(name):
    """A file name that is safe to create: the client's name with anything odd replaced."""
    try:
        name = get_valid_filename(Path(str(name).replace("\\", "/")).name)[-120:]
    except SuspiciousFileOperation:  # nothing usable left, e.g. ".."
        return "file"
    return name.lstrip(".") or "file"
