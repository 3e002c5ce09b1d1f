"""Server-rendered pages."""

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from .models import IndexedImage


def home(request):
    return render(request, "search/home.html", {
        "index_count": IndexedImage.objects.filter(status=IndexedImage.Status.READY).count(),
        "max_upload_mb": settings.IMGSEARCH_MAX_UPLOAD_BYTES // (1024 * 1024),
        "default_k": settings.IMGSEARCH_DEFAULT_K,
    })


def healthz(request):
    """Liveness for load balancers: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
