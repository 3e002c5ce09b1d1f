"""The favourites page: the signed-in user's saved images, filtered by tag, each removable."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from . import services


@login_required
def favorite_page(request):
    tag = request.GET.get("tag", "").strip().lower()
    return render(
        request,
        "favorites/list.html",
        {
            "favorites": services.favorite_list(request.user, tag=tag),
            "tags": services.favorite_tags(request.user),
            "tag": tag,
        },
    )


@login_required
@require_POST
def favorite_remove_page(request, favorite_id):
    """The remove button's form: delete, then back to the list with the same tag filter."""
    if not services.favorite_remove(request.user, favorite_id):
        raise Http404("You have no favourite with this id.")
    messages.success(request, _("Removed from your favourites."))
    tag = request.POST.get("tag", "").strip()
    return redirect(reverse("favorites") + (f"?{urlencode({'tag': tag})}" if tag else ""))
