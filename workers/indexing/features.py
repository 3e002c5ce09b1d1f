"""An indexed image's copy evidence, computed from its decoded pixels once at index time and stored beside its
vectors (search.models.LocalFeatures), so a search compares it without decoding the image again."""

from typing import NamedTuple

from django.conf import settings

from ..imageio import ImageDecodeError, load_rgb
from ..ranking import signature, tunables, verification, words


class Evidence(NamedTuple):
    """What LocalFeatures stores for an image."""

    features: bytes  # its SIFT keypoints at each size, packed (verification.pack)
    signature: object  # its 16x16 signature (signature.compute)
    words: object  # its visual words (words.aggregate), None before the index has a vocabulary
    words_vocabulary: int | None  # the VisualWords id they were computed with


def copy_evidence(pil, vocabulary):
    """The Evidence of a decoded image; no words without a vocabulary (words.vocabulary())."""
    features = verification.extract(pil)
    found = None if vocabulary is None else words.aggregate(features, vocabulary.centroids)
    return Evidence(
        verification.pack(features), signature.compute(pil), found, None if vocabulary is None else vocabulary.id
    )


def vocabulary_for(extracting):
    """The index's vocabulary of visual words when local features are being extracted and one is learned, else None."""
    return words.vocabulary() if extracting else None


def feature_ids(images):
    """The ids of images to extract local features of: all of them, unless IMGSEARCH_LOCAL_FEATURES is off."""
    return frozenset(image.id for image in images) if settings.IMGSEARCH_LOCAL_FEATURES else frozenset()


def decode_evidence(vocabulary, image):
    """(image, its Evidence), or (image, None) when its file cannot be read: for extracting evidence alone."""
    try:
        pil = load_rgb(image.file.path, target_size=tunables.WORK_SIDE, max_pixels=settings.IMGSEARCH_MAX_PIXELS)
    except (ImageDecodeError, OSError):
        return image, None
    return image, copy_evidence(pil, vocabulary)
