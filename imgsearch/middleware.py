"""When PostgreSQL is down, answer 503 with a clear page (JSON under /api/) instead of a 500."""

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

DATABASE_DOWN = (OperationalError, InterfaceError)
RETRY_AFTER = "10"


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
