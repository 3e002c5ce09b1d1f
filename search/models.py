"""The index (collections, images, their embeddings) and search jobs."""

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.utils import timezone
from pgvector.django import VectorField


class QueryStorage(FileSystemStorage):
    """Uploaded query images live under QUERY_ROOT, outside MEDIA_ROOT: no public URL ever serves them."""

    @property
    def base_location(self):
        return settings.QUERY_ROOT  # read on use, so tests and deployments can move it

    @property
    def location(self):
        return str(self.base_location)

    def url(self, name):
        raise ValueError("query images have no public URL")


def query_storage():
    return QueryStorage()


def query_upload_to(job, filename):
    # Generated name: the client's file name is never used as a path.
    return f"{timezone.now():%Y/%m/%d}/{job.id.hex}"


class Collection(models.Model):
    name = models.CharField(max_length=200, unique=True)
    source_path = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class IndexedImage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"

    collection = models.ForeignKey(Collection, null=True, blank=True, on_delete=models.SET_NULL, related_name="images")
    content_hash = models.CharField(max_length=64, unique=True)  # sha256 of the file's bytes
    file = models.FileField(max_length=300)
    thumbnail = models.FileField(max_length=300, blank=True)
    title = models.CharField(max_length=255)
    source_path = models.CharField(max_length=1000, blank=True, db_index=True)
    source_size = models.BigIntegerField(null=True, blank=True)
    source_mtime = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    user_tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    auto_tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    auto_label = models.CharField(max_length=100, blank=True)  # the ImageNet class behind auto_tags
    auto_score = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    indexed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [GinIndex(fields=["user_tags"]), GinIndex(fields=["auto_tags"])]

    def __str__(self):
        return self.title

    @property
    def tags(self):
        """Given tags first, then automatic ones, each once."""
        return list(dict.fromkeys([*self.user_tags, *self.auto_tags]))


class ModelVersion(models.Model):
    """One embedding model as a worker loaded it: architecture plus the identity of its weights."""

    key = models.CharField(max_length=120, unique=True)  # e.g. "mobilenet_v2:sha256-1a2b3c4d5e6f"
    arch = models.CharField(max_length=50)
    weights = models.CharField(max_length=500)
    dim = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.key


class Embedding(models.Model):
    """An image's L2-normalised vector from one model. Each model has its own partial HNSW index."""

    image = models.ForeignKey(IndexedImage, on_delete=models.CASCADE, related_name="embeddings")
    model_key = models.CharField(max_length=120)
    # No fixed dimension: models differ. search.knn casts to the model's dimension, which is what
    # the per-model expression index is built on.
    vector = VectorField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model_key"], name="one_embedding_per_model")]
        indexes = [models.Index(fields=["model_key"])]


class SearchJob(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    # The query is an uploaded image, or an image of the index ("search with this image").
    query_image = models.FileField(storage=query_storage, upload_to=query_upload_to, max_length=200, blank=True)
    query_name = models.CharField(max_length=255, blank=True)  # the client's file name, for display only
    source_image = models.ForeignKey(IndexedImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    k = models.PositiveSmallIntegerField(default=20)
    min_score = models.FloatField(default=0.0)
    categories = ArrayField(models.CharField(max_length=64), default=list, blank=True)  # empty: all
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    model_key = models.CharField(max_length=120, blank=True)
    results = models.JSONField(default=list, blank=True)  # [{"image_id": int, "score": float}], best first
    timings = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"search {self.id} ({self.status})"
