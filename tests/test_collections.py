"""Collections: scanning a server folder, rescans, and images or zips uploaded through the admin."""

import io
import time
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from search import collections
from search.models import Collection, IndexedImage

pytestmark = pytest.mark.django_db


def png(color="red", size=(32, 24)):
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def make_zip(members):
    """A zip from {name: bytes}; a name ending in "/" is a folder entry."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


@pytest.fixture
def incoming(settings, tmp_path):
    settings.INCOMING_ROOT = tmp_path / "incoming"
    return settings.INCOMING_ROOT


def test_an_archive_is_unpacked_without_leaving_its_folder(tmp_path):
    """Folders are kept, directory entries skipped; absolute paths, "..", hidden files and links are refused."""
    archive = tmp_path / "a.zip"
    archive.write_bytes(
        make_zip(
            {
                "animals/": b"",
                "animals/cat.png": png(),
                "top.png": png("blue"),
                "../escape.png": png(),
                "/etc/evil.png": png(),
                "a/../../up.png": png(),
                ".hidden.png": png(),
                "__MACOSX/x.png": png(),
            }
        )
    )
    with zipfile.ZipFile(archive, "a") as zf:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = 0o120777 << 16  # a symbolic link to somewhere else
        zf.writestr(link, "/etc/passwd")
    skipped = dict(collections.archive_extract(archive, tmp_path / "out"))
    extracted = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert extracted == ["animals/cat.png", "top.png"]
    assert all("unsafe path" in skipped[name] for name in ("../escape.png", "/etc/evil.png", "a/../../up.png"))
    assert skipped[".hidden.png"] == skipped["__MACOSX/x.png"] == "a hidden file"
    assert skipped["link.png"] == "a symbolic link"
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "up.png").exists()


def test_a_zip_bomb_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    """Unpacking stops at the size limit counted on the bytes themselves, and removes what it wrote."""
    monkeypatch.setattr(collections, "MAX_ARCHIVE_BYTES", 1024 * 1024)
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(make_zip({"a.bmp": bytes(700 * 1024), "b.bmp": bytes(700 * 1024)}))  # 1.4 MB from ~3 KB
    assert archive.stat().st_size < 10_000
    with pytest.raises(collections.ArchiveRejected, match="limit"):
        collections.archive_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archives_with_too_many_files_or_not_zips_are_refused(tmp_path, monkeypatch):
    """The file count is checked from the archive's directory; a file that is not a zip is named as such."""
    monkeypatch.setattr(collections, "MAX_ARCHIVE_FILES", 3)
    with pytest.raises(collections.ArchiveRejected, match="holds 4 files; the limit is 3"):
        collections.archive_check(io.BytesIO(make_zip({f"{i}.png": png() for i in range(4)})))
    with pytest.raises(collections.ArchiveRejected, match="not a readable zip"):
        collections.archive_check(io.BytesIO(b"PK\x03\x04 but not really"))


def test_a_scan_indexes_new_files_once_and_sums_up(tmp_path):
    """Scanning a collection's folder stores new images with folder tags; a second scan finds them unchanged."""
    (tmp_path / "pics" / "cats").mkdir(parents=True)
    (tmp_path / "pics" / "cats" / "a.png").write_bytes(png("red"))
    (tmp_path / "pics" / "notes.txt").write_text("hello")
    collection = Collection.objects.create(name="pics", source_path=str(tmp_path / "pics"))
    collections.collection_scan(collection.id)
    collection.refresh_from_db()
    image = IndexedImage.objects.get()
    assert (image.collection, image.user_tags, image.status) == (collection, ["cats"], "pending")
    assert collection.scanned_at and collection.scan_summary.startswith("1 new, 0 unchanged, 0 duplicates, 1 skipped")
    assert "notes.txt: not an image" in collection.scan_summary
    (tmp_path / "pics" / "b.png").write_bytes(png("blue"))
    collections.collection_scan(collection.id)
    collection.refresh_from_db()
    assert IndexedImage.objects.count() == 2 and "1 unchanged" in collection.scan_summary


def test_a_missing_folder_is_reported_on_the_collection(tmp_path):
    """A collection whose folder went away says so instead of failing silently."""
    collection = Collection.objects.create(name="gone", source_path=str(tmp_path / "gone"))
    collections.collection_scan(collection.id)
    collection.refresh_from_db()
    assert "missing or unreadable" in collection.scan_summary


def test_only_collections_marked_for_rescan_are_rescanned(tmp_path, django_capture_on_commit_callbacks):
    """The scheduled rescan queues a scan for each collection with a folder and the rescan flag, no others."""
    Collection.objects.create(name="auto", source_path=str(tmp_path), rescan=True)
    Collection.objects.create(name="manual", source_path=str(tmp_path))
    Collection.objects.create(name="uploads", rescan=True)
    with django_capture_on_commit_callbacks() as sent:
        assert collections.collections_rescan() == 1
    assert len(sent) == 1


def test_uploaded_files_and_zips_are_imported_into_the_collection(incoming, django_capture_on_commit_callbacks):
    """Uploads wait under INCOMING_ROOT; the import indexes them with zip folders as tags and cleans up."""
    collection = Collection.objects.create(name="uploads")
    files = [
        SimpleUploadedFile("../../sneaky name.png", png("green")),
        SimpleUploadedFile("set.zip", make_zip({"birds/owl.png": png("gray"), "readme.txt": b"hi"})),
    ]
    with django_capture_on_commit_callbacks() as sent:
        folder = collections.upload_store(collection, files)
    assert len(sent) == 1
    stored = sorted(p.name for p in (incoming / folder).rglob("*") if p.is_file())
    assert stored == ["set.zip", "sneaky_name.png"]
    collections.collection_import(collection.id, folder)
    images = {i.title: i for i in IndexedImage.objects.filter(collection=collection)}
    assert set(images) == {"sneaky_name", "owl"}
    assert images["owl"].user_tags == ["birds"] and images["owl"].source_path == "upload:set.zip/birds/owl.png"
    assert images["sneaky_name"].source_path == "upload:sneaky_name.png"
    assert not (incoming / folder).exists()
    collection.refresh_from_db()
    assert collection.scan_summary.startswith("2 new") and "readme.txt: not an image" in collection.scan_summary


def test_the_same_name_uploaded_twice_with_new_content_keeps_both(incoming):
    """Uploads have no path to watch: a second file with the same name is a new image, not a replacement."""
    collection = Collection.objects.create(name="uploads")
    for color in ("red", "blue"):
        folder = collections.upload_store(collection, [SimpleUploadedFile("photo.png", png(color))])
        collections.collection_import(collection.id, folder)
    assert IndexedImage.objects.filter(title="photo").count() == 2


def test_the_upload_page_refuses_a_bad_archive_with_a_message(client, incoming):
    """A zip that is not one is refused on the form, before anything is stored."""
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "x" * 12))
    collection = Collection.objects.create(name="uploads")
    url = f"/admin/search/collection/{collection.id}/upload/"
    assert client.get(url).status_code == 200
    response = client.post(url, {"files": [SimpleUploadedFile("x.zip", b"not a zip")]})
    assert response.status_code == 200 and "not a readable zip archive" in response.content.decode()
    assert "Choose at least one" in client.post(url, {}).content.decode()
    assert not incoming.exists()


def wait_until(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the worker did not get to it"
        time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_images_uploaded_in_the_admin_are_indexed_in_the_background(worker, client, photo_folder):
    """Uploading a zip of real photos to a collection ends with every photo embedded and searchable."""
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "x" * 12))
    collection = Collection.objects.create(name="uploads")
    archive = make_zip({str(p.relative_to(photo_folder)): p.read_bytes() for p in sorted(photo_folder.rglob("*.png"))})
    response = client.post(
        f"/admin/search/collection/{collection.id}/upload/",
        {"files": [SimpleUploadedFile("photos.zip", archive, "application/zip")]},
    )
    assert response.status_code == 302
    ready = IndexedImage.objects.filter(collection=collection, status="ready")
    wait_until(lambda: ready.count() == 12)
    assert {tuple(tags) for tags in ready.values_list("user_tags", flat=True)} == {
        ("animals",),
        ("food",),
        ("vehicles",),
        ("plants",),
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_adding_a_folder_in_the_admin_indexes_it_in_the_background(worker, client, photo_folder, settings):
    """Saving a collection with a folder scans it on a worker; its images end up embedded."""
    settings.IMGSEARCH_IMPORT_ROOTS = [photo_folder.parent]  # none by default: no server folder at all
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "x" * 12))
    response = client.post(
        "/admin/search/collection/add/", {"name": "photos", "source_path": str(photo_folder), "tags_from_folders": "on"}
    )
    assert response.status_code == 302
    collection = Collection.objects.get(name="photos")
    wait_until(lambda: IndexedImage.objects.filter(collection=collection, status="ready").count() == 12)
    collection.refresh_from_db()
    assert collection.scan_summary.startswith("12 new")
