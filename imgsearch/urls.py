"""URL routes: the pages, the API under /api/v1/, media in development."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

urlpatterns = [
    path("", include("search.urls")),
    path("admin/", admin.site.urls),
]

if settings.SERVE_MEDIA:
    # Only MEDIA_ROOT (indexed images and thumbnails); uploaded queries live elsewhere.
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]
