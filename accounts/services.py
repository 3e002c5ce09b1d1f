"""Accounts' services: a visitor's searches kept on signing in, API tokens, a user's search history."""

from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.db import transaction
from rest_framework.authtoken.models import Token

from search.models import SearchJob

HISTORY_LENGTH = 100


def session_searches_claim(user, session_key):
    """Give the user the searches a visitor made in this browser session before signing in."""
    if not session_key:
        return 0
    return SearchJob.objects.filter(owner__isnull=True, session_key=session_key).update(owner=user)


def login_keeping_searches(request, user):
    """Sign in, then claim the visitor's searches by the session key read before login replaced it."""
    session_key = request.session.session_key
    auth_login(request, user)
    session_searches_claim(user, session_key)


def api_token_create(user):
    """A new API token for the user, replacing (and so revoking) any earlier one."""
    with transaction.atomic():
        # Lock the user row so a double-clicked button cannot create two tokens (one would fail).
        get_user_model().objects.select_for_update().get(pk=user.pk)
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_revoke(user):
    """Delete the user's API token; False when there was none."""
    return Token.objects.filter(user=user).delete()[0] > 0


def search_history(user):
    """The user's own recent searches, newest first."""
    return SearchJob.objects.filter(owner=user).select_related("source_image").order_by("-created_at")[:HISTORY_LENGTH]
