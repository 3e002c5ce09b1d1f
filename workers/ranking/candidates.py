"""The candidates of one search: which images may be results, who brought each in, and the evidence gathered on it.

Stages add rows (the global k-NN first, then images found in the whole index) and fill in evidence (inliers,
signature likeness, a lead score); fusion orders the rows. Each row keeps its cosine in the search's vector space as
its score, whichever stage found it, so `score` and `min_score` mean the same for every result.
"""

from dataclasses import dataclass, field

from search import knn

from .verification import stored_evidence

GLOBAL = "global"  # the k-NN of the query's vector: the similar results
NEAR = "near"  # the near duplicate by signature: a copy whatever its inliers


@dataclass
class Candidate:
    image_id: int
    score: float  # cosine similarity to the query in the search's vector space
    sources: set = field(default_factory=set)  # the stages that found it: GLOBAL, NEAR, or a finder's name
    inliers: int | None = None  # verified keypoint inliers (None: not verified)
    match: object = None  # verification.Match: the transform and inlier keypoints (None: not verified)
    likeness: float | None = None  # its 16x16 signature's correlation with the query's (None: not compared)
    lead_score: float | None = None  # its likeness to the query where the lead is picked (None: its score)
    identical: bool = False  # the query's very file
    same_picture: bool = False  # a verified copy that is distinct and looks like the query (appearance.py)

    @property
    def found_elsewhere(self):
        """Brought in only by a finder of the whole index (not the global k-NN, not as the near duplicate)."""
        return not self.sources & {GLOBAL, NEAR}


class Candidates:
    """The rows of one search, in the order they were found."""

    def __init__(self, query):
        self.query = query
        self.rows = []
        self._by_id = {}
        self._stored = {}  # image_id -> (Features or None, signature or None), read once (stored_evidence)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __contains__(self, image_id):
        return image_id in self._by_id

    def get(self, image_id):
        return self._by_id.get(image_id)

    @property
    def ids(self):
        return [row.image_id for row in self.rows]

    def add(self, image_id, score, source):
        """A new row, or `source` added to the sources of the row the image has; returns the row."""
        row = self._by_id.get(image_id)
        if row is None:
            row = self._by_id[image_id] = Candidate(image_id, float(score))
            self.rows.append(row)
        row.sources.add(source)
        return row

    def find(self, image_ids, source):
        """Add images found in the whole index by `source`, in the given order, where the search's categories and
        min_score let them in (the global k-NN applies both itself): with their cosine scores. Returns the rows."""
        query = self.query
        new = [i for i in dict.fromkeys(image_ids) if i not in self._by_id]
        scores = knn.scores_of(query.vector, new, model_key=query.space.key, categories=query.categories)
        admitted = {i for i in new if i in scores and scores[i] >= query.min_score}
        return [
            self.add(i, scores.get(i, 0.0), source)
            for i in dict.fromkeys(image_ids)
            if i in admitted or i in self._by_id
        ]

    def without(self, *sources):
        """A copy of the table without what `sources` brought (rows only they found leave, the others forget them),
        its evidence kept: how the ranking orders without those stages (bench/copy_detection.py's stage table)."""
        table = Candidates(self.query)
        for row in self.rows:
            kept = row.sources - set(sources)
            if kept:
                copy = Candidate(**{**row.__dict__, "sources": kept})
                table.rows.append(copy)
                table._by_id[row.image_id] = copy
        return table

    def stored_evidence(self):
        """{image_id: (Features or None, signature or None)} of every row, as stored at index time, each image's read
        once (in one query for those not read yet; verification.stored_evidence)."""
        missing = [i for i in self._by_id if i not in self._stored]
        if missing:
            self._stored.update(stored_evidence(missing))
        return self._stored
