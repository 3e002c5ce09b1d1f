"""The admin's list of indexed images: previews, tags, models, re-embed and re-tag actions, removal with files."""

from django.contrib import admin
from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Q
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import indexing, knn
from ..models import IndexedImage


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
    fields = (
        "preview_large",
        "title",
        "user_tags",
        "auto_tags",
        "auto_label",
        "auto_score",
        "collection",
        "status",
        "error",
        "model_list",
        "source_path",
        "file",
        "content_hash",
        "width",
        "height",
        "created_at",
        "indexed_at",
    )
    readonly_fields = (
        "preview_large",
        "auto_tags",
        "auto_label",
        "auto_score",
        "status",
        "error",
        "model_list",
        "source_path",
        "file",
        "content_hash",
        "width",
        "height",
        "created_at",
        "indexed_at",
    )
    list_per_page = 50

    class Media:
        css = {"all": ["admin_index/admin.css"]}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(model_keys=ArrayAgg("embeddings__model_key", distinct=True, default=[]))
        )

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
        # alt: the thumbnail is a link (to the image's page), and a link needs a name
        return format_html(
            '<img src="{}" alt="{}" loading="lazy" class="index-thumb">', image.thumbnail.url, image.title
        )

    @admin.display(description=_("preview"))
    def preview_large(self, image):
        url = image.thumbnail.url if image.thumbnail else image.file.url
        return format_html(
            '<a href="{}"><img src="{}" alt="{}" class="index-preview"></a>', image.file.url, url, image.title
        )

    @admin.display(description=_("tags"))
    def tag_list(self, image):
        given = format_html_join(" ", '<span class="index-tag">{}</span>', ((t,) for t in image.user_tags))
        auto = format_html_join(
            " ", '<span class="index-tag index-tag-auto">{}</span>', ((t,) for t in image.auto_tags)
        )
        return format_html("{} {}", given, auto)

    @admin.display(description=_("models"))
    def model_list(self, image):
        keys = getattr(image, "model_keys", None)
        if keys is None:
            keys = sorted(set(image.embeddings.values_list("model_key", flat=True)))
        # copy-space vectors are a projection's own, not a model
        return ", ".join(k for k in keys if k and not knn.is_copy_key(k)) or "-"

    @admin.display(description=_("last error"))
    def short_error(self, image):
        return (image.error[:80] + "…") if len(image.error) > 80 else image.error

    @admin.action(description=_("Re-embed selected images with the active model"), permissions=["change"])
    def reembed(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        indexing.queue_reembed(ids)
        self.message_user(
            request, ngettext("%d image queued for embedding.", "%d images queued for embedding.", len(ids)) % len(ids)
        )

    @admin.action(description=_("Re-tag selected images with the classifier"), permissions=["change"])
    def retag(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        indexing.queue_retag(ids)
        self.message_user(
            request,
            ngettext("%d image queued for re-tagging.", "%d images queued for re-tagging.", len(ids)) % len(ids),
        )

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
