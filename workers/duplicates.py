"""The duplicate finder's computing: which indexed images a search by one of them would badge "Same picture".

Each image is ranked as a search with it would be (workers/ranking), its own row left out: the finders of
stages.STAGES bring in its candidates (the global k-NN of its stored vector, the likest signatures, the visual words,
the copy space), then the checks of the same list (SIFT + RANSAC inliers, signature likeness, lead scores, the
appearance check) settle each one, and fusion.fuse gives the verdict. So a pair is kept exactly when a search with
either image, uploaded as a new file, would show the other as its "Same picture". The image itself leaves the table
before the checks, as an upload of it would not find itself: its own inliers would otherwise be every other
candidate's rival in the distinct check (appearance.distinct). Its signature's best match is looked up with itself
left out for the same reason. The rows are search/duplicates.py's.
"""

import logging
import time

import numpy as np
from django.conf import settings

from search import duplicates, knn

from .ranking import fusion, identical, signature, verification
from .ranking.candidates import Candidates
from .ranking.query import Query, SearchError
from .ranking.stages import STAGES

log = logging.getLogger(__name__)

_FIRST_CHECK = STAGES.index(verification.inliers)
FINDERS = STAGES[:_FIRST_CHECK]  # what brings candidates in
CHECKS = tuple(stage for stage in STAGES[_FIRST_CHECK:] if stage is not identical.mark)  # no upload: nothing identical
BATCH = 20  # images checked between two progress writes


def query_of(image_id, space):
    """The query of a search with an indexed image, as Query.of_job makes it from its stored vectors (None without
    a vector of the space): the search's number of candidates, one more for its own row."""
    stored = knn.stored_vector(image_id, space.key)
    if stored is None:
        return None
    raw = stored if space.projection is None else knn.stored_vector(image_id, space.base_key)
    wanted = settings.IMGSEARCH_RERANK_CANDIDATES
    query = Query(space, np.asarray(stored, np.float32), raw, k=wanted, wanted=wanted + 1, source_image_id=image_id)
    # cached_property: set before the stages, its best match other than itself
    query.signature_match = signature.best_in_index(query.signature, exclude=image_id)
    return query


def checked(image_id, space):
    """The candidates table of a search with the image, its own row left out, every check of the ranking done on it;
    None if it cannot be searched with (no vector of the space)."""
    query = query_of(image_id, space)
    if query is None:
        return None
    found = Candidates(query)
    for stage in FINDERS:
        stage(query, found)
    table = Candidates(query)  # the same rows but the image's own, as an upload of it would find them
    for row in found:
        if row.image_id != image_id:
            for source in sorted(row.sources):
                table.add(row.image_id, row.score, source)
    for stage in CHECKS:
        stage(query, table)
    return table


def same_pictures(image_id, space):
    """[(other image id, inliers)] that a search with the image would badge "Same picture" (fusion.fuse's verdict);
    None if it cannot be searched with."""
    table = checked(image_id, space)
    if table is None:
        return None
    return [
        (other, table.get(other).inliers or 0) for other, _score, match in fusion.fuse(table) if match == fusion.COPY
    ]


def duplicates_find(run_id, space):
    """Run a claimed duplicate finder run to its end: each image of its scope checked, progress and pairs written
    every BATCH images. Returns the run, or None if it was not this worker's to run."""
    run = duplicates.duplicate_run_claim(run_id, model_key=space.key)
    if run is None:
        return None
    started = time.perf_counter()
    while ids := duplicates.duplicate_run_next_ids(run, BATCH):
        pairs, failed = [], 0
        for image_id in ids:
            try:
                found = same_pictures(image_id, space)
            except (SearchError, OSError, ValueError) as exc:  # unreadable evidence: counted, the run goes on
                log.warning("duplicates: image %s not checked: %s", image_id, exc)
                found = None
            if found is None:
                failed += 1
            pairs += [(image_id, other, inliers) for other, inliers in found or ()]
        duplicates.duplicate_run_record(run, last_id=ids[-1], done=len(ids) - failed, failed=failed, pairs=pairs)
    duplicates.duplicate_run_finish(run.id)
    log.info(
        "duplicates run %s: %d images in %.1f s, %d pairs",
        run.id,
        run.done,
        time.perf_counter() - started,
        run.pairs_found,
    )
    return run
