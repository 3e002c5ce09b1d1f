"""Searching a region of the query image: the API's `region` checked and stored on the job, and the worker searching
only that part of the image (cropped before it is embedded and before its keypoints are found)."""

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from search.models import IndexedImage, SearchJob

from .conftest import jpeg_bytes, search_upload, wait_for_job

CLEAR = {"x": 0.1, "y": 0.2, "width": 0.5, "height": 0.4}


def upload(data=None):
    data = data or jpeg_bytes(Image.effect_mandelbrot((160, 120), (-2, -1.2, 1, 1.2), 60))
    return SimpleUploadedFile("query.jpg", data, content_type="image/jpeg")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "given", ["0.1,0.2,0.5,0.4", " 0.1, 0.2, 0.5, 0.4 ", json.dumps(CLEAR), "[0.1, 0.2, 0.5, 0.4]"]
)
def test_a_region_is_stored_on_the_job_and_shown_with_it(client, given):
    """Four fractions, as text or a JSON object or list: the job keeps them and its JSON shows them."""
    response = client.post("/api/v1/searches/", {"image": upload(), "region": given})
    assert response.status_code == 202, response.content
    job = SearchJob.objects.get(id=response.json()["id"])
    assert job.region == CLEAR
    assert client.get(response.json()["url"]).json()["region"] == CLEAR


@pytest.mark.django_db
def test_a_region_in_a_json_body_and_none_at_all(client):
    """A JSON request gives the region as an object; without one (or empty) the whole image is searched."""
    image = IndexedImage.objects.create(content_hash="a" * 64, file="img/a.png", title="a", status="ready")
    response = client.post(
        "/api/v1/searches/", {"image_id": image.id, "region": CLEAR}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    assert SearchJob.objects.get(id=response.json()["id"]).region == CLEAR
    for extra in ({}, {"region": ""}):
        response = client.post("/api/v1/searches/", {"image": upload(), **extra})
        assert response.status_code == 202, response.content
        assert SearchJob.objects.get(id=response.json()["id"]).region is None
        assert client.get(response.json()["url"]).json()["region"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("-0.1,0.2,0.5,0.4", "must lie within the image"),
        ("0.1,0.2,1.5,0.4", "must lie within the image"),
        ("0.6,0.2,0.5,0.4", "must lie within the image"),  # x + width beyond the right edge
        ("0.1,0.7,0.5,0.4", "must lie within the image"),
        ("0.1,0.2,0,0.4", "is empty"),
        ("0.1,0.2,0.5,-0.1", "is empty"),
        ("0.1,0.2,0.5", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("0.1,0.2,0.5,0.4,0.1", "four numbers"),
        ("nan,0,1,1", "four numbers"),
        ("0,0,inf,1", "four numbers"),
        ('{"x": 0.1, "y": 0.2}', "four numbers"),
        ('{"x": 0.1, "y": 0.2, "width": "wide", "height": 0.3}', "four numbers"),
        ("[true, 0, 1, 1]", "four numbers"),
        ("{not json", "four numbers"),
    ],
)
def test_a_region_outside_the_image_empty_or_malformed_is_refused_with_a_clear_message(client, given, says):
    """A 400 that names the field and says what is wrong; no job is made."""
    response = client.post("/api/v1/searches/", {"image": upload(), "region": given})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"].startswith("region: ") and says in body["detail"], body
    assert says in body["region"][0]
    assert not SearchJob.objects.exists()


@pytest.mark.django_db
def test_a_malformed_region_in_a_json_body_is_refused(client):
    """A JSON body's region that is a number, a string of words or a list of three: 400, never a 500."""
    for region in (7, "left half", [0.1, 0.2, 0.3], {"x": 1, "y": 0, "width": 0.5, "height": 0.5}):
        response = client.post("/api/v1/searches/", {"image_id": 1, "region": region}, content_type="application/json")
        assert response.status_code == 400, (region, response.content)
        assert "region" in response.json(), response.json()


def side_by_side(left, right, height=240):
    """Two pictures (files) next to each other on white, each scaled to `height`: (JPEG bytes, the left one's width
    as a fraction of the whole)."""
    parts = []
    for path in (left, right):
        with Image.open(path) as img:
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA")).convert("RGB")
        parts.append(img.resize((round(img.width * height / img.height), height)))
    whole = Image.new("RGB", (parts[0].width + parts[1].width, height), "white")
    whole.paste(parts[0], (0, 0))
    whole.paste(parts[1], (parts[0].width, 0))
    return jpeg_bytes(whole, quality=90), parts[0].width / whole.width


def region_of(x0, x1):
    return f"{x0},0,{x1 - x0},1"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_worker_searches_only_the_region(client, indexed):
    """Two indexed pictures side by side: the left half finds the left one as the same picture, the right half the
    right one, its outline covering the whole of it; refined to another region, and searched from an indexed image,
    the region is what is searched."""
    left = IndexedImage.objects.get(title__iexact=sorted((indexed / "animals").glob("*.png"))[0].stem)
    right = IndexedImage.objects.get(title__iexact=sorted((indexed / "vehicles").glob("*.png"))[0].stem)
    data, split = side_by_side(left.source_path, right.source_path)

    first = search_upload(client, data, k=5, region=region_of(0, split))
    assert first["status"] == "done", first["error"]
    assert first["region"] == {"x": 0.0, "y": 0.0, "width": round(split, 6), "height": 1.0}
    assert (first["results"][0]["image_id"], first["results"][0]["match"]) == (left.id, "copy")

    refined = client.post("/api/v1/searches/", {"from_search": first["id"], "k": 5, "region": region_of(split, 1)})
    assert refined.status_code == 202, refined.content
    second = wait_for_job(client, refined.json()["url"])
    assert second["status"] == "done", second["error"]
    top = second["results"][0]
    assert (top["image_id"], top["match"]) == (right.id, "copy")
    assert top["evidence"]["by"] == "keypoints"
    outline = top["evidence"]["transform"]["outline"]  # the region is the right picture, whole
    for (x, y), (ex, ey) in zip(outline, [(0, 0), (1, 0), (1, 1), (0, 1)]):
        assert abs(x - ex) < 0.06 and abs(y - ey) < 0.06, outline

    whole = search_upload(client, data, k=5)  # the two together are neither picture: no copy first
    assert whole["region"] is None
    assert {r["image_id"] for r in whole["results"] if r["match"] == "copy"} <= {left.id, right.id}

    # An indexed image searched by a region: the region's outline in the image itself.
    box = {"x": 0.25, "y": 0.2, "width": 0.6, "height": 0.7}
    job = wait_for_job(
        client, client.post("/api/v1/searches/", {"image_id": left.id, "k": 5, "region": json.dumps(box)}).json()["url"]
    )
    assert job["status"] == "done", job["error"]
    top = job["results"][0]
    assert top["image_id"] == left.id and top["match"] == "copy", job["results"]
    expected = [(0.25, 0.2), (0.85, 0.2), (0.85, 0.9), (0.25, 0.9)]
    for (x, y), (ex, ey) in zip(top["evidence"]["transform"]["outline"], expected):
        assert abs(x - ex) < 0.04 and abs(y - ey) < 0.04, top["evidence"]["transform"]


def test_a_region_is_cropped_from_the_upright_image(tmp_path):
    """The worker's crop: fractions of the image as shown, its size in the file's own pixels."""
    from django.core.files import File

    from workers.ranking.query import _load_region

    img = Image.new("RGB", (400, 200), "white")
    img.paste((255, 0, 0), (300, 0, 400, 100))  # the top right quarter... of the upright image
    turned = img.transpose(Image.Transpose.ROTATE_270)  # stored turned, with EXIF saying to turn it back
    exif = Image.Exif()
    exif[0x0112] = 8
    out = io.BytesIO()
    turned.save(out, "JPEG", exif=exif, quality=95)
    path = tmp_path / "turned.jpg"
    path.write_bytes(out.getvalue())
    with File(open(path, "rb"), name=str(path)) as stored:  # reopened by its name, as a stored file is
        cropped, size = _load_region(stored, {"x": 0.75, "y": 0, "width": 0.25, "height": 0.5}, 64)
    assert size == (100, 100)
    r, g, b = cropped.convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert r > 200 and g < 60 and b < 60, (r, g, b)
