"""A projection of a model's raw embeddings learned from the index itself: fewer dimensions, better categories.

    projection, info = fit(raw_vectors, tags_per_image)
    vectors = projection.apply(raw)          # (n, projection.dim), unit length

The projected vector joins two unit-length parts, so cosine similarity is their weighted sum:
- PCA: the raw vectors centred and rotated onto their `pca_dims` main axes (no whitening). Unsupervised, it
  never needs tags; it shortens the vector 1280 -> 256 and ranks categories a little better.
- LDA: a tag-supervised whitening, learned from the tags people gave the images (user tags, such as the
  folder names of `index_images --tags-from-folders`): the directions that separate those tags, with the
  within-tag scatter whitened away. Weighted by `beta`, so images of tags it never saw lose nothing.

bench/quality.py measured both against average pooling, PCA-whitening and query expansion, cross-fitted so
that no query's own tags were learned from (docs/retrieval.md); the numbers are in workers/ranking/tunables.py.

Beside them, when it is given pairs of raw vectors (an indexed image and an edited copy of it, which the workers
make: workers/edits.py), a projection learns a copy space (`copy_vectors`): the scatter of the differences within
the pairs whitened away (what an edit does to a vector), then the main axes of the index in that space (Radenović et
al.'s learned whitening). It ranks an image's edited copies far closer to it than the PCA part does, but categories
worse, so searches use it only to find candidates and to pick the likeliest source among those that are not verified
copies (workers/ranking/copy_space.py); the results and their scores stay those of the PCA and LDA parts.
"""

import io
from dataclasses import dataclass

import numpy as np

from search.projections import too_few

from .ranking.tunables import (
    BETA,
    COPY_DIMS,
    COPY_REGULARISATION,
    LDA_DIMS,
    LDA_REGULARISATION,
    MAX_FIT_VECTORS,
    MAX_TAG_SHARE,
    MIN_IMAGES_PER_TAG,
    PCA_DIMS,
)


class ProjectionError(ValueError):
    """Too little to learn a projection from, with the reason."""


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # (D,) float32
    pca: np.ndarray  # (D, pca_dims) float32
    lda: np.ndarray | None  # (D, lda_dims) float32; None without usable tags
    beta: float
    copy: np.ndarray | None = None  # (D, copy_dims) float32; None: learned without edited copies

    @property
    def dim(self):
        return self.pca.shape[1] + (0 if self.lda is None else self.lda.shape[1])

    @property
    def input_dim(self):
        return self.pca.shape[0]

    def apply(self, raw):
        """Projected unit vectors (float32) of raw embeddings, one row each (a single vector gives one row)."""
        x = self._centred(raw)
        parts = [_unit(x @ self.pca)]
        if self.lda is not None:
            parts = [np.sqrt(1 - self.beta) * parts[0], np.sqrt(self.beta) * _unit(x @ self.lda)]
        return np.hstack(parts).astype(np.float32)

    def copy_vectors(self, raw):
        """Unit vectors (float32) of raw embeddings in the copy space, one row each; None without one."""
        if self.copy is None:
            return None
        return _unit(self._centred(raw) @ self.copy).astype(np.float32)

    def _centred(self, raw):
        x = np.atleast_2d(np.asarray(raw, np.float32))
        if x.shape[1] != self.input_dim:
            raise ValueError(f"the projection takes {self.input_dim}-dimensional vectors, not {x.shape[1]}")
        return x - self.mean

    def dumps(self):
        """Bytes to store with the model version (numpy's npz, no pickles)."""
        out = io.BytesIO()
        arrays = {"mean": self.mean, "pca": self.pca, "beta": np.float64(self.beta)}
        for name in ("lda", "copy"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        np.savez(out, **arrays)
        return out.getvalue()

    @classmethod
    def loads(cls, data):
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as arrays:
            lda, copy = (arrays[name] if name in arrays.files else None for name in ("lda", "copy"))
            return cls(arrays["mean"], arrays["pca"], lda, float(arrays["beta"]), copy)


def fit(vectors, tags, *, copies=None, pca_dims=PCA_DIMS, lda_dims=LDA_DIMS, beta=BETA, min_images=None, seed=0):
    """(Projection, info) learned from raw vectors (n, D) and each image's given tags (a list per image).

    `copies`: (originals, edited copies), raw vectors of the same shape, row i of one an edited copy of row i of the
    other, to learn the copy space from; None (or no rows): no copy space. Raises ProjectionError when there are
    fewer than `min_images` vectors (default: 4 x pca_dims).
    """
    vectors = np.asarray(vectors, np.float32)
    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    min_images = 4 * min(pca_dims, dim) if min_images is None else min_images
    if too_few(n, min_images):
        raise ProjectionError(too_few(n, min_images))
    pca_dims = min(pca_dims, dim, n - 1)  # n vectors span at most n - 1 directions about their mean
    if n > MAX_FIT_VECTORS:
        keep = np.sort(np.random.default_rng(seed).choice(n, MAX_FIT_VECTORS, replace=False))
        vectors, tags = vectors[keep], [tags[i] for i in keep]
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    pca = _top_eigenvectors(centred.T @ centred / len(centred), pca_dims)
    labels = usable_tags(tags)
    lda = _lda(centred, tags, labels, min(lda_dims, dim)) if len(labels) >= 2 else None
    pairs = 0 if copies is None else len(copies[0])
    copy = _copy_whitening(centred, *copies, min(COPY_DIMS, dim, n - 1)) if pairs else None
    info = {
        "images": int(len(vectors)),
        "input_dim": int(dim),
        "pca_dims": int(pca_dims),
        "lda_dims": 0 if lda is None else int(lda.shape[1]),
        "beta": beta if lda is not None else 0.0,
        "tags": sorted(labels),
        "tagged_images": int(sum(1 for t in tags if set(t) & labels)),
        "copy_pairs": int(pairs),
        "copy_dims": 0 if copy is None else int(copy.shape[1]),
    }
    as32 = lambda m: None if m is None else m.astype(np.float32)
    return Projection(mean, pca.astype(np.float32), as32(lda), beta, as32(copy)), info


def usable_tags(tags):
    """Tags on at least MIN_IMAGES_PER_TAG images and on at most MAX_TAG_SHARE of the tagged ones."""
    counts = {}
    for image_tags in tags:
        for tag in set(image_tags):
            counts[tag] = counts.get(tag, 0) + 1
    tagged = sum(1 for image_tags in tags if image_tags)
    return {t for t, c in counts.items() if MIN_IMAGES_PER_TAG <= c <= MAX_TAG_SHARE * tagged}


def _lda(centred, tags, labels, dims):
    """Discriminant directions of the tags: each (image, tag) pair is one sample of that tag's class."""
    dim = centred.shape[1]
    within, between, pairs = np.zeros((dim, dim)), np.zeros((dim, dim)), 0
    overall = centred.mean(axis=0)
    for label in sorted(labels):
        members = centred[[i for i, image_tags in enumerate(tags) if label in image_tags]]
        centre = members.mean(axis=0)
        spread = members - centre
        within += spread.T @ spread
        between += len(members) * np.outer(centre - overall, centre - overall)
        pairs += len(members)
    within, between = within / pairs, between / pairs
    within += LDA_REGULARISATION * np.trace(within) / dim * np.eye(dim)
    # Whiten the within-tag scatter, then take the main axes of the between-tag scatter in that space.
    values, vectors = np.linalg.eigh(within)
    whitening = vectors / np.sqrt(np.maximum(values, 1e-12))
    return whitening @ _top_eigenvectors(whitening.T @ between @ whitening, dims)


def _copy_whitening(centred, originals, copies, dims):
    """The copy space: whiten the scatter of the copies' differences from their originals, then keep the main
    axes of the (centred) index in that space."""
    differences = np.asarray(originals, np.float64) - np.asarray(copies, np.float64)
    scatter = differences.T @ differences / len(differences)
    scatter += COPY_REGULARISATION * np.trace(scatter) / len(scatter) * np.eye(len(scatter))
    values, vectors = np.linalg.eigh(scatter)
    whitening = vectors / np.sqrt(np.maximum(values, 1e-12))
    whitened = centred @ whitening
    return whitening @ _top_eigenvectors(whitened.T @ whitened / len(whitened), dims)


def _top_eigenvectors(matrix, count):
    values, vectors = np.linalg.eigh(matrix)
    return vectors[:, np.argsort(values)[::-1][:count]]


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
