from django.urls import path

from . import api, views

urlpatterns = [
    path("favorites/", views.favorite_page, name="favorites"),
    path("favorites/<int:favorite_id>/remove/", views.favorite_remove_page, name="favorite-remove"),
    path("api/v1/favorites/", api.favorite_collection, name="favorite-list"),
    path("api/v1/favorites/<int:favorite_id>/", api.favorite_detail, name="favorite-detail"),
]
