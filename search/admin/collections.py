"""The admin's collections: a server folder (scanned in the background) and uploads of images or zips."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import collections
from ..models import Collection, IndexedImage


class CollectionForm(forms.ModelForm):
    class Meta:
        model = Collection
        fields = ("name", "source_path", "rescan", "tags_from_folders")

    def clean_source_path(self):
        value = self.cleaned_data["source_path"].strip()
        if not value:
            return ""
        try:
            return collections.folder_check(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        if data.get("rescan") and not data.get("source_path") and "source_path" not in self.errors:
            self.add_error("rescan", _("Only a collection with a folder can be rescanned."))
        return data


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented recipe)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*,.zip"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else [data] if data else []
        if not files:
            raise forms.ValidationError(_("Choose at least one image or zip file."))
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


class UploadForm(forms.Form):
    files = MultipleFileField(
        label=_("Images or zip archives"),
        help_text=_("Zip archives are unpacked; their folder names become tags if the collection says so."),
    )

    def clean_files(self):
        for upload in self.cleaned_data["files"]:
            if upload.name.lower().endswith(".zip"):
                try:
                    collections.archive_check(upload)
                except collections.ArchiveRejected as exc:
                    raise forms.ValidationError(f"{upload.name}: {exc}") from None
                upload.seek(0)
        return self.cleaned_data["files"]


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    form = CollectionForm
    list_display = ("name", "source_path", "rescan", "image_count", "failed_count", "last_indexed", "scanned_at")
    search_fields = ("name", "source_path")
    readonly_fields = ("scanned_at", "scan_summary", "created_at")
    change_form_template = "admin/search/collection/change_form.html"

    class Media:
        css = {"all": ["admin_index/admin.css"]}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                images_n=Count("images"),
                failed_n=Count("images", filter=Q(images__status=IndexedImage.Status.FAILED)),
                last_indexed_at=Max("images__indexed_at"),
            )
        )

    @admin.display(description=_("images"), ordering="images_n")
    def image_count(self, collection):
        return collection.images_n

    @admin.display(description=_("failed"), ordering="failed_n")
    def failed_count(self, collection):
        return collection.failed_n

    @admin.display(description=_("last indexed"), ordering="last_indexed_at")
    def last_indexed(self, collection):
        return collection.last_indexed_at

    def save_model(self, request, collection, form, change):
        super().save_model(request, collection, form, change)
        if collection.source_path and "source_path" in form.changed_data:
            collections.collection_scan_enqueue(collection)
            self.message_user(
                request, _("The folder is being scanned in the background; new images appear as they are embedded.")
            )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/upload/", wrap(self.upload_view), name="search_collection_upload"),
            path("<path:object_id>/scan/", wrap(self.scan_view), name="search_collection_scan"),
            *super().get_urls(),
        ]

    def upload_view(self, request, object_id):
        """Add files or zips to a collection: stored now, indexed in the background."""
        collection = get_object_or_404(Collection, pk=object_id)
        if not self.has_change_permission(request, collection):
            raise PermissionDenied
        form = UploadForm(request.POST, request.FILES) if request.method == "POST" else UploadForm()
        if form.is_bound and form.is_valid():
            collections.upload_store(collection, form.cleaned_data["files"])
            count = len(form.cleaned_data["files"])
            self.message_user(
                request,
                ngettext(
                    "%d file received; it is being indexed in the background.",
                    "%d files received; they are being indexed in the background.",
                    count,
                )
                % count,
            )
            return redirect("admin:search_collection_change", collection.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": collection,
            "form": form,
            "title": _("Add images to %s") % collection,
        }
        return TemplateResponse(request, "admin/search/collection/upload.html", context)

    def scan_view(self, request, object_id):
        """Scan the collection's folder now, in the background."""
        collection = get_object_or_404(Collection, pk=object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request, collection):
            raise PermissionDenied
        if collection.source_path:
            collections.collection_scan_enqueue(collection)
            self.message_user(request, _("The folder is being scanned in the background."))
        else:
            self.message_user(request, _("This collection has no folder to scan."), messages.WARNING)
        return redirect("admin:search_collection_change", collection.pk)
