"""Visual words: one vector per image that aggregates its SIFT descriptors, to find copies the global k-NN misses.

A copy cropped, turned, greyed and blurred at once often falls out of the global embedding's first candidates (with
3,000 other images indexed, 14% of such copies' originals were not in the global top 20). Its SIFT descriptors
(verification.py) change far less. VLAD (Jegou et al. 2010) sums, for each of WORDS centroids of descriptor space (the
vocabulary), the differences between the centroid and the image's RootSIFT descriptors nearest to it; with signed
square roots, each word's block made unit length, then the whole, two pictures sharing many keypoints get a high
inner product. It ignores where keypoints are, so crops, turns and captions change little; a mirrored copy is found
by aggregating the query's descriptors with their bins mirrored (verification.mirrored_descriptors).

The vocabulary is learned from the index (k-means over a sample of stored descriptors: workers/learning.py), so
nothing is shipped; each image's words are computed from its stored keypoints with no image decoded, stored in a
pgvector column with its own HNSW index (migration 0009). A search verifies the WORDS_FOUND images whose words are
nearest the query's (`nearest`).
"""

from typing import NamedTuple

import cv2
import numpy as np
from django.db import transaction

from search import replica
from search.fields import exact_text
from search.models import VisualWords

from . import tunables, verification

WORDS = tunables.WORDS
DIM = WORDS * 128
MIN_FIT_DESCRIPTORS = 20 * WORDS  # fewer cannot place WORDS centroids
SOURCE = "words"
_FORMAT = np.dtype("<f4")


class VocabularyError(ValueError):
    """Too few descriptors to learn a vocabulary from."""


def descriptors(features: verification.Features, *, mirrored: bool = False) -> np.ndarray:
    """(n, 128) RootSIFT descriptors of every size of an image's local features, their bins mirrored if asked."""
    stacked = (
        np.concatenate([s.descriptors for s in features.scales]) if len(features) else np.zeros((0, 128), np.uint8)
    )
    return verification.rootsift(verification.mirrored_descriptors(stacked) if mirrored else stacked)


def learn_from(images: list, *, seed: int = 0) -> np.ndarray:
    """The vocabulary learned from a random sample of images' local features (WORDS_FIT_IMAGES of them, then
    WORDS_FIT_DESCRIPTORS of their descriptors), as an index learns it."""
    rng = np.random.default_rng(seed)
    if len(images) > tunables.WORDS_FIT_IMAGES:
        images = [images[i] for i in sorted(rng.choice(len(images), tunables.WORDS_FIT_IMAGES, replace=False))]
    sample = np.concatenate([descriptors(f) for f in images]) if images else np.zeros((0, 128), np.float32)
    if len(sample) > tunables.WORDS_FIT_DESCRIPTORS:
        sample = sample[np.sort(rng.choice(len(sample), tunables.WORDS_FIT_DESCRIPTORS, replace=False))]
    return learn(sample, seed=seed)


def learn(sample: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The vocabulary, (WORDS, 128) float32 centroids, from (n, 128) RootSIFT descriptors (k-means++)."""
    sample = np.ascontiguousarray(sample, np.float32)
    if len(sample) < MIN_FIT_DESCRIPTORS:
        raise VocabularyError(
            f"{len(sample)} descriptors are too few to learn {WORDS} visual words from "
            f"(at least {MIN_FIT_DESCRIPTORS})."
        )
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 50, 1e-4)
    _, _, centroids = cv2.kmeans(sample, WORDS, None, criteria, tunables.KMEANS_ATTEMPTS, cv2.KMEANS_PP_CENTERS)
    return centroids.astype(np.float32)


def aggregate(features: verification.Features, vocabulary: np.ndarray, *, mirrored: bool = False) -> np.ndarray:
    """The image's VLAD vector, DIM float32 of unit length (all zero for an image without keypoints)."""
    d = descriptors(features, mirrored=mirrored)
    blocks = np.zeros((WORDS, 128), np.float32)
    if len(d):
        # Nearest centroid by squared distance, without the descriptor's own norm: |c|^2 - 2 d.c. cv2.gemm, not
        # numpy's @, for the reason verification._inliers gives.
        products = cv2.gemm(d, vocabulary, 1.0, None, 0.0, flags=cv2.GEMM_2_T)
        closest = (np.square(vocabulary).sum(axis=1) - 2 * products).argmin(axis=1)
        np.add.at(blocks, closest, d - vocabulary[closest])
    blocks = np.sign(blocks) * np.sqrt(np.abs(blocks))
    blocks /= np.maximum(np.linalg.norm(blocks, axis=1, keepdims=True), 1e-12)
    vector = blocks.ravel()
    return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)


def dumps(vocabulary: np.ndarray) -> bytes:
    return np.ascontiguousarray(vocabulary, _FORMAT).tobytes()


def loads(data: bytes) -> np.ndarray:
    """The vocabulary from dumps()' bytes; ValueError when they are not WORDS x 128 float32."""
    if len(data) != WORDS * 128 * _FORMAT.itemsize:
        raise ValueError(f"a vocabulary of {WORDS} words is {WORDS * 128 * _FORMAT.itemsize} bytes, not {len(data)}")
    return np.frombuffer(data, _FORMAT).reshape(WORDS, 128).astype(np.float32)


class Vocabulary(NamedTuple):
    id: int  # the VisualWords row, stored beside the words computed with it
    centroids: np.ndarray  # (WORDS, 128), for aggregate


_cached = None  # this process's Vocabulary


def vocabulary():
    """The Vocabulary in use (the latest learned), or None before one is learned; read once per process and row."""
    global _cached
    latest = VisualWords.objects.order_by("-id").values_list("id", flat=True).first()
    if latest is None:
        return None
    if _cached is None or _cached.id != latest:
        _cached = Vocabulary(latest, loads(bytes(VisualWords.objects.get(id=latest).words)))
    return _cached


def nearest_in_index(queries, *, k):
    """Ids of the k indexed images whose visual words are nearest any of `queries` (unit vectors: the query's words
    as is and mirrored), best first. One statement, each query through the words' HNSW index; images without words
    are not in it."""
    one = (
        f"(SELECT image_id, -(words <#> %s::halfvec({DIM})) AS likeness FROM search_localfeatures"
        f" WHERE words IS NOT NULL ORDER BY words <#> %s::halfvec({DIM}) LIMIT {int(k)})"
    )
    literals = [exact_text(q) for q in queries]

    def near(db):  # a read a replica may answer (search.replica)
        with transaction.atomic(using=db.alias), db.cursor() as cursor:
            cursor.execute(f"SET LOCAL hnsw.ef_search = {tunables.WORDS_EF_SEARCH}")  # a sparse graph (migration 0009)
            cursor.execute(
                f"SELECT image_id FROM ({' UNION ALL '.join([one] * len(literals))}) AS near"
                f" GROUP BY image_id ORDER BY max(likeness) DESC LIMIT {int(k)}",
                [v for literal in literals for v in (literal, literal)],
            )
            return [row[0] for row in cursor.fetchall()]

    return replica.read(near)


def nearest(query, candidates):
    """Stage: the WORDS_FOUND images whose words are nearest the query's, as is or mirrored, join the candidates
    (kept only if verified or leading); nothing before the index has learned its vocabulary."""
    learned = vocabulary()
    if learned is None or not len(query.features):
        return
    queries = [aggregate(query.features, learned.centroids, mirrored=mirrored) for mirrored in (False, True)]
    candidates.find(nearest_in_index(queries, k=tunables.WORDS_FOUND), SOURCE)
