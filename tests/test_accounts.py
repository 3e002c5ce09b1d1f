"""Accounts: sign up, sign in (keeping a visitor's searches), sign out, passwords, the API token, the nav."""

import re

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token

from search.models import SearchJob

from .conftest import jpeg_bytes

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


@pytest.fixture
def dave(django_user_model):
    return django_user_model.objects.create_user("dave", "dave@example.com", PASSWORD)


def start_search(client):
    upload = SimpleUploadedFile("q.jpg", jpeg_bytes(Image.new("RGB", (32, 32), "blue")), content_type="image/jpeg")
    response = client.post("/api/v1/searches/", {"image": upload})
    assert response.status_code == 202
    return response.json()["id"]


def sign_up(client, username="erin", email="erin@example.com", password=PASSWORD, **extra):
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": email, "password1": password, "password2": password, **extra},
    )


# --- Sign up, sign in, sign out -----------------------------------------------------------------------


def test_sign_up_creates_the_account_and_signs_in(client):
    """A valid sign-up makes the user, signs them in and goes home."""
    response = sign_up(client)
    assert response.status_code == 302 and response["Location"] == "/"
    user = get_user_model().objects.get(username="erin")
    assert user.email == "erin@example.com" and user.check_password(PASSWORD)
    assert client.get("/accounts/").context["user"] == user


def test_sign_up_refuses_bad_input_with_messages(client, dave):
    """Taken usernames and emails, mismatched or weak passwords are shown on the form, not a 500."""
    cases = [
        ({"username": "dave"}, "username already exists"),
        ({"email": "DAVE@example.com"}, "email address already exists"),
        ({"email": "not-an-email"}, "valid email"),
        ({"password": "password"}, "too common"),
        ({"password2": "something else"}, "didn’t match"),
    ]
    for extra, message in cases:
        response = sign_up(client, **extra)
        assert response.status_code == 200 and message in response.content.decode(), message
    assert get_user_model().objects.count() == 1


def test_sign_up_returns_to_next(client):
    """?next= on the sign-up page is where the new user lands (same-site URLs only)."""
    response = client.post(
        "/accounts/signup/?next=/favorites/",
        {"username": "frank", "email": "f@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response["Location"] == "/favorites/"
    evil = Client().post(
        "/accounts/signup/?next=https://evil.example/",
        {"username": "gina", "email": "g@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert evil["Location"] == "/"


def test_sign_in_and_out(client, dave):
    """The sign-in form signs in; sign-out is a POST that ends the session."""
    response = client.post("/accounts/login/", {"username": "dave", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/accounts/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/")["Location"] == "/"
    assert client.get("/accounts/").status_code == 302


def test_wrong_password_is_refused_on_the_form(client, dave):
    """A wrong password shows the form again with a message."""
    response = client.post("/accounts/login/", {"username": "dave", "password": "nope"})
    assert response.status_code == 200 and "correct username and password" in response.content.decode()


def test_signing_in_keeps_the_searches_made_before(client, dave):
    """A visitor's searches become theirs at sign-in, although Django gives the session a new key."""
    job_id = start_search(client)
    old_key = client.session.session_key
    client.post("/accounts/login/", {"username": "dave", "password": PASSWORD})
    assert client.session.session_key != old_key
    assert SearchJob.objects.get(id=job_id).owner == dave
    assert client.get(f"/api/v1/searches/{job_id}/").status_code == 200
    assert [job["id"] for job in client.get("/api/v1/searches/").json()] == [job_id]


def test_signing_up_keeps_the_searches_made_before(client):
    """A visitor who searches and then creates an account finds the search in their history."""
    job_id = start_search(client)
    sign_up(client)
    assert SearchJob.objects.get(id=job_id).owner.username == "erin"


def test_signing_in_claims_only_this_browsers_searches(client, dave):
    """Another visitor's anonymous searches and other users' searches are left alone."""
    other_visitor = Client()
    theirs = start_search(other_visitor)
    client.post("/accounts/login/", {"username": "dave", "password": PASSWORD})
    assert SearchJob.objects.get(id=theirs).owner is None
    assert other_visitor.get(f"/api/v1/searches/{theirs}/").status_code == 200


def test_a_past_search_shows_which_results_are_the_same_picture(client, dave):
    """The history page of a search badges its verified copies "Same picture", and only those; a result whose
    evidence says it only looks alike is marked so."""
    from search.models import IndexedImage

    for n, title in enumerate(["original-crop", "lookalike", "other"], start=1):
        IndexedImage.objects.create(
            id=n, content_hash=str(n) * 64, file=f"img/{title}.png", title=title, status="ready"
        )
    job = SearchJob.objects.create(
        owner=dave,
        status="done",
        results=[
            {"image_id": 1, "score": 0.9, "match": "copy"},
            {
                "image_id": 2,
                "score": 0.93,
                "match": "similar",
                "evidence": {"verdict": "looks alike", "by": "signature"},
            },
            {"image_id": 3, "score": 0.8, "match": "similar", "evidence": None},
        ],
    )
    client.force_login(dave)
    page = client.get(f"/accounts/history/{job.id}/").content.decode()
    cards = page.split('<li class="card')[1:]
    assert len(cards) == 3 and cards[0].startswith(' is-copy">') and cards[1].startswith('">')
    assert "Same picture" in cards[0] and "original-crop" in cards[0] and "Same picture" not in cards[1]
    assert "Looks alike" in cards[1] and "Looks alike" not in cards[0] + cards[2] and "Same picture" not in cards[2]
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    page = client.get(f"/accounts/history/{job.id}/").content.decode()
    assert "同一张图片" in page and "外观相似" in page


# --- Passwords ---------------------------------------------------------------------------------------


def test_password_change(client, dave):
    """A signed-in user changes their password with the old one; the new one then works."""
    client.force_login(dave)
    response = client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": "brand new secret 42", "new_password2": "brand new secret 42"},
    )
    assert response["Location"] == "/accounts/password_change/done/"
    dave.refresh_from_db()
    assert dave.check_password("brand new secret 42")
    assert client.get("/accounts/").status_code == 200  # this browser stays signed in


def test_password_reset_flow(client, dave):
    """Reset by email: the mailed link sets a new password once, which then signs in."""
    response = client.post("/accounts/password_reset/", {"email": "dave@example.com"})
    assert response["Location"] == "/accounts/password_reset/done/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dave@example.com"]
    assert "Reset your password" in mail.outbox[0].subject
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body)[1]
    form_url = client.get(link)["Location"]
    response = client.post(form_url, {"new_password1": "reset secret 9000", "new_password2": "reset secret 9000"})
    assert response["Location"] == "/accounts/reset/done/"
    assert Client().login(username="dave", password="reset secret 9000")
    assert "no longer works" in client.get(link, follow=True).content.decode()


def test_password_reset_for_an_unknown_email_sends_nothing_and_says_the_same(client, dave):
    """The answer does not reveal whether an address has an account."""
    response = client.post("/accounts/password_reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/accounts/password_reset/done/" and mail.outbox == []


def test_auth_pages_use_the_site_templates(client):
    """Sign-in, sign-up and reset pages extend the site's layout, not the admin's."""
    for url in ("/accounts/login/", "/accounts/signup/", "/accounts/password_reset/"):
        response = client.get(url)
        assert response.status_code == 200
        assert "base.html" in [t.name for t in response.templates] and b"site-header" in response.content


# --- API token -----------------------------------------------------------------------------------------


def test_creating_a_token_shows_it_once_and_it_authenticates(client, dave):
    """The account page shows a new token once; API clients then act as the user with it, no CSRF needed."""
    client.force_login(dave)
    response = client.post("/accounts/token/")
    key = Token.objects.get(user=dave).key
    assert key in response.content.decode() and "no-store" in response["Cache-Control"]
    assert key not in client.get("/accounts/").content.decode()
    api = Client(enforce_csrf_checks=True)
    upload = SimpleUploadedFile("q.jpg", jpeg_bytes(Image.new("RGB", (32, 32), "red")), content_type="image/jpeg")
    response = api.post("/api/v1/searches/", {"image": upload}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 202
    assert SearchJob.objects.get(id=response.json()["id"]).owner == dave


def test_creating_a_token_again_replaces_the_old_one(client, dave):
    """One token per user: a new one revokes the old."""
    client.force_login(dave)
    client.post("/accounts/token/")
    old = Token.objects.get(user=dave).key
    client.post("/accounts/token/")
    new = Token.objects.get(user=dave).key
    assert new != old
    assert Client().get("/api/v1/searches/", HTTP_AUTHORIZATION=f"Token {old}").status_code == 401
    assert Client().get("/api/v1/searches/", HTTP_AUTHORIZATION=f"Token {new}").status_code == 200


def test_revoking_the_token_locks_clients_out(client, dave):
    """After revoking, the token is refused with 401 and the page says there is none."""
    client.force_login(dave)
    client.post("/accounts/token/")
    key = Token.objects.get(user=dave).key
    response = client.post("/accounts/token/revoke/", follow=True)
    assert "revoked" in response.content.decode() and "You have no API token." in response.content.decode()
    assert Client().get("/api/v1/favorites/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


def test_token_pages_only_accept_post(client, dave):
    """A link or image tag cannot create or revoke a token: GET is 405."""
    client.force_login(dave)
    assert client.get("/accounts/token/").status_code == 405
    assert client.get("/accounts/token/revoke/").status_code == 405
    assert not Token.objects.exists()


def test_a_bad_token_is_401_not_anonymous(client):
    """A wrong token is refused outright rather than treated as a visitor."""
    response = client.get("/api/v1/searches/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 401 and response.json()["detail"]


# --- Navigation ------------------------------------------------------------------------------------------


def test_the_nav_offers_sign_in_or_the_account_links(client, dave):
    """Signed out, the header offers sign in and sign up; signed in, the account links and a sign-out form."""
    page = client.get("/").content.decode()
    assert 'href="/accounts/login/?next=/"' in page and 'href="/accounts/signup/"' in page
    client.force_login(dave)
    page = client.get("/").content.decode()
    assert 'href="/accounts/"' in page and 'href="/favorites/"' in page and 'href="/accounts/history/"' in page
    assert re.search(
        r'<form method="post" action="/accounts/logout/"[^>]*>\s*<input type="hidden" name="csrfmiddlewaretoken"', page
    )
