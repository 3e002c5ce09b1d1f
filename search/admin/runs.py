"""The admin's reindex runs: start one, watch its progress bar, cancel it."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache

from imgsearch.backbones import MODELS

from .. import reindex
from ..models import ReindexRun


class ReindexStartForm(forms.ModelForm):
    arch = forms.ChoiceField(label=_("Model"), choices=[(name, name) for name in MODELS])
    weights = forms.CharField(
        required=False,
        label=_("Weights"),
        help_text=_(
            "A torchvision weights name (e.g. DEFAULT, IMAGENET1K_V2) or the path of a .pth file on the workers. "
            "Empty: the active or configured weights of this model, else DEFAULT."
        ),
    )

    class Meta:
        model = ReindexRun
        fields = ("arch", "weights", "drop_old")

    def clean_weights(self):
        weights = self.cleaned_data["weights"].strip()
        if weights.lower() == "random":
            raise forms.ValidationError(_("Random weights are for tests only; they cannot be chosen here."))
        return weights

    def clean(self):
        current = ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).first()
        if current:
            raise forms.ValidationError(
                _("Run %(id)s is still %(status)s; wait for it or cancel it first.")
                % {"id": current.id, "status": current.status}
            )
        return super().clean()


def staff_json(view):
    """Answer 403 in JSON (not a login page) to anyone but active staff with view permission."""

    def wrapped(model_admin, request, *args, **kwargs):
        user = request.user
        if not (user.is_active and user.is_staff and model_admin.has_view_permission(request)):
            return JsonResponse({"detail": "Staff only."}, status=403)
        return view(model_admin, request, *args, **kwargs)

    return wrapped


@admin.register(ReindexRun)
class ReindexRunAdmin(admin.ModelAdmin):
    form = ReindexStartForm
    list_display = ("id", "model_name", "status", "progress", "failed", "rate_display", "started_at", "finished_at")
    list_filter = ("status", "arch")
    # Status, counts, rate and time left are in the live progress box above these fields.
    readonly_fields = (
        "arch",
        "weights",
        "model_key",
        "overwrite",
        "drop_old",
        "chunk_size",
        "started_by",
        "created_at",
        "started_at",
        "finished_at",
        "error",
        "failure_list",
    )
    change_form_template = "admin/search/reindexrun/change_form.html"
    change_list_template = "admin/search/reindexrun/change_list.html"

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj else ("arch", "weights", "drop_old")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def has_change_permission(self, request, obj=None):
        return False  # a run is started, watched and cancelled; never edited

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (
            obj is None or obj.status not in ReindexRun.ACTIVE_STATUSES
        )

    def save_model(self, request, run, form, change):
        run.started_by = request.user
        reindex.reindex_start(run)

    def add_view(self, request, form_url="", extra_context=None):
        try:
            return super().add_view(request, form_url, extra_context)
        except reindex.ReindexError as exc:  # e.g. another run is under way
            self.message_user(request, str(exc), messages.ERROR)
            return redirect("admin:search_reindexrun_changelist")

    def changelist_view(self, request, extra_context=None):
        current = ReindexRun.objects.filter(status__in=ReindexRun.ACTIVE_STATUSES).first() or ReindexRun.objects.first()
        return super().changelist_view(request, {**(extra_context or {}), "current_run": current})

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/progress/", never_cache(self.progress_view), name="search_reindexrun_progress"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="search_reindexrun_cancel"),
            *super().get_urls(),
        ]

    @staff_json
    def progress_view(self, request, object_id):
        """The run's progress as JSON, polled by the progress bar."""
        run = ReindexRun.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if run is None:
            return JsonResponse({"detail": "No reindex run has this id."}, status=404)
        return JsonResponse(run_json(run))

    def cancel_view(self, request, object_id):
        """Cancel a queued or running run (POST)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = get_object_or_404(ReindexRun, pk=object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        if reindex.reindex_cancel(run.id):
            self.message_user(request, _("The run is cancelled; the active model stays as it was."))
        else:
            self.message_user(request, _("The run had already ended."), messages.WARNING)
        return redirect("admin:search_reindexrun_change", run.pk)

    @admin.display(description=_("model"))
    def model_name(self, run):
        return run.model_key or f"{run.arch} ({run.weights})"

    @admin.display(description=_("progress"))
    def progress(self, run):
        return f"{run.processed} / {run.total}"

    @admin.display(description=_("rate (images/s)"))
    def rate_display(self, run):
        return f"{run.rate:.1f}" if run.rate else "-"

    @admin.display(description=_("failures"))
    def failure_list(self, run):
        if not run.failures:
            return "-"
        url = reverse("admin:search_indexedimage_changelist")
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}?id={}">{}</a>: {}</li>',
                ((url, f["image_id"], f["image_id"], f["reason"]) for f in run.failures),
            ),
        )


def run_json(run):
    """What the progress bar shows."""
    return {
        "id": run.id,
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "model": run.model_key or run.arch,
        "total": run.total,
        "done": run.done,
        "failed": run.failed,
        "processed": run.processed,
        "percent": round(100 * run.processed / run.total, 1) if run.total else (100.0 if run.finished_at else 0.0),
        "rate": round(run.rate, 2) if run.rate else None,
        "eta_seconds": round(run.eta_seconds) if run.eta_seconds is not None else None,
        "failures": run.failures[:20],
        "error": run.error or None,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "active": run.status in ReindexRun.ACTIVE_STATUSES,
    }
