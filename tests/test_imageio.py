"""Tests for workers.imageio: decoding every image mode to RGB, limits and thumbnails."""

import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workers import imageio
from workers.imageio import ImageDecodeError, load_rgb, make_thumbnail

REPO_ROOT = Path(__file__).resolve().parents[1]


def encode(img, fmt, **params):
    """Save `img` in `fmt` and return the bytes."""
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def png_chunk(kind, data):
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width, height):
    """A tiny greyscale PNG whose IHDR claims width x height (its pixel data is missing)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def noise(width, height, mode="RGB"):
    """A random image, so compressed formats cannot shrink it to nothing."""
    channels = len(Image.new(mode, (1, 1)).getbands())
    shape = (height, width, channels) if channels > 1 else (height, width)
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))


def close_to(pixel, expected, tol=6):
    """Whether every channel of `pixel` is within `tol` of `expected`."""
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected))


def test_rgb_png_round_trips():
    """A plain RGB PNG comes back unchanged as a loaded RGB image."""
    img = load_rgb(encode(Image.new("RGB", (5, 3), (10, 200, 30)), "PNG"))
    assert img.mode == "RGB" and img.size == (5, 3)
    assert img.getpixel((4, 2)) == (10, 200, 30)


def test_accepts_path_pathlike_and_file_object(tmp_path):
    """Paths (str and Path), bytes, bytearray and binary file objects all work."""
    data = encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (str(path), path, data, bytearray(data), io.BytesIO(data)):
        assert load_rgb(source).getpixel((0, 0)) == (1, 2, 3)
    with open(path, "rb") as fh:
        assert load_rgb(fh).size == (4, 4)
        assert not fh.closed  # a caller's file object is left for the caller to close


def test_grey_l():
    """Greyscale (L) becomes RGB with equal channels."""
    assert load_rgb(encode(Image.new("L", (4, 4), 77), "PNG")).getpixel((1, 1)) == (77, 77, 77)


def test_grey_with_alpha_la():
    """LA: transparent pixels become white, opaque ones keep their grey."""
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (50, 255))
    out = load_rgb(encode(img, "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (50, 50, 50)


def test_rgba_transparent_is_white_and_half_alpha_blends():
    """RGBA is composited onto white, not black."""
    img = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (255, 0, 0, 255))
    img.putpixel((2, 0), (0, 0, 0, 128))
    out = load_rgb(encode(img, "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (255, 0, 0)
    assert close_to(out.getpixel((2, 0)), (127, 127, 127), tol=2)


def test_palette():
    """Palette (P) images are expanded to their RGB colours."""
    img = Image.new("RGB", (2, 1), (255, 0, 0))
    img.putpixel((1, 0), (0, 0, 255))
    pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    out = load_rgb(encode(pal, "PNG"))
    assert out.getpixel((0, 0)) == (255, 0, 0) and out.getpixel((1, 0)) == (0, 0, 255)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_index(fmt):
    """A palette image's transparent index (info['transparency']) becomes white."""
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    out = load_rgb(encode(pal, fmt, transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (0, 255, 0)


def test_rgb_png_with_transparent_colour_key():
    """An RGB PNG with a tRNS colour key treats that colour as transparent (white)."""
    img = Image.new("RGB", (2, 1), (0, 0, 0))
    img.putpixel((1, 0), (9, 9, 9))
    out = load_rgb(encode(img, "PNG", transparency=(0, 0, 0)))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (9, 9, 9)


def test_cmyk_jpeg_adobe_inverted():
    """A CMYK JPEG (Pillow writes Adobe-style inverted CMYK) decodes to the right colour."""
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).info.get("adobe") is not None
    assert close_to(load_rgb(data).getpixel((8, 8)), (255, 0, 0))


def test_cmyk_tiff():
    """A CMYK TIFF decodes to RGB."""
    out = load_rgb(encode(Image.new("CMYK", (4, 4), (255, 0, 255, 0)), "TIFF"))
    assert out.getpixel((0, 0)) == (0, 255, 0)


def test_ycbcr_tiff():
    """A YCbCr TIFF decodes to RGB."""
    out = load_rgb(encode(Image.new("YCbCr", (4, 4), (76, 85, 255)), "TIFF"))
    assert out.mode == "RGB" and close_to(out.getpixel((0, 0)), (255, 0, 0), tol=3)


def test_one_bit():
    """Mode '1' becomes black and white RGB."""
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    out = load_rgb(encode(img, "PNG"))
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 0)) == (255, 255, 255)


def test_sixteen_bit_grey_scaled_by_bit_depth():
    """16-bit grey (I;16) is scaled by 65535, not clipped: 32768 -> ~128, 65535 -> 255."""
    pixels = np.array([[0, 32768, 65535, 4000]], dtype=np.uint16)
    img = Image.fromarray(pixels)
    assert img.mode == "I;16"
    out = load_rgb(encode(img, "PNG"))
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 16]


def test_sixteen_bit_big_endian_tiff():
    """Big-endian 16-bit grey (I;16B) is scaled like I;16."""
    data = encode(Image.new("I;16B", (2, 2), 32768), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16B"
    assert load_rgb(data).getpixel((0, 0)) == (128, 128, 128)


def test_sixteen_bit_ppm_opens_as_mode_i():
    """A 16-bit PGM (Pillow opens it as 32-bit 'I') with values up to 65535 is not all white."""
    data = b"P5\n2 1\n65535\n" + struct.pack(">HH", 65535, 16384)
    assert Image.open(io.BytesIO(data)).mode == "I"
    out = load_rgb(data)
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0))[0] == 64


def test_mode_i_with_8bit_values_kept():
    """A 32-bit integer image holding 0..255 values keeps them as they are."""
    assert load_rgb(encode(Image.new("I", (2, 2), 200), "TIFF")).getpixel((0, 0)) == (200, 200, 200)


def test_mode_i_wide_range_stretched():
    """A 32-bit integer image outside 0..65535 is stretched over its actual range."""
    img = Image.fromarray(np.array([[-100000, 100000]], dtype=np.int32))
    out = load_rgb(encode(img, "TIFF"))
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((1, 0)) == (255, 255, 255)


def test_float_zero_to_one():
    """A 32-bit float image in 0..1 is scaled to 0..255."""
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    out = load_rgb(encode(img, "TIFF"))
    assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_float_arbitrary_range_stretched():
    """A float image with an arbitrary range (and a NaN) is stretched, not clipped."""
    img = Image.fromarray(np.array([[-2.0, 0.0, 2.0, np.nan]], dtype=np.float32))
    out = load_rgb(encode(img, "TIFF"))
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 0]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_first_frame(fmt):
    """Animated GIF, WebP and APNG give their first frame."""
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "lime", "blue")]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert close_to(load_rgb(data).getpixel((8, 8)), (255, 0, 0))


def rotated_jpeg(width, height, orientation):
    """A JPEG that is red on its left half and blue on its right, with an EXIF orientation."""
    img = Image.new("RGB", (width, height), (255, 0, 0))
    img.paste((0, 0, 255), (width // 2, 0, width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_applied():
    """A 40x20 JPEG with EXIF orientation 6 comes back upright as 20x40."""
    out = load_rgb(rotated_jpeg(40, 20, 6))
    assert out.size == (20, 40)
    # Orientation 6 means "rotate 90 degrees clockwise to display": left goes to the top.
    assert close_to(out.getpixel((10, 5)), (255, 0, 0), tol=20)
    assert close_to(out.getpixel((10, 35)), (0, 0, 255), tol=20)


def test_draft_mode_for_large_jpeg():
    """With target_size a 4000x3000 JPEG decodes reduced, keeping the shorter side >= target."""
    data = encode(Image.new("RGB", (4000, 3000), (20, 120, 220)), "JPEG")
    out = load_rgb(data, target_size=256)
    assert 256 <= min(out.size) < 3000
    assert out.size == (500, 375)
    assert load_rgb(data).size == (4000, 3000)


def test_draft_mode_keeps_shorter_side_after_exif_rotation():
    """Draft plus EXIF rotation still leaves the shorter side >= target_size."""
    out = load_rgb(rotated_jpeg(1200, 600, 6), target_size=100)
    assert out.size == (150, 300)
    assert load_rgb(rotated_jpeg(1200, 600, 6), target_size=400).size == (600, 1200)


def test_target_size_ignored_for_non_jpeg():
    """target_size never changes the size of non-JPEG images."""
    assert load_rgb(encode(Image.new("RGB", (800, 600)), "PNG"), target_size=64).size == (800, 600)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, this is plain text\n" * 10, b"<html><body>hi</body></html>", b"%PDF-1.7\n%\xe2\xe3"],
    ids=["empty", "text", "html", "pdf"],
)
def test_not_an_image(data):
    """Empty, text, HTML and PDF bytes raise ImageDecodeError."""
    with pytest.raises(ImageDecodeError):
        load_rgb(data)


def test_eps_is_refused():
    """EPS is never opened (Pillow would hand it to Ghostscript)."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_rgb(eps)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(fmt):
    """A JPEG or PNG cut in half raises ImageDecodeError about truncation."""
    data = encode(noise(64, 64), fmt)
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        load_rgb(data[: len(data) // 2])


def test_missing_path(tmp_path):
    """A path that does not exist raises ImageDecodeError, not a raw OSError."""
    with pytest.raises(ImageDecodeError, match="cannot read"):
        load_rgb(tmp_path / "nope.jpg")


def test_decompression_bomb_header_rejected_quickly():
    """A PNG header claiming 100000x100000 is rejected as too large without decoding it."""
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="too large") as info:
        load_rgb(png_header_only(100_000, 100_000))
    assert time.perf_counter() - start < 1
    assert "10,000,000,000 pixels" in str(info.value)


def test_pixel_limit_checked_from_header():
    """An 8000x8000 header exceeds the 50M-pixel MAX_PIXELS even below Pillow's own limit."""
    expected = r"too large \(64,000,000 pixels, limit 50,000,000\)"
    with pytest.raises(ImageDecodeError, match=expected):
        load_rgb(png_header_only(8000, 8000))


def test_max_pixels_keyword_and_module_setting(monkeypatch):
    """max_pixels overrides MAX_PIXELS, which is read at call time."""
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageDecodeError, match="too large"):
        load_rgb(data, max_pixels=9_999)
    assert load_rgb(data, max_pixels=10_000).size == (100, 100)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100)
    with pytest.raises(ImageDecodeError, match="too large"):
        load_rgb(data)


def test_global_pillow_limit_untouched():
    """Loading never changes Pillow's global Image.MAX_IMAGE_PIXELS."""
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageDecodeError):
        load_rgb(png_header_only(100_000, 100_000))
    load_rgb(encode(Image.new("RGB", (10, 10)), "PNG"), max_pixels=5_000_000_000)
    assert before == Image.MAX_IMAGE_PIXELS


def test_decode_error_is_value_error():
    """ImageDecodeError is a ValueError so generic handlers catch it."""
    assert issubclass(ImageDecodeError, ValueError)


def test_thumbnail_fits_and_keeps_aspect():
    """make_thumbnail returns a baseline JPEG within size x size with the same aspect ratio."""
    data = make_thumbnail(Image.new("RGB", (1000, 500), (0, 128, 0)), size=320)
    thumb = Image.open(io.BytesIO(data))
    assert thumb.format == "JPEG" and thumb.size == (320, 160)
    assert "progressive" not in thumb.info and "progression" not in thumb.info


def test_thumbnail_never_upscales_and_leaves_input_alone():
    """A small image is not enlarged, and the caller's image is not modified."""
    img = Image.new("RGBA", (50, 30), (0, 0, 0, 0))
    thumb = Image.open(io.BytesIO(make_thumbnail(img)))
    assert thumb.size == (50, 30) and thumb.mode == "RGB"
    assert close_to(thumb.getpixel((5, 5)), (255, 255, 255), tol=2)
    assert img.size == (50, 30) and img.mode == "RGBA"


def test_thumbnail_portrait_and_extreme_aspect():
    """Portrait and very wide images both fit the box."""
    assert Image.open(io.BytesIO(make_thumbnail(Image.new("L", (300, 900)), 90))).size == (30, 90)
    assert Image.open(io.BytesIO(make_thumbnail(Image.new("RGB", (20000, 10))))).size == (320, 1)


def test_module_does_not_import_torch():
    """Importing workers.imageio pulls in neither torch nor torchvision."""
    code = "import sys, workers.imageio; sys.exit('torch' in sys.modules or 'torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
