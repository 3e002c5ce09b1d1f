"""Shared fixtures: media folders, real dev images, a real Celery worker process on the test database, and the
browser tests' Chromium, pages and helpers."""

import collections
import io
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from PIL import Image
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet1k.pth"
DEV_IMAGES = Path(os.environ.get("IMGSEARCH_DEV_IMAGES", Path.home() / ".cache" / "imgsearch-dev-images"))


@pytest.fixture(scope="session")
def media_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True)
def _media_settings(settings, media_root):
    """Every test (and the worker process) stores files under one temporary folder."""
    settings.MEDIA_ROOT = media_root / "media"
    settings.QUERY_ROOT = media_root / "queries"


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    """Each test starts with no search-rate history: the counts live in the shared Redis cache."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, and before it is dropped, the end of every other session on it: a worker's
    child or a server thread that has not let go yet (a `?wait` listener, a store thread's connection) made the
    drop fail with "being accessed by other users"."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connection.close()


@pytest.fixture(scope="session")
def dev_images():
    """The real labelled images of ../shared/data/fetch-dev-images (fetched once, then cached)."""
    if not (DEV_IMAGES / ".complete").exists():
        subprocess.run([str(SHARED / "data" / "fetch-dev-images"), str(DEV_IMAGES)], check=True, timeout=900)
    return DEV_IMAGES


@pytest.fixture
def photo_folder(dev_images, tmp_path):
    """A small folder of real photo cut-outs in category sub-folders, as an operator would index."""
    folder = tmp_path / "photos"
    picks = {"animals": 4, "food": 3, "vehicles": 3, "plants": 2}
    for category, count in picks.items():
        files = sorted((dev_images / "tuxpaint" / category).glob("*.png"))
        (folder / category).mkdir(parents=True)
        for src in random.Random(category).sample(files, count):
            (folder / category / src.name).write_bytes(src.read_bytes())
    return folder


def jpeg_bytes(image, quality=80):
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def edited_copy(path):
    """A cropped, rescaled, re-encoded copy of an image file: what a person finds on the web."""
    with Image.open(path) as img:
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, "white")
        img = Image.alpha_composite(background, img).convert("RGB")
        w, h = img.size
        img = img.crop((w // 12, h // 12, w - w // 12, h - h // 12)).resize((w * 2 // 3, h * 2 // 3))
    return jpeg_bytes(img, quality=70)


def _test_database_url():
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return parts._replace(path="/" + connection.settings_dict["NAME"]).geturl()


@pytest.fixture(scope="session")
def worker_env(media_root, django_db_setup):
    env = dict(os.environ)
    env.update(
        DATABASE_URL=_test_database_url(),
        MEDIA_ROOT=str(media_root / "media"),
        QUERY_ROOT=str(media_root / "queries"),
        IMGSEARCH_WEIGHTS=str(WEIGHTS),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_worker(env, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "imgsearch",
            "worker",
            "--queues",
            "search,index",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_ready(proc, timeout=90):
    from imgsearch.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{proc.stdout.read() if proc.stdout else '(output discarded)'}")
        if app.control.ping(timeout=0.5):
            _drain(proc)
            return
    raise RuntimeError("worker did not answer a ping in time")


def _drain(proc):
    """Keep reading a running worker's output (its last lines kept in proc.recent): once the pipe's buffer is
    full, the worker would block on its next log line, mid-task."""
    proc.recent = collections.deque(maxlen=200)
    if proc.stdout is not None:  # None: started with its output discarded, nothing to read
        threading.Thread(target=lambda: proc.recent.extend(proc.stdout), daemon=True).start()


@pytest.fixture(scope="session")
def worker(worker_env):
    """One real Celery worker process (prefork) with the shared MobileNetV2 weights."""
    from imgsearch.celery import app

    app.control.purge()
    proc = start_worker(worker_env)
    wait_until_ready(proc)
    yield proc
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def search_upload(client, data, **params):
    """POST image bytes as a search (202 expected) and follow the job until it ends; its final JSON."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("query.jpg", data, content_type="image/jpeg")
    response = client.post("/api/v1/searches/", {"image": upload, **params})
    assert response.status_code == 202, response.content
    return wait_for_job(client, response.json()["url"])


def wait_for_job(client, url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job still {body['status']} after {timeout}s")


def candidates_table(scored, *, inliers=None, near=None, identical=(), likeness=None, lead=None, found=(), alike=None):
    """A candidates table (workers/ranking/candidates.py) as the stages leave it: rows (image_id, score) in the order
    they were found, from the global k-NN but the near duplicate at position `near` and the whole-index finds at the
    positions in `found`; with inliers, signature likeness and lead scores per row, and the query's very file. The
    verified copies (10 inliers or more) passed the appearance check unless `alike` (image ids that passed) says."""
    from workers.ranking.candidates import GLOBAL, NEAR, Candidates

    table = Candidates(query=None)
    for position, (image_id, score) in enumerate(scored):
        source = NEAR if position == near else "words" if position in found else GLOBAL
        row = table.add(image_id, score, source)
        row.inliers = None if inliers is None else inliers[position]
        row.likeness = None if likeness is None else likeness[position]
        row.lead_score = None if lead is None else lead[position]
        row.identical = image_id in identical
        verified = (row.inliers or 0) >= 10
        row.same_picture = verified and (alike is None or image_id in alike)
    return table


# The browser tests (tests/test_browser.py, tests/test_accessibility.py): Playwright drives Debian's Chromium,
# headless, against the live server.
expect.set_options(timeout=20_000)  # a search on a busy 2-core machine can take a few seconds

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Records every change of the waiting indicator, however brief, with whether its spinner was visible.
WATCH_STATUS = """
window.__states = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  if (!status) return;
  new MutationObserver(() => window.__states.push([status.dataset.state,
    getComputedStyle(status.querySelector(".spinner")).display !== "none"])).observe(status, { attributeFilter: ["data-state"] });
});
"""


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Debian's build: `playwright install` is never needed)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (as root) to install Debian's Chromium.")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls of these tests are still
    # plain synchronous code, so Django's guard against async contexts is lifted while it runs.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def open_page(browser, live_server, request):
    """Open the site in a fresh browser context; each page fails its test on a script error."""
    contexts, errors = [], []

    def open_page(path="/", *, viewport=DESKTOP, language="en", session=None, **options):
        context = browser.new_context(viewport=viewport, base_url=live_server.url, **options)
        context.set_default_timeout(30_000)
        context.add_cookies([{"name": django_settings.LANGUAGE_COOKIE_NAME, "value": language, "url": live_server.url}])
        if session:
            context.add_cookies(
                [{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
            )
        context.add_init_script(WATCH_STATUS)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(path)
        contexts.append(context)
        return page

    yield open_page
    if contexts:
        shoot(contexts[-1].pages[-1], request.node.name)
    for context in contexts:
        context.close()
    assert not errors, errors


def shoot(page, name):
    """A full-page screenshot in test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


@pytest.fixture
def indexed(worker, photo_folder, settings):
    """The 12 photos indexed through the real worker, tagged by folder (animals, food, vehicles, plants)."""
    from search.models import IndexedImage

    settings.IMGSEARCH_SEARCH_RATE_ANON = "10000/min"  # many searches from one address in a few minutes
    call_command("index_images", str(photo_folder), "--tags-from-folders", stdout=io.StringIO(), stderr=io.StringIO())
    assert IndexedImage.objects.filter(status="ready").count() == 12
    return photo_folder


def query_file(tmp_path, folder, category="animals"):
    """An edited copy (cropped, re-encoded) of one indexed photo, as a JPEG file on disk."""
    original = sorted((folder / category).glob("*.png"))[0]
    path = tmp_path / f"{original.stem}-copy.jpg"
    path.write_bytes(edited_copy(original))
    return path


def search_with_picker(page, path):
    """Choose `path` in the file input, press Search! and wait for the job to end."""
    page.set_input_files("#id_image", str(path))
    page.locator("#search-button").click()
    wait_until_done(page)


def wait_until_done(page):
    expect(page.locator("#status")).to_have_attribute("data-state", re.compile("done|failed"))


def signed_in_session(django_user_model):
    """A signed-in user and the value of their session cookie, for the browser."""
    from django.test import Client

    user = django_user_model.objects.create_user("fiona", "fiona@example.com", "a long enough secret")
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value, user


def set_min_score(page, value):
    """Move the minimum similarity slider as a person would (input while dragging, change on release)."""
    page.locator("#id_min_score").evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); "
        "el.dispatchEvent(new Event('change', { bubbles: true })); }",
        str(value),
    )


def picture_row(settings, title, colour, tags):
    """An indexed image with a real (small, one-colour) file under MEDIA_ROOT, without the worker."""
    from search.models import IndexedImage

    path = Path(settings.MEDIA_ROOT) / "img" / f"{title}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (120, 90), colour).save(path)
    return IndexedImage.objects.create(
        content_hash=title.ljust(64, "0"), file=f"img/{title}.png", title=title, status="ready", user_tags=tags
    )
