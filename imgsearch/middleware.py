"""When PostgreSQL is down, answer 503 with a clear page (JSON under /api/) instead of a 500; read what an early
answer left of a request's body before it goes out."""

import time

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

DATABASE_DOWN = (OperationalError, InterfaceError)
RETRY_AFTER = "10"
# An unread body is read (and dropped) for at most this long before the answer goes out anyway.
DRAIN_SECONDS = 30


def unavailable(request):
    """The 503 answer; renders nothing that needs the database (no user, no session)."""
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": "The service is briefly unavailable; please try again shortly."}, status=503)
    else:
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = RETRY_AFTER
    return response


class DatabaseUnavailableMiddleware:
    """Turns a view's database connection error into a 503; Django reconnects by itself later."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return unavailable(request) if isinstance(exception, DATABASE_DOWN) else None


class UnreadBodyMiddleware:
    """Reads, and drops, what is left of a request's body before its answer goes out.

    An answer given before the body is read (413 for an upload over the limit, 429, 503) would otherwise reach a
    client that sends its whole body before reading, and asks the connection to close (Python's urllib), as a broken
    pipe: the server closes while it is still sending. curl and requests keep the connection, so the server reads
    the rest itself. Bounded in time (DRAIN_SECONDS); a body that was read already costs nothing here.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        body_drain(request)
        return response


def body_drain(request, seconds=DRAIN_SECONDS):
    """Read what is left of the request's body, within `seconds`; never raises."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and request.read(64 * 1024):
            pass
    except Exception:  # the client went away, or the body is unreadable: nothing more to do for it
        pass
