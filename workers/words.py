"""Visual words: one vector per image that aggregates its SIFT descriptors, to find copies the global k-NN misses.

A copy cropped, turned, greyed and blurred at once often falls out of the global embedding's first candidates
(bench/copy_detection.py, at scale: with 3,000 other images indexed, 14% of such copies' originals were not in the
global top 20). Its SIFT descriptors (workers/localfeatures.py) change far less. VLAD (Jegou et al. 2010) sums,
for each of WORDS centroids of descriptor space (the vocabulary), the differences between the centroid and the
image's RootSIFT descriptors nearest to it; with signed square roots, each word's block made unit length, then
the whole, two pictures sharing many keypoints get a high inner product. It ignores where keypoints are, so
crops, turns and captions change little; a mirrored copy is found by aggregating the query's descriptors with
their bins mirrored (localfeatures.mirrored_descriptors).

The vocabulary is learned from the index (k-means over a sample of stored descriptors, search/copywords.py),
so nothing is shipped; the vectors are computed from the stored local features, with no image decoded. WORDS x 128
dimensions stay under pgvector's 2,000 for an HNSW index. numpy and OpenCV only: no torch.
"""

import numpy as np

import cv2

from . import localfeatures

WORDS = 15
DIM = WORDS * 128  # 1,920: the most whole words under pgvector's 2,000-dimension limit for HNSW
FIT_IMAGES = 1000  # a vocabulary is learned from the descriptors of this many images of the index at most (a random sample)
MAX_FIT_DESCRIPTORS = 100_000  # and of these at most: plenty for 15 centroids
MIN_FIT_DESCRIPTORS = 20 * WORDS
KMEANS_ATTEMPTS = 3
CANDIDATES = 5  # images a search adds to its candidates by their words (bench/copy_detection.py)
_FORMAT = np.dtype("<f4")


class VocabularyError(ValueError):
    """Too few descriptors to learn a vocabulary from."""


def descriptors(features: localfeatures.Features, *, mirrored: bool = False) -> np.ndarray:
    """(n, 128) RootSIFT descriptors of every size of an image's local features, their bins mirrored if asked."""
    stacked = np.concatenate([s.descriptors for s in features.scales]) if len(features) else np.zeros((0, 128), np.uint8)
    return localfeatures.rootsift(localfeatures.mirrored_descriptors(stacked) if mirrored else stacked)


def learn_from(images: list, *, seed: int = 0) -> np.ndarray:
    """The vocabulary learned from a random sample of images' local features (FIT_IMAGES, then MAX_FIT_DESCRIPTORS
    of their descriptors), as an index learns it."""
    rng = np.random.default_rng(seed)
    if len(images) > FIT_IMAGES:
        images = [images[i] for i in sorted(rng.choice(len(images), FIT_IMAGES, replace=False))]
    sample = np.concatenate([descriptors(f) for f in images]) if images else np.zeros((0, 128), np.float32)
    if len(sample) > MAX_FIT_DESCRIPTORS:
        sample = sample[np.sort(rng.choice(len(sample), MAX_FIT_DESCRIPTORS, replace=False))]
    return learn(sample, seed=seed)


def learn(sample: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The vocabulary, (WORDS, 128) float32 centroids, from (n, 128) RootSIFT descriptors (k-means++)."""
    sample = np.ascontiguousarray(sample, np.float32)
    if len(sample) < MIN_FIT_DESCRIPTORS:
        raise VocabularyError(f"{len(sample)} descriptors are too few to learn {WORDS} visual words from "
                              f"(at least {MIN_FIT_DESCRIPTORS}).")
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER + cv2.TERM_CRITERIA_EPS, 50, 1e-4)
    _, _, centroids = cv2.kmeans(sample, WORDS, None, criteria, KMEANS_ATTEMPTS, cv2.KMEANS_PP_CENTERS)
    return centroids.astype(np.float32)


def aggregate(features: localfeatures.Features, vocabulary: np.ndarray, *, mirrored: bool = False) -> np.ndarray:
    """The image's VLAD vector, DIM float32 of unit length (all zero for an image without keypoints)."""
    d = descriptors(features, mirrored=mirrored)
    blocks = np.zeros((WORDS, 128), np.float32)
    if len(d):
        # Nearest centroid by squared distance, without the descriptor's own norm: |c|^2 - 2 d.c. cv2.gemm, not
        # numpy's @, for the reason localfeatures._inliers gives.
        nearest = (np.square(vocabulary).sum(axis=1) - 2 * cv2.gemm(d, vocabulary, 1.0, None, 0.0, flags=cv2.GEMM_2_T)).argmin(axis=1)
        np.add.at(blocks, nearest, d - vocabulary[nearest])
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
