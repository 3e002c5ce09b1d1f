"""The copy space: a projection of the raw vectors learned from edited copies of indexed images (workers/projection.py),
where a copy lies much nearer its original than in the search's own vectors, but categories rank worse. So it only
finds candidates (its nearest, verified like the visual words' finds) and picks the lead of the candidates that are
not copies (fusion.py); the results keep their own scores. Nothing before the index has learned a projection.

Each image's copy-space vector is stored under the version's copy key (search/knn.py: copy_key) with its own HNSW
index; a version applied before they were stored falls back to the raw vectors until workers/learning.py has filled
them in.
"""

from search import knn
from search.models import Embedding

from . import tunables

SOURCE = "copy space"


def nearest(query, candidates):
    """Stage: the COPY_SPACE_FOUND images nearest the query in the copy space join the candidates."""
    if query.copy_vector is None:
        return
    found = knn.nearest(query.copy_vector, model_key=query.space.copy_key, k=tunables.COPY_SPACE_FOUND, min_score=-1.0)
    candidates.find([image_id for image_id, _ in found], SOURCE)


def lead_scores(query, candidates):
    """Stage: each candidate's cosine to the query in the copy space, where the lead is picked: from the stored
    copy-space vectors (computed in the database), else from the raw vectors a projected version keeps beside its
    own; -1 (it cannot lead) for a candidate with neither."""
    if query.copy_vector is None:
        return
    space, ids = query.space, candidates.ids
    sims = knn.scores_of(query.copy_vector, ids, model_key=space.copy_key)
    missing = [image_id for image_id in ids if image_id not in sims]
    if missing:
        stored = dict(
            Embedding.objects.filter(model_key=space.base_key, image_id__in=missing).values_list("image_id", "vector")
        )
        if stored:
            sims.update(zip(stored, space.projection.copy_vectors(list(stored.values())) @ query.copy_vector))
    for row in candidates:
        row.lead_score = float(sims.get(row.image_id, -1.0))
