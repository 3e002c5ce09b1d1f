"""Favourites: the API contract (list, save once, remove, filter by tag) and the favourites page."""

import pytest
from django.contrib import admin
from django.db import IntegrityError
from django.test import Client

from favorites.models import Favorite
from search.models import IndexedImage

pytestmark = pytest.mark.django_db
URL = "/api/v1/favorites/"
FIELDS = {"id", "image_id", "note", "created_at", "title", "tags", "image_url", "thumbnail_url"}


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("carol", "carol@example.com", "a long enough secret")


@pytest.fixture
def api(user):
    client = Client()
    client.force_login(user)
    return client


def make_image(title, user_tags=(), auto_tags=(), status="ready", thumbnail=""):
    return IndexedImage.objects.create(
        content_hash=title.ljust(64, "0"),
        file=f"img/{title}.png",
        title=title,
        status=status,
        user_tags=list(user_tags),
        auto_tags=list(auto_tags),
        thumbnail=thumbnail,
    )


def test_saving_an_image_answers_201_with_the_documented_object(api):
    """POST {image_id, note} creates the favourite and answers it in the contract's shape."""
    image = make_image("rex", user_tags=["pets"], auto_tags=["dog"], thumbnail="thumbs/rex.jpg")
    response = api.post(URL, {"image_id": image.id, "note": "good boy"}, content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == FIELDS
    assert (body["image_id"], body["note"], body["title"], body["tags"]) == (
        image.id,
        "good boy",
        "rex",
        ["pets", "dog"],
    )
    assert body["image_url"] == "http://testserver/media/img/rex.png"
    assert body["thumbnail_url"] == "http://testserver/media/thumbs/rex.jpg"


def test_saving_the_same_image_again_answers_200_with_the_existing_favourite(api):
    """Saving twice (a double drag-and-drop) is harmless: one row, the first note kept, 200 the second time."""
    image = make_image("rex")
    first = api.post(URL, {"image_id": image.id, "note": "first"})
    second = api.post(URL, {"image_id": image.id, "note": "second"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"] and second.json()["note"] == "first"
    assert Favorite.objects.count() == 1


def test_the_note_is_optional_and_form_data_works(api):
    """A form-encoded POST with only image_id saves the image with an empty note."""
    image = make_image("rex")
    response = api.post(URL, {"image_id": image.id})
    assert response.status_code == 201 and response.json()["note"] == ""


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"image_id": 999999}, "image_id"),
        ({}, "image_id"),
        ({"image_id": "twelve"}, "image_id"),
        ({"image_id": "PENDING", "note": ""}, "image_id"),
        ({"image_id": "READY", "note": "x" * 501}, "note"),
    ],
)
def test_bad_requests_are_400_with_a_detail(api, payload, field):
    """Unknown, missing, malformed or not-yet-indexed images and over-long notes get 400 naming the field."""
    ids = {"PENDING": make_image("wip", status="pending").id, "READY": make_image("ok").id}
    payload = {key: ids.get(value, value) for key, value in payload.items()}
    response = api.post(URL, payload, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert not Favorite.objects.exists()


def test_list_is_newest_first_with_the_documented_fields(api, user):
    """GET lists the user's favourites, the most recently saved first."""
    older, newer = make_image("older"), make_image("newer")
    api.post(URL, {"image_id": older.id})
    api.post(URL, {"image_id": newer.id})
    body = api.get(URL).json()
    assert [f["title"] for f in body] == ["newer", "older"]
    assert all(set(f) == FIELDS for f in body) and body[0]["thumbnail_url"] is None


def test_tag_filter_matches_given_and_automatic_tags(api):
    """?tag= keeps images with the tag among their given or automatic tags, case-insensitively."""
    for image in (
        make_image("a", user_tags=["dog"]),
        make_image("b", auto_tags=["dog"]),
        make_image("c", auto_tags=["cat"]),
    ):
        api.post(URL, {"image_id": image.id})
    assert sorted(f["title"] for f in api.get(URL, {"tag": "Dog"}).json()) == ["a", "b"]
    assert [f["title"] for f in api.get(URL, {"tag": "cat"}).json()] == ["c"]
    assert api.get(URL, {"tag": "bird"}).json() == []


def test_delete_answers_204_and_the_favourite_is_gone(api):
    """DELETE removes the favourite; deleting it again is a 404 with a detail."""
    favorite_id = api.post(URL, {"image_id": make_image("rex").id}).json()["id"]
    assert api.delete(f"{URL}{favorite_id}/").status_code == 204
    again = api.delete(f"{URL}{favorite_id}/")
    assert again.status_code == 404 and again.json()["detail"]
    assert api.get(URL).json() == []


def test_anonymous_clients_are_refused_with_401(client):
    """Without an account, listing, saving and removing favourites are 401 with a detail."""
    image = make_image("rex")
    for response in (client.get(URL), client.post(URL, {"image_id": image.id}), client.delete(f"{URL}1/")):
        assert response.status_code == 401 and response.json()["detail"]
        assert response["WWW-Authenticate"] == "Token"
    assert not Favorite.objects.exists()


def test_deleting_an_image_from_the_index_removes_its_favourites(api, user):
    """A favourite cannot outlive its image."""
    image = make_image("rex")
    api.post(URL, {"image_id": image.id})
    image.delete()
    assert not Favorite.objects.filter(user=user).exists()


def test_one_favourite_per_user_and_image_is_enforced_by_the_database(user):
    """Even a racing second insert cannot save the same image twice for one user."""
    image = make_image("rex")
    Favorite.objects.create(user=user, image=image)
    with pytest.raises(IntegrityError):
        Favorite.objects.create(user=user, image=image)


def test_the_page_lists_favourites_with_tags_notes_and_a_tag_filter(api):
    """/favorites/ shows each favourite's title, tags and note, and filters by a tag link."""
    api.post(URL, {"image_id": make_image("rex", user_tags=["pets"], auto_tags=["dog"]).id, "note": "good boy"})
    api.post(URL, {"image_id": make_image("tom", auto_tags=["cat"]).id})
    page = api.get("/favorites/").content.decode()
    assert "rex" in page and "tom" in page and "good boy" in page and 'href="?tag=dog"' in page
    filtered = api.get("/favorites/", {"tag": "cat"}).content.decode()
    assert "tom" in filtered and "good boy" not in filtered


def test_the_page_remove_button_removes_and_keeps_the_filter(api):
    """The remove form deletes the favourite and returns to the list with the same tag filter."""
    favorite_id = api.post(URL, {"image_id": make_image("rex", auto_tags=["dog"]).id}).json()["id"]
    response = api.post(f"/favorites/{favorite_id}/remove/", {"tag": "dog"})
    assert response.status_code == 302 and response["Location"] == "/favorites/?tag=dog"
    assert not Favorite.objects.exists()
    assert "Removed from your favourites." in api.get(response["Location"]).content.decode()


def test_the_page_remove_form_only_accepts_post(api):
    """A GET on the remove URL changes nothing."""
    favorite_id = api.post(URL, {"image_id": make_image("rex").id}).json()["id"]
    assert api.get(f"/favorites/{favorite_id}/remove/").status_code == 405
    assert Favorite.objects.filter(id=favorite_id).exists()


def test_favourites_are_in_the_admin():
    """Staff can manage favourites in the Django admin."""
    assert admin.site.is_registered(Favorite)


def test_a_tag_filter_with_a_nul_character_is_a_400_not_a_500(db):
    """Found by fuzzing: a NUL byte in ?tag= reached PostgreSQL and failed; now it is refused as invalid."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    user = get_user_model().objects.create_user("nul", "nul@example.org", "a-long-password-1")
    client = APIClient()
    client.force_authenticate(user)
    response = client.get("/api/v1/favorites/", {"tag": "dog\x00"})
    assert response.status_code == 400 and "tag" in response.json()
