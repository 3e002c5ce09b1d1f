"""The index admin: only staff reach it; what its pages show; what its actions and forms do."""

import os
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from search import knn
from search.models import Collection, Embedding, IndexedImage, ModelVersion, ReindexRun

from .conftest import ROOT, jpeg_bytes

pytestmark = pytest.mark.django_db

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
PAGES = [
    "/admin/search/indexedimage/",
    "/admin/search/collection/",
    "/admin/search/modelversion/",
    "/admin/search/reindexrun/",
    "/admin/search/reindexrun/add/",
]


@pytest.fixture
def staff(client):
    client.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com", "x" * 12))
    return client


@pytest.fixture
def run():
    return ReindexRun.objects.create(
        arch="mobilenet_v2", weights="DEFAULT", status="running", total=10, done=4, failed=1
    )


def stored_image(title="cat", tags=("pets",), auto=("cat",), key="mobilenet_v2:test"):
    """An indexed image with a real stored file, thumbnail and vector."""
    image = IndexedImage.objects.create(
        content_hash=f"{title:0>64}", title=title, status="ready", user_tags=list(tags), auto_tags=list(auto)
    )
    data = jpeg_bytes(Image.new("RGB", (40, 30), "orange"))
    image.file.save(f"index/{title}.jpg", ContentFile(data), save=False)
    image.thumbnail.save(f"thumbs/{title}.jpg", ContentFile(data), save=False)
    image.save()
    Embedding.objects.create(image=image, model_key=key, vector=[1.0, 0.0])
    return image


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, url):
    """Every index page redirects a visitor who is not signed in to the admin login."""
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("url", PAGES)
def test_signed_in_users_who_are_not_staff_are_kept_out(client, url):
    """A signed-in user without staff status gets the login page, not the index."""
    client.force_login(get_user_model().objects.create_user("user", password="x" * 12))
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_staff_without_permission_on_the_index_are_refused(client):
    """Staff status alone is not enough: the index pages need the model permissions."""
    client.force_login(get_user_model().objects.create_user("clerk", password="x" * 12, is_staff=True))
    assert client.get("/admin/search/reindexrun/").status_code == 403


def test_the_progress_endpoint_answers_only_staff(client, run):
    """The JSON the progress bar polls is 403 for visitors and non-staff users, and the run's numbers for staff."""
    url = reverse("admin:search_reindexrun_progress", args=[run.id])
    assert client.get(url).status_code == 403
    client.force_login(get_user_model().objects.create_user("user", password="x" * 12))
    assert client.get(url).status_code == 403 and client.get(url).json()["detail"] == "Staff only."
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "x" * 12))
    body = client.get(url).json()
    assert (body["status"], body["total"], body["done"], body["failed"], body["processed"], body["percent"]) == (
        "running",
        10,
        4,
        1,
        5,
        50.0,
    )
    assert body["active"] is True and "rate" in body and "eta_seconds" in body
    assert client.get(reverse("admin:search_reindexrun_progress", args=[999999])).status_code == 404


def test_the_image_list_shows_thumbnails_tags_models_and_errors(staff):
    """Each row has the thumbnail, given and automatic tags, the models that embedded it and the last error."""
    image = stored_image()
    IndexedImage.objects.filter(id=image.id).update(error="truncated file")
    copy_key = knn.copy_key("mobilenet_v2:test")  # a projection's copy-space vectors: not a model of their own
    Embedding.objects.create(image=image, model_key=copy_key, vector=[1.0, 0.0, 0.0])
    html = staff.get("/admin/search/indexedimage/").content.decode()
    assert f'<img src="/media/{image.thumbnail.name}"' in html
    assert '<span class="index-tag">pets</span>' in html and '<span class="index-tag index-tag-auto">cat</span>' in html
    assert "mobilenet_v2:test" in html and "truncated file" in html and copy_key not in html
    assert staff.get(f"/admin/search/indexedimage/{image.id}/change/").status_code == 200


def test_images_are_found_by_tag_and_filtered_by_automatic_tag(staff):
    """The search box matches exact tags as well as titles; the automatic-tag filter narrows the list."""
    stored_image("cat", tags=("pets",), auto=("cat",))
    stored_image("car", tags=("street",), auto=("vehicle",))
    listed = lambda query: [i.title for i in staff.get("/admin/search/indexedimage/" + query).context["cl"].result_list]
    assert listed("?q=street") == ["car"]
    assert listed("?q=Pets") == ["cat"]
    assert listed("?auto_tag=vehicle") == ["car"]
    assert sorted(listed("?q=ca")) == ["car", "cat"]


def test_removing_images_deletes_their_rows_vectors_and_files(staff):
    """ "Remove from the index" asks for confirmation, then deletes the rows, vectors, files and thumbnails."""
    image = stored_image()
    paths = [image.file.path, image.thumbnail.path]
    form = {"action": "delete_selected", "_selected_action": [image.id]}
    assert "Remove selected images from the index" in staff.get("/admin/search/indexedimage/").content.decode()
    assert staff.post("/admin/search/indexedimage/", form).status_code == 200  # the confirmation page
    staff.post("/admin/search/indexedimage/", {**form, "post": "yes"})
    assert not IndexedImage.objects.exists() and not Embedding.objects.exists()
    assert not any(os.path.exists(p) for p in paths)


def test_a_run_is_started_from_the_admin_with_the_default_weights(staff, settings):
    """Picking a model starts a queued run; empty weights mean the configured weights of that model."""
    ModelVersion.objects.update(active=False)
    response = staff.post("/admin/search/reindexrun/add/", {"arch": settings.IMGSEARCH_MODEL, "weights": ""})
    assert response.status_code == 302
    run = ReindexRun.objects.get()
    assert (run.status, run.arch, run.weights) == ("queued", settings.IMGSEARCH_MODEL, settings.IMGSEARCH_WEIGHTS)
    assert run.started_by.username == "admin"


def test_the_start_form_refuses_random_weights_and_a_second_run(staff, run):
    """Random weights cannot be picked in the admin, and a run under way blocks another."""
    response = staff.post("/admin/search/reindexrun/add/", {"arch": "mobilenet_v3_large", "weights": "random"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "tests only" in str(errors["weights"]) and "still running" in str(errors["__all__"])
    assert ReindexRun.objects.count() == 1


def test_the_run_page_shows_live_progress_and_cancels(staff, run):
    """The run's page carries the progress bar wired to its JSON and a cancel button that works."""
    html = staff.get(f"/admin/search/reindexrun/{run.id}/change/").content.decode()
    assert f'data-url="/admin/search/reindexrun/{run.id}/progress/"' in html and "admin_index/progress.js" in html
    assert "Cancel this run" in html and "5 of 10 images, 1 failed" in html
    assert staff.get(f"/admin/search/reindexrun/{run.id}/cancel/").status_code == 405
    staff.post(f"/admin/search/reindexrun/{run.id}/cancel/")
    run.refresh_from_db()
    assert run.status == "cancelled" and run.finished_at
    assert "Cancel this run" not in staff.get(f"/admin/search/reindexrun/{run.id}/change/").content.decode()


def test_the_run_list_shows_the_current_run_on_top(staff, run):
    """The list of runs opens with the progress of the run under way."""
    html = staff.get("/admin/search/reindexrun/").content.decode()
    assert f"Reindex run {run.id}" in html and "reindex-progress" in html and "Start a reindex run" in html


def test_the_collection_list_counts_images_failures_and_last_indexed(staff):
    """Each collection shows how many images it has, how many failed, and when one was last indexed."""
    photos = Collection.objects.create(name="photos")
    good = stored_image("a")
    IndexedImage.objects.filter(id=good.id).update(collection=photos, indexed_at="2026-01-02T03:04:05Z")
    IndexedImage.objects.create(content_hash="f" * 64, title="bad", collection=photos, status="failed")
    row = staff.get("/admin/search/collection/").context["cl"].result_list[0]
    assert (row.images_n, row.failed_n, row.last_indexed_at.year) == (2, 1, 2026)


def test_a_collection_folder_must_exist_and_lie_under_the_import_roots(staff, settings, tmp_path):
    """A folder that is missing, relative, or outside IMGSEARCH_IMPORT_ROOTS is refused with a reason."""
    settings.IMGSEARCH_IMPORT_ROOTS = [tmp_path / "allowed"]
    (tmp_path / "allowed" / "pics").mkdir(parents=True)
    add = lambda folder, **extra: staff.post(
        "/admin/search/collection/add/", {"name": "c", "source_path": folder, **extra}
    )
    assert "not a folder" in str(add(str(tmp_path / "allowed" / "nope")).context["adminform"].form.errors)
    assert "absolute path" in str(add("pics").context["adminform"].form.errors)
    assert "IMGSEARCH_IMPORT_ROOTS" in str(add("/etc").context["adminform"].form.errors)
    assert "Only a collection with a folder" in str(
        staff.post("/admin/search/collection/add/", {"name": "c", "rescan": "on"}).context["adminform"].form.errors
    )
    assert add(str(tmp_path / "allowed" / "pics")).status_code == 302
    assert Collection.objects.get().source_path == str(tmp_path / "allowed" / "pics")


def test_dropping_inactive_models_from_the_admin_keeps_the_active_one(staff):
    """The drop action deletes the vectors of the selected inactive models and refuses to touch the active one."""
    image = stored_image(key="live:1")
    Embedding.objects.create(image=image, model_key="old:1", vector=[0.0, 1.0])
    ModelVersion.objects.update(active=False)
    live = ModelVersion.objects.create(key="live:1", arch="a", weights="w", dim=2, active=True)
    old = ModelVersion.objects.create(key="old:1", arch="a", weights="w", dim=2)
    response = staff.post(
        "/admin/search/modelversion/", {"action": "drop_embeddings", "_selected_action": [live.id, old.id]}, follow=True
    )
    assert "Dropped 1 embeddings of 1 models" in response.content.decode()
    assert list(ModelVersion.objects.filter(key__in=["live:1", "old:1"]).values_list("key", flat=True)) == ["live:1"]
    assert list(Embedding.objects.values_list("model_key", flat=True)) == ["live:1"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_reembed_and_retag_actions_redo_the_selected_images_on_a_worker(worker, staff, photo_folder):
    """Re-embed rewrites the vectors (and tags) with the active model; re-tag recomputes the automatic tags."""
    call_command("index_images", str(photo_folder))
    image = IndexedImage.objects.order_by("id").first()
    key = ModelVersion.objects.get(active=True).key
    Embedding.objects.filter(image=image).update(vector=[1.0] * 1280)
    IndexedImage.objects.filter(id=image.id).update(auto_tags=["wrong"], auto_label="wrong")
    staff.post("/admin/search/indexedimage/", {"action": "retag", "_selected_action": [image.id]})
    wait_until(lambda: IndexedImage.objects.get(id=image.id).auto_tags != ["wrong"])
    staff.post("/admin/search/indexedimage/", {"action": "reembed", "_selected_action": [image.id]})
    wait_until(lambda: Embedding.objects.get(image=image, model_key=key).vector[0] != 1.0)
    image.refresh_from_db()
    assert image.status == "ready" and image.auto_label != "wrong"


def wait_until(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the worker did not get to it"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_progress_bar_follows_the_run_live_in_a_browser(live_server, run):
    """In a real browser the run page's bar and numbers follow the row, and the cancel button leaves at the end."""
    from playwright.sync_api import expect, sync_playwright

    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", "x" * 12))
    cookie = {
        "name": django_settings.SESSION_COOKIE_NAME,
        "value": staff.cookies[django_settings.SESSION_COOKIE_NAME].value,
        "url": live_server.url,
    }
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop lives in this thread; the ORM stays sync
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
            )
            context = browser.new_context(base_url=live_server.url)
            context.add_cookies([cookie])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"/admin/search/reindexrun/{run.id}/change/")
            section = page.locator(".reindex-progress")
            expect(section.locator(".reindex-counts")).to_have_text("5 of 10 images, 1 failed")
            ReindexRun.objects.filter(id=run.id).update(done=8, started_at=timezone.now() - timedelta(seconds=8))
            expect(section.locator(".reindex-counts")).to_have_text("9 of 10 images, 1 failed", timeout=10_000)
            expect(section.locator(".reindex-speed")).to_contain_text("images/s")
            assert section.locator(".reindex-bar").evaluate("bar => bar.value") == 9
            ReindexRun.objects.filter(id=run.id).update(done=9, status="done", finished_at=timezone.now())
            expect(section.locator(".reindex-status")).to_have_text("Status: Done", timeout=10_000)
            expect(section.locator(".reindex-error")).to_be_hidden()
            expect(section.locator(".reindex-cancel")).to_have_count(0)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=SCREENSHOTS / "test_the_progress_bar_follows_the_run_live_in_a_browser.png", full_page=True
            )
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    assert not errors, errors
