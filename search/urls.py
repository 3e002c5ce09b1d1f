from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/searches/", api.search_create, name="search-create"),
    path("api/v1/searches/<uuid:job_id>/", api.search_detail, name="search-detail"),
    path("api/v1/searches/<uuid:job_id>/image/", api.search_query_image, name="search-query-image"),
    path("api/v1/tags/", api.tag_list, name="tag-list"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
