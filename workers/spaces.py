"""A model version's vector space as a worker uses it: the embedder that makes raw vectors and the projection (if
any) that maps them, loaded once per process, with the keys its vectors are stored under (search/knn.py)."""

from dataclasses import dataclass

from django.conf import settings

from search import knn, versions
from search.models import ModelVersion

from . import embedder as embedder_module
from .projection import Projection


@dataclass(frozen=True)
class Space:
    """A model version's vectors: its key, the embedder that makes raw vectors, and its projection (None: raw)."""

    key: str
    embedder: object  # workers.embedder.Embedder
    projection: Projection | None

    @property
    def dim(self):
        return self.embedder.dim if self.projection is None else self.projection.dim

    @property
    def base_key(self):
        """Where this model's raw vectors are kept (a projected version keeps them beside its own)."""
        return self.embedder.key

    def vectors(self, raw):
        """This version's vectors (one row each) of raw embeddings (one row each)."""
        return raw if self.projection is None else self.projection.apply(raw)

    @property
    def copy_key(self):
        """Where this version's copy-space vectors are kept (search/knn.py); None without a copy space."""
        has_copy_space = self.projection is not None and self.projection.copy is not None
        return knn.copy_key(self.key) if has_copy_space else None

    def ensure_vector_indexes(self):
        """Build this version's HNSW index, and its copy space's, once there are enough vectors for them."""
        knn.ensure_vector_index(self.key, self.dim)
        if self.copy_key:
            knn.ensure_vector_index(self.copy_key, self.projection.copy.shape[1])


_spaces = {}  # model version key -> Space, loaded once per process


def space_for(version):
    """The Space of a ModelVersion, its model loaded and vector index made sure of once per process."""
    space = _spaces.get(version.key)
    if space is None:
        embedder = embedder_module.get_embedder(version.arch, version.weights)
        if embedder.key not in (version.key, version.base_key):
            raise embedder_module.WeightsError(
                f"The weights of {version.key} changed since it was registered: they now load as {embedder.key}."
            )
        data = ModelVersion.objects.filter(key=version.key).values_list("projection", flat=True).first()
        projection = Projection.loads(data) if data else None
        space = Space(version.key, embedder, projection)
        space.ensure_vector_indexes()
        _spaces[version.key] = space
    return space


def active_space(key=None):
    """The active model version's Space; on a fresh install the configured model becomes the active one.

    `key`, the active model's key where the caller has just read it (a search's claim), saves the lookup once
    that model's Space is loaded in this process.
    """
    if key in _spaces:
        return _spaces[key]
    version = versions.model_active()
    if version is None:
        embedder = embedder_module.get_embedder(settings.IMGSEARCH_MODEL, settings.IMGSEARCH_WEIGHTS)
        versions.model_version_ensure(
            key=embedder.key, arch=embedder.spec.name, weights=embedder.weights, dim=embedder.dim, activate_if_none=True
        )
        version = versions.model_active()  # ours, or one another worker made active first
    return space_for(version)
