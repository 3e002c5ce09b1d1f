"""Favourites: every query starts from the user's own rows, so nobody reaches anyone else's."""

from collections import Counter

from django.db.models import Q

from search.models import IndexedImage

from .models import Favorite


def favorite_list(user, *, tag=""):
    """The user's favourites, newest first; with a tag, only images carrying it (given or automatic)."""
    favorites = Favorite.objects.filter(user=user).select_related("image")
    tag = tag.strip().lower()
    if tag:
        favorites = favorites.filter(Q(image__user_tags__contains=[tag]) | Q(image__auto_tags__contains=[tag]))
    return favorites


def favorite_add(user, *, image, note=""):
    """Save an image for the user; saving it again returns the existing favourite. Returns (favorite, created)."""
    return Favorite.objects.get_or_create(user=user, image=image, defaults={"note": note})


def favorite_remove(user, favorite_id):
    """Delete one of the user's favourites; False when the user has none with this id."""
    deleted, _ = Favorite.objects.filter(user=user, id=favorite_id).delete()
    return deleted > 0


def favorite_tags(user):
    """The tags on the user's favourite images with how many carry each, most common first."""
    counts = Counter(tag for favorite in favorite_list(user) for tag in favorite.image.tags)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def ready_image(image_id):
    """The ready indexed image with this id, or None."""
    return IndexedImage.objects.filter(id=image_id, status=IndexedImage.Status.READY).first()
