"""Finding the source of a picture: local features stored at index time, copies verified and put first."""

import hashlib
import io

import pytest
from django.core.management import call_command
from PIL import Image, ImageDraw, ImageFilter

from search.models import IndexedImage, LocalFeatures
from workers import localfeatures

from .conftest import jpeg_bytes, search_upload, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def mirrored_turned_copy(path):
    """Mirrored, turned a quarter and cropped: a copy the global vector alone ranks poorly."""
    with Image.open(path) as img:
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA")).convert("RGB")
    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).transpose(Image.Transpose.ROTATE_90)
    w, h = img.size
    return jpeg_bytes(img.crop((w // 10, h // 10, w - w // 10, h - h // 10)), quality=60)


def test_indexing_stores_local_features_of_every_image(worker, photo_folder):
    """Each indexed image gets its packed keypoints beside its vector, in the current format."""
    call_command("index_images", str(photo_folder))
    rows = LocalFeatures.objects.all()
    assert rows.count() == IndexedImage.objects.count() == 12
    for row in rows:
        features = localfeatures.unpack(bytes(row.data))
        assert 0 < len(features) <= localfeatures.MAX_KEYPOINTS


def test_a_copy_is_marked_and_comes_first_even_where_its_global_score_is_lower(worker, client, photo_folder):
    """Mirrored + turned copies: the original is the verified "copy" first, with re-ranking timed; off, it is not marked."""
    call_command("index_images", str(photo_folder))
    for original in IndexedImage.objects.order_by("id")[:6]:
        job = search_upload(client, mirrored_turned_copy(original.source_path), k=5)
        assert job["status"] == "done", job["error"]
        assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (original.id, "copy")
        assert [r["match"] for r in job["results"][1:]] == ["similar"] * (job["count"] - 1)
        assert job["timings"]["rerank_ms"] > 0
    plain = search_upload(client, mirrored_turned_copy(original.source_path), k=5, rerank="false")
    assert {r["match"] for r in plain["results"]} == {"similar"} and plain["timings"]["rerank_ms"] is None
    scores = [r["score"] for r in plain["results"]]
    assert scores == sorted(scores, reverse=True)


def test_an_unrelated_picture_is_never_called_a_copy(worker, client, photo_folder):
    """A generated picture that is in no way in the index: every result is only "similar"."""
    call_command("index_images", str(photo_folder))
    img = Image.effect_mandelbrot((320, 240), (-2, -1.2, 1, 1.2), 100).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG")
    job = search_upload(client, out.getvalue(), k=12)
    assert job["count"] == 12 and {r["match"] for r in job["results"]} == {"similar"}


def test_searching_with_an_indexed_image_finds_itself_as_a_copy(worker, client, photo_folder):
    """"Find similar" on a result: the image itself comes back first, verified with its stored features."""
    call_command("index_images", str(photo_folder))
    image = IndexedImage.objects.order_by("id")[3]
    job = wait_for_job(client, client.post("/api/v1/searches/", {"image_id": image.id, "k": 4}).json()["url"])
    assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (image.id, "copy")


def test_the_very_file_uploaded_is_a_copy_even_with_too_few_keypoints_to_verify(worker, client, photo_folder):
    """A soft disc has no keypoints to match; uploading the indexed file itself still says "same picture"."""
    disc = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(disc).ellipse((8, 8, 88, 88), fill="black")
    disc = disc.filter(ImageFilter.GaussianBlur(2))
    assert localfeatures.verify(localfeatures.extract(disc), localfeatures.extract(disc)) < localfeatures.MIN_INLIERS
    disc.save(photo_folder / "disc.png")
    call_command("index_images", str(photo_folder))
    data = (photo_folder / "disc.png").read_bytes()
    image = IndexedImage.objects.get(content_hash=hashlib.sha256(data).hexdigest())
    job = search_upload(client, data, k=4)
    assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (image.id, "copy")
    assert [r["match"] for r in job["results"][1:]] == ["similar"] * 3


def test_images_indexed_without_features_get_them_from_the_command(worker, client, photo_folder, capsys):
    """Before extraction a copy is only "similar"; extract_local_features fills the gap and it is a copy again."""
    call_command("index_images", str(photo_folder))
    original = IndexedImage.objects.order_by("id")[2]
    LocalFeatures.objects.all().delete()  # as for an index built before local features existed
    job = search_upload(client, mirrored_turned_copy(original.source_path), k=12)
    assert {r["match"] for r in job["results"]} == {"similar"}
    capsys.readouterr()
    call_command("extract_local_features")
    assert "12 images have no local features; 1 tasks queued" in capsys.readouterr().out
    import time

    deadline = time.monotonic() + 60
    while LocalFeatures.objects.count() < 12 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert LocalFeatures.objects.count() == 12
    job = search_upload(client, mirrored_turned_copy(original.source_path), k=12)
    assert (job["results"][0]["image_id"], job["results"][0]["match"]) == (original.id, "copy")


def test_with_local_features_off_indexing_extracts_none(settings):
    """IMGSEARCH_LOCAL_FEATURES=0: the pipeline asks for no image's features (and searches do not re-rank)."""
    from workers.pipeline import _feature_ids

    images = [IndexedImage(id=1), IndexedImage(id=2)]
    assert _feature_ids(images) == {1, 2}
    settings.IMGSEARCH_LOCAL_FEATURES = False
    assert _feature_ids(images) == frozenset()
