"""Per-user privacy: search jobs, their query images, favourites and tokens belong to their owner (and staff)."""

import io
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token

from favorites.models import Favorite
from search.models import IndexedImage, SearchJob

from .conftest import jpeg_bytes

pytestmark = pytest.mark.django_db
SEARCHES = "/api/v1/searches/"


def png_bytes(color="green"):
    out = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(out, "PNG")
    return out.getvalue()


def start_search(client, data=None, name="query.jpg", content_type="image/jpeg", **headers):
    """POST an upload; return the new job's id."""
    data = data if data is not None else jpeg_bytes(Image.new("RGB", (48, 48), "red"))
    response = client.post(SEARCHES, {"image": SimpleUploadedFile(name, data, content_type=content_type)}, **headers)
    assert response.status_code == 202, response.content
    return response.json()["id"]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "correct horse battery")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "staple battery horse")


@pytest.fixture
def staff_user(django_user_model):
    """Staff with search.view_all_searches (being staff alone is not enough: test_safe_defaults)."""

    def make(name):
        user = django_user_model.objects.create_user(name, password="x" * 12, is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_all_searches"))
        return user

    return make


def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def image():
    return IndexedImage.objects.create(
        content_hash="f" * 64, file="cats/tom.png", title="Tom", status="ready", user_tags=["pets"], auto_tags=["cat"]
    )


# --- Search jobs ------------------------------------------------------------------------------------


def test_a_signed_in_users_job_is_theirs_and_hidden_from_another_user(alice, bob):
    """User B asking for user A's search gets 404, exactly like a job that does not exist."""
    a, b = signed_in(alice), signed_in(bob)
    job_id = start_search(a)
    assert SearchJob.objects.get(id=job_id).owner == alice
    assert a.get(f"{SEARCHES}{job_id}/").status_code == 200
    assert b.get(f"{SEARCHES}{job_id}/").status_code == 404


def test_an_anonymous_job_belongs_to_its_session_only(alice):
    """Another browser, a signed-in user or a client without a session cannot see a visitor's search."""
    visitor = Client()
    job_id = start_search(visitor)
    assert visitor.get(f"{SEARCHES}{job_id}/").status_code == 200
    for other in (Client(), signed_in(alice)):
        assert other.get(f"{SEARCHES}{job_id}/").status_code == 404
        assert other.get(f"{SEARCHES}{job_id}/image/").status_code == 404


def test_a_job_without_owner_or_session_is_visible_to_nobody_but_staff(client, staff_user):
    """A row with neither owner nor session key never matches an anonymous request's missing session."""
    job = SearchJob.objects.create(k=3)
    assert client.get(f"{SEARCHES}{job.id}/").status_code == 404
    assert signed_in(staff_user("staff")).get(f"{SEARCHES}{job.id}/").status_code == 200


def test_staff_see_everyones_jobs_and_query_images(alice, staff_user):
    """Staff with the permission to see all searches may open any search and its query image (support, moderation)."""
    job_id = start_search(signed_in(alice))
    staff = signed_in(staff_user("admin"))
    assert staff.get(f"{SEARCHES}{job_id}/").status_code == 200
    assert staff.get(f"{SEARCHES}{job_id}/image/").status_code == 200


def test_another_users_search_cannot_be_refined(alice, bob):
    """from_search only accepts the requester's own searches: B cannot reuse A's query image."""
    job_id = start_search(signed_in(alice))
    response = signed_in(bob).post(SEARCHES, {"from_search": job_id})
    assert response.status_code == 400 and "from_search" in response.json()["detail"]
    assert signed_in(alice).post(SEARCHES, {"from_search": job_id}).status_code == 202


def test_history_lists_only_the_requesters_own_searches(alice, bob):
    """GET /api/v1/searches/ answers the user's own jobs, newest first, with the documented fields."""
    a = signed_in(alice)
    first, second = start_search(a), start_search(a)
    start_search(signed_in(bob))
    start_search(Client())
    body = a.get(SEARCHES).json()
    assert [job["id"] for job in body] == [second, first]
    assert {"id", "status", "created_at", "count", "query_name", "k", "min_score", "categories"} <= set(body[0])
    assert body[0]["query_image_url"].endswith(f"/api/v1/searches/{second}/image/")


def test_history_needs_an_account(client):
    """An anonymous client asking for the search history gets 401 with a message."""
    start_search(client)
    response = client.get(SEARCHES)
    assert response.status_code == 401 and response.json()["detail"]


def test_the_history_pages_show_only_the_users_own_searches(alice, bob):
    """The history page lists the user's searches; another user's search detail page is a 404."""
    a, b = signed_in(alice), signed_in(bob)
    job_id = start_search(a, name="holiday-beach.jpg")
    assert b"holiday-beach.jpg" in a.get("/accounts/history/").content
    assert b"holiday-beach.jpg" not in b.get("/accounts/history/").content
    assert a.get(f"/accounts/history/{job_id}/").status_code == 200
    assert b.get(f"/accounts/history/{job_id}/").status_code == 404


# --- Query images -------------------------------------------------------------------------------------


def test_the_owner_gets_the_query_image_with_its_real_type(alice):
    """The type comes from the bytes (a PNG named .jpg is served as PNG), never from the client."""
    a = signed_in(alice)
    data = png_bytes()
    job_id = start_search(a, data, name="evil.jpg", content_type="text/html")
    response = a.get(f"{SEARCHES}{job_id}/image/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="query.png"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"].startswith("private")


def test_the_job_json_links_the_query_image_only_when_there_is_one(alice, image):
    """query_image_url points at the owner-only endpoint; a search with an indexed image has none."""
    a = signed_in(alice)
    upload_job = start_search(a)
    assert a.get(f"{SEARCHES}{upload_job}/").json()["query_image_url"].endswith(f"{SEARCHES}{upload_job}/image/")
    indexed_job = a.post(SEARCHES, {"image_id": image.id}).json()["id"]
    assert a.get(f"{SEARCHES}{indexed_job}/").json()["query_image_url"] is None
    assert a.get(f"{SEARCHES}{indexed_job}/image/").status_code == 404


def test_another_user_cannot_fetch_a_query_image(alice, bob):
    """User B asking for user A's query image gets 404."""
    job_id = start_search(signed_in(alice))
    response = signed_in(bob).get(f"{SEARCHES}{job_id}/image/")
    assert response.status_code == 404 and "detail" in response.json()


def test_query_images_have_no_public_media_url(client, settings):
    """The stored query file is not under MEDIA_ROOT, so /media/ cannot serve it whatever its name."""
    job = SearchJob.objects.get(id=start_search(client))
    assert (settings.QUERY_ROOT / job.query_image.name).exists()
    assert client.get(f"/media/{job.query_image.name}").status_code == 404
    with pytest.raises(ValueError):
        job.query_image.url


# --- Favourites and tokens ------------------------------------------------------------------------------


def test_another_user_can_neither_see_nor_delete_a_favourite(alice, bob, image):
    """B's list does not include A's favourite, and deleting it by id is a 404 that leaves it in place."""
    favorite = Favorite.objects.create(user=alice, image=image, note="mine")
    b = signed_in(bob)
    assert b.get("/api/v1/favorites/").json() == []
    assert b.delete(f"/api/v1/favorites/{favorite.id}/").status_code == 404
    assert b.post(f"/favorites/{favorite.id}/remove/").status_code == 404
    assert Favorite.objects.filter(id=favorite.id).exists()
    assert [f["id"] for f in signed_in(alice).get("/api/v1/favorites/").json()] == [favorite.id]


def test_saving_an_image_another_user_saved_makes_a_separate_favourite(alice, bob, image):
    """Favourites are per user: B saving A's image creates B's own row and leaves A's note alone."""
    Favorite.objects.create(user=alice, image=image, note="alice's note")
    response = signed_in(bob).post("/api/v1/favorites/", {"image_id": image.id, "note": "bob's"})
    assert response.status_code == 201 and response.json()["note"] == "bob's"
    assert Favorite.objects.get(user=alice).note == "alice's note"


def test_a_token_acts_only_as_its_own_user(alice, bob, image):
    """With B's token, A's searches and favourites stay invisible; B's token cannot touch A's token."""
    job_id = start_search(signed_in(alice))
    favorite = Favorite.objects.create(user=alice, image=image)
    a = signed_in(alice)
    a.post("/accounts/token/")
    alice_token = Token.objects.get(user=alice).key
    b = signed_in(bob)
    b.post("/accounts/token/")
    headers = {"HTTP_AUTHORIZATION": f"Token {Token.objects.get(user=bob).key}"}
    api = Client()
    assert api.get(f"{SEARCHES}{job_id}/", **headers).status_code == 404
    assert api.get("/api/v1/favorites/", **headers).json() == []
    assert api.delete(f"/api/v1/favorites/{favorite.id}/", **headers).status_code == 404
    b.post("/accounts/token/revoke/")
    assert Token.objects.get(user=alice).key == alice_token


def test_account_pages_need_an_account(client):
    """Anonymous visitors are sent to sign in from every per-user page."""
    for url in ("/accounts/", "/accounts/history/", f"/accounts/history/{uuid.uuid4()}/", "/favorites/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    for url in ("/accounts/token/", "/accounts/token/revoke/", "/favorites/1/remove/"):
        assert client.post(url).status_code == 302
