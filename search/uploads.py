"""Validation "at the door" for uploaded query images.

Runs in the Django web process, so it uses Pillow only (never torch, never the
worker's decoder). It trusts neither the file name nor the declared content
type: the bytes must decode as one of SUPPORTED_FORMATS within the size and
pixel limits, or UploadRejected carries a sentence fit to show the user.
"""

import io
import math
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"})

# Image.open() insists on a list or tuple; a fixed order keeps probing deterministic.
_OPEN_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
# Phone cameras write MPO: a JPEG with extra images appended, which Pillow names separately.
_FORMAT_ALIASES = {"MPO": "JPEG"}
_NOT_AN_IMAGE = (
    "This file is not an image (or its format is not supported). Supported formats: JPEG, PNG, GIF, WebP, BMP, TIFF."
)
_CORRUPT = "The image file is truncated or corrupt."
_BOMB_MESSAGE = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+)")
_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class UploadRejected(Exception):
    """An upload that cannot be used as a query image; `.message` is user-facing."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class UploadInfo:
    """What validation learned about an accepted upload."""

    format: str
    width: int
    height: int
    size: int


def validate_upload(f, *, max_bytes: int, max_pixels: int) -> UploadInfo:
    """Accept `f` as a query image or raise UploadRejected; leaves `f` at position 0."""
    if f is None:
        raise UploadRejected("No file was uploaded.")
    try:
        size = _byte_size(f)
        if size == 0:
            raise UploadRejected("The file is empty.")
        if size > max_bytes:
            raise UploadRejected(
                f"The image is too large: {_format_bytes(size, up=True)}; "
                f"the limit is {_format_bytes(max_bytes, up=False)}."
            )
        return _inspect(f, size, max_pixels)
    finally:
        _rewind(f)


def _byte_size(f) -> int:
    """Size in bytes: the upload's own `.size` when it has one, else measured."""
    size = getattr(f, "size", None)
    if isinstance(size, int):
        return size
    try:
        f.seek(0, io.SEEK_END)
        return f.tell()
    except (OSError, ValueError, AttributeError) as exc:
        raise UploadRejected("The file could not be read.") from exc


def _inspect(f, size: int, max_pixels: int) -> UploadInfo:
    """Identify the format from the bytes, check the pixel count, then decode."""
    try:
        f.seek(0)
        with Image.open(f, formats=_OPEN_FORMATS) as img:
            fmt = _FORMAT_ALIASES.get(img.format, img.format)
            width, height = img.size
            if fmt not in SUPPORTED_FORMATS:
                raise UploadRejected(_NOT_AN_IMAGE)
            if width * height > max_pixels:
                raise UploadRejected(_too_many_pixels(width * height, max_pixels))
            if width < 1 or height < 1:
                raise UploadRejected(_CORRUPT)
            if fmt == "JPEG":
                # At 1/8 scale: every byte of the compressed data is still read (a cut or damaged file fails the
                # same way), but a phone photo decodes in half the time (bench/upload_check.py).
                img.draft(None, (max(1, width // 8), max(1, height // 8)))
            img.load()  # bounded: the pixel count was checked above
    except UploadRejected:
        raise
    except _BOMBS as exc:
        raise UploadRejected(_bomb_message(exc, max_pixels)) from exc
    except UnidentifiedImageError as exc:
        raise UploadRejected(_NOT_AN_IMAGE) from exc
    except Exception as exc:  # Pillow reports bad data with many exception types
        raise UploadRejected(_CORRUPT) from exc
    return UploadInfo(format=fmt, width=width, height=height, size=size)


def _rewind(f) -> None:
    """Seek back to the start so the caller can save the file; never raises."""
    try:
        f.seek(0)
    except (OSError, ValueError, AttributeError):
        pass


def _too_many_pixels(pixels: int | None, limit: int) -> str:
    """The user-facing sentence for an image with too many pixels."""
    if pixels is None:
        return f"The image has too many pixels (the limit is {limit:,})."
    return f"The image has too many pixels ({pixels:,}; the limit is {limit:,})."


def _bomb_message(exc: Exception, limit: int) -> str:
    """Explain Pillow's decompression-bomb error/warning in our own terms."""
    match = _BOMB_MESSAGE.search(str(exc))
    if not match:
        return _too_many_pixels(None, limit)
    # Pillow's global limit is the one that bit when it is below ours.
    return _too_many_pixels(int(match[1]), min(limit, int(match[2])))


def _format_bytes(n: int, *, up: bool) -> str:
    """Human size like '30.1 MB'; sizes round up and limits down, so they never look equal."""
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= scale:
            tenths = n * 10 / scale
            tenths = math.ceil(tenths) if up else math.floor(tenths)
            return f"{tenths / 10:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
