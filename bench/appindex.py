"""An index in the bench database, built and searched with the app's own functions, so the benchmarks measure what
ships: images' copy evidence extracted and stored as the indexing pipeline stores it (workers/indexing), visual words
and (from IMGSEARCH_PROJECTION_MIN_IMAGES images on) a projection with its copy space learned as an index learns them
(workers/learning.py, workers/projection.py), and every query answered by workers.ranking.rank, stage by stage.

    index = AppIndex.build(embedder, images, raw, tags=..., projection=True)
    searched = index.search(query_images, query_raw, wanted=(20, 30))

The vectors come in as raw embeddings the caller made (in batches, from the bench's own decoding), so a bench part can
index images it holds in memory; nothing else is computed here. Needs the bench database (bench.benchdb).
"""

import random
import time
from dataclasses import dataclass

import numpy as np

from bench.common import PROJECTION_MIN_IMAGES

KNN_STAGE = "global_knn.nearest"


def reset():
    """Empty the bench database's index: images, vectors (and their HNSW indexes), evidence, words, model versions."""
    from django.db import connection

    from search import knn
    from search.models import Embedding

    for key in Embedding.objects.values_list("model_key", flat=True).distinct():
        knn.drop_vector_index(key)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE search_indexedimage, search_embedding, search_localfeatures, search_visualwords,"
            " search_modelversion, search_searchjob, search_reindexrun, search_reindexchunk CASCADE"
        )


def _thumbnail(number, img):
    """The thumbnail the indexing pipeline would store for the image (workers.imageio.make_thumbnail): its name."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from workers.imageio import make_thumbnail

    name = f"thumbs/bench/{number}.jpg"
    default_storage.delete(name)
    return default_storage.save(name, ContentFile(make_thumbnail(img)))


@dataclass
class Searched:
    """One query's rankings: `rankings[w]` the production Ranking with `w` global candidates (its candidates table
    holds every row's evidence), and the milliseconds each stage took in the first."""

    rankings: dict
    timings: dict

    @property
    def first(self):
        return self.rankings[min(self.rankings)]


class AppIndex:
    """The images of a bench set, indexed in the bench database as the app indexes them."""

    def __init__(self, space, ids, extract_ms):
        self.space = space  # workers.spaces.Space searched
        self.ids = ids  # image id of each position
        self.position = {image_id: n for n, image_id in enumerate(ids)}
        self.extract_ms = extract_ms  # copy evidence per image, median

    @classmethod
    def build(cls, embedder, images, raw, *, tags=None, projection=None, names=None):
        """Index `images` (decoded PIL, as load_rgb gives them) with their raw embeddings (rows of `raw`).

        `projection`: None learns one as the app would at this size (from PROJECTION_MIN_IMAGES images, the copy space
        from edited copies of COPY_PAIRS of them); False never; True always (an index smaller than the app's minimum).
        `tags`: each image's given tags (the projection's LDA part learns from them)."""
        from search.models import IndexedImage
        from workers import learning
        from workers.indexing import features, store
        from workers.spaces import Space

        reset()
        tags = tags or [[] for _ in images]
        names = names or [f"{n}.png" for n in range(len(images))]
        rows = IndexedImage.objects.bulk_create(
            [
                IndexedImage(
                    content_hash=f"bench-{n}",
                    file=f"bench/{name}",
                    thumbnail=_thumbnail(n, img),  # the candidates' pixels the "Same picture" verdict compares
                    title=str(name)[:255],
                    user_tags=list(t),
                    status=IndexedImage.Status.READY,
                )
                for n, (name, t, img) in enumerate(zip(names, tags, images))
            ]
        )
        ids = [row.id for row in rows]
        base = cls._register(embedder)
        space = Space(base.key, embedder, None)
        for start in range(0, len(ids), 2000):
            store.vectors(space, ids[start : start + 2000], np.asarray(raw[start : start + 2000], np.float32))
        seconds = []
        for start in range(0, len(rows), 200):  # the evidence of 200 images at a time: a photo's record is 35 kB
            batch = []
            for row, img in zip(rows[start : start + 200], images[start : start + 200]):
                started = time.perf_counter()
                batch.append((row, features.copy_evidence(img, None)))
                seconds.append(time.perf_counter() - started)
            store.evidence(batch)
        learning.words_learn()
        for start in range(0, len(ids), 256):  # as the beat queues them: a task's worth at a time
            learning.words_compute(ids[start : start + 256])
        learn = len(images) >= PROJECTION_MIN_IMAGES if projection is None else projection
        space = cls._project(embedder, images, np.asarray(raw, np.float32), tags, base, rows) if learn else space
        space.ensure_vector_indexes()
        return cls(space, ids, 1000 * float(np.median(seconds)))

    @staticmethod
    def _register(embedder):
        from search import versions

        return versions.model_version_ensure(
            key=embedder.key, arch=embedder.spec.name, weights=embedder.weights, dim=embedder.dim, activate_if_none=True
        )

    @staticmethod
    def _project(embedder, images, raw, tags, base, rows):
        """Learn the index's projection with its copy space as a worker does (learning.projection_learn, the copy
        pairs made from the images in hand), store every image's projected and copy-space vectors as a reindex run
        does, and make it the active model."""
        from search import versions
        from workers import learning
        from workers.indexing.jobs import project_stored
        from workers.projection import fit
        from workers.ranking import tunables
        from workers.spaces import Space

        rng = random.Random(0)  # as learning.copy_pairs draws its sample and edits
        picks = sorted(rng.sample(range(len(images)), min(tunables.COPY_PAIRS, len(images))))
        copies = learning.edited_copies(embedder, (images[i] for i in picks), rng)
        learned, info = fit(raw, tags, copies=(raw[picks], copies), min_images=2)
        version = versions.projected_version(base, learned.dumps(), dim=learned.dim, info=info)
        space = Space(version.key, embedder, learned)
        project_stored(space, rows)
        versions.model_activate(version.key)
        return space

    @staticmethod
    def stored_bytes():
        """(mean, max) bytes of the indexed images' local-feature records, as stored."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT avg(octet_length(data)), max(octet_length(data)) FROM search_localfeatures")
            mean, most = cursor.fetchone()
        return float(mean), int(most)

    def search(self, images, raw, *, k=20, wanted=(20,)):
        """Searched of each query image (decoded) with its raw embedding, ranked by the app with each number of
        global candidates in `wanted` (the first timed; the others verify only the images it did not meet)."""
        from workers.ranking.query import Query
        from workers.ranking.stages import rank

        out = []
        for img, vector in zip(images, raw):
            query = Query.of_image(img, vector, self.space, k=k, wanted=wanted[0])
            rankings, timings = {}, None
            for count in wanted:
                query.wanted = count
                ranking = rank(query)
                ranking.candidates.query = None  # the query's image and keypoints are not kept
                rankings[count] = ranking
                timings = timings or ranking.timings
            out.append(Searched(rankings, timings))
        return out
