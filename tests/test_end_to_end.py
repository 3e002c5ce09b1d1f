"""End to end through a real Celery worker: index real images, search with an edited copy."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from search.models import Embedding, IndexedImage, ModelVersion, SearchJob
from workers.ranking import tunables

from .conftest import edited_copy, search_upload, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_cropped_reencoded_copy_finds_its_original_first(worker, client, photo_folder):
    """The foundation's promise: index real photos, search with an edited copy, get the original back first."""
    call_command("index_images", str(photo_folder), "--tags-from-folders", "--collection", "photos")
    images = IndexedImage.objects.all()
    assert images.count() == 12 and not images.exclude(status="ready").exists()
    assert Embedding.objects.count() == 12
    model = ModelVersion.objects.get()
    assert model.key.startswith("mobilenet_v2:sha256-") and model.dim == 1280
    for original in images.order_by("id")[:4]:
        job = search_upload(client, edited_copy(original.source_path), k=5)
        assert job["status"] == "done", job["error"]
        assert job["results"][0]["image_id"] == original.id
        assert job["results"][0]["score"] > 0.6
        # The verified copy first; the rest, none of them a copy, by global score, except that fewer inliers than
        # a copy's may lift one of them to their head, past others at most that much closer.
        assert [r["match"] for r in job["results"]] == ["copy"] + ["similar"] * (job["count"] - 1)
        rest = [r["score"] for r in job["results"][1:]]
        most = tunables.INLIER_WEIGHT * (tunables.MIN_INLIERS - 1)
        assert rest[1:] == sorted(rest[1:], reverse=True) and rest[0] + most >= max(rest)
        assert set(job["timings"]) == {"queued_ms", "embed_ms", "query_ms", "rerank_ms", "total_ms"}


def test_indexed_images_get_folder_tags_automatic_tags_and_thumbnails(worker, photo_folder):
    """Each image keeps its folder tags beside a readable automatic category where the classifier is sure enough
    of one, and gets a thumbnail."""
    from workers.categories import MIN_TAG_PROBABILITY

    call_command("index_images", str(photo_folder), "--tags-from-folders")
    images = list(IndexedImage.objects.all())
    for image in images:
        folder = image.source_path.split("/")[-2]
        assert image.user_tags == [folder]
        assert image.auto_label and 0 < image.auto_score <= 1
        sure = image.auto_score >= MIN_TAG_PROBABILITY
        assert len(image.auto_tags) == sure and all(tag.islower() for tag in image.auto_tags)
        assert image.thumbnail and image.thumbnail.storage.exists(image.thumbnail.name)
    assert any(image.auto_tags for image in images)


def test_second_index_run_processes_only_new_or_changed_files(worker, photo_folder, capsys):
    """Re-indexing a folder leaves known files alone and embeds only what is new or changed."""
    call_command("index_images", str(photo_folder))
    first = set(IndexedImage.objects.values_list("id", flat=True))
    changed = sorted(photo_folder.glob("food/*.png"))[0]
    changed.write_bytes(edited_copy(changed))  # new content at the same path
    capsys.readouterr()
    call_command("index_images", str(photo_folder))
    out = capsys.readouterr().out
    assert "1 to embed, 11 unchanged" in out
    assert IndexedImage.objects.count() == 12
    assert len(set(IndexedImage.objects.values_list("id", flat=True)) - first) == 1


def test_a_query_that_breaks_in_the_worker_fails_with_a_reason_and_the_worker_lives_on(worker, client, photo_folder):
    """A job whose stored query file is unreadable ends failed with a reason; the next search still works."""
    call_command("index_images", str(photo_folder))
    job = SearchJob.objects.create(k=3, session_key=client.session.session_key)  # the client's own search
    job.query_image.save("query", SimpleUploadedFile("x.jpg", b"\xff\xd8\xff\xe0 truncated"), save=True)
    from django.db import transaction

    from search.jobs import search_job_enqueue

    transaction.on_commit(lambda: search_job_enqueue(job.id))
    body = wait_for_job(client, f"/api/v1/searches/{job.id}/")
    assert body["status"] == "failed" and "could not be read" in body["error"]
    original = IndexedImage.objects.first()
    assert search_upload(client, edited_copy(original.source_path))["results"][0]["image_id"] == original.id


def test_min_score_filters_results(worker, client, photo_folder):
    """Results below min_score are left out; k caps the count."""
    call_command("index_images", str(photo_folder))
    original = IndexedImage.objects.first()
    job = search_upload(client, edited_copy(original.source_path), k=12, min_score=0.75)
    assert job["count"] >= 1 and all(r["score"] >= 0.75 for r in job["results"])
    assert search_upload(client, edited_copy(original.source_path), k=2)["count"] == 2


def test_search_with_an_indexed_image_and_refine_by_category(worker, client, photo_folder):
    """ "Search with this image" finds itself first; a category filter keeps only that category."""
    call_command("index_images", str(photo_folder), "--tags-from-folders")
    image = IndexedImage.objects.filter(user_tags__contains=["food"]).first()
    response = client.post("/api/v1/searches/", {"image_id": image.id, "k": 12})
    job = wait_for_job(client, response.json()["url"])
    assert job["results"][0]["image_id"] == image.id and job["results"][0]["score"] > 0.999
    assert len({tuple(r["tags"]) for r in job["results"]}) > 1
    response = client.post("/api/v1/searches/", {"from_search": job["id"], "categories": "vehicles", "k": 12})
    refined = wait_for_job(client, response.json()["url"])
    assert refined["count"] == 3 and all("vehicles" in r["tags"] for r in refined["results"])
