"""The global k-NN: the images whose vectors are nearest the query's in the search's space (pgvector HNSW), the
similar results. Its own category filter and min_score apply; without re-ranking it is the whole search."""

from search import knn

from .candidates import GLOBAL
from .query import SearchError


def nearest(query, candidates):
    """Stage: the query's `wanted` nearest images, best first; a search of a model with no vectors yet fails."""
    space = query.space
    found = knn.nearest(
        query.vector, model_key=space.key, k=query.wanted, min_score=query.min_score, categories=query.categories
    )
    if not found and not knn.has_vectors(space.key):
        raise SearchError(f"The index holds no images embedded with {space.key} yet; index some images first.")
    for image_id, score in found:
        candidates.add(image_id, score, GLOBAL)
