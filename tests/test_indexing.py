"""Adding files to the index (the part that runs in the management command, before any worker)."""

import pytest
from PIL import Image

from search import indexing
from search.models import IndexedImage

pytestmark = pytest.mark.django_db


def write_png(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), color).save(path)
    return path


def test_new_images_are_stored_under_their_hash_and_queued(tmp_path, settings):
    """A new file is copied into MEDIA_ROOT under its content hash and marked pending."""
    report = indexing.ScanReport()
    image = indexing.image_add(write_png(tmp_path / "a.png", "red"), report=report)
    assert report.queued == [image.id] and image.status == "pending"
    assert image.file.name == f"index/{image.content_hash[:2]}/{image.content_hash}.png"
    assert (settings.MEDIA_ROOT / image.file.name).exists()
    assert (image.width, image.height, image.title) == (40, 30, "a")


def test_duplicates_by_content_are_indexed_once(tmp_path):
    """The same bytes under two names are one image; the second name's tags are merged in."""
    report = indexing.ScanReport()
    write_png(tmp_path / "cats" / "a.png", "red")
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "b.png").write_bytes((tmp_path / "cats" / "a.png").read_bytes())
    for path in indexing.iter_files(tmp_path):
        indexing.image_add(path, tags=indexing.folder_tags(path, tmp_path), report=report)
    assert IndexedImage.objects.count() == 1 and report.duplicates == 1
    assert IndexedImage.objects.get().user_tags == ["cats", "dogs"]


def test_non_images_are_skipped_with_a_reason(tmp_path):
    """Text, empty files and images over the pixel limit are skipped and reported, not stored."""
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    report = indexing.ScanReport()
    for path in indexing.iter_files(tmp_path):
        indexing.image_add(path, report=report)
    assert len(report.skipped) == 2 and all("not an image" in reason for _, reason in report.skipped)
    assert not IndexedImage.objects.exists()


def test_too_many_pixels_is_skipped(tmp_path, settings):
    """A decompression bomb is skipped from its header."""
    settings.IMGSEARCH_MAX_PIXELS = 1000
    report = indexing.ScanReport()
    indexing.image_add(write_png(tmp_path / "big.png", "blue"), report=report)
    assert "too many pixels" in report.skipped[0][1]


def test_unchanged_files_are_not_reprocessed_and_changed_ones_replace_the_old(tmp_path):
    """A second pass skips unchanged files; a file whose content changed replaces its old entry."""
    path = write_png(tmp_path / "a.png", "red")
    indexing.image_add(path, report=indexing.ScanReport())
    report = indexing.ScanReport()
    indexing.image_add(path, report=report)
    assert report.unchanged == 1 and not report.queued
    write_png(path, "green")
    report = indexing.ScanReport()
    new = indexing.image_add(path, report=report)
    assert report.queued == [new.id] and IndexedImage.objects.get() == new


def test_hidden_files_and_folders_are_not_walked(tmp_path):
    """Dot-files (e.g. .DS_Store, .git) are left out of a scan."""
    write_png(tmp_path / ".git" / "x.png", "red")
    write_png(tmp_path / ".hidden.png", "red")
    write_png(tmp_path / "shown.png", "red")
    assert [p.name for p in indexing.iter_files(tmp_path)] == ["shown.png"]


def test_index_command_refuses_a_missing_folder():
    """A path that is not a folder is a clear command error."""
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="not a folder"):
        call_command("index_images", "/no/such/folder")


def test_images_ready_marks_each_image_with_its_own_tags_and_clears_old_errors():
    """One statement sets each image's own thumbnail, label, score and tag, ready; other images are untouched."""
    from django.utils import timezone

    a, b, unsure, other = (
        IndexedImage.objects.create(content_hash=f"{i:064d}", file=f"x/{i}.png", title=str(i), user_tags=["mine"])
        for i in range(4)
    )
    IndexedImage.objects.filter(id=b.id).update(status="failed", error="earlier failure")
    IndexedImage.objects.filter(id=unsure.id).update(auto_tags=["armor"])  # from an earlier model, say
    now = timezone.now()
    indexing.images_ready(
        [
            (a.id, "thumbs/a.jpg", "tabby", 0.5, "cat"),
            (b.id, "thumbs/b.jpg", 'it\'s "odd"', 0.25, "dog"),
            (unsure.id, "thumbs/u.jpg", "ping-pong ball", 0.08, ""),
        ],
        now,
    )
    a, b, unsure, other = (IndexedImage.objects.get(id=image.id) for image in (a, b, unsure, other))
    assert (unsure.auto_label, unsure.auto_tags, unsure.status) == ("ping-pong ball", [], "ready")  # no tag, not [""]
    assert (a.thumbnail.name, a.auto_label, a.auto_score, a.auto_tags, a.status) == (
        "thumbs/a.jpg",
        "tabby",
        0.5,
        ["cat"],
        "ready",
    )
    assert (b.thumbnail.name, b.auto_label, b.auto_tags, b.status, b.error) == (
        "thumbs/b.jpg",
        'it\'s "odd"',
        ["dog"],
        "ready",
        "",
    )
    assert a.indexed_at == b.indexed_at == now and a.user_tags == ["mine"]
    assert (other.status, other.auto_tags, other.indexed_at) == ("pending", [], None)
    indexing.images_ready([], now)  # nothing to mark: no statement
