"""Tests for search.uploads.validate_upload: what is let in at the door and what is turned away."""

import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from search.uploads import SUPPORTED_FORMATS, UploadInfo, UploadRejected, validate_upload

REPO_ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
LIMITS = {"max_bytes": 20 * MB, "max_pixels": 50_000_000}
NOT_AN_IMAGE = (
    "This file is not an image (or its format is not supported). Supported formats: JPEG, PNG, GIF, WebP, BMP, TIFF."
)
CORRUPT = "The image file is truncated or corrupt."


def encode(img, fmt, **params):
    """Save `img` in `fmt` and return the bytes."""
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def upload(data, name="query.jpg", content_type="image/jpeg"):
    """A Django upload with a (possibly lying) name and content type."""
    return SimpleUploadedFile(name, data, content_type=content_type)


def noise(width, height):
    """A random RGB image, so compressed formats cannot shrink it to nothing."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_chunk(kind, data):
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, idat, bit_depth=8):
    """A greyscale PNG file with the given IHDR size and raw (already compressed) IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def rejection(f, **limits):
    """The message validate_upload rejects `f` with."""
    with pytest.raises(UploadRejected) as info:
        validate_upload(f, **(LIMITS | limits))
    assert str(info.value) == info.value.message
    return info.value.message


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("JPEG", {}), ("PNG", {}), ("GIF", {}), ("WEBP", {}), ("BMP", {}), ("TIFF", {"compression": "tiff_lzw"})],
)
def test_supported_formats_accepted(fmt, params):
    """Each supported format is accepted and described correctly, whatever its file name."""
    data = encode(Image.new("RGB", (31, 17), (200, 30, 90)), fmt, **params)
    info = validate_upload(upload(data, name="upload.bin", content_type="text/plain"), **LIMITS)
    assert info == UploadInfo(format=fmt, width=31, height=17, size=len(data))
    assert fmt in SUPPORTED_FORMATS


def test_upload_info_is_frozen():
    """UploadInfo cannot be modified after validation."""
    info = UploadInfo(format="PNG", width=1, height=1, size=10)
    with pytest.raises(AttributeError):
        info.width = 2


def test_file_position_is_zero_after_validation():
    """The file is rewound after acceptance and after rejection, so it can be saved."""
    f = upload(encode(Image.new("RGB", (8, 8)), "PNG"))
    f.read(5)
    validate_upload(f, **LIMITS)
    assert f.tell() == 0 and not f.closed
    bad = upload(b"not an image at all")
    bad.read(3)
    rejection(bad)
    assert bad.tell() == 0


def test_plain_file_objects_are_measured():
    """A BytesIO without .size is measured, validated and rewound."""
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    f = io.BytesIO(data)
    assert validate_upload(f, **LIMITS) == UploadInfo("PNG", 8, 8, len(data))
    assert f.tell() == 0


def test_missing_file():
    """No file at all is rejected."""
    assert rejection(None) == "No file was uploaded."


def test_empty_file():
    """An empty upload is rejected as empty."""
    assert rejection(upload(b"")) == "The file is empty."
    assert rejection(io.BytesIO()) == "The file is empty."


@pytest.mark.parametrize(
    "data",
    [
        b"Dear diary, today I renamed a text file to .jpg\n" * 20,
        b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b"<script>alert(document.cookie)</script><rect width='10' height='10'/></svg>",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n",
        b"<html>" + encode(Image.new("RGB", (8, 8)), "JPEG"),
    ],
    ids=["text", "html", "svg-with-script", "pdf", "html-then-jpeg"],
)
def test_non_images_rejected_despite_image_name(data):
    """Text, HTML, SVG, PDF (and HTML prefixed to a JPEG) named .jpg are not images."""
    assert rejection(upload(data, name="cat.jpg", content_type="image/jpeg")) == NOT_AN_IMAGE


def test_unsupported_image_format_rejected():
    """A real image in a format outside SUPPORTED_FORMATS (here ICO) is rejected."""
    assert rejection(upload(encode(Image.new("RGB", (16, 16)), "ICO"))) == NOT_AN_IMAGE


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_rejected(fmt):
    """A JPEG or PNG cut in half is rejected as truncated or corrupt."""
    data = encode(noise(64, 64), fmt)
    assert rejection(upload(data[: len(data) // 2])) == CORRUPT


def test_corrupt_png_header_rejected():
    """A PNG whose IHDR checksum is wrong is rejected, not raised raw."""
    data = bytearray(encode(Image.new("RGB", (8, 8)), "PNG"))
    data[20] ^= 0xFF  # inside IHDR, so its CRC no longer matches
    assert rejection(upload(bytes(data))) in (CORRUPT, NOT_AN_IMAGE)


def test_too_many_bytes_uses_upload_size():
    """An upload over max_bytes is rejected from its .size, with a readable message."""
    f = upload(encode(Image.new("RGB", (8, 8)), "JPEG"))
    f.size = 31_562_137  # about 30.1 MB; nothing that big is allocated
    assert rejection(f) == "The image is too large: 30.1 MB; the limit is 20 MB."


def test_too_many_bytes_measured():
    """A file object without .size is measured against max_bytes."""
    data = encode(noise(64, 64), "PNG")
    assert len(data) > 5 * 1024
    f = io.BytesIO(data)
    message = rejection(f, max_bytes=1000)
    assert f.tell() == 0
    assert message.startswith("The image is too large: ")
    assert message.endswith("; the limit is 1000 bytes.")


def test_exactly_max_bytes_is_fine():
    """A file exactly max_bytes long is accepted."""
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    assert validate_upload(upload(data), max_bytes=len(data), max_pixels=100).size == len(data)


def test_pixel_bomb_rejected_from_header_quickly():
    """A ~100 KB PNG whose (real, all-zero) data is 30000x30000 is rejected before decoding."""
    row = b"\x00" + b"\x00" * (30000 // 8)  # filter byte + one 1-bit row
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(30000)) + packer.flush()
    data = png(30000, 30000, idat, bit_depth=1)
    assert len(data) < 1024 * 1024
    start = time.perf_counter()
    message = rejection(upload(data, name="bomb.png"))
    assert time.perf_counter() - start < 1
    assert message == "The image has too many pixels (900,000,000; the limit is 50,000,000)."


def test_too_many_pixels_below_pillows_own_limit():
    """An 8000x8000 header is over max_pixels although Pillow itself would allow it."""
    data = png(8000, 8000, zlib.compress(b"\x00" * 100))
    expected = "The image has too many pixels (64,000,000; the limit is 50,000,000)."
    assert rejection(upload(data)) == expected


def test_too_many_pixels_small_limit():
    """max_pixels applies to ordinary images too."""
    message = rejection(upload(encode(Image.new("RGB", (100, 100)), "PNG")), max_pixels=9_999)
    assert message == "The image has too many pixels (10,000; the limit is 9,999)."


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_as_error_still_rejected_cleanly():
    """When Pillow's DecompressionBombWarning is an error, the rejection is still clean."""
    data = png(10000, 10000, zlib.compress(b"\x00" * 100))
    expected = "The image has too many pixels (100,000,000; the limit is 50,000,000)."
    assert rejection(upload(data)) == expected


def test_one_by_one_is_valid():
    """A 1x1 image is a valid query."""
    assert validate_upload(upload(encode(Image.new("L", (1, 1)), "PNG")), **LIMITS).width == 1


def test_very_wide_image_is_valid():
    """A 20000x10 image under the pixel limit is valid."""
    info = validate_upload(upload(encode(Image.new("RGB", (20000, 10)), "PNG")), **LIMITS)
    assert (info.width, info.height) == (20000, 10)


def test_animated_gif_is_valid():
    """An animated GIF is accepted (its first frame is what gets decoded)."""
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert validate_upload(upload(data), **LIMITS).format == "GIF"


def test_camera_mpo_counts_as_jpeg():
    """A multi-picture JPEG (MPO, as phone cameras write) is accepted as JPEG."""
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert validate_upload(upload(data), **LIMITS).format == "JPEG"


def test_jpeg_html_polyglot_accepted_as_jpeg():
    """JPEG bytes with HTML appended are accepted as JPEG: they are only decoded as an image."""
    jpeg = encode(Image.new("RGB", (8, 8)), "JPEG")
    data = jpeg + b"<html><script>alert(1)</script></html>"
    info = validate_upload(upload(data, name="x.html", content_type="text/html"), **LIMITS)
    assert info == UploadInfo("JPEG", 8, 8, len(data))


def test_rejection_is_an_exception_with_message():
    """UploadRejected carries the sentence in .message and as its str()."""
    exc = UploadRejected("The file is empty.")
    assert isinstance(exc, Exception) and exc.message == str(exc) == "The file is empty."


def test_module_imports_neither_torch_nor_worker_decoder():
    """search.uploads imports no torch/torchvision and not workers.imageio."""
    code = (
        "import sys, search.uploads; "
        "sys.exit(any(m in sys.modules for m in ('torch', 'torchvision', 'workers.imageio')))"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
