"""Safe defaults: no server folder until IMGSEARCH_IMPORT_ROOTS names some, never the service's own data, no link
out of a root, and other users' searches only with a permission of its own."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from PIL import Image

from search import collections
from search.models import Collection, IndexedImage

from .test_privacy import SEARCHES, start_search

pytestmark = pytest.mark.django_db


def picture(path, color="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), color).save(path, "PNG")
    return path


@pytest.fixture
def roots(settings, tmp_path):
    """An import root with a folder of one picture in it; the service's data in its own folders beside it."""
    settings.IMGSEARCH_IMPORT_ROOTS = [tmp_path / "import"]
    picture(tmp_path / "import" / "pics" / "red.png")
    settings.DATA_DIR = tmp_path / "data"
    settings.MEDIA_ROOT, settings.QUERY_ROOT = tmp_path / "data" / "media", tmp_path / "data" / "queries"
    settings.INCOMING_ROOT = tmp_path / "data" / "incoming"
    return tmp_path


def refusal(folder):
    with pytest.raises(ValueError) as info:
        collections.folder_check(str(folder))
    return str(info.value)


def test_no_server_folder_may_be_indexed_while_the_roots_are_unset(settings, tmp_path):
    """Unset, IMGSEARCH_IMPORT_ROOTS allows no folder at all, and the refusal says how to allow some."""
    settings.IMGSEARCH_IMPORT_ROOTS = []
    picture(tmp_path / "pics" / "red.png")
    assert "IMGSEARCH_IMPORT_ROOTS=/srv/pictures" in refusal(tmp_path / "pics")


def test_the_admin_refuses_a_folder_while_the_roots_are_unset(client, django_user_model, settings, tmp_path):
    """The collection form shows that refusal and saves nothing."""
    settings.IMGSEARCH_IMPORT_ROOTS = []
    client.force_login(django_user_model.objects.create_superuser("admin", "a@example.com", "x" * 12))
    response = client.post("/admin/search/collection/add/", {"name": "c", "source_path": str(tmp_path)})
    assert response.status_code == 200 and "IMGSEARCH_IMPORT_ROOTS" in str(response.context["adminform"].form.errors)
    assert not Collection.objects.exists()


def test_a_folder_under_a_root_is_accepted(roots):
    """The folder comes back absolute and resolved."""
    assert collections.folder_check(str(roots / "import" / "pics")) == str((roots / "import" / "pics").resolve())


@pytest.mark.parametrize("name", ["MEDIA_ROOT", "QUERY_ROOT", "INCOMING_ROOT", "DATA_DIR"])
def test_the_services_own_folders_are_refused_even_under_a_root(roots, settings, name):
    """A root that holds the data directory still never lets a collection read the service's own folders, nor a
    folder that holds one of them."""
    settings.IMGSEARCH_IMPORT_ROOTS = [roots]
    private = getattr(settings, name)
    picture(private / "sub" / "x.png")
    assert name in refusal(private)
    assert name in refusal(private / "sub")
    assert "DATA_DIR" in refusal(roots / "data") and "own data" in refusal(roots)


def test_a_link_that_leaves_the_root_is_refused_as_a_folder(roots):
    """A link under the root to a folder elsewhere is judged by where it leads."""
    picture(roots / "elsewhere" / "x.png")
    (roots / "import" / "door").symlink_to(roots / "elsewhere")
    assert "IMGSEARCH_IMPORT_ROOTS" in refusal(roots / "import" / "door")
    (roots / "import" / "queries").symlink_to(roots / "data" / "queries", target_is_directory=True)
    (roots / "data" / "queries").mkdir(parents=True)
    assert "IMGSEARCH_IMPORT_ROOTS" in refusal(roots / "import" / "queries")


def test_a_scan_skips_links_out_of_its_folder(roots):
    """Files linked from outside the folder (a user's query, any file) are skipped with a reason, not published."""
    query = picture(roots / "data" / "queries" / "someone.png", "blue")
    outside = picture(roots / "elsewhere" / "x.png", "green")
    pics = roots / "import" / "pics"
    (pics / "query.png").symlink_to(query)
    (pics / "other.png").symlink_to(outside)
    (pics / "again.png").symlink_to(pics / "red.png")  # a link inside the folder is fine
    collection = Collection.objects.create(name="pics", source_path=str(pics))
    report = collections.collection_scan(collection.id)
    assert sorted(p.name for p, _ in report.skipped) == ["other.png", "query.png"]
    assert {reason for _, reason in report.skipped} == {"a link that leads out of the folder"}
    assert IndexedImage.objects.filter(collection=collection).count() == 1  # red.png (again.png: a duplicate)


def test_a_saved_folder_is_not_scanned_once_it_is_refused(roots, settings):
    """A collection saved before the roots were set, or pointing at the service's data, is refused when scanned."""
    settings.IMGSEARCH_IMPORT_ROOTS = []  # as before this check: any folder could be saved
    collection = Collection.objects.create(name="old", source_path=str(roots / "data" / "queries"))
    picture(roots / "data" / "queries" / "someone.png")
    assert collections.collection_scan(collection.id) is None
    collection.refresh_from_db()
    assert collection.scan_summary.startswith("Not scanned:") and "QUERY_ROOT" in collection.scan_summary
    settings.IMGSEARCH_IMPORT_ROOTS = [roots / "somewhere-else"]
    collection.source_path = str(roots / "import" / "pics")
    collection.save()
    collections.collection_scan(collection.id)
    collection.refresh_from_db()
    assert "not under IMGSEARCH_IMPORT_ROOTS" in collection.scan_summary
    assert not IndexedImage.objects.exists()


# --- Other users' searches ----------------------------------------------------------------------------


def test_staff_without_the_permission_see_only_their_own_searches(django_user_model):
    """is_staff alone opens no one else's search, query image or history page: 404 as for a missing job."""
    alice = django_user_model.objects.create_user("alice", password="x" * 12)
    owner = Client()
    owner.force_login(alice)
    job_id = start_search(owner)
    clerk = django_user_model.objects.create_user("clerk", password="x" * 12, is_staff=True)
    staff = Client()
    staff.force_login(clerk)
    for url in (f"{SEARCHES}{job_id}/", f"{SEARCHES}{job_id}/image/", f"/accounts/history/{job_id}/"):
        assert staff.get(url).status_code == 404, url
    clerk.user_permissions.add(Permission.objects.get(codename="view_all_searches"))
    staff.force_login(django_user_model.objects.get(id=clerk.id))  # permissions are cached on the user object
    for url in (f"{SEARCHES}{job_id}/", f"{SEARCHES}{job_id}/image/", f"/accounts/history/{job_id}/"):
        assert staff.get(url).status_code == 200, url
