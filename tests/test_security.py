"""Security: search rate limits (429 + Retry-After), CSRF for browsers, production settings (check --deploy)."""

import os
import secrets
import subprocess
import sys

import pytest
import redis
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image
from rest_framework.authtoken.models import Token

from favorites.models import Favorite
from search.models import IndexedImage, SearchJob

from .conftest import ROOT, jpeg_bytes

SEARCHES = "/api/v1/searches/"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("heidi", "heidi@example.com", "a long enough secret")


def search(client, **extra):
    upload = SimpleUploadedFile("q.jpg", jpeg_bytes(Image.new("RGB", (16, 16), "red")), content_type="image/jpeg")
    return client.post(SEARCHES, {"image": upload}, **extra)


# --- Rate limits -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_searches_are_limited_per_ip_with_429_and_retry_after(client, settings):
    """Past the anonymous rate a client gets 429 with Retry-After and a readable detail; other IPs are not affected."""
    settings.IMGSEARCH_SEARCH_RATE_ANON = "2/min"
    assert [search(client).status_code for _ in range(2)] == [202, 202]
    response = search(client)
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"]
    assert search(Client(REMOTE_ADDR="203.0.113.9")).status_code == 202
    assert SearchJob.objects.count() == 3


@pytest.mark.django_db
def test_signed_in_searches_are_limited_per_user_not_per_ip(user, django_user_model, settings):
    """Each user has their own allowance at the user rate, wherever they come from."""
    settings.IMGSEARCH_SEARCH_RATE_USER, settings.IMGSEARCH_SEARCH_RATE_ANON = "3/min", "1/min"
    client = Client()
    client.force_login(user)
    assert [search(client).status_code for _ in range(4)] == [202, 202, 202, 429]
    assert search(client, REMOTE_ADDR="198.51.100.7").status_code == 429
    other = Client()
    other.force_login(django_user_model.objects.create_user("ivan", password="another long secret"))
    assert search(other).status_code == 202


@pytest.mark.django_db
def test_token_clients_share_their_users_allowance(user, settings):
    """A token and a browser session of the same user count against one limit."""
    settings.IMGSEARCH_SEARCH_RATE_USER = "2/min"
    browser = Client()
    browser.force_login(user)
    key = Token.objects.create(user=user).key
    assert search(browser).status_code == 202
    assert search(Client(), HTTP_AUTHORIZATION=f"Token {key}").status_code == 202
    assert search(browser).status_code == 429


@pytest.mark.django_db
def test_following_a_search_and_reading_history_are_not_limited(user, settings):
    """Only starting searches counts: polling a job and listing history go on past the limit."""
    settings.IMGSEARCH_SEARCH_RATE_USER = "1/min"
    client = Client()
    client.force_login(user)
    url = search(client).json()["url"]
    assert search(client).status_code == 429
    assert all(client.get(url).status_code == 200 for _ in range(3))
    assert all(client.get(SEARCHES).status_code == 200 for _ in range(3))


@pytest.mark.django_db
def test_rate_limit_counts_are_kept_in_redis_for_every_web_process(client, settings):
    """The counts are in the shared Redis (not one process's memory), so every gunicorn worker enforces one limit."""
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    search(client)
    keys = redis.Redis.from_url(django_settings.REDIS_URL).keys(f"{settings.CACHES['default']['KEY_PREFIX']}:*")
    assert any(b"throttle_search_anon_127.0.0.1" in key for key in keys)


# --- CSRF --------------------------------------------------------------------------------------------


@pytest.fixture
def browser(user):
    """A signed-in browser whose requests carry the session cookie but no CSRF token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_signed_in_browser_posts_without_csrf_token_are_refused(browser, user):
    """Search, favourite save and favourite delete with only the session cookie are 403, and change nothing."""
    image = IndexedImage.objects.create(content_hash="e" * 64, file="x.png", title="x", status="ready")
    favorite = Favorite.objects.create(user=user, image=image)
    for response in (
        search(browser),
        browser.post("/api/v1/favorites/", {"image_id": image.id}),
        browser.delete(f"/api/v1/favorites/{favorite.id}/"),
    ):
        assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not SearchJob.objects.exists() and Favorite.objects.filter(id=favorite.id).exists()


@pytest.mark.django_db
def test_the_same_posts_with_the_csrf_token_succeed(browser, user):
    """With the token from the page (header X-CSRFToken, as the page scripts send it) the API works."""
    browser.get("/")
    token = browser.cookies["csrftoken"].value
    image = IndexedImage.objects.create(content_hash="e" * 64, file="x.png", title="x", status="ready")
    assert search(browser, HTTP_X_CSRFTOKEN=token).status_code == 202
    created = browser.post("/api/v1/favorites/", {"image_id": image.id}, HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201
    assert browser.delete(f"/api/v1/favorites/{created.json()['id']}/", HTTP_X_CSRFTOKEN=token).status_code == 204


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/accounts/logout/",
        "/accounts/token/",
        "/accounts/token/revoke/",
        "/accounts/password_change/",
        "/favorites/1/remove/",
    ],
)
def test_state_changing_pages_refuse_posts_without_csrf_token(browser, user, url):
    """Every form that changes something checks the CSRF token."""
    Token.objects.create(user=user)
    assert browser.post(url).status_code == 403
    assert Token.objects.filter(user=user).exists() and browser.get("/accounts/").status_code == 200


@pytest.mark.django_db
def test_sign_in_and_sign_up_forms_check_csrf(user):
    """Login CSRF: a forged sign-in or sign-up form is refused."""
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/login/", {"username": "heidi", "password": "a long enough secret"}).status_code == 403
    assert client.post("/accounts/signup/", {"username": "x"}).status_code == 403


# --- Production settings -------------------------------------------------------------------------------


def run_manage(*args, **env):
    full = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "imgsearch.example",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_with_production_settings():
    """`manage.py check --deploy` finds nothing to warn about with DEBUG off and a real secret key."""
    proc = run_manage("check", "--deploy", "--fail-level", "WARNING")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


PRINT = (
    "shell",
    "--no-imports",
    "-c",
    (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)"
    ),
)


def test_production_security_settings_follow_the_environment():
    """HTTPS redirect and HSTS can be tuned, and the proxy header is trusted only when asked for."""
    assert run_manage(*PRINT).stdout.split() == ["True", "True", "True", "31536000", "None"]
    tuned = run_manage(*PRINT, SECURE_SSL_REDIRECT="0", SECURE_HSTS_SECONDS="3600", SECURE_PROXY_SSL_HEADER="1")
    assert tuned.stdout.strip() == "False True True 3600 ('HTTP_X_FORWARDED_PROTO', 'https')"


def test_bad_rate_settings_stop_start_up_with_a_clear_message():
    """A rate that DRF could not parse is named at start-up."""
    proc = run_manage("check", IMGSEARCH_SEARCH_RATE_ANON="thirty")
    assert proc.returncode != 0 and "IMGSEARCH_SEARCH_RATE_ANON='thirty' is not a rate" in proc.stderr
