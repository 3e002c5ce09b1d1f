"""The query of one search: its vector in the search's space, its raw vector, and its copy evidence (keypoints,
signature), read or computed once and shared by the stages. A search of a region is the query image cropped to it
before anything is computed: the region is the query."""

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from django.conf import settings
from PIL import Image

from search import knn
from search.models import IndexedImage, LocalFeatures

from ..imageio import ImageDecodeError, load_rgb
from . import appearance, signature, tunables, verification


class SearchError(Exception):
    """A search that cannot be answered, with a reason a person can act on."""


@dataclass(eq=False)
class Query:
    space: object  # workers.spaces.Space: the model version searched
    vector: np.ndarray  # in the space's vectors
    raw: np.ndarray | None  # the raw embedding (a projected space's copy space needs it); None where none is kept
    k: int  # results wanted
    wanted: int  # candidates the global k-NN returns
    min_score: float = 0.0
    categories: tuple = ()
    image: object = None  # the decoded query (PIL); None for an indexed image whose evidence is stored
    source_image_id: int | None = None  # an indexed image searched with
    upload: object = None  # the uploaded file (a FieldFile), for recognising the very file (identical.py)
    region: dict | None = None  # the part of the image searched (jobs.region_parse), None: all of it
    size: tuple | None = None  # (width, height) of what is searched, in its file's upright pixels; None: unknown
    matches: dict = field(
        default_factory=dict
    )  # image_id -> its verification.Match, kept across rankings of this query

    @classmethod
    def of_image(cls, image, raw, space, *, k, wanted=None, min_score=0.0, categories=()):
        """The query of a decoded image and its raw embedding (one row) in a space."""
        raw = np.atleast_2d(np.asarray(raw, np.float32))
        return cls(space, space.vectors(raw)[0], raw[0], k, wanted or k, min_score, tuple(categories), image=image)

    @classmethod
    def of_job(cls, job, space, *, rerank):
        """The query of a search job (as jobs.search_job_claim returns it): an indexed image's stored vectors where it
        has them, else its file or the upload decoded and embedded. Re-ranked, the global k-NN returns more candidates
        than asked for (IMGSEARCH_RERANK_CANDIDATES), so a copy outside the top k is brought in."""
        wanted = max(job.k, settings.IMGSEARCH_RERANK_CANDIDATES) if rerank else job.k
        terms = {"k": job.k, "wanted": wanted, "min_score": job.min_score, "categories": tuple(job.categories)}
        region = getattr(job, "region", None)
        if job.source_image_id and not job.query_image:
            stored = knn.stored_vector(job.source_image_id, space.key) if not region else None
            if stored is not None:
                raw = stored if space.projection is None else knn.stored_vector(job.source_image_id, space.base_key)
                query = cls(space, np.asarray(stored, np.float32), raw, **terms, source_image_id=job.source_image_id)
                query.size = verification.upright_size(job.source_image_id)
                return query
            if job.source_image is None:
                raise SearchError("The image to search with is no longer in the index.")
            source = job.source_image.file
        elif job.query_image:
            source = job.query_image
        else:
            raise SearchError("The image to search with is no longer in the index.")
        image, size = _load_region(source, region, space.embedder.resize_size)
        raw = space.embedder.embed([image])[0]  # one row
        query = cls.of_image(image, raw, space, **terms)
        query.source_image_id, query.region, query.size = job.source_image_id, region, size
        # A region is not the very file uploaded: its file's results are verified like any other copy.
        query.upload = None if region else job.query_image or None
        return query

    @cached_property
    def _evidence(self):
        """(keypoints, signature): from the decoded query, else an indexed image's stored ones, else its file."""
        if self.image is None:
            stored = (
                LocalFeatures.objects.filter(image_id=self.source_image_id).values_list("data", "signature").first()
            )
            try:
                if stored is not None and stored[1] is not None:
                    return verification.unpack(bytes(stored[0])), np.asarray(stored[1], np.float32)
            except ValueError:  # stored by another version
                pass
            self.image = _load(IndexedImage.objects.get(id=self.source_image_id).file, tunables.WORK_SIDE)
        return verification.extract(self.pixels), signature.compute(self.pixels)

    @cached_property
    def pixels(self):
        """The decoded query shrunk for its copy evidence and working image (tunables.QUERY_SIDE): a photo of
        thousands of pixels is not converted and resized whole for each of them. Only once `image` is decoded."""
        side = tunables.QUERY_SIDE
        return self.image if side is None else verification.reduced(self.image, side)

    @property
    def features(self):
        return self._evidence[0]

    @property
    def signature(self):
        return self._evidence[1]

    @cached_property
    def signature_match(self):
        """The image whose signature matches the query's best in the whole index: (id, likeness) or None."""
        return signature.best_in_index(self.signature)

    @cached_property
    def working(self):
        """The query's pixels in the verification's frame (appearance.py): its decoded image, else (an indexed image
        searched with) its stored thumbnail; None where they cannot be read."""
        if self.image is not None:
            return appearance.working(self.pixels)
        return appearance.stored_pixels(self.source_image_id) if self.source_image_id else None

    @cached_property
    def copy_vector(self):
        """The query in the space's copy space (workers/projection.py), or None without one or without a raw vector."""
        if self.space.copy_key is None or self.raw is None:
            return None
        return self.space.projection.copy_vectors(self.raw)[0]


def _load_region(source, region, size):
    """(image, its size in the file's upright pixels): the stored file decoded for the model, cropped to the region
    (fractions of the upright image) where one is given; decoded large enough that the region's shorter side still
    has `size` pixels for the model, so a small region is not searched blurred."""
    try:
        with source.open("rb") as f:
            full = verification.header_size(f)
    except FileNotFoundError:
        raise SearchError("The query image is missing on the server; please upload it again.") from None
    except (OSError, ValueError, Image.DecompressionBombError):
        full = None  # _load says why it cannot be read
    if not region:
        return _load(source, size), full
    image = _load(source, math.ceil(size / min(region["width"], region["height"])))
    w, h = image.size
    left, top = min(round(region["x"] * w), w - 1), min(round(region["y"] * h), h - 1)  # at least a pixel
    right = min(w, max(left + 1, round((region["x"] + region["width"]) * w)))
    bottom = min(h, max(top + 1, round((region["y"] + region["height"]) * h)))
    cropped = image.crop((left, top, right, bottom))
    if full is None:
        return cropped, cropped.size
    fw, fh = full
    return cropped, (max(1, round(region["width"] * fw)), max(1, round(region["height"] * fh)))


def _load(source, size):
    """A stored file decoded for the model (or for keypoints), or SearchError saying why not."""
    try:
        with source.open("rb") as f:
            return load_rgb(f, target_size=size, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
    except ImageDecodeError as exc:
        raise SearchError(f"The query image could not be read: {exc}") from None
    except FileNotFoundError:
        raise SearchError("The query image is missing on the server; please upload it again.") from None
