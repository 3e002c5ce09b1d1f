"""A corpus of strange and hostile inputs, generated here: each gets a clear 4xx or a finished job, never a 500."""

import io
import struct
import zlib

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image

from search.models import IndexedImage, SearchJob

from .conftest import edited_copy, jpeg_bytes, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
URL = "/api/v1/searches/"


def encode(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def photo(size=(320, 240)):
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray((base + rng.normal(0, 20, base.shape)).clip(0, 255).astype("uint8"))


def png_header_only(width, height):
    """A valid PNG signature and IHDR declaring a huge image, with a tiny compressed body."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    return encode(photo((60, 30)), "JPEG", exif=exif.tobytes())


def animated_gif():
    frames = [Image.new("P", (40, 40), i * 40) for i in range(4)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def palette_with_transparency():
    image = photo((50, 50)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def sixteen_bit():
    return encode(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), "PNG")


# name -> (file bytes, file name, content type, expected): expected is ("400", words), ("413", words) or ("done",)
CORPUS = {
    "empty file": (b"", "empty.jpg", "image/jpeg", ("400", "empty")),
    "text renamed .jpg": (b"just some words\n" * 40, "notes.jpg", "image/jpeg", ("400", "not an image")),
    "html renamed .jpg": (
        b"<!doctype html><title>x</title><script>alert(1)</script>",
        "page.jpg",
        "image/jpeg",
        ("400", "not an image"),
    ),
    "svg with script": (
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>',
        "x.svg",
        "image/svg+xml",
        ("400", "not an image"),
    ),
    "pdf": (
        b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF",
        "doc.jpg",
        "application/pdf",
        ("400", "not an image"),
    ),
    "truncated jpeg": (encode(photo(), "JPEG")[:1500], "cut.jpg", "image/jpeg", ("400", "truncated")),
    "truncated png": (encode(photo(), "PNG")[:400], "cut.png", "image/png", ("400", None)),
    "decompression bomb": (png_header_only(40000, 40000), "bomb.png", "image/png", ("400", "pixels")),
    "1x1 image": (encode(Image.new("RGB", (1, 1), "red"), "PNG"), "dot.png", "image/png", ("done",)),
    "very wide image": (encode(Image.new("RGB", (20000, 10), "blue"), "PNG"), "wide.png", "image/png", ("done",)),
    "very tall image": (encode(Image.new("L", (8, 12000), 90), "PNG"), "tall.png", "image/png", ("done",)),
    "cmyk jpeg": (encode(photo().convert("CMYK"), "JPEG"), "cmyk.jpg", "image/jpeg", ("done",)),
    "16-bit png": (sixteen_bit(), "deep.png", "image/png", ("done",)),
    "palette png with transparency": (palette_with_transparency(), "pal.png", "image/png", ("done",)),
    "animated gif": (animated_gif(), "anim.gif", "image/gif", ("done",)),
    "exif-rotated jpeg": (exif_rotated(), "rotated.jpg", "image/jpeg", ("done",)),
    "grey jpeg": (encode(photo().convert("L"), "JPEG"), "grey.jpg", "image/jpeg", ("done",)),
    "webp": (encode(photo(), "WEBP"), "x.webp", "image/webp", ("done",)),
    "bmp": (encode(photo(), "BMP"), "x.bmp", "image/bmp", ("done",)),
    "tiff": (encode(photo(), "TIFF"), "x.tiff", "image/tiff", ("done",)),
    "jpeg/html polyglot": (
        encode(photo(), "JPEG") + b"<html><script>alert(1)</script></html>",
        "poly.jpg",
        "text/html",
        ("done",),
    ),
    "png named .gif": (encode(photo(), "PNG"), "lies.gif", "image/gif", ("done",)),
    "wrong content type": (encode(photo(), "JPEG"), "x.jpg", "text/plain", ("done",)),
    "no content type": (encode(photo(), "JPEG"), "x.jpg", "application/octet-stream", ("done",)),
    "odd unicode name": (encode(photo(), "JPEG"), "猫😺 ünïcødé\u202e.jpg", "image/jpeg", ("done",)),
    "very long name": (encode(photo(), "JPEG"), "a" * 400 + ".jpg", "image/jpeg", ("done",)),
    "path traversal name": (encode(photo(), "JPEG"), "../../../../etc/passwd", "image/jpeg", ("done",)),
}

BAD_PARAMETERS = {
    "k not a number": {"k": "ten"},
    "k zero": {"k": 0},
    "k too big": {"k": 101},
    "k fraction": {"k": "2.5"},
    "min_score negative": {"min_score": -0.5},
    "min_score over 1": {"min_score": 7},
    "min_score text": {"min_score": "high"},
    "min_score nan": {"min_score": "nan"},
    "min_score infinity": {"min_score": "inf"},
    "unknown image_id": {"image_id": 10**9},
    "image_id text": {"image_id": "abc"},
    "from_search not a uuid": {"from_search": "../etc"},
    "too many categories": {"categories": ",".join(f"t{i}" for i in range(60))},
}


@pytest.fixture
def indexed(worker, photo_folder):
    call_command("index_images", str(photo_folder))
    return IndexedImage.objects.first()


def test_every_kind_of_bad_file_gets_a_4xx_or_a_finished_job_and_the_service_stays_healthy(client, indexed):
    """The whole corpus, through the real API and worker: no 500, no hung job, then a normal search still works."""
    for kind, (data, name, content_type, expected) in CORPUS.items():
        response = client.post(URL, {"image": SimpleUploadedFile(name, data, content_type=content_type)})
        if expected[0] == "done":
            assert response.status_code == 202, (kind, response.content)
            job = wait_for_job(client, response.json()["url"])
            assert job["status"] == "done", (kind, job["error"])
            stored = SearchJob.objects.get(id=job["id"]).query_image.name
            assert "/" not in stored.rsplit("/", 1)[-1] and ".." not in stored and "passwd" not in stored
        else:
            assert response.status_code == int(expected[0]), (kind, response.status_code, response.content)
            detail = response.json()["detail"]
            assert detail and (expected[1] is None or expected[1] in detail.lower()), (kind, detail)
    job = wait_for_job(
        client, client.post(URL, {"image": SimpleUploadedFile("q.jpg", edited_copy(indexed.source_path))}).json()["url"]
    )
    assert job["status"] == "done" and job["results"][0]["image_id"] == indexed.id
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("kind", BAD_PARAMETERS)
def test_bad_parameters_get_400_naming_the_field(client, kind, transactional_db):
    """Out-of-range, non-numeric, non-finite or unknown parameters are refused with a message."""
    params = BAD_PARAMETERS[kind]
    body = dict(params)
    if "image_id" not in params and "from_search" not in params:
        body["image"] = SimpleUploadedFile("q.jpg", jpeg_bytes(photo()), content_type="image/jpeg")
    response = client.post(URL, body)
    assert response.status_code == 400, response.content
    assert next(iter(params)) in response.json()["detail"]
    assert not SearchJob.objects.exists()


def test_malformed_multipart_is_a_400(client, transactional_db):
    """A body that does not follow its own multipart boundary is a 400, not a 500."""
    body = b'--XYZ\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n\xff\xd8 no end'
    response = client.generic("POST", URL, body, content_type="multipart/form-data; boundary=XYZ")
    assert response.status_code == 400
    response = client.generic("POST", URL, b"garbage", content_type="multipart/form-data")  # no boundary at all
    assert response.status_code == 400


def test_over_size_upload_is_refused(client, settings, transactional_db):
    """Over the upload limit: refused with the limit in the message."""
    settings.IMGSEARCH_MAX_UPLOAD_BYTES = 200 * 1024
    data = encode(Image.effect_noise((800, 800), 120).convert("RGB"), "PNG")
    response = client.post(URL, {"image": SimpleUploadedFile("big.png", data, content_type="image/png")})
    assert response.status_code in (400, 413) and "limit" in response.json()["detail"]


def test_the_index_command_skips_and_reports_bad_files(worker, tmp_path, capsys):
    """Indexing a folder of bad files skips the unreadable ones with reasons and fails the corrupt ones, by name."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("empty file", "text renamed .jpg", "svg with script", "decompression bomb", "1x1 image", "cmyk jpeg"):
        data, filename, _, _ = CORPUS[name]
        (folder / (name.replace(" ", "_") + "_" + filename.split("/")[-1])).write_bytes(data)
    (folder / "cut.jpg").write_bytes(encode(photo(), "JPEG")[:1500])
    call_command("index_images", str(folder))
    out = capsys.readouterr().out
    assert "4 skipped" in out and "too many pixels" in out and "not an image" in out
    assert IndexedImage.objects.filter(status="ready").count() == 2
    failed = IndexedImage.objects.get(status="failed")
    assert failed.source_path.endswith("cut.jpg") and "truncated" in failed.error and "failed" in out
