"""The duplicate finder's page in Chromium (Playwright, as tests/test_browser.py): the progress bar follows the run,
and both answers work from the keyboard alone, the keep answer confirmed first."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from search import duplicates
from search.models import DistinctPair, DuplicateRun, IndexedImage

from .conftest import picture_row

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PAGE = "/admin/search/duplicaterun/"


def staff_session():
    from django.conf import settings

    user = get_user_model().objects.create_superuser("ada", "ada@example.com", "a long enough secret")
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def group_of_three(settings):
    """Three images (the second the largest) verified as one picture, and one pair more."""
    images = [picture_row(settings, f"dup{n}", (30 * n, 120, 200), []) for n in range(5)]
    for n, image in enumerate(images):
        (image.width, image.height), image.source_size = (640, 480) if n == 1 else (120, 90), 2000 + n
    IndexedImage.objects.bulk_update(images, ["width", "height", "source_size"])
    run = DuplicateRun.objects.create(status="running", total=5, done=1)
    pairs = [(images[0].id, images[1].id, 50), (images[1].id, images[2].id, 40), (images[3].id, images[4].id, 30)]
    duplicates.duplicate_run_record(run, last_id=images[-1].id, done=1, failed=0, pairs=pairs)
    return images, run


def focus_with_tab(page, name, limit=80):
    """Press Tab until the focused element is the button named `name` (as a keyboard user reaches it)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.textContent.trim()") == name:
            return
    raise AssertionError(f"{name!r} not reached with Tab")


def test_the_progress_bar_follows_the_run_and_offers_the_groups_when_it_ends(open_page, settings):
    """A running run's bar and counts move as the worker writes them; once done, a link shows the new groups."""
    images, run = group_of_three(settings)
    page = open_page(PAGE, session=staff_session())
    bar = page.locator(".dup-progress progress")
    expect(bar).to_have_attribute("max", "5")
    expect(page.locator(".dup-progress .reindex-counts")).to_contain_text("2 of 5 images checked")
    DuplicateRun.objects.filter(id=run.id).update(done=4)
    expect(page.locator(".dup-progress .reindex-counts")).to_contain_text(
        "4 of 5 images checked, 0 not checked, 3 pairs"
    )
    assert page.locator(".dup-reload").is_hidden()
    DuplicateRun.objects.filter(id=run.id).update(done=5, status="done")
    expect(page.locator(".dup-progress .reindex-status")).to_have_text("Status: done")
    expect(page.locator(".dup-reload a")).to_be_visible()
    expect(page.locator(".dup-group")).to_have_count(2)
    expect(page.locator(".dup-group").first.locator(".dup-image").first).to_contain_text("640 × 480 px")
    expect(page.locator(".dup-group").first.locator(".dup-badge")).to_have_text("Largest")


def test_both_answers_with_the_keyboard_alone(open_page, settings):
    """Tab to "Not the same picture" of one image and press Enter: it leaves the group for good; then Tab to "Keep
    this one", Enter, confirm: the group's other image leaves the index."""
    images, run = group_of_three(settings)
    DuplicateRun.objects.filter(id=run.id).update(status="done")
    page = open_page(PAGE, session=staff_session())
    expect(page.locator(".dup-group")).to_have_count(2)
    focus_with_tab(page, "Not the same picture (dup2)")
    page.keyboard.press("Enter")
    expect(page.locator(".messagelist")).to_contain_text(f"Image {images[2].id} is not the same picture")
    assert DistinctPair.objects.filter(image_a=images[1].id, image_b=images[2].id).exists()
    first = page.locator(".dup-group").first
    expect(first.locator(".dup-image")).to_have_count(2)
    expect(first).not_to_contain_text("dup2")

    page.once("dialog", lambda dialog: dialog.accept() if "remove the other image" in dialog.message else None)
    focus_with_tab(page, "Keep this one (dup1)")
    page.keyboard.press("Enter")
    expect(page.locator(".messagelist")).to_contain_text(re.compile(rf"Image {images[1].id} kept; 1 other image left"))
    assert not IndexedImage.objects.filter(id=images[0].id).exists()
    expect(page.locator(".dup-group")).to_have_count(1)


def test_a_dismissed_confirmation_keeps_every_image(open_page, settings):
    """Cancelling the confirmation of "keep this one" sends nothing."""
    images, _run = group_of_three(settings)
    page = open_page(PAGE, session=staff_session())
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Keep this one (dup1)").click()
    expect(page.locator(".dup-group")).to_have_count(2)
    assert IndexedImage.objects.count() == 5
