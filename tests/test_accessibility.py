"""Accessibility, checked as an auditor would. axe-core (the version pinned in package.json, installed by `make test`
into node_modules/ and read from there: nothing is fetched while the tests run) is loaded into every page and
state a person reaches, in English and Chinese, at desktop and phone width; and a search is walked through with
the keyboard alone, the focus visible at every step.

New UI joins the checks where it lands: a state of the search page as a step of the walks below, an admin page of
imgsearch's models on its own (every ModelAdmin of ours is visited), a custom admin view as a line of
ADMIN_VIEWS.
"""

import re

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from playwright.sync_api import expect

from favorites.models import Favorite
from search.models import Collection, IndexedImage, ReindexRun, SearchJob

from .conftest import (
    DESKTOP,
    PHONE,
    ROOT,
    picture_row,
    query_file,
    search_with_picker,
    set_min_score,
    signed_in_session,
    wait_until_done,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0, 2.1 and 2.2 at levels A and AA (axe 4.14 has no rule tagged wcag22a; its one 2.2 rule is target-size).
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# imgsearch's own pages are held to axe's best practices as well (the audit's label-title-only is one of them).
# The admin and Django's plain 404 page are Django's markup, held to WCAG alone.
OURS = [*WCAG, "best-practice"]
# The one place where a rule is turned off: {rule id: why}. Nothing is, on any page checked.
RULES_OFF = {}
LANGUAGES = ["en", "zh-hans"]
WIDTHS = {"desktop": DESKTOP, "phone": PHONE}
PASSWORD = "a long enough secret"

# axe's "experimental" rules stay out of a run chosen by tags; those that test a WCAG A/AA criterion are asked for.
RUN_AXE = """async ({ tags, off }) => {
  const rules = {};
  for (const rule of axe.getRules(tags)) if (rule.tags.includes("experimental")) rules[rule.ruleId] = { enabled: true };
  for (const id of off) rules[id] = { enabled: false };
  const result = await axe.run(document, { runOnly: { type: "tag", values: tags }, rules, resultTypes: ["violations"] });
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary.replace(/\\s*\\n\\s*/g, " ")}`) }));
}"""


@pytest.fixture(scope="module")
def axe_source():
    if not AXE.exists():
        pytest.fail(
            f"{AXE.relative_to(ROOT)} is missing: run `make axe` (npm ci installs the axe-core of package.json)."
        )
    return AXE.read_text()


class Audit:
    """axe-core over the states of one test: each violation is kept with the state it was seen in, and all are
    reported together at the end, with the rule, its impact, its help and every element that fails it."""

    def __init__(self, source, language, width):
        self.source, self.where, self.problems = source, f"{language}, {width}", []

    def __call__(self, page, state, tags=OURS):
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.add_script_tag(content=self.source)
        for v in page.evaluate(RUN_AXE, {"tags": tags, "off": list(RULES_OFF)}):
            nodes = "".join(f"\n      {node}" for node in v["nodes"])
            self.problems.append(f"{state} ({self.where}, {page.url}): {v['id']} ({v['impact']}) {v['help']}{nodes}")

    def assert_clean(self):
        assert not self.problems, f"{len(self.problems)} axe violations:\n" + "\n".join(self.problems)


@pytest.fixture
def visit(open_page, language, width):
    """Open a page in the test's language, at its width (a phone with touch), signed in with `session`."""

    def visit(path="/", session=None):
        phone = {"is_mobile": True, "has_touch": True} if width == "phone" else {}
        return open_page(path, viewport=WIDTHS[width], language=language, session=session, **phone)

    return visit


@pytest.fixture
def audit(axe_source, language, width):
    return Audit(axe_source, language, width)


def staff_session():
    """A superuser signed in, and the value of their session cookie, for the browser."""
    user = get_user_model().objects.create_superuser("ada", "ada@example.com", PASSWORD)
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value, user


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_search_page_in_every_state(visit, audit, indexed, tmp_path, django_user_model, language, width):
    """Home, an error, results, the large view, one tag, the sign-in notice, nothing passing; signed in: waiting,
    a favourite kept and the favourites alone."""
    page = visit()
    audit(page, "home")
    refused = tmp_path / "notes.png"
    refused.write_bytes(b"these are my notes, not a picture " * 10)
    search_with_picker(page, refused)
    expect(page.locator("#error")).to_be_visible()
    audit(page, "an error shown (a file the server refuses)")
    search_with_picker(page, query_file(tmp_path, indexed))
    expect(page.locator("#results .card")).to_have_count(12)
    expect(page.locator("#results .match-badge").first).to_be_visible()
    audit(page, "results, the copy badged")
    page.locator("#results .card.is-copy .card-media").first.click()
    expect(page.locator("#lightbox .match-badge")).to_be_visible()
    expect(page.locator("#lightbox .copy-outline")).to_be_visible()
    audit(page, "the large view of the copy, where the query lies outlined")
    page.keyboard.press("Escape")
    chip = page.locator("#tag-filter .chip[data-tag]").first
    chip.click()
    expect(chip).to_have_attribute("aria-pressed", "true")
    audit(page, "one tag filtered")
    page.locator("#results .card:visible .star").first.click()
    expect(page.locator("#toast")).to_be_visible()
    audit(page, "a visitor's star: the sign-in notice")
    page.locator("#toast [data-toast-close]").click()
    set_min_score(page, 1)
    expect(page.locator("#relax-button")).to_be_visible()
    audit(page, "empty results (nothing as similar as asked)")
    page.locator("#region-draw").click()
    expect(page.locator("[data-region-box]")).to_be_visible()
    expect(page.locator("#terms-summary")).to_contain_text(re.compile("Region|区域"))  # searched again, with it
    wait_until_done(page)
    audit(page, "a region box drawn on the image")

    session, user = signed_in_session(django_user_model)
    waiting = SearchJob.objects.create(k=20, owner=user)  # never sent to a worker: it stays pending
    page = visit(f"/?job={waiting.id}", session=session)
    expect(page.locator("#status")).to_have_attribute("data-state", "pending")
    expect(page.locator("#status .spinner")).to_be_visible()
    audit(page, "waiting for a worker")
    page.goto("/")
    search_with_picker(page, query_file(tmp_path, indexed, "food"))
    page.locator("#results .card .star").first.click()
    expect(page.locator("[data-favourites-count]")).to_have_text("1")
    audit(page, "signed in, a favourite kept")
    page.locator("#favourites-toggle").click()
    expect(page.locator("#results-view")).to_have_class(re.compile("is-favourites"))
    audit(page, "the favourites alone")
    audit.assert_clean()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_account_pages(visit, audit, settings, django_user_model, language, width):
    """Sign-in, sign-up and password pages, with their errors; the account, history and favourites pages, empty
    and filled; a mistyped address."""
    page = visit("/accounts/login/?next=/")
    audit(page, "sign-in")
    page.locator("#id_username").fill("nobody")
    page.locator("#id_password").fill("wrong")
    page.locator("form.account-form button[type=submit]").click()
    expect(page.locator(".error[role=alert]")).to_be_visible()
    audit(page, "sign-in refused")
    page.goto("/accounts/signup/")
    audit(page, "sign-up")
    page.locator("form.account-form button[type=submit]").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    audit(page, "sign-up with errors")
    page.goto("/accounts/password_reset/")
    audit(page, "password reset")
    page.locator("#id_email").fill("fiona@example.com")
    page.locator("main form button[type=submit]").click()
    expect(page).to_have_url(re.compile("/accounts/password_reset/done/$"))
    audit(page, "password reset: mail sent")
    page.goto("/accounts/reset/MQ/bad-token/")
    audit(page, "password reset: a link no longer valid")
    page.goto("/accounts/reset/done/")
    audit(page, "password reset: complete")
    page.goto("/no/such/page/")
    audit(page, "a mistyped address (Django's 404 page)", tags=WCAG)

    session, user = signed_in_session(django_user_model)
    page = visit(
        f"/accounts/reset/{urlsafe_base64_encode(force_bytes(user.pk))}/{default_token_generator.make_token(user)}/"
    )
    expect(page.locator("#id_new_password1")).to_be_visible()
    audit(page, "password reset: the link's form")
    page = visit("/accounts/", session=session)
    audit(page, "the account page")
    page.locator("form[action$='/accounts/token/'] button").click()
    expect(page.locator("#new-token")).to_be_visible()
    audit(page, "a new API token shown")
    page.goto("/accounts/password_change/")
    page.locator("main form button[type=submit]").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    audit(page, "password change with errors")
    page.goto("/accounts/password_change/done/")
    audit(page, "password changed")
    for path, state in [("/accounts/history/", "history, empty"), ("/favorites/", "favourites page, empty")]:
        page.goto(path)
        audit(page, state)

    images = [
        picture_row(settings, "harbour", "#3a6ea5", ["boats"]),
        picture_row(settings, "meadow", "#5b8c3a", ["plants"]),
        picture_row(settings, "other-harbour", "#6a8caf", ["boats", "sea"]),
    ]
    done = SearchJob.objects.create(
        owner=user,
        status="done",
        k=20,
        categories=["boats"],
        source_image=images[0],
        results=[{"image_id": images[0].id, "score": 0.93, "match": "copy"}]
        + [{"image_id": image.id, "score": 0.61, "match": "similar"} for image in images[1:]],
    )
    failed = SearchJob.objects.create(owner=user, status="failed", k=5, error="The image could not be read.")
    SearchJob.objects.create(owner=user, k=5)
    for image in images[::2]:
        Favorite.objects.create(user=user, image=image, note="for the wall")
    for path, state in [
        ("/accounts/history/", "history: done, failed and waiting searches"),
        (f"/accounts/history/{done.id}/", "a search of the history, a copy badged"),
        (f"/accounts/history/{failed.id}/", "a failed search of the history"),
        ("/favorites/?tag=sea", "favourites page, one tag"),
        ("/favorites/?tag=cars", "favourites page, a tag none has"),
        ("/favorites/", "favourites page"),
    ]:
        page.goto(path)
        audit(page, state)
    page.locator("form.card-actions button").first.click()
    expect(page.locator(".messages")).to_be_visible()
    audit(page, "a favourite removed")
    audit.assert_clean()


# Admin views of imgsearch's own, beyond the change lists, add and change pages of its models: (state, its path).
ADMIN_VIEWS = [
    ("a collection: add images", lambda data: reverse("admin:search_collection_upload", args=[data["collection"].pk])),
    ("the images, one status", lambda data: reverse("admin:search_indexedimage_changelist") + "?status__exact=ready"),
    (
        "the duplicate finder, one collection",
        lambda data: reverse("admin:search_duplicaterun_changelist") + f"?collection={data['collection'].pk}",
    ),
]


def admin_pages(data, superuser):
    """(state, path) of every admin page of imgsearch's models, as the admin's index lists them: the change list,
    the add form where adding is allowed, the change page of an object or two; then the views of ADMIN_VIEWS."""
    request = RequestFactory().get("/admin/")
    request.user = superuser
    for app in admin.site.get_app_list(request):
        if app["app_label"] not in ("search", "favorites"):
            continue
        for entry in app["models"]:
            model, name = entry["model"], entry["name"]
            yield f"{name}: the list", entry["admin_url"]
            if entry["add_url"]:
                yield f"{name}: add", entry["add_url"]
            for obj in model._default_manager.order_by("pk")[:2]:
                yield (
                    f"{name}: {obj.pk}",
                    reverse(f"admin:{app['app_label']}_{model._meta.model_name}_change", args=[obj.pk]),
                )
    for state, path in ADMIN_VIEWS:
        yield state, path(data)


def _duplicate_group(collection):
    """The duplicate finder's page with a group of three of the collection's images and a run under way."""
    from search.duplicates import duplicate_run_record
    from search.models import DuplicateRun

    first = list(IndexedImage.objects.order_by("pk").values_list("pk", flat=True)[:3])
    IndexedImage.objects.filter(pk__in=first).update(collection=collection)
    run = DuplicateRun.objects.create(status="running", total=12, done=5)
    pairs = [(first[0], first[1], 40), (first[1], first[2], 30)]
    duplicate_run_record(run, last_id=first[-1], done=0, failed=0, pairs=pairs)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_admin_pages_imgsearch_adds(visit, audit, indexed, language, width):
    """The change lists (custom columns), add and change forms of imgsearch's models, the reindex progress box,
    the upload page with its error, and every view of ADMIN_VIEWS."""
    session, superuser = staff_session()
    collection = Collection.objects.create(name="photos", source_path=str(indexed))
    ReindexRun.objects.create(
        arch="mobilenet_v2",
        weights="DEFAULT",
        status="failed",
        total=12,
        done=11,
        failed=1,
        error="The weights could not be loaded.",
        failures=[{"image_id": 1, "reason": "truncated file"}],
    )
    ReindexRun.objects.create(arch="mobilenet_v2", weights="DEFAULT", status="running", total=12, done=4, failed=1)
    user = get_user_model().objects.create_user("fiona", "fiona@example.com", PASSWORD)
    Favorite.objects.create(user=user, image=IndexedImage.objects.order_by("pk").first(), note="for the wall")
    _duplicate_group(collection)
    page = visit("/admin/", session=session)
    for state, path in admin_pages({"collection": collection}, superuser):
        page.goto(path)
        audit(page, state, tags=WCAG)
    page.goto(reverse("admin:search_collection_upload", args=[collection.pk]))
    page.locator("input[type=submit]").click()
    expect(page.locator(".errornote")).to_be_visible()
    audit(page, "a collection: add images, nothing chosen", tags=WCAG)
    audit.assert_clean()


# Where the focus is and whether a person sees it: a ring (outline, or a box-shadow) of 3:1 against what lies
# behind it (WCAG 1.4.11), not clipped away by a scrolling or cropping box, the control in view and not covered by
# another element (2.4.7, 2.4.11).
FOCUS = """() => {
  const el = document.activeElement;
  // Past the last control the focus leaves the page for the browser's own (its address bar), and comes back.
  if (!document.hasFocus()) return { at: "outside the page", problems: [] };
  if (!el || el === document.body || el === document.documentElement) return { at: "the page itself", problems: ["the focus is lost"] };
  const label = (el.getAttribute("aria-label") || el.innerText || el.value || "").trim().replace(/\\s+/g, " ").slice(0, 40);
  const at = `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${el.classList.length ? "." + [...el.classList].join(".") : ""} "${label}"`;
  const problems = [];
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  if (!el.matches(":focus-visible")) problems.push("not :focus-visible");
  const x = box.left + box.width / 2, y = box.top + box.height / 2;
  if (box.width < 1 || box.height < 1 || x < 0 || y < 0 || x > innerWidth || y > innerHeight) problems.push("not in view");
  else {
    const hit = document.elementFromPoint(x, y);
    if (!hit || !(hit === el || el.contains(hit))) problems.push(`covered by ${hit ? hit.tagName.toLowerCase() + "." + [...hit.classList].join(".") : "nothing"}`);
  }
  const rgb = (colour) => (colour.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map((v) => v / 255).map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (node) => {
    for (; node; node = node.parentElement) {
      const colour = rgb(getComputedStyle(node).backgroundColor);
      if (colour.length === 3 || colour[3] > 0.5) return colour;
    }
    return [255, 255, 255];
  };
  const width = parseFloat(style.outlineWidth) || 0;
  if (style.outlineStyle !== "none" && width >= 2) {
    const offset = parseFloat(style.outlineOffset) || 0;
    const [a, b] = [luminance(rgb(style.outlineColor)), luminance(behind(offset < 0 ? el : el.parentElement))].sort((p, q) => q - p);
    const contrast = (a + 0.05) / (b + 0.05);
    if (contrast < 3) problems.push(`focus ring ${style.outlineColor} at ${contrast.toFixed(2)}:1 against what lies behind it`);
    // the ring lies `offset` to `offset + width` outside the border box; each cropping ancestor cuts it down
    let clip = { left: -Infinity, top: -Infinity, right: Infinity, bottom: Infinity };
    for (let node = el.parentElement; node && node !== document.body; node = node.parentElement) {
      const s = getComputedStyle(node);
      if (s.overflowX === "visible" && s.overflowY === "visible" && s.clipPath === "none") continue;
      const r = node.getBoundingClientRect();
      clip = { left: Math.max(clip.left, r.left), top: Math.max(clip.top, r.top), right: Math.min(clip.right, r.right), bottom: Math.min(clip.bottom, r.bottom) };
    }
    const hidden = [clip.left > box.left - offset - 1, clip.top > box.top - offset - 1, clip.right < box.right + offset + 1, clip.bottom < box.bottom + offset + 1]
      .filter(Boolean).length;
    if (hidden) problems.push(`focus ring cut off on ${hidden} side(s)`);
  } else if (style.boxShadow === "none") problems.push("no focus indicator");
  return { at, problems };
}"""


class Keyboard:
    """Only keys after the page has loaded; the focus is checked after every one of them."""

    def __init__(self, page):
        self.page, self.path = page, []
        self.inside = None  # a modal view's selector while it is open

    def focus(self):
        found = self.page.evaluate(FOCUS)
        self.path.append(found["at"])
        assert not found["problems"], (
            f"focus on {found['at']}: {', '.join(found['problems'])}; keys so far: {self.path}"
        )
        if self.inside and found["at"] != "outside the page":
            self.expect_at(f"{self.inside} *")
        return found["at"]

    def press(self, key, expect_at=None):
        self.page.keyboard.press(key)
        self.path.append(key)
        at = self.focus()
        if expect_at:
            self.expect_at(expect_at)
        return at

    def expect_at(self, selector):
        assert self.page.evaluate("s => document.activeElement.matches(s)", selector), (
            f"the focus is on {self.path[-1]}, not {selector}; keys so far: {self.path}"
        )

    def tab_to(self, selector, key="Tab", most=40):
        """Press Tab (or Shift+Tab) until `selector` has the focus, checking each control passed on the way."""
        for _ in range(most):
            self.press(key)
            if self.page.evaluate("s => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"{key} x{most} never reached {selector}; keys so far: {self.path}")


def test_a_search_walked_with_the_keyboard_alone(open_page, indexed, tmp_path, django_user_model):
    """Sign in, choose the file, search, keep a favourite, filter a tag, open the large view and step through it,
    leave it and clear: Tab, Shift+Tab, Enter, Space, arrows and Escape only, the focus seen at every step."""
    django_user_model.objects.create_user("kim", "kim@example.com", PASSWORD)
    query = query_file(tmp_path, indexed)
    page = open_page("/accounts/login/?next=/")
    # Playwright turns on its catching of file choosers without waiting for the browser: turned on now, it is on
    # long before the key that opens one (else a key pressed at once may open a chooser nobody sees).
    page.on("filechooser", lambda chooser: None)
    keys = Keyboard(page)
    keys.focus()
    keys.expect_at("#id_username")  # the sign-in form starts there
    page.keyboard.type("kim")
    keys.press("Tab", "#id_password")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():  # to the search page, its scripts run
        page.keyboard.press("Enter")

    keys.press("Tab", ".skip-link")
    page.keyboard.press("Enter")  # past the header and its links
    keys.press("Tab", "#choose-button")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(str(query))
    expect(page.locator("[data-source-name]")).to_have_text(query.name)
    keys.focus()
    keys.expect_at("#choose-button")
    # A region box drawn, moved, resized and cleared by keys; the whole image is searched.
    keys.tab_to("#region-draw")
    box = page.locator("[data-region-box]")
    keys.press("Enter", "[data-region-box]")
    placed = box.evaluate("b => [b.style.left, b.style.top, b.style.width, b.style.height]")
    keys.press("ArrowRight", "[data-region-box]")
    keys.press("Shift+ArrowDown", "[data-region-box]")
    assert box.evaluate("b => [b.style.left, b.style.top, b.style.width, b.style.height]") != placed
    keys.press("Shift+Tab", "#choose-button")  # the box comes after the chooser, before the terms
    keys.press("Tab", "[data-region-box]")
    keys.press("Delete", "#region-draw")
    expect(box).to_be_hidden()
    keys.tab_to("#search-button")  # the number of results, the minimum, copies first, each category
    page.keyboard.press("Enter")
    wait_until_done(page)
    expect(page.locator("#results .card")).to_have_count(12)
    keys.focus()
    keys.expect_at("#search-button")

    keys.tab_to("#results .card:first-child .star")  # Clear, the favourites, the size, the tags, the first image
    page.keyboard.press("Space")
    expect(page.locator("[data-favourites-count]")).to_have_text("1")
    expect(page.locator("#results .card:first-child .star")).to_have_attribute("aria-pressed", "true")
    keys.focus()
    keys.expect_at("#results .card:first-child .star")

    keys.tab_to('#tag-filter .chip[data-tag="animals"]', key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#results .card:visible")).to_have_count(4)
    keys.focus()
    keys.expect_at('#tag-filter .chip[data-tag="animals"]')

    keys.tab_to("#results .card:not([hidden]) .card-media")
    opener = page.evaluate("() => document.activeElement.closest('.card').dataset.imageId")
    page.keyboard.press("Enter")
    dialog = page.locator("#lightbox")
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-lightbox-position]")).to_have_text("1 of 4")
    keys.inside = "#lightbox"  # from now on every focus must be in the large view (or out of the page)
    keys.focus()
    # The copy's outline: shown at first, hidden and shown again with its toggle.
    keys.tab_to("#lightbox [data-action=outline]")
    expect(dialog.locator(".copy-outline")).to_be_visible()
    keys.press("Space", "#lightbox [data-action=outline]")
    expect(dialog.locator("[data-action=outline]")).to_have_attribute("aria-pressed", "false")
    expect(dialog.locator(".copy-outline")).to_be_hidden()
    keys.press("Enter", "#lightbox [data-action=outline]")
    expect(dialog.locator(".copy-outline")).to_be_visible()
    first = dialog.locator("h2").inner_text()
    keys.press("ArrowRight")
    expect(dialog.locator("[data-lightbox-position]")).to_have_text("2 of 4")
    expect(dialog.locator("h2")).not_to_have_text(first)
    keys.press("ArrowLeft")
    expect(dialog.locator("h2")).to_have_text(first)
    keys.tab_to("#lightbox .star")
    page.keyboard.press("Enter")
    expect(dialog.locator(".star")).to_have_attribute("aria-pressed", "true")
    keys.press("ArrowRight", "#lightbox .star")  # the next image's star takes the focus
    expect(dialog.locator("[data-lightbox-position]")).to_have_text("2 of 4")
    # The modal view keeps the page behind it out of reach, not the person: Tab goes round its controls, out of
    # the page to the browser's own and back in; Shift+Tab goes round the other way; Escape leaves.
    keys.press("Tab", "#lightbox [data-action=search]")
    assert keys.press("Tab") == "outside the page"
    keys.press("Tab", "#lightbox [data-step='-1']")
    keys.press("Tab", "#lightbox [data-step='1']")
    keys.press("Tab", "#lightbox [data-lightbox-close]")
    keys.press("Shift+Tab", "#lightbox [data-step='1']")
    keys.press("Shift+Tab", "#lightbox [data-step='-1']")
    keys.tab_to("#lightbox [data-action=search]", key="Shift+Tab", most=2)  # round, maybe by the browser's
    keys.press("Shift+Tab", "#lightbox .star")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    keys.inside = None
    keys.focus()
    keys.expect_at(f'#results .card[data-image-id="{opener}"] .card-media')  # back where the person was
    keys.press("Tab", f'#results .card[data-image-id="{opener}"] .star')  # and on through the page

    keys.tab_to("#clear-button", key="Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#start")).to_be_visible()
    expect(page.locator("[data-source-preview]")).to_be_hidden()
    keys.focus()
    keys.expect_at("#choose-button")
