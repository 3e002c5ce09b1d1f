"""The admin's duplicate finder: groups of the same picture side by side, a run's progress bar, and a person's two
answers to a group (keep one, or not the same picture). The rows and their rules are search/duplicates.py's."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache

from .. import duplicates
from ..models import Collection, DuplicateRun, IndexedImage
from .runs import staff_json

GROUPS_PER_PAGE = 25
FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WebP", "bmp": "BMP", "tif": "TIFF"}


@admin.register(DuplicateRun)
class DuplicateRunAdmin(admin.ModelAdmin):
    """Its list is the duplicate finder's page; a run itself is only watched."""

    readonly_fields = (
        "collection",
        "only_new",
        "status",
        "model_key",
        "total",
        "done",
        "failed",
        "pairs_found",
        "error",
        "started_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False  # started from the page's own form

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (
            obj is None or obj.status not in DuplicateRun.ACTIVE_STATUSES
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.groups_view), name="search_duplicaterun_changelist"),
            path("start/", wrap(self.start_view), name="search_duplicaterun_start"),
            path("answer/", wrap(self.answer_view), name="search_duplicaterun_answer"),
            path("<path:object_id>/progress/", never_cache(self.progress_view), name="search_duplicaterun_progress"),
            # the default change list is replaced by the groups
            *(url for url in super().get_urls() if url.name != "search_duplicaterun_changelist"),
        ]

    def groups_view(self, request):
        """The groups of the index or of one collection (?collection=), with the latest run's progress."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        collections = list(Collection.objects.order_by("name"))
        collection = next((c for c in collections if str(c.id) == request.GET.get("collection", "")), None)
        scope = collection.id if collection else None
        groups = duplicates.duplicate_groups(scope)
        page = Paginator(groups, GROUPS_PER_PAGE).get_page(request.GET.get("page"))
        run = DuplicateRun.objects.filter(status__in=DuplicateRun.ACTIVE_STATUSES).first()
        run = run or DuplicateRun.objects.filter(collection=collection).first()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Duplicate finder"),
            "collections": collections,
            "collection": collection,
            "groups": _groups_shown(page.object_list, first_number=page.start_index()),
            "page": page,
            "group_count": len(groups),
            "run": run,
            "run_status": run.get_status_display() if run else "",
            "new_images": duplicates.new_images_count(scope),
            "can_start": request.user.has_perm("search.add_duplicaterun"),
            "can_keep": request.user.has_perm("search.delete_indexedimage"),
            "can_split": request.user.has_perm("search.add_distinctpair"),
        }
        return TemplateResponse(request, "admin/search/duplicaterun/groups.html", context)

    def start_view(self, request):
        """Start a run over the index or one collection (POST)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("search.add_duplicaterun"):
            raise PermissionDenied
        value = request.POST.get("collection", "")
        collection = Collection.objects.filter(id=value).first() if value.isdigit() else None
        if value and collection is None:
            self.message_user(request, _("There is no collection %(id)s.") % {"id": value}, messages.ERROR)
            return redirect("admin:search_duplicaterun_changelist")
        try:
            duplicates.duplicate_run_start(
                collection=collection, only_new=bool(request.POST.get("only_new")), user=request.user
            )
        except duplicates.DuplicateError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, _("The duplicate finder is running; its progress is shown below."))
        return _back(collection.id if collection else None)

    def answer_view(self, request):
        """A person's answer to a group (POST): "keep" one image, or it is "not the same" picture as the rest."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        answer, image, scope = request.POST.get("answer"), request.POST.get("image"), request.POST.get("collection")
        shown = [i for i in request.POST.get("group", "").split(",") if i]
        permission = {"keep": "search.delete_indexedimage", "not_same": "search.add_distinctpair"}.get(answer)
        if permission is None:
            self.message_user(request, _("Unknown answer; choose keep or not the same picture."), messages.ERROR)
            return _back(scope)
        if not request.user.has_perm(permission):
            raise PermissionDenied
        try:
            if answer == "keep":
                removed = duplicates.duplicates_keep(image, shown, collection=scope)
                message = ngettext(
                    "Image %(id)s kept; %(count)d other image left the index.",
                    "Image %(id)s kept; %(count)d other images left the index.",
                    removed,
                ) % {"id": image, "count": removed}
            else:
                duplicates.duplicates_not_same(image, shown, collection=scope, user=request.user)
                message = _("Image %(id)s is not the same picture as the others: it will not be proposed again.") % {
                    "id": image
                }
        except duplicates.DuplicateError as exc:  # the page again, saying why, with a 400
            self.message_user(request, str(exc), messages.ERROR)
            response = self.groups_view(request)
            response.status_code = 400
            return response
        self.message_user(request, message)
        return _back(scope)

    @staff_json
    def progress_view(self, request, object_id):
        """The run's progress as JSON, polled by the progress bar."""
        run = DuplicateRun.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if run is None:
            return JsonResponse({"detail": "No duplicate finder run has this id."}, status=404)
        return JsonResponse(run_json(run))


def _back(scope):
    """Back to the page, of the collection where one was shown."""
    url = reverse("admin:search_duplicaterun_changelist")
    if scope and str(scope).isdigit():
        url += "?" + urlencode({"collection": scope})
    return redirect(url)


def _groups_shown(groups, *, first_number):
    """Each group's images with what a person compares: size in pixels and bytes, format, the largest marked."""
    ids = [i for g in groups for i in g]
    images = IndexedImage.objects.filter(id__in=ids).select_related("collection").in_bulk()
    shown = []
    for number, group in enumerate(groups, start=first_number):
        rows = [_image_facts(images[i]) for i in group if i in images]
        if len(rows) < 2:
            continue
        rows.sort(key=lambda r: (-r["pixels"], -(r["bytes"] or 0), r["image"].id))
        rows[0]["largest"] = True
        shown.append({"number": number, "images": rows, "ids": ",".join(str(r["image"].id) for r in rows)})
    return shown


def _image_facts(image):
    size = image.source_size
    if size is None and image.file:
        try:
            size = image.file.size
        except OSError:
            size = None
    extension = image.file.name.rsplit(".", 1)[-1].lower() if image.file and "." in image.file.name else ""
    return {
        "image": image,
        "url": (image.thumbnail or image.file).url if (image.thumbnail or image.file) else "",
        "pixels": (image.width or 0) * (image.height or 0),
        "bytes": size,
        "format": FORMATS.get(extension, extension.upper() or "?"),
        "largest": False,
    }


def run_json(run):
    """What the progress bar shows (the fields of the reindex runs' bar, and the pairs found)."""
    return {
        "id": run.id,
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "total": run.total,
        "done": run.done,
        "failed": run.failed,
        "processed": run.processed,
        "pairs": run.pairs_found,
        "percent": round(100 * run.processed / run.total, 1) if run.total else (100.0 if run.finished_at else 0.0),
        "rate": round(run.rate, 2) if run.rate else None,
        "error": run.error or None,
        "active": run.status in DuplicateRun.ACTIVE_STATUSES,
    }
