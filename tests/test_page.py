"""The search page as the server renders it: index size, categories, both languages, no outside links."""

import re
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from search.models import IndexedImage

pytestmark = pytest.mark.django_db
STATIC = Path(settings.BASE_DIR) / "static"


def add_image(title, tags=(), status="ready"):
    return IndexedImage.objects.create(
        content_hash=title.ljust(64, "0"), file=f"img/{title}.png", title=title, status=status, user_tags=list(tags)
    )


@pytest.fixture
def index():
    add_image("rex", ["animals", "dogs"])
    add_image("tom", ["animals"])
    add_image("pie", ["food"])
    add_image("broken", ["food"], status="failed")


def test_home_says_what_it_does_and_how_big_the_index_is(client, index):
    """The intro counts ready images and their categories; each category is a checkbox with its count."""
    html = client.get("/").content.decode()
    assert "Search by image" in html and "finds the images in its index" in html
    assert "<strong>3</strong> images in the index" in html
    assert "<strong>3</strong> categories" in html
    assert re.search(
        r'value="animals">\s*<span class="category-name" data-tag="animals">animals</span>\s*'
        r'<span class="category-count">2</span>',
        html,
    )
    assert "How to start" in html and "Search!" in html and "Clear" in html


def test_the_fresh_page_offers_indexed_images_to_try(client):
    """Six recent images with thumbnails are offered as one-click searches, one per tag first; none without one."""
    for title, tag in [("old", "pets")] + [(f"img{n}", "food") for n in range(8)]:
        image = add_image(title, [tag])
        image.thumbnail = "" if title == "img7" else f"thumbs/{title}.jpg"
        image.save()
    html = client.get("/").content.decode()
    offered = re.findall(r'class="sample" data-image-id="\d+" data-title="(\w+)" data-thumbnail-url="([^"]+)"', html)
    assert [title for title, _ in offered] == ["img6", "old", "img5", "img4", "img3", "img2"]
    assert offered[0][1] == "/media/thumbs/img6.jpg"


def test_counts_are_plural_correct_and_an_empty_index_says_so(client):
    """One image reads "1 image"; an empty index explains how images get in."""
    html = client.get("/").content.decode()
    assert "<strong>0</strong> images in the index" in html and "The index is empty" in html
    add_image("solo", ["cats"])
    html = client.get("/").content.decode()
    assert "<strong>1</strong> image in the index" in html and "<strong>1</strong> category" in html
    assert "The index is empty" not in html


def test_home_in_simplified_chinese(client, index):
    """With the language cookie set to zh-hans the page, its title and its counts are in Chinese."""
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    html = client.get("/").content.decode()
    assert '<html lang="zh-hans">' in html
    assert "<title>以图搜图 · imgsearch</title>" in html
    assert "索引中共有 <strong>3</strong> 张图片" in html and "<strong>3</strong> 个类别" in html
    assert "搜索！" in html and "清空" in html and "Search by image" not in html


def test_a_chinese_browser_gets_the_chinese_page(client, index):
    """Accept-Language zh-CN (no cookie) picks Simplified Chinese."""
    html = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert "以图搜图" in html


def test_the_language_switch_sets_the_language_and_returns(client):
    """The header's switch posts to set_language, which remembers the choice and goes back to the page."""
    html = client.get("/?job=" + str(uuid.UUID(int=7))).content.decode()
    assert 'action="/i18n/setlang/"' in html and 'name="language" value="zh-hans"' in html
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/?job=x"})
    assert response.status_code == 302 and response["Location"] == "/?job=x"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert "以图搜图" in client.get("/").content.decode()


def test_the_script_catalogue_has_the_plural_count_sentence_in_chinese(client):
    """The JavaScript catalogue gives the page its count sentence: English plural forms, one Chinese form."""
    english = client.get("/jsi18n/").content.decode()
    assert "django.pluralidx" in english
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    chinese = client.get("/jsi18n/").content.decode()
    assert (
        "\\u672c\\u6b21\\u5171\\u68c0\\u7d22\\u5230 %(count)s \\u5f20\\u76f8\\u4f3c\\u56fe\\u7247" in chinese
    )  # 本次共检索到 … 张相似图片
    assert "%(count)s similar image found" in chinese


def test_a_job_in_the_address_is_handed_to_the_page_and_a_bad_one_ignored(client):
    """?job=<uuid> reaches the page's script; a mangled value shows the fresh page, not an error."""
    job_id = uuid.uuid4()
    assert f'data-job="{job_id}"' in client.get(f"/?job={job_id}").content.decode()
    response = client.get("/?job=not-a-uuid")
    assert response.status_code == 200 and 'data-job=""' in response.content.decode()


def test_signed_in_state_reaches_the_favourites_area(client, django_user_model):
    """The page tells its script whether favourites can be saved, and where to sign in."""
    html = client.get("/").content.decode()
    assert 'data-signed-in="false"' in html and 'data-login-url="/accounts/login/"' in html
    assert "Sign in to keep the images you like as favourites." in html
    client.force_login(django_user_model.objects.create_user("hana", "hana@example.com", "a long enough secret"))
    html = client.get("/").content.decode()
    assert 'data-signed-in="true"' in html and "Drag a result here" in html


def test_the_page_loads_nothing_from_outside_the_site(client, index):
    """Every script, style, image and link of the page is on this site: it works on a network without internet."""
    html = client.get("/").content.decode()
    urls = re.findall(r'(?:src|href|action)="([^"]*)"', html)
    assert urls and not [u for u in urls if re.match(r"^(https?:)?//", u)]
    for module in (STATIC / "search").glob("*.js"):
        imports = re.findall(r'from "([^"]+)"', module.read_text())
        assert all(i.startswith("./") and (module.parent / i).exists() for i in imports), (module.name, imports)
    assert not re.search(r"url\((['\"]?)(https?:)?//", (STATIC / "css" / "site.css").read_text())


def test_finding_copies_first_is_offered_and_on_by_default(client):
    """The search terms have a "Find copies of this picture first" checkbox named rerank, checked, in both languages."""
    html = client.get("/").content.decode()
    box = re.search(r'<input type="checkbox" id="id_rerank" name="rerank"[^>]*>', html)
    assert box and " checked" in box.group() and "Find copies of this picture first" in html
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    assert "优先找出这张图片的副本" in client.get("/").content.decode()
    assert "\\u540c\\u4e00\\u5f20\\u56fe\\u7247" in client.get("/jsi18n/").content.decode()  # the badge: 同一张图片
