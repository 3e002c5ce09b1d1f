"""The query's very file: the indexed image searched with, or the very file uploaded. Such a result is the same
picture whatever its keypoints say (a plain symbol may have too few to verify)."""

from search.indexing import stream_sha256
from search.models import IndexedImage

from . import tunables


def mark(query, candidates):
    """Stage: mark the candidates that are the query itself. Only one scoring as the query's own vector would
    (IDENTICAL_SCORE) can be it, so most searches read no file."""
    near = {row.image_id for row in candidates if row.score >= tunables.IDENTICAL_SCORE}
    if not near:
        return
    if query.source_image_id and query.upload is None:
        same = {query.source_image_id} & near
    elif query.upload is not None:
        same = _same_file(query.upload, near)
    else:
        return
    for row in candidates:
        row.identical = row.image_id in same


def _same_file(upload, image_ids):
    """Which of the images hold the very bytes uploaded."""
    try:
        with upload.open("rb") as f:
            digest = stream_sha256(f)
    except (OSError, ValueError):  # gone, or no file: nothing can be told identical
        return set()
    return set(IndexedImage.objects.filter(id__in=image_ids, content_hash=digest).values_list("id", flat=True))
