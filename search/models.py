"""The index (collections, images, their embeddings) and search jobs."""

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .fields import HalfVectorTextField


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
    """A named set of images: a server folder (rescanned on a schedule if asked), uploads, or both."""

    name = models.CharField(max_length=200, unique=True)
    source_path = models.CharField(max_length=1000, blank=True, help_text="A folder on the server to index.")
    rescan = models.BooleanField(default=False, help_text="Scan the folder on a schedule and index new files.")
    tags_from_folders = models.BooleanField(default=True, help_text="Tag each image with its sub-folder names.")
    scanned_at = models.DateTimeField(null=True, blank=True)
    scan_summary = models.CharField(max_length=500, blank=True)
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
    auto_label = models.CharField(
        max_length=100, blank=True, help_text="The classifier's likeliest ImageNet class within its likeliest category."
    )
    auto_score = models.FloatField(
        null=True,
        blank=True,
        help_text=(
            "The classifier's probability of its likeliest category (its classes added up); the category becomes the "
            "automatic tag at 0.5 or more."
        ),
    )
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
    weights = models.CharField(max_length=500)  # what a worker passes to load it: a name or a .pth path
    dim = models.PositiveIntegerField()
    active = models.BooleanField(default=False)  # the model searches embed with; exactly one once indexed
    # A projected version maps the raw vectors of its base version (same arch and weights) through a projection
    # learned from the index (workers/projection.py): its vectors are shorter and rank categories better.
    base_key = models.CharField(max_length=120, blank=True)
    projection = models.BinaryField(null=True, blank=True, editable=False)  # workers.projection.Projection.dumps()
    projection_info = models.JSONField(default=dict, blank=True)  # what it was learned from, for people
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="one_active_model")
        ]

    def __str__(self):
        return self.key


class Embedding(models.Model):
    """An image's L2-normalised vector from one model. Each model has its own partial HNSW index."""

    image = models.ForeignKey(IndexedImage, on_delete=models.CASCADE, related_name="embeddings")
    model_key = models.CharField(max_length=120)
    # halfvec, of no fixed dimension: models differ. search.knn casts to the model's dimension, which is what
    # the per-model expression index is built on.
    vector = HalfVectorTextField()
    # The image's tags (user_tags + auto_tags), kept equal by triggers (migration 0016): category filters read them
    # here, and a category's own HNSW index (search/tag_indexes.py) is a partial index on them.
    tags = ArrayField(models.CharField(max_length=64), default=list, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model_key"], name="one_embedding_per_model")]
        indexes = [models.Index(fields=["model_key"])]


class LocalFeatures(models.Model):
    """An image's copy-detection evidence: its SIFT keypoints, packed (workers/ranking/verification.py), and
    its 16x16 grey signature (workers/ranking/signature.py; null for rows extracted before it existed), compared at search time.
    The signatures have an HNSW index of their own (migration 0007), searched by inner product (search/knn.py)."""

    image = models.OneToOneField(
        IndexedImage, on_delete=models.CASCADE, primary_key=True, related_name="local_features"
    )
    data = models.BinaryField()
    signature = HalfVectorTextField(dimensions=256, null=True, blank=True)
    # The keypoints' visual words (workers/ranking/words.py) under the index's vocabulary (VisualWords); null before one is
    # learned. Their own HNSW index (migration 0009) finds copy candidates the global k-NN misses.
    words = HalfVectorTextField(dimensions=1920, null=True, blank=True)
    # The vocabulary `words` were computed with: words of any other than the latest are missing (search/vocabulary.py).
    # No database constraint: a task that computed words with a vocabulary deleted meanwhile (learned again) still
    # stores its batch, and those words are computed again.
    words_vocabulary = models.ForeignKey(
        "VisualWords",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        db_constraint=False,
    )
    created_at = models.DateTimeField(auto_now=True)


class VisualWords(models.Model):
    """The vocabulary LocalFeatures.words are computed with: learned from the index's own descriptors when it has
    grown to IMGSEARCH_WORDS_MIN_IMAGES images, and again as it grows (search/vocabulary.py). The latest row is the one
    in use."""

    words = models.BinaryField(editable=False)  # workers.ranking.words.dumps()
    info = models.JSONField(default=dict, blank=True)  # what it was learned from, for people
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "visual words"

    def __str__(self):
        return f"visual words {self.id} ({self.info.get('images', '?')} images)"


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
    rerank = models.BooleanField(default=True)  # verify the best candidates with local features, copies first
    # The part of the query image searched: {"x", "y", "width", "height"}, fractions of the upright image; null: all.
    region = models.JSONField(null=True, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    model_key = models.CharField(max_length=120, blank=True)
    results = models.JSONField(default=list, blank=True)  # [{"image_id", "score", "match"}], best first
    timings = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Other users' searches and query images are private: being staff is not enough to see them (search.jobs).
        permissions = [("view_all_searches", "Can see every user's searches and query images")]

    def __str__(self):
        return f"search {self.id} ({self.status})"


class ReindexRun(models.Model):
    """A background re-embedding of the whole index with one model; the model becomes active when it is done."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    MAX_FAILURES_SHOWN = 200

    arch = models.CharField("model", max_length=50)
    weights = models.CharField(max_length=500)
    model_key = models.CharField(max_length=120, blank=True)  # known once a worker has loaded the weights
    overwrite = models.BooleanField(default=False)  # re-embedding with the active model itself
    drop_old = models.BooleanField(default=False, help_text="Drop the other models' embeddings once this run is done.")
    chunk_size = models.PositiveIntegerField(default=32)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    failures = models.JSONField(default=list, blank=True)  # [{"image_id", "reason"}], the first MAX_FAILURES_SHOWN
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # last sign of life: a chunk started or finished

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"reindex {self.id} to {self.model_key or self.arch} ({self.status})"

    @property
    def processed(self):
        return self.done + self.failed

    @property
    def rate(self):
        """Images per second so far (or over the whole run once it ended); None before any progress."""
        if not self.started_at or not self.processed:
            return None
        seconds = ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
        return self.processed / seconds if seconds > 0 else None

    @property
    def eta_seconds(self):
        """Seconds left at the current rate; None when unknown or finished."""
        rate = self.rate
        if self.status != self.Status.RUNNING or not rate:
            return None
        return max(0, self.total - self.processed) / rate


class ReindexChunk(models.Model):
    """One slice of a run's images, embedded by one task. Counted once however often it is delivered."""

    run = models.ForeignKey(ReindexRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    image_ids = ArrayField(models.BigIntegerField())
    queued_at = models.DateTimeField(null=True, blank=True)  # null: not sent to the queue yet
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failures = models.JSONField(default=list, blank=True)  # [{"image_id", "reason"}], every one
    gone = models.PositiveIntegerField(default=0)  # images removed from the index before the chunk ran

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="one_chunk_per_number")]


class DuplicateRun(models.Model):
    """A background search for groups of the same picture in the index or one collection (search/duplicates.py):
    each image ranked as a search would rank it, the pairs it would badge "Same picture" kept (DuplicatePair)."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    collection = models.ForeignKey(
        Collection, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )  # null: the whole index
    only_new = models.BooleanField(default=True)  # only images added since the scope's last finished run
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    model_key = models.CharField(max_length=120, blank=True)  # the model whose neighbours were checked
    after_id = models.BigIntegerField(default=0)  # images with ids above this one...
    up_to_id = models.BigIntegerField(default=0)  # ...up to this one (the newest when the run began) are checked
    cursor_id = models.BigIntegerField(default=0)  # the last image checked: a resumed run goes on after it
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)  # images that could not be checked (no vector, unreadable)
    pairs_found = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # last progress written

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("duplicate finder run")
        verbose_name_plural = _("duplicate finder")

    def __str__(self):
        return f"duplicates {self.id} ({self.status})"

    @property
    def processed(self):
        return self.done + self.failed

    @property
    def rate(self):
        """Images checked per second so far (or over the whole run once it ended); None before any progress."""
        if not self.started_at or not self.processed:
            return None
        seconds = ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
        return self.processed / seconds if seconds > 0 else None


class DuplicatePair(models.Model):
    """Two indexed images verified to be the same picture, the lower id first; removing either removes the pair."""

    image_a = models.ForeignKey(IndexedImage, on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey(IndexedImage, on_delete=models.CASCADE, related_name="+")
    inliers = models.PositiveIntegerField()  # the verification's RANSAC inliers of the search that badged it
    run = models.ForeignKey(DuplicateRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    found_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image_a", "image_b"], name="one_duplicate_pair"),
            models.CheckConstraint(condition=models.Q(image_a__lt=models.F("image_b")), name="duplicate_pair_ordered"),
        ]


class DistinctPair(models.Model):
    """Two images a person said are not the same picture: never proposed as duplicates again."""

    image_a = models.ForeignKey(IndexedImage, on_delete=models.CASCADE, related_name="+")
    image_b = models.ForeignKey(IndexedImage, on_delete=models.CASCADE, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image_a", "image_b"], name="one_distinct_pair"),
            models.CheckConstraint(condition=models.Q(image_a__lt=models.F("image_b")), name="distinct_pair_ordered"),
        ]
