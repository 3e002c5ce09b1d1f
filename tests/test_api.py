"""The search API at the door: what it accepts, what it refuses (with a message), and the job's shape."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from search.models import SearchJob

from .conftest import jpeg_bytes

pytestmark = pytest.mark.django_db
URL = "/api/v1/searches/"


def png_bytes(size=(64, 48), mode="RGB"):
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, "PNG")
    return out.getvalue()


def upload(data, name="query.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def post(client, data=None, **params):
    body = {"image": upload(data if data is not None else jpeg_bytes(Image.new("RGB", (64, 64), "red")))}
    body.update(params)
    return client.post(URL, body)


def test_it_accepts_an_image_and_answers_202_with_the_job(client):
    """A valid upload becomes a pending job; the answer gives its id and URL."""
    response = post(client, k=5, min_score=0.3)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending" and body["url"].endswith(f"/api/v1/searches/{body['id']}/")
    job = SearchJob.objects.get(id=body["id"])
    assert (job.k, job.min_score) == (5, 0.3)


def test_defaults_are_k_20_and_min_score_0(client):
    """k and min_score are optional."""
    job = SearchJob.objects.get(id=post(client).json()["id"])
    assert (job.k, job.min_score) == (20, 0.0)


def test_query_images_are_stored_under_a_generated_name_outside_media(client, settings):
    """The client's file name is never a path, and query images are not under the public MEDIA_ROOT."""
    body = {"image": upload(png_bytes(), name="../../etc/passwd.png", content_type="image/png")}
    job = SearchJob.objects.get(id=client.post(URL, body).json()["id"])
    path = job.query_image.path
    assert path.startswith(str(settings.QUERY_ROOT)) and not path.startswith(str(settings.MEDIA_ROOT))
    assert "passwd" not in path and job.query_image.name.endswith(job.id.hex)
    assert job.query_name == "passwd.png"


def test_get_shows_a_pending_job_with_the_documented_fields(client):
    """GET answers the contract's fields while the job waits."""
    url = post(client).json()["url"]
    body = client.get(url).json()
    assert {"id", "status", "error", "count", "results", "timings"} <= set(body)
    assert body["status"] == "pending" and body["results"] == [] and body["count"] == 0


def test_unknown_job_is_404(client):
    """A job id that does not exist is a 404, not a 500."""
    assert client.get("/api/v1/searches/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/api/v1/searches/not-a-uuid/").status_code == 404


def test_listing_searches_needs_an_account(client):
    """GET on the collection is a signed-in user's history; an anonymous client gets 401."""
    assert client.get(URL).status_code == 401


BAD_UPLOADS = {
    "empty file": (b"", "empty"),
    "text renamed .jpg": (b"hello, this is not a picture\n" * 20, "not an image"),
    "html renamed .jpg": (b"<!doctype html><html><script>alert(1)</script></html>", "not an image"),
    "svg with script": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "not an image"),
    "pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF", "not an image"),
    "truncated jpeg": (jpeg_bytes(Image.effect_noise((256, 256), 50))[:2000], "truncated"),
    "truncated png": (png_bytes((300, 300))[:60], None),
}


@pytest.mark.parametrize("kind", BAD_UPLOADS)
def test_bad_files_get_400_with_a_message_and_no_job(client, kind):
    """Files that are not usable images are refused at the door, before anything is queued."""
    data, words = BAD_UPLOADS[kind]
    response = post(client, data)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail and (words is None or words in detail.lower())
    assert not SearchJob.objects.exists()


def test_decompression_bomb_is_refused(client, settings):
    """An image whose header declares too many pixels is refused without decoding it."""
    settings.IMGSEARCH_MAX_PIXELS = 1_000_000
    response = post(client, png_bytes((2000, 2000), mode="1"))
    assert response.status_code == 400 and "pixels" in response.json()["detail"]


def test_an_image_over_the_size_limit_is_refused_with_400(client, settings):
    """A file over the upload limit gets a 400 naming the limit."""
    big = jpeg_bytes(Image.effect_noise((700, 700), 100), quality=100)
    settings.IMGSEARCH_MAX_UPLOAD_BYTES = len(big) - 1000
    response = post(client, big)
    assert response.status_code == 400 and "limit" in response.json()["detail"]


def test_a_body_far_over_the_limit_is_refused_with_413_before_it_is_read(client, settings):
    """Past the limit (plus room for the form fields) the body is refused unread: 413."""
    settings.IMGSEARCH_MAX_UPLOAD_BYTES = 1024 * 1024
    big = jpeg_bytes(Image.effect_noise((1500, 1500), 100), quality=100)
    assert len(big) > 1.2 * 1024 * 1024
    response = post(client, big)
    assert response.status_code == 413 and "1 MB" in response.json()["detail"]
    assert not SearchJob.objects.exists()


def test_a_full_queue_answers_503_with_retry_after(client, settings):
    """Back-pressure: with too many searches waiting, a new one is refused instead of piling up."""
    settings.IMGSEARCH_MAX_PENDING_SEARCHES = 2
    for _ in range(3):
        post(client)
    response = post(client)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert SearchJob.objects.count() == 3


def test_unknown_api_urls_answer_json_404(client):
    """A wrong API address is a JSON 404 a client can read, not an HTML page."""
    response = client.get("/api/v1/nothing-here/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}


def test_missing_image_field_is_a_400(client):
    """A POST without the image says which field is needed."""
    response = client.post(URL, {"k": 3})
    assert response.status_code == 400 and "image" in response.json()["detail"]


@pytest.mark.parametrize(
    "field,value",
    [("k", 0), ("k", 101), ("k", "ten"), ("k", 2.5), ("min_score", -0.1), ("min_score", 1.5), ("min_score", "high")],
)
def test_out_of_range_parameters_are_400(client, field, value):
    """k must be 1..100 and min_score 0..1; the message names the field."""
    response = post(client, **{field: value})
    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert not SearchJob.objects.exists()


def test_home_page_shows_the_upload_form(client):
    """The page at / offers an upload form."""
    response = client.get("/")
    assert response.status_code == 200
    assert b'name="image"' in response.content and b"Search!" in response.content


def test_exactly_one_query_source_is_required(client):
    """An upload, an indexed image id or an earlier search: one of them, not two."""
    response = post(client, image_id=1)
    assert response.status_code == 400 and "image" in response.json()["detail"]


def test_unknown_indexed_image_or_search_is_a_400(client):
    """Searching with an image or search that does not exist says so."""
    assert "image_id" in client.post(URL, {"image_id": 999999}).json()["detail"]
    response = client.post(URL, {"from_search": "00000000-0000-0000-0000-000000000000"})
    assert response.status_code == 400 and "from_search" in response.json()["detail"]


def test_categories_are_normalised(client):
    """Categories may repeat the field or be comma-separated; they are stored lower-case, once each."""
    data = jpeg_bytes(Image.new("RGB", (32, 32), "blue"))
    response = client.post(URL, {"image": upload(data), "categories": ["Dog, bird", "dog"]})
    assert SearchJob.objects.get(id=response.json()["id"]).categories == ["dog", "bird"]


def test_refining_reuses_the_query_image_without_a_new_upload(client):
    """from_search makes a new job on the same stored query image with new constraints."""
    first = SearchJob.objects.get(id=post(client).json()["id"])
    response = client.post(URL, {"from_search": str(first.id), "k": 3, "min_score": 0.5})
    assert response.status_code == 202
    second = SearchJob.objects.get(id=response.json()["id"])
    assert second.query_image.name == first.query_image.name and (second.k, second.min_score) == (3, 0.5)


def test_tag_list_counts_ready_images(client):
    """The tag list counts each ready image once per tag, most common first."""
    from search.models import IndexedImage

    IndexedImage.objects.create(
        content_hash="a" * 64, file="a.png", title="a", status="ready", user_tags=["pets"], auto_tags=["dog"]
    )
    IndexedImage.objects.create(content_hash="b" * 64, file="b.png", title="b", status="ready", auto_tags=["dog"])
    IndexedImage.objects.create(content_hash="c" * 64, file="c.png", title="c", status="pending", auto_tags=["cat"])
    assert client.get("/api/v1/tags/").json() == [{"tag": "dog", "count": 2}, {"tag": "pets", "count": 1}]


def test_rerank_is_on_unless_turned_off(client):
    """Re-ranking is a search option, on by default; "false" (or "0") from a form turns it off."""
    assert SearchJob.objects.get(id=post(client).json()["id"]).rerank is True
    assert SearchJob.objects.get(id=post(client, rerank="false").json()["id"]).rerank is False
    assert SearchJob.objects.get(id=post(client, rerank="0").json()["id"]).rerank is False
    assert SearchJob.objects.get(id=post(client, rerank="true").json()["id"]).rerank is True


def test_a_rerank_that_is_not_a_boolean_is_400(client):
    """A value that is neither true nor false is refused with a sentence naming the field."""
    response = post(client, rerank="maybe")
    assert response.status_code == 400
    assert response.json()["detail"] == "rerank: Must be true or false."
    assert not SearchJob.objects.exists()


def done_job(client, results, **fields):
    """A finished search of the client's own session with the given stored results, as a worker leaves it."""
    from search.models import IndexedImage

    for r in results:
        IndexedImage.objects.create(
            id=r["image_id"],
            content_hash=str(r["image_id"]).ljust(64, "0"),
            file=f"img/{r['image_id']}.png",
            title=f"image {r['image_id']}",
            status="ready",
        )
    return SearchJob.objects.create(status="done", session_key=client.session.session_key, results=results, **fields)


def test_a_done_job_marks_each_result_a_copy_or_similar(client):
    """Each result says whether it is a verified copy of the query; the job says whether it was re-ranked."""
    timings = {"queued_ms": 1.0, "embed_ms": 20.0, "query_ms": 3.0, "rerank_ms": 41.5, "total_ms": 70.0}
    job = done_job(
        client,
        [{"image_id": 7, "score": 0.91, "match": "copy"}, {"image_id": 8, "score": 0.95, "match": "similar"}],
        timings=timings,
    )
    body = client.get(f"{URL}{job.id}/").json()
    assert body["rerank"] is True and body["timings"]["rerank_ms"] == 41.5
    assert [(r["image_id"], r["match"]) for r in body["results"]] == [(7, "copy"), (8, "similar")]


def test_a_job_stored_before_re_ranking_reads_as_similar_without_rerank_ms(client):
    """Results stored without "match" come back "similar", and timings without rerank_ms give it as null."""
    timings = {"queued_ms": 1.0, "embed_ms": 20.0, "query_ms": 3.0, "total_ms": 30.0}
    job = done_job(client, [{"image_id": 9, "score": 0.8}], timings=timings, rerank=False)
    body = client.get(f"{URL}{job.id}/").json()
    assert body["rerank"] is False and body["results"][0]["match"] == "similar"
    assert body["timings"] == {**timings, "rerank_ms": None}
