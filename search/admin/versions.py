"""The admin's model versions (projections learned and dropped) and the index's visual words."""

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import projections, versions
from ..models import Embedding, LocalFeatures, ModelVersion, VisualWords
from ..vocabulary import words_due


@admin.register(VisualWords)
class VisualWordsAdmin(admin.ModelAdmin):
    """The vocabulary copy search finds candidates with (search/vocabulary.py). Learned by the beat once the index is
    large enough, and again as it grows; deleting it makes the beat learn a new one from the index as it is now."""

    list_display = ("id", "learned_from", "images_with_words", "next_learning", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("words")

    @admin.display(description=_("learned from"))
    def learned_from(self, vocabulary):
        return _("%(words)s words, the keypoints of %(images)s images") % {
            "words": vocabulary.info.get("words", "?"),
            "images": vocabulary.info.get("images", "?"),
        }

    @admin.display(description=_("images with words"))
    def images_with_words(self, vocabulary):
        return LocalFeatures.objects.filter(words_vocabulary=vocabulary).exclude(words=None).count()

    @admin.display(description=_("next learning"))
    def next_learning(self, vocabulary):
        """Whether and when the beat learns the words again (search/vocabulary.py: words_due), for the vocabulary in use."""
        return words_due()[1]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("key", "arch", "weights", "dim", "projection_summary", "active", "embedding_count", "created_at")
    list_filter = ("active", "arch")
    actions = ("learn_projection", "drop_embeddings")

    def get_queryset(self, request):
        count = (
            Embedding.objects.filter(model_key=OuterRef("key"))
            .order_by()
            .values("model_key")
            .annotate(n=Count("id"))
            .values("n")
        )
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
        tags = (
            ngettext("%(dims)d from %(tags)d tag", "%(dims)d from %(tags)d tags", len(info["tags"]))
            % {"dims": info["lda_dims"], "tags": len(info["tags"])}
            if info["lda_dims"]
            else _("no tags")
        )
        summary = _("%(pca)d + %(tags)s, learned from %(images)d images") % {
            "pca": info["pca_dims"],
            "tags": tags,
            "images": info["images"],
        }
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
        sent, message = projections.projection_request()
        self.message_user(request, message, messages.SUCCESS if sent else messages.WARNING)

    @admin.action(description=_("Drop the embeddings of the selected inactive models"), permissions=["delete"])
    def drop_embeddings(self, request, queryset):
        dropped, embeddings = versions.model_versions_drop(queryset)
        kept = queryset.count()  # what is left: the active model, or one a run is building
        self.message_user(
            request,
            _("Dropped %(embeddings)d embeddings of %(models)d models.")
            % {"embeddings": embeddings, "models": dropped},
        )
        if kept:
            self.message_user(
                request, _("The active model, and any model a run is building, were kept."), messages.WARNING
            )
