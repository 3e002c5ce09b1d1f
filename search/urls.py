from django.urls import path

from . import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/searches/", api.search_create, name="search-create"),
    path("api/v1/searches/<uuid:job_id>/", api.search_detail, name="search-detail"),
    path("api/v1/tags/", api.tag_list, name="tag-list"),
]
