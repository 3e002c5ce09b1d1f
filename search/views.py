"""Server-rendered pages."""

import uuid

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from . import indexing
from .models import IndexedImage

SAMPLES = 6  # images of the index offered on the fresh page, to try a search without a file at hand


def home(request):
    """The search page; `?job=<id>` shows that search's results again (the page fetches them)."""
    tags = indexing.tag_counts()
    ready = IndexedImage.objects.filter(status=IndexedImage.Status.READY)
    return render(
        request,
        "search/home.html",
        {
            "index_count": ready.count(),
            "samples": sample_images(ready),
            "tags": tags,
            "tag_names": [t["tag"] for t in tags],
            "max_upload_mb": settings.IMGSEARCH_MAX_UPLOAD_BYTES // (1024 * 1024),
            "max_upload_bytes": settings.IMGSEARCH_MAX_UPLOAD_BYTES,
            "default_k": settings.IMGSEARCH_DEFAULT_K,
            "max_k": settings.IMGSEARCH_MAX_K,
            "job_id": _uuid_or_none(request.GET.get("job")),
        },
    )


def sample_images(ready, limit=SAMPLES):
    """A few recent images with thumbnails, one per first tag where the index has several, for variety."""
    recent = list(ready.exclude(thumbnail="").order_by("-id")[: limit * 20])
    picked, seen = [], set()
    for image in recent:
        first_tag = (image.tags or [""])[0]
        if first_tag not in seen:
            seen.add(first_tag)
            picked.append(image)
    picked += [image for image in recent if image not in picked]
    return picked[:limit]


def _uuid_or_none(value):
    try:
        return uuid.UUID(value) if value else None
    except ValueError:  # a mangled link shows the fresh page, not an error
        return None


def healthz(request):
    """Liveness for load balancers: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found(request, exception=None):
    """404: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):
    """500: JSON under /api/ (never a stack trace), Django's page elsewhere; 503 when the database is down."""
    import sys

    from imgsearch.middleware import DATABASE_DOWN, unavailable

    if isinstance(sys.exc_info()[1], DATABASE_DOWN):  # raised outside a view, e.g. loading the session
        return unavailable(request)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal error; please try again."}, status=500)
    from django.views.defaults import server_error as page_server_error

    return page_server_error(request)
