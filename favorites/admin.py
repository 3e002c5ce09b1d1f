from django.contrib import admin

from .models import Favorite


@admin.register(Favorite)
class FavoriteAdmin(admin.ModelAdmin):
    list_display = ("user", "image", "note", "created_at")
    list_filter = ("created_at",)
    search_fields = ("user__username", "image__title", "note")
    raw_id_fields = ("user", "image")
    date_hierarchy = "created_at"
