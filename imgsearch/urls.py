"""URL routes: the pages, the API under /api/v1/, media in development."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.i18n import JavaScriptCatalog
from django.views.static import serve

urlpatterns = [
    path("", include("search.urls")),
    path("", include("favorites.urls")),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the header's language switch
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
]


def media(request, path):
    """A file under MEDIA_ROOT, read on each request so tests and deployments can move it."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)


# API clients get JSON errors, pages get Django's HTML ones.
handler404 = "search.views.not_found"
handler500 = "search.views.server_error"

if settings.SERVE_MEDIA:
    # Only MEDIA_ROOT (indexed images and thumbnails); uploaded queries live elsewhere.
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", media)]
