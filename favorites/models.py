"""A user's saved images."""

from django.conf import settings
from django.db import models


class Favorite(models.Model):
    """An indexed image a user saved, once per image, with an optional note."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="favorites")
    image = models.ForeignKey("search.IndexedImage", on_delete=models.CASCADE, related_name="favorites")
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "image"], name="one_favorite_per_image")]

    def __str__(self):
        return f"{self.user} ♥ {self.image}"
