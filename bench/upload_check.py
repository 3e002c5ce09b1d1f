"""What the door check of an uploaded query image costs the web request (search/uploads.validate_upload).

    .venv/bin/python -m bench.upload_check

A camera-sized JPEG (12 MP), a small one and a PNG: the app's check against decoding the whole image (the check
before JPEGs were decoded at 1/8 scale), timed in the same run. Prints milliseconds per upload and the ratio.
"""

import io
import statistics

import numpy as np
from PIL import Image

from bench.common import timed
from search.uploads import validate_upload

LIMITS = {"max_bytes": 64 * 1024 * 1024, "max_pixels": 50_000_000}


def picture(size, seed=0):
    """A photo-like picture: smooth random colour fields, upscaled."""
    small = (np.random.default_rng(seed).random((size[1] // 8, size[0] // 8, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def encoded(img, fmt, **options):
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def full_decode(data):
    with Image.open(io.BytesIO(data)) as img:
        img.load()


def app_check(data):
    validate_upload(io.BytesIO(data), **LIMITS)


def median_ms(fn, data, repeats):
    return 1000 * statistics.median(timed(fn, data)[1] for _ in range(repeats))


def main():
    cases = [
        ("JPEG 4000x3000 (a phone photo), quality 90", encoded(picture((4000, 3000)), "JPEG", quality=90), 7),
        ("JPEG 640x480, quality 85", encoded(picture((640, 480)), "JPEG", quality=85), 31),
        ("PNG 1024x768 (decoded whole either way)", encoded(picture((1024, 768)), "PNG"), 11),
    ]
    for name, data, repeats in cases:
        whole, check = median_ms(full_decode, data, repeats), median_ms(app_check, data, repeats)
        print(
            f"{name}, {len(data) // 1024} kB: full decode {whole:.1f} ms, the app's check {check:.1f} ms "
            f"({check / whole:.2f}x), median of {repeats}"
        )


if __name__ == "__main__":
    main()
