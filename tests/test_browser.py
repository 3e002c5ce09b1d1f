"""The search page in a real browser: Playwright drives Debian's Chromium (headless) against the live
server, with a real Celery worker and the real MobileNetV2 weights. Each test leaves a screenshot in
test-artifacts/screenshots/<test name>.png.
"""

import base64
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from playwright.sync_api import expect

from search.jobs import search_job_enqueue
from search.models import IndexedImage, SearchJob

from .conftest import (
    PHONE,
    picture_row,
    query_file,
    search_with_picker,
    set_min_score,
    shoot,
    signed_in_session,
    wait_until_done,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def seen_waiting(page):
    return [state for state, spinner in page.evaluate("window.__states") if spinner]


def card_titles(page):
    return page.locator("#results .card:visible .card-title").all_inner_texts()


def test_file_picker_shows_the_source_waits_visibly_and_counts_the_results(open_page, indexed, tmp_path):
    """Choosing a file shows it with name and size; Search! runs the spinner while pending/running, then the count."""
    page = open_page()
    expect(page.locator(".intro")).to_contain_text("12 images in the index")
    query = query_file(tmp_path, indexed)
    page.set_input_files("#id_image", str(query))
    source = page.locator("[data-source-preview]")
    expect(source).to_be_visible()
    expect(source).to_contain_text(query.name)
    expect(source).to_contain_text(re.compile(r"\d+(\.\d)? KB"))
    assert page.locator("[data-source-preview] img").evaluate("img => img.complete && img.naturalWidth > 0")
    page.get_by_role("button", name="Search!").click()
    wait_until_done(page)
    assert {"uploading", "pending"} & set(seen_waiting(page)), page.evaluate("window.__states")
    expect(page.locator("#status .spinner")).to_be_hidden()
    expect(page.locator("#count")).to_have_text("12 similar images found")
    expect(page.locator("#results .card")).to_have_count(12)
    assert re.search(r"\?job=[0-9a-f-]{36}$", page.url)
    page.reload()
    expect(page.locator("#count")).to_have_text("12 similar images found")
    expect(page.locator("[data-source-preview]")).to_contain_text(query.name)


def test_dropping_a_file_on_the_drop_zone_and_pressing_enter_searches(open_page, indexed, tmp_path):
    """A file dropped on the drop zone becomes the source; Enter starts the search."""
    page = open_page()
    query = query_file(tmp_path, indexed, "food")
    page.evaluate(
        """([data, name]) => {
      const file = new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], name, { type: "image/jpeg" });
      const transfer = new DataTransfer();
      transfer.items.add(file);
      const zone = document.getElementById("dropzone");
      for (const type of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
      }
    }""",
        [base64.b64encode(query.read_bytes()).decode(), query.name],
    )
    expect(page.locator("[data-source-preview]")).to_contain_text(query.name)
    page.locator("#id_k").focus()
    page.keyboard.press("Enter")
    wait_until_done(page)
    assert seen_waiting(page)
    expect(page.locator("#count")).to_have_text("12 similar images found")
    assert "food" in page.locator("#results .card").first.locator(".tags").inner_text()


def test_pasting_an_image_searches(open_page, indexed, tmp_path):
    """An image pasted from the clipboard becomes the source ("Pasted image") and can be searched."""
    page = open_page()
    query = query_file(tmp_path, indexed, "vehicles")
    page.evaluate(
        """(data) => {
      const file = new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], "image.jpg", { type: "image/jpeg" });
      const transfer = new DataTransfer();
      transfer.items.add(file);
      document.body.dispatchEvent(new ClipboardEvent("paste", { bubbles: true, cancelable: true, clipboardData: transfer }));
    }""",
        base64.b64encode(query.read_bytes()).decode(),
    )
    expect(page.locator("[data-source-preview]")).to_contain_text("Pasted image")
    page.get_by_role("button", name="Search!").click()
    wait_until_done(page)
    assert seen_waiting(page)
    expect(page.locator("#count")).to_have_text("12 similar images found")
    assert "vehicles" in page.locator("#results .card").first.locator(".tags").inner_text()


def contrast_with_white(rgb):
    def linear(channel):
        c = channel / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 1.05 / (0.2126 * r + 0.7152 * g + 0.0722 * b + 0.05)


def test_tag_chips_have_distinct_readable_colours_and_filter_the_results(open_page, indexed, tmp_path):
    """Each tag's chip has its own colour (white text at 4.5:1 or better) and count; a chip filters, All returns."""
    page = open_page()
    search_with_picker(page, query_file(tmp_path, indexed))
    chips = page.locator("#tag-filter .chip[data-tag]")
    tags = chips.evaluate_all("els => els.map(e => e.dataset.tag)")
    assert {"animals", "food", "vehicles", "plants"} <= set(tags)
    colours = chips.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(colours)) == len(colours), dict(zip(tags, colours))
    for tag, colour in zip(tags, colours):
        assert contrast_with_white([int(n) for n in re.findall(r"\d+", colour)[:3]]) >= 4.5, (tag, colour)
    same_tag_in_card = page.locator("#results .tag", has_text=re.compile("^animals$")).first
    assert same_tag_in_card.evaluate("e => getComputedStyle(e).backgroundColor") == colours[tags.index("animals")]
    chip = page.locator('#tag-filter .chip[data-tag="food"]')
    expect(chip.locator(".chip-count")).to_have_text("3")
    chip.click()
    expect(chip).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#results .card:visible")).to_have_count(3)
    for tags_text in page.locator("#results .card:visible .tags").all_inner_texts():
        assert "food" in tags_text.split("\n")
    page.get_by_role("button", name=re.compile("^All")).click()
    expect(page.locator("#results .card:visible")).to_have_count(12)


def test_results_without_any_tag_get_a_chip_of_their_own_after_the_tags(open_page, indexed, tmp_path):
    """A result with no tag at all (no folder tag, the classifier unsure) is under "Untagged", the last chip."""
    plants = IndexedImage.objects.filter(source_path__contains="/plants/")
    untagged = plants.update(user_tags=[], auto_tags=[])
    assert 0 < untagged < 12
    page = open_page()
    search_with_picker(page, query_file(tmp_path, indexed))
    expect(page.locator("#results .card")).to_have_count(12)
    chip = page.locator("#tag-filter .chip").last
    expect(chip).to_have_class(re.compile("chip-untagged"))
    expect(chip.locator(".chip-label")).to_have_text("Untagged")
    expect(chip.locator(".chip-count")).to_have_text(str(untagged))
    chip.click()
    expect(chip).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#results .card:visible")).to_have_count(untagged)
    assert page.locator("#results .card:visible .tags .tag").count() == 0
    shoot(page, "untagged-picked")
    page.get_by_role("button", name=re.compile("^All")).click()
    expect(page.locator("#results .card:visible")).to_have_count(12)


def test_a_result_enlarges_and_closes_with_escape_and_the_size_control_changes_thumbnails(open_page, indexed, tmp_path):
    """Clicking a thumbnail opens the large view (Escape closes it); the size control resizes the grid."""
    page = open_page()
    search_with_picker(page, query_file(tmp_path, indexed))
    first = page.locator("#results .card").first
    title = first.locator(".card-title").inner_text()
    first.locator(".card-media").click()
    dialog = page.locator("#lightbox")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text(title)
    large = dialog.locator("img")
    expect(large).to_have_attribute("alt", title)
    assert large.bounding_box()["width"] > 2 * first.locator(".card-media img").bounding_box()["width"]
    shoot(page, "lightbox")
    page.keyboard.press("ArrowRight")
    expect(dialog.locator("h2")).not_to_have_text(title)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    before = first.bounding_box()["width"]
    page.locator("#thumb-size").fill("330")
    assert first.bounding_box()["width"] > before * 1.4
    page.locator("#thumb-size").fill("110")
    assert first.bounding_box()["width"] < before


def test_search_with_this_image_starts_a_new_search_from_a_result(open_page, indexed, tmp_path):
    """ "Find similar" on any result searches with that indexed image: it comes back first, 100% similar."""
    page = open_page()
    search_with_picker(page, query_file(tmp_path, indexed))
    third = page.locator("#results .card").nth(2)
    title = third.locator(".card-title").inner_text()
    page.evaluate("window.__states = []")
    third.get_by_role("button", name=re.compile(f"^Find similar: {re.escape(title)}$")).click()
    expect(page.locator("[data-source-preview]")).to_contain_text(title)
    wait_until_done(page)
    assert seen_waiting(page)
    expect(page.locator("#results .card").first.locator(".card-title")).to_have_text(title)
    expect(page.locator("#results .card").first.locator(".score")).to_contain_text("100%")
    assert SearchJob.objects.filter(source_image__title=title).exists()


def stored_queries(settings):
    return sum(1 for path in Path(settings.QUERY_ROOT).rglob("*") if path.is_file())


def test_refining_refilters_or_reruns_without_reuploading_and_offers_to_relax(open_page, indexed, tmp_path, settings):
    """A higher minimum filters in the page; nothing passing offers to relax; a new category re-runs, no re-upload."""
    page = open_page()
    page.locator("#id_k").fill("5")
    search_with_picker(page, query_file(tmp_path, indexed))
    expect(page.locator("#count")).to_have_text("5 similar images found")
    first, uploads = SearchJob.objects.get(), stored_queries(settings)
    set_min_score(page, 0.6)
    expect(page.locator("#terms-summary")).to_contain_text("Similarity ≥ 60%")
    scores = page.locator("#results .score").all_inner_texts()
    assert 1 <= len(scores) < 5 and all(int(re.search(r"\d+", s).group()) >= 60 for s in scores)
    set_min_score(page, 1)
    expect(page.locator("#count")).to_have_text("0 similar images found")
    expect(page.locator("#empty")).to_contain_text("No image is at least 100% similar.")
    shoot(page, "nothing-passes")
    relax = page.locator("#relax-button")
    expect(relax).to_have_text(re.compile(r"^Lower the minimum to \d+%$"))
    relax.click()
    expect(page.locator("#results .card").first).to_be_visible()
    assert SearchJob.objects.count() == 1  # every step so far was answered from the results in the page
    with page.expect_response(lambda r: r.url.endswith("/api/v1/searches/") and r.request.method == "POST"):
        page.locator('label.category:has(input[value="plants"])').click()
    closest = page.get_by_role("button", name="Show the closest images anyway")
    expect(closest).to_be_visible()  # no plant is as close as the relaxed minimum
    closest.click()
    expect(page.locator("#results .card")).to_have_count(2)
    assert all("plants" in tags.split("\n") for tags in page.locator("#results .tags").all_inner_texts())
    latest = SearchJob.objects.latest("created_at")
    assert SearchJob.objects.count() == 3 and latest.categories == ["plants"] and latest.min_score == 0
    assert latest.query_image.name == first.query_image.name and stored_queries(settings) == uploads


def test_a_verified_copy_is_badged_and_finding_copies_first_is_sent_with_the_search(
    open_page, settings, django_user_model
):
    """Only the "copy" result wears the "Same picture" badge (card and large view); one that only looks alike (its
    evidence says so) wears an outlined "Looks alike" that is not counted; unticking the box re-runs."""
    session, user = signed_in_session(django_user_model)
    crop, lookalike, older = (
        picture_row(settings, *spec)
        for spec in [
            ("harbour-crop", "#3a6ea5", ["boats"]),
            ("other-harbour", "#6a8caf", ["boats"]),
            ("meadow", "#5b8c3a", ["plants"]),
        ]
    )
    job = SearchJob.objects.create(
        owner=user,
        status="done",
        k=20,
        rerank=True,
        source_image=crop,
        results=[
            {
                "image_id": crop.id,
                "score": 0.88,
                "match": "copy",
                "evidence": {"verdict": "same picture", "by": "keypoints"},
            },
            {
                "image_id": lookalike.id,
                "score": 0.93,
                "match": "similar",
                "evidence": {"verdict": "looks alike", "by": "signature", "inliers": 2, "likeness": 0.97},
            },
            {"image_id": older.id, "score": 0.61},
        ],
    )  # stored before re-ranking existed: "similar"
    page = open_page(f"/?job={job.id}", session=session)
    cards = page.locator("#results .card")
    expect(cards).to_have_count(3)
    # The indexed image searched with is shown as the source, by its title (it has no thumbnail: its full image).
    expect(page.locator("[data-source-name]")).to_have_text("harbour-crop")
    expect(page.locator("[data-source-preview] img")).to_have_attribute(
        "src", re.compile(re.escape(crop.file.url) + "$")
    )
    expect(page.locator("[data-source-preview] img")).to_be_visible()
    expect(page.locator("#id_rerank")).to_be_checked()
    badge = cards.first.locator(".match-badge")
    expect(badge).to_have_text("Same picture")
    expect(page.locator("#results .match-badge")).to_have_count(2)
    expect(cards.nth(1).locator(".match-badge")).to_have_text("Looks alike")
    expect(cards.nth(1).locator(".match-badge svg")).to_have_count(0)
    expect(cards.nth(2).locator(".match-badge")).to_have_count(0)
    expect(page.locator("#copies")).to_have_text("1 of them is the same picture as yours")
    background = [int(n) for n in re.findall(r"\d+", badge.evaluate("e => getComputedStyle(e).backgroundColor"))[:3]]
    assert contrast_with_white(background) >= 4.5 and badge.locator("svg").count() == 1
    shoot(page, "same-picture-badge")
    cards.first.locator(".card-media").click()
    expect(page.locator("#lightbox .match-badge")).to_have_text("Same picture")
    shoot(page, "same-picture-lightbox")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#lightbox h2")).to_have_text("other-harbour")
    expect(page.locator("#lightbox .match-badge")).to_have_text("Looks alike")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#lightbox .match-badge")).to_have_count(0)
    page.keyboard.press("Escape")

    # The re-run is answered with a finished job made here, so no worker is involved.
    rerun = SearchJob.objects.create(
        owner=user,
        status="done",
        k=20,
        rerank=False,
        source_image=crop,
        results=[
            {"image_id": lookalike.id, "score": 0.93, "match": "similar"},
            {"image_id": crop.id, "score": 0.88, "match": "similar"},
        ],
    )
    sent = []

    def answer(route):
        sent.append(route.request.post_data)
        route.fulfill(
            status=202, json={"id": str(rerun.id), "status": "pending", "url": f"/api/v1/searches/{rerun.id}/"}
        )

    page.route(
        "**/api/v1/searches/", lambda route: answer(route) if route.request.method == "POST" else route.continue_()
    )
    page.locator("#id_rerank").uncheck()  # the results in the page cannot answer this: it re-runs the query
    expect(page).to_have_url(re.compile(f"job={rerun.id}"))
    assert len(sent) == 1 and re.search(r'name="rerank"\r\n\r\nfalse\r\n', sent[0]), sent
    assert re.search(rf'name="from_search"\r\n\r\n{job.id}\r\n', sent[0])
    expect(cards).to_have_count(2)
    expect(page.locator("#results .match-badge")).to_have_count(0)
    expect(page.locator("#copies")).to_be_hidden()
    expect(page.locator("#id_rerank")).not_to_be_checked()


def test_clear_returns_to_the_fresh_home_state(open_page, indexed, tmp_path):
    """Clear removes the image, the results and the filters, and forgets the job; a sample image starts anew."""
    page = open_page()
    page.locator('label.category:has(input[value="animals"])').click()
    page.locator("#id_k").fill("5")
    search_with_picker(page, query_file(tmp_path, indexed))
    expect(page.locator("#results .card")).to_have_count(4)
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("[data-source-preview]")).to_be_hidden()
    expect(page.locator("#results-view")).to_be_hidden()
    expect(page.locator("#start")).to_be_visible()
    expect(page.locator("#id_k")).to_have_value("20")
    expect(page.locator('input[name="categories"]:checked')).to_have_count(0)
    assert "job=" not in page.url
    page.get_by_role("button", name="Search!").click()
    expect(page.locator("#error")).to_have_text("First choose, drop or paste an image.")
    sample = page.locator("#start .sample").first  # the fresh page offers images of the index to try
    title = sample.get_attribute("data-title")
    sample.click()
    wait_until_done(page)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#results .card").first.locator(".card-title")).to_have_text(title)


def test_a_rejected_upload_and_a_failed_job_show_their_message_in_the_page(
    open_page, indexed, tmp_path, django_user_model
):
    """A file the server refuses and a job that fails both end with a readable message, the spinner stopped."""
    page = open_page()
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"these are my notes, not a picture " * 10)
    page.set_input_files("#id_image", str(fake))
    page.get_by_role("button", name="Search!").click()
    expect(page.locator("#error")).to_contain_text("not an image")
    expect(page.locator("#status")).to_have_attribute("data-state", "failed")
    expect(page.locator("#status .spinner")).to_be_hidden()
    shoot(page, "rejected-upload")

    session, user = signed_in_session(django_user_model)
    job = SearchJob.objects.create(k=3, owner=user)
    job.query_image.save("query", SimpleUploadedFile("x.jpg", b"\xff\xd8\xff\xe0 truncated"), save=True)
    transaction.on_commit(lambda: search_job_enqueue(job.id))  # a query the worker cannot read
    failed = open_page(f"/?job={job.id}", session=session)
    expect(failed.locator("#error")).to_contain_text("could not be read")
    expect(failed.locator("#status")).to_have_attribute("data-state", "failed")


def test_dragging_a_result_to_favourites_and_the_favourites_only_view(open_page, indexed, tmp_path, django_user_model):
    """Signed in: drag a result onto the favourites area or press its star; the area shows only favourites, and back."""
    # Tall enough that the card and the favourites area are both in view: no scrolling mid-drag.
    page = open_page(session=signed_in_session(django_user_model)[0], viewport={"width": 1280, "height": 1200})
    search_with_picker(page, query_file(tmp_path, indexed))
    area = page.locator("#favourites")
    first = page.locator("#results .card").nth(0)
    first.drag_to(area)
    expect(area.locator("[data-favourites-count]")).to_have_text("1")
    expect(first.locator(".star")).to_have_attribute("aria-pressed", "true")
    second = page.locator("#results .card").nth(1)
    second.locator(".star").focus()
    page.keyboard.press("Enter")  # the star works from the keyboard too
    expect(area.locator("[data-favourites-count]")).to_have_text("2")
    saved = {first.locator(".card-title").inner_text(), second.locator(".card-title").inner_text()}
    page.locator("#favourites-toggle").click()
    expect(page.locator("#count")).to_have_text("2 favourites")
    expect(page.locator("#results .card")).to_have_count(2)
    assert set(card_titles(page)) == saved
    shoot(page, "favourites-only")
    page.get_by_role("button", name="Back to results").click()
    expect(page.locator("#count")).to_have_text("12 similar images found")
    page.reload()  # kept on the server
    expect(page.locator("[data-favourites-count]")).to_have_text("2")


def test_a_visitor_is_asked_to_sign_in_to_keep_favourites(open_page, indexed, tmp_path):
    """Not signed in, the star (tapped on a phone) and the favourites area ask the visitor to sign in."""
    page = open_page(viewport=PHONE, has_touch=True, is_mobile=True)
    search_with_picker(page, query_file(tmp_path, indexed))
    page.locator("#results .card").first.locator(".star").tap()
    notice = page.locator("#toast")
    expect(notice).to_be_visible()
    expect(notice.get_by_role("link", name="Sign in")).to_have_attribute(
        "href", re.compile(r"^/accounts/login/\?next=%2F%3Fjob%3D")
    )
    expect(page.locator("#results .card").first.locator(".star")).to_have_attribute("aria-pressed", "false")
    shoot(page, "sign-in-asked")
    notice.get_by_role("button", name="Close").tap()
    expect(notice).to_be_hidden()
    page.locator("#favourites-toggle").tap()
    expect(notice).to_contain_text("Sign in to keep favourites")
    expect(page.locator("#count")).to_have_text("12 similar images found")  # no favourites view for a visitor
    notice.get_by_role("button", name="Close").tap()
    page.locator("#results .card").first.locator(".card-media").tap()
    page.locator("#lightbox .star").tap()  # from the large view the message must show, and take taps, above it
    expect(notice).to_be_visible()
    box = notice.bounding_box()
    assert page.evaluate(
        "([x, y]) => document.getElementById('toast').contains(document.elementFromPoint(x, y))",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )


def test_the_page_in_simplified_chinese(open_page, indexed, tmp_path):
    """The header's switch turns the page into Simplified Chinese, the count sentence included."""
    page = open_page()
    page.get_by_role("button", name="简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.locator("h1")).to_have_text("以图搜图")
    expect(page.get_by_role("button", name="搜索！")).to_be_visible()
    page.set_input_files("#id_image", str(query_file(tmp_path, indexed)))
    page.get_by_role("button", name="搜索！").click()
    wait_until_done(page)
    expect(page.locator("#count")).to_have_text("本次共检索到 12 张相似图片")
    expect(page.locator("#tag-filter .chip-all")).to_contain_text("全部")
    expect(page.locator("#results .card").first.locator(".score")).to_contain_text("相似")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_phone_width_fits_without_sideways_scrolling_and_images_have_alt_text(open_page, indexed, tmp_path, language):
    """At 390 px the page, with results, has no horizontal overflow; every image has alt text."""
    page = open_page(viewport=PHONE, language=language, has_touch=True, is_mobile=True)
    search_with_picker(page, query_file(tmp_path, indexed))
    expect(page.locator("#results .card")).to_have_count(12)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.locator("img:not([alt])").count() == 0
    assert all(alt.strip() for alt in page.locator("#results img").evaluate_all("els => els.map(e => e.alt)"))


def region_of_page(page):
    """The box on the source image as the page holds it: [left, top, width, height] in % of the image."""
    style = page.locator("[data-region-box]").evaluate(
        "b => [b.style.left, b.style.top, b.style.width, b.style.height]"
    )
    return [round(float(v.rstrip("%")), 1) for v in style]


def drag(page, start, end, steps=8):
    """A mouse drag between two points given as fractions of the source image."""
    image = page.locator("[data-source-preview] img")
    image.scroll_into_view_if_needed()  # the results may have scrolled it away
    box = image.bounding_box()
    at = lambda p: (box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"])  # noqa: E731
    page.mouse.move(*at(start))
    page.mouse.down()
    page.mouse.move(*at(end), steps=steps)
    page.mouse.up()


def next_search(page, url):
    """Wait for the search a change started (the address names the new job) to be shown."""
    expect(page).not_to_have_url(url)
    wait_until_done(page)
    return SearchJob.objects.get(id=re.search(r"job=([0-9a-f-]{36})", page.url).group(1))


def test_a_region_drawn_moved_resized_and_cleared_with_the_mouse_is_what_is_searched(open_page, indexed, tmp_path):
    """Two indexed pictures side by side: a box drawn round the left one finds it as the same picture; moved onto
    the right one (the search re-runs) it finds that one; a corner dragged resizes it; cleared, the whole image is
    searched. The box stays on the image and among the terms shown with the results."""
    from .test_region import side_by_side

    left = IndexedImage.objects.get(title=sorted((indexed / "animals").glob("*.png"))[0].stem)
    right = IndexedImage.objects.get(title=sorted((indexed / "vehicles").glob("*.png"))[0].stem)
    data, split = side_by_side(left.source_path, right.source_path)
    query = tmp_path / "two.jpg"
    query.write_bytes(data)
    page = open_page()
    page.set_input_files("#id_image", str(query))
    expect(page.locator("[data-region-status]")).to_have_text("The whole image")
    expect(page.locator("[data-region-box]")).to_be_hidden()
    drag(page, (0.01, 0.02), (split - 0.01, 0.98))
    expect(page.locator("[data-region-box]")).to_be_visible()
    expect(page.locator("[data-region-status]")).to_contain_text("of the image, from 1% left and 2% top")
    page.get_by_role("button", name="Search!").click()
    wait_until_done(page)
    first = SearchJob.objects.get()
    assert first.region["x"] == pytest.approx(0.01, abs=0.01) and first.region["height"] == pytest.approx(
        0.96, abs=0.01
    )
    assert first.region["width"] == pytest.approx(split - 0.02, abs=0.01)
    card = page.locator("#results .card").first
    expect(card.locator(".card-title")).to_have_text(left.title)
    expect(card.locator(".match-badge")).to_have_text("Same picture")
    expect(page.locator("#terms-summary")).to_contain_text("Region: ")
    expect(page.locator("[data-region-box]")).to_be_visible()  # still drawn with the results

    # Moved by its middle onto the right picture: a new search of that part.
    drag(page, (split / 2, 0.5), (split + (1 - split) / 2, 0.5))
    moved = next_search(page, page.url)
    assert moved.region["x"] == pytest.approx(min(0.51, 1 - moved.region["width"]), abs=0.02), moved.region
    assert moved.region["width"] == pytest.approx(first.region["width"], abs=0.002)
    expect(page.locator("#results .card").first.locator(".card-title")).to_have_text(right.title)
    assert moved.query_image.name == first.query_image.name  # refined: the image is not sent again

    # Its bottom right corner dragged up and left: resized from the top left corner, which stays.
    before = region_of_page(page)
    page.locator("[data-source-preview] img").scroll_into_view_if_needed()
    handle = page.locator('[data-handle="se"]').bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(handle["x"] - 20, handle["y"] - 30, steps=5)
    page.mouse.up()
    resized = next_search(page, page.url)
    after = region_of_page(page)
    assert after[:2] == before[:2] and after[2] < before[2] and after[3] < before[3], (before, after)
    assert resized.region["height"] < moved.region["height"]

    page.get_by_role("button", name="Search the whole image").click()
    cleared = next_search(page, page.url)
    assert cleared.region is None
    expect(page.locator("[data-region-box]")).to_be_hidden()
    expect(page.locator("[data-region-status]")).to_have_text("The whole image")
    expect(page.locator("#terms-summary")).not_to_contain_text("Region")
    # A result's "Find similar" searches that image, whole: the box drawn on the other image goes.
    drag(page, (0.1, 0.1), (0.5, 0.5))
    next_search(page, page.url)
    page.locator("#results .card").nth(1).locator(".search-with").click()
    expect(page.locator("[data-region-box]")).to_be_hidden()
    assert next_search(page, page.url).region is None


def test_the_region_box_by_keys_and_by_touch(open_page, indexed, tmp_path):
    """Keys: "Select a part" draws a box and gives it the focus; the arrows move it, Shift and the arrows resize it,
    Delete clears it and the focus goes back. Touch: a finger draws a box, and the search uses it."""
    page = open_page(has_touch=True)
    page.set_input_files("#id_image", str(query_file(tmp_path, indexed)))
    page.locator("#region-draw").focus()
    page.keyboard.press("Enter")
    box = page.locator("[data-region-box]")
    expect(box).to_be_focused()
    assert region_of_page(page) == [20, 20, 60, 60]
    for key in ["ArrowRight", "ArrowRight", "ArrowUp"]:
        page.keyboard.press(key)
    assert region_of_page(page) == [24, 18, 60, 60]
    page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Shift+ArrowDown")
    assert region_of_page(page) == [24, 18, 58, 62]
    for _ in range(30):  # pushed against the edge, it stops there
        page.keyboard.press("ArrowRight")
    assert region_of_page(page) == [42, 18, 58, 62]
    expect(box).to_have_attribute("aria-label", re.compile("58% × 62% of the image, from 42% left and 18% top"))
    page.keyboard.press("Delete")
    expect(box).to_be_hidden()
    expect(page.locator("#region-draw")).to_be_focused()

    image = page.locator("[data-source-preview] img").bounding_box()
    at = lambda x, y: {"x": image["x"] + x * image["width"], "y": image["y"] + y * image["height"]}  # noqa: E731
    touch = page.context.new_cdp_session(page)
    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at(0.1, 0.3)]})
    for step in range(1, 6):
        touch.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [at(0.1 + step * 0.1, 0.3 + step * 0.1)]}
        )
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(box).to_be_visible()
    assert region_of_page(page) == pytest.approx([10, 30, 50, 50], abs=1.5)
    page.get_by_role("button", name="Search!").click()
    wait_until_done(page)
    region = SearchJob.objects.get().region
    assert [region[k] for k in ("x", "y", "width", "height")] == pytest.approx([0.1, 0.3, 0.5, 0.5], abs=0.015)


def test_the_large_view_of_a_copy_outlines_where_the_query_lies(open_page, indexed, tmp_path):
    """A cropped, mirrored, turned copy: the large view of its original draws the copy's outline where the geometry
    puts it, says how it was changed, and a toggle hides and shows the outline; in Chinese too."""
    from .test_copy_outline import edited

    original = IndexedImage.objects.get(title=sorted((indexed / "animals").glob("*.png"))[0].stem)
    data, expected = edited(original.source_path, (0.05, 0.12, 0.85, 0.97))
    query = tmp_path / "turned.jpg"
    query.write_bytes(data)
    page = open_page()
    search_with_picker(page, query)
    card = page.locator("#results .card").first
    expect(card.locator(".card-title")).to_have_text(original.title)
    card.locator(".card-media").click()
    dialog = page.locator("#lightbox")
    outline = dialog.locator(".copy-outline")
    expect(outline).to_be_visible()
    toggle = dialog.get_by_role("button", name="Show where your picture is")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    facts = dialog.locator(".copy-facts")
    expect(facts).to_contain_text("Mirrored")
    expect(facts).to_contain_text("90° anticlockwise")
    expect(facts).to_contain_text(re.compile(r"Scale\s*12\d%"))
    # Where the corners are drawn, in fractions of the picture as it shows on the screen (object-fit: contain).
    corners = page.evaluate(
        """() => {
      const img = document.querySelector("#lightbox .lightbox-picture img");
      const box = img.getBoundingClientRect(), pad = parseFloat(getComputedStyle(img).paddingLeft);
      const w = box.width - 2 * pad, h = box.height - 2 * pad;
      const scale = Math.min(w / img.naturalWidth, h / img.naturalHeight);
      const left = box.left + pad + (w - img.naturalWidth * scale) / 2, top = box.top + pad + (h - img.naturalHeight * scale) / 2;
      const polygon = document.querySelector("#lightbox .copy-outline-line"), m = polygon.getScreenCTM();
      return [...polygon.points].map((p) => [(m.a * p.x + m.c * p.y + m.e - left) / (img.naturalWidth * scale),
        (m.b * p.x + m.d * p.y + m.f - top) / (img.naturalHeight * scale)]);
    }"""
    )
    for (x, y), (ex, ey) in zip(corners, expected):
        assert abs(x - ex) < 0.04 and abs(y - ey) < 0.04, (corners, expected)
    shoot(page, "copy-outline")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(outline).to_be_hidden()
    toggle.click()
    expect(outline).to_be_visible()

    page.keyboard.press("Escape")
    searched = page.url
    page.get_by_role("button", name="简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.goto(searched)  # the same search, its page in Chinese
    page.locator("#results .card").first.locator(".card-media").click()
    expect(dialog.get_by_role("button", name="显示你的图片所在位置")).to_have_attribute("aria-pressed", "true")
    expect(facts).to_contain_text("镜像")
    expect(facts).to_contain_text("逆时针 90°")
    expect(outline).to_be_visible()
