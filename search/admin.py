"""Index management for staff: images, collections (folders and uploads), model versions and reindex runs."""

from django import forms
from django.contrib import admin, messages
from django.contrib.postgres.aggregates import ArrayAgg
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, Max, OuterRef, Q, Subquery
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache

from workers.registry import MODELS

from . import collections, copywords, indexing, knn, reindex
from .models import Collection, Embedding, IndexedImage, LocalFeatures, ModelVersion, ReindexRun, VisualWords

# --- Indexed images ---------------------------------------------------------------------------------


class AutoTagFilter(admin.SimpleListFilter):
    title = _("automatic tag")
    parameter_name = "auto_tag"

    def lookups(self, request, model_admin):
        tags = IndexedImage.objects.values_list("auto_tags", flat=True).distinct()
        return [(tag, tag) for tag in sorted({t for row in tags for t in row})]

    def queryset(self, request, queryset):
        return queryset.filter(auto_tags__contains=[self.value()]) if self.value() else queryset


@admin.register(IndexedImage)
class IndexedImageAdmin(admin.ModelAdmin):
    list_display = ("preview", "title", "tag_list", "collection", "status", "model_list", "indexed_at", "short_error")
    list_display_links = ("preview", "title")
    list_filter = ("status", "collection", AutoTagFilter)
    list_select_related = ("collection",)
    search_fields = ("title", "source_path")
    search_help_text = _("Title, source path, or an exact tag.")
    actions = ("reembed", "retag", "delete_selected")
    fields = ("preview_large", "title", "user_tags", "auto_tags", "auto_label", "auto_score", "collection", "status",
              "error", "model_list", "source_path", "file", "content_hash", "width", "height", "created_at", "indexed_at")
    readonly_fields = ("preview_large", "auto_tags", "auto_label", "auto_score", "status", "error", "model_list",
                       "source_path", "file", "content_hash", "width", "height", "created_at", "indexed_at")
    list_per_page = 50

    class Media:
        css = {"all": ["admin_index/admin.css"]}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(model_keys=ArrayAgg("embeddings__model_key", distinct=True, default=[]))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        text = Q(title__icontains=term) | Q(source_path__icontains=term)
        tagged = Q(user_tags__contains=[term.lower()]) | Q(auto_tags__contains=[term.lower()])
        return queryset.filter(text | tagged), False

    def has_add_permission(self, request):
        return False  # images arrive through collections (folders and uploads) or the index_images command

    @admin.display(description=_("preview"))
    def preview(self, image):
        if not image.thumbnail:
            return "-"
        return format_html('<img src="{}" alt="" loading="lazy" class="index-thumb">', image.thumbnail.url)

    @admin.display(description=_("preview"))
    def preview_large(self, image):
        url = image.thumbnail.url if image.thumbnail else image.file.url
        return format_html('<a href="{}"><img src="{}" alt="" class="index-preview"></a>', image.file.url, url)

    @admin.display(description=_("tags"))
    def tag_list(self, image):
        given = format_html_join(" ", '<span class="index-tag">{}</span>', ((t,) for t in image.user_tags))
        auto = format_html_join(" ", '<span class="index-tag index-tag-auto">{}</span>', ((t,) for t in image.auto_tags))
        return format_html("{} {}", given, auto)

    @admin.display(description=_("models"))
    def model_list(self, image):
        keys = getattr(image, "model_keys", None)
        if keys is None:
            keys = sorted(set(image.embeddings.values_list("model_key", flat=True)))
        return ", ".join(k for k in keys if k and not knn.is_copy_key(k)) or "-"  # copy-space vectors are a model's own

    @admin.display(description=_("last error"))
    def short_error(self, image):
        return (image.error[:80] + "…") if len(image.error) > 80 else image.error

    @admin.action(description=_("Re-embed selected images with the active model"), permissions=["change"])
    def reembed(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        reindex.images_reembed(ids)
        self.message_user(request, ngettext("%d image queued for embedding.", "%d images queued for embedding.", len(ids)) % len(ids))

    @admin.action(description=_("Re-tag selected images with the classifier"), permissions=["change"])
    def retag(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        reindex.images_retag(ids)
        self.message_user(request, ngettext("%d image queued for re-tagging.", "%d images queued for re-tagging.", len(ids)) % len(ids))

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            function, name, _description = actions["delete_selected"]
            actions["delete_selected"] = (function, name, _("Remove selected images from the index"))
        return actions

    def delete_model(self, request, image):
        indexing.image_remove(image)  # the stored file and thumbnail go too

    def delete_queryset(self, request, queryset):
        for image in queryset:
            indexing.image_remove(image)


# --- Collections ------------------------------------------------------------------------------------


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
    files = MultipleFileField(label=_("Images or zip archives"),
                              help_text=_("Zip archives are unpacked; their folder names become tags if the collection says so."))

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
        return super().get_queryset(request).annotate(
            images_n=Count("images"),
            failed_n=Count("images", filter=Q(images__status=IndexedImage.Status.FAILED)),
            last_indexed_at=Max("images__indexed_at"),
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
            self.message_user(request, _("The folder is being scanned in the background; new images appear as they are embedded."))

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
            self.message_user(request, ngettext(
                "%d file received; it is being indexed in the background.",
                "%d files received; they are being indexed in the background.", count) % count)
            return redirect("admin:search_collection_change", collection.pk)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "original": collection,
                   "form": form, "title": _("Add images to %s") % collection}
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


# --- Visual words ----------------------------------------------------------------------------------


@admin.register(VisualWords)
class VisualWordsAdmin(admin.ModelAdmin):
    """The vocabulary copy search finds candidates with (search/copywords.py). Learned by the beat once the index is
    large enough, and again as it grows; deleting it makes the beat learn a new one from the index as it is now."""

    list_display = ("id", "learned_from", "images_with_words", "next_learning", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("words")

    @admin.display(description=_("learned from"))
    def learned_from(self, vocabulary):
        return _("%(words)s words, the keypoints of %(images)s images") % {
            "words": vocabulary.info.get("words", "?"), "images": vocabulary.info.get("images", "?")}

    @admin.display(description=_("images with words"))
    def images_with_words(self, vocabulary):
        return LocalFeatures.objects.filter(words_vocabulary=vocabulary).exclude(words=None).count()

    @admin.display(description=_("next learning"))
    def next_learning(self, vocabulary):
        """Whether and when the beat learns the words again (copywords.words_due), for the vocabulary in use."""
        return copywords.words_due()[1]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- Model versions ---------------------------------------------------------------------------------


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("key", "arch", "weights", "dim", "projection_summary", "active", "embedding_count", "created_at")
    list_filter = ("active", "arch")
    actions = ("learn_projection", "drop_embeddings")

    def get_queryset(self, request):
        count = Embedding.objects.filter(model_key=OuterRef("key")).order_by().values("model_key").annotate(n=Count("id")).values("n")
        queryset = super().get_queryset(request).defer("projection")  # megabytes each, never shown
        return queryset.annotate(embeddings_n=Subquery(count, output_field=IntegerField()))

    @admin.display(description=_("embeddings"), ordering="embeddings_n")
    def embedding_count(self, version):
        return version.embeddings_n or 0

    @admin.display(description=_("projection"))
    def projection_summary(self, version):
        info = version.projection_info
        if not version.base_key or not info:
            return "-"
        tags = ngettext("%(dims)d from %(tags)d tag", "%(dims)d from %(tags)d tags", len(info["tags"])) % {
            "dims": info["lda_dims"], "tags": len(info["tags"])} if info["lda_dims"] else _("no tags")
        summary = _("%(pca)d + %(tags)s, learned from %(images)d images") % {"pca": info["pca_dims"], "tags": tags, "images": info["images"]}
        if info.get("copy_dims"):
            summary += _("; a copy space from %(pairs)d edited copies") % {"pairs": info["copy_pairs"]}
        return summary

    def has_add_permission(self, request):
        return False  # workers register the models they load

    def has_change_permission(self, request, obj=None):
        return False  # a model becomes active by a reindex run

    def has_delete_permission(self, request, obj=None):
        # Only through drop_embeddings, which takes the vectors along and spares the active model.
        return obj is None and super().has_delete_permission(request)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description=_("Learn a projection for the active model from the index now"))
    def learn_projection(self, request, queryset):
        sent, message = reindex.projection_request()
        self.message_user(request, message, messages.SUCCESS if sent else messages.WARNING)

    @admin.action(description=_("Drop the embeddings of the selected inactive models"), permissions=["delete"])
    def drop_embeddings(self, request, queryset):
        dropped, embeddings = reindex.model_versions_drop(queryset)
        kept = queryset.count()  # what is left: the active model, or one a run is building
        self.message_user(request, _("Dropped %(embeddings)d embeddings of %(models)d models.") % {"embeddings": embeddings, "models": dropped})
        if kept:
            self.message_user(request, _("The active model, and any model a run is building, were kept."), messages.WARNING)


# --- Reindex runs -----------------------------------------------------------------------------------


class ReindexStartForm(forms.ModelForm):
    arch = forms.ChoiceField(label=_("Model"), choices=[(name, name) for name in MODELS])
    weights = forms.CharField(required=False, label=_("Weights"), help_text=_(
        "A torchvision weights name (e.g. DEFAULT, IMAGENET1K_V2) or the path of a .pth file on the workers. "
        "Empty: the active or configured weights of this model, else DEFAULT."))

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
            raise forms.ValidationError(_("Run %(id)s is still %(status)s; wait for it or cancel it first.")
                                        % {"id": current.id, "status": current.status})
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
    readonly_fields = ("arch", "weights", "model_key", "overwrite", "drop_old", "chunk_size", "started_by",
                       "created_at", "started_at", "finished_at", "error", "failure_list")
    change_form_template = "admin/search/reindexrun/change_form.html"
    change_list_template = "admin/search/reindexrun/change_list.html"

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj else ("arch", "weights", "drop_old")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def has_change_permission(self, request, obj=None):
        return False  # a run is started, watched and cancelled; never edited

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.status not in ReindexRun.ACTIVE_STATUSES)

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
        return format_html("<ul>{}</ul>", format_html_join(
            "", '<li><a href="{}?id={}">{}</a>: {}</li>', ((url, f["image_id"], f["image_id"], f["reason"]) for f in run.failures)))


def run_json(run):
    """What the progress bar shows."""
    return {
        "id": run.id, "status": run.status, "status_label": str(run.get_status_display()),
        "model": run.model_key or run.arch, "total": run.total,
        "done": run.done, "failed": run.failed, "processed": run.processed,
        "percent": round(100 * run.processed / run.total, 1) if run.total else (100.0 if run.finished_at else 0.0),
        "rate": round(run.rate, 2) if run.rate else None,
        "eta_seconds": round(run.eta_seconds) if run.eta_seconds is not None else None,
        "failures": run.failures[:20], "error": run.error or None,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "active": run.status in ReindexRun.ACTIVE_STATUSES,
    }
