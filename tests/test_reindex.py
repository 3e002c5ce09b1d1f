"""Background reindexing: counting chunks once, switching models blue/green, resuming, cancelling, the command."""

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from search import knn, reindex, versions
from search.models import Embedding, IndexedImage, ModelVersion, ReindexChunk, ReindexRun

from .conftest import ROOT, WEIGHTS, edited_copy, search_upload, wait_until_ready

SWITCH_ARCH = "mobilenet_v3_large"  # only MobileNetV2 weights exist offline: the switch uses random weights


def ready_images(count, key="test:1", with_vectors=True):
    """Ready images (and their vectors of `key`) without any file: enough for the bookkeeping tests."""
    images = []
    for i in range(count):
        image = IndexedImage.objects.create(
            content_hash=f"{key}-{i}-{time.monotonic_ns()}"[-64:],
            file=f"x/{i}.png",
            title=str(i),
            status=IndexedImage.Status.READY,
        )
        if with_vectors:
            Embedding.objects.create(image=image, model_key=key, vector=[1.0, float(i), 0.0])
        images.append(image)
    return images


def planned_run(chunk_size=2, key="test:1"):
    ModelVersion.objects.update(active=False)
    ModelVersion.objects.create(key="test:old", arch="mobilenet_v2", weights="x", dim=3, active=True)
    ModelVersion.objects.get_or_create(key=key, defaults={"arch": "mobilenet_v2", "weights": "x", "dim": 3})
    run = ReindexRun.objects.create(arch="mobilenet_v2", weights="x", chunk_size=chunk_size)
    return reindex.reindex_plan(run.id, model_key=key)


# --- Bookkeeping, without a worker ----------------------------------------------------------------


@pytest.mark.django_db
def test_plan_cuts_ready_images_into_chunks_and_queues_only_a_few():
    """A run covers every ready image once, in chunks; only a small window of chunks is queued at a time."""
    ready_images(9)
    IndexedImage.objects.create(content_hash="p" * 64, file="x/p.png", title="pending")
    run = planned_run(chunk_size=2)
    assert (run.status, run.total, run.model_key, run.overwrite) == ("running", 9, "test:1", False)
    chunks = list(run.chunks.order_by("number"))
    assert [len(c.image_ids) for c in chunks] == [2, 2, 2, 2, 1]
    assert sum((c.image_ids for c in chunks), []) == sorted(
        IndexedImage.objects.filter(status="ready").values_list("id", flat=True)
    )
    assert [c.queued_at is not None for c in chunks] == [True] * reindex.CHUNKS_IN_FLIGHT + [False]
    assert reindex.reindex_plan(run.id, model_key="test:1") is None  # a second delivery plans nothing


@pytest.mark.django_db
def test_a_chunk_delivered_twice_is_counted_once_and_the_last_one_switches_the_model():
    """Counting is keyed by chunk: a re-delivery adds nothing; the last chunk makes the run's model active."""
    ready_images(4)
    run = planned_run(chunk_size=2)
    first, second = run.chunks.order_by("number")
    reindex.reindex_chunk_finish(first, done=2, failures=[])
    run = reindex.reindex_chunk_finish(first, done=2, failures=[])
    assert (run.done, run.failed, run.status) == (2, 0, "running")
    assert ModelVersion.objects.get(active=True).key == "test:old"
    run = reindex.reindex_chunk_finish(second, done=1, failures=[{"image_id": second.image_ids[1], "reason": "broken"}])
    assert (run.done, run.failed, run.status, run.total) == (3, 1, "done", 4)
    assert run.finished_at and run.failures == [{"image_id": second.image_ids[1], "reason": "broken"}]
    assert ModelVersion.objects.get(active=True).key == "test:1"


@pytest.mark.django_db
def test_a_run_big_enough_for_a_vector_index_builds_it_in_a_task_of_its_own_before_the_switch(
    settings, django_capture_on_commit_callbacks
):
    """At a million vectors the build outlasts a chunk's time limit: the last chunk hands it to its own task,
    a resend while it builds returns at once, and the model switches only once the index exists."""
    settings.IMGSEARCH_HNSW_MIN_VECTORS = 4
    ready_images(4)
    run = planned_run(chunk_size=4)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the test's transaction holds deferred FK checks
    with django_capture_on_commit_callbacks() as sent:
        run = reindex.reindex_chunk_finish(run.chunks.get(), done=4, failures=[])
    assert run.status == "running" and ModelVersion.objects.get(active=True).key == "test:old"
    assert len(sent) == 1 and knn.needs_vector_index("test:1", 3)
    # Another worker is building it: this delivery neither waits nor switches.
    other = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    try:
        other.execute("SELECT pg_advisory_lock(hashtext('test:1'))")
        assert reindex.reindex_build_index(run.id).status == "running"
    finally:
        other.close()
    assert knn.needs_vector_index("test:1", 3)
    run = reindex.reindex_build_index(run.id)
    assert run.status == "done" and ModelVersion.objects.get(active=True).key == "test:1"
    assert not knn.needs_vector_index("test:1", 3)  # built
    assert reindex.reindex_build_index(run.id) is None  # a late resend finds nothing to do


@pytest.mark.django_db
def test_images_indexed_during_a_run_are_embedded_before_the_switch():
    """An image that became ready after the plan gets a catch-up chunk; the model switches only after it."""
    ready_images(2)
    run = planned_run(chunk_size=2)
    late = ready_images(1, key="test:old")[0]  # indexed with the active model while the run went on
    run = reindex.reindex_chunk_finish(run.chunks.get(), done=2, failures=[])
    assert (run.status, run.total) == ("running", 3)
    catch_up = run.chunks.get(number=1)
    assert catch_up.image_ids == [late.id] and catch_up.queued_at
    Embedding.objects.create(image=late, model_key="test:1", vector=[0.0, 1.0, 0.0])
    assert reindex.reindex_chunk_finish(catch_up, done=1, failures=[]).status == "done"


@pytest.mark.django_db
def test_images_the_new_model_cannot_read_are_marked_failed_at_the_switch():
    """After the switch an image without a vector of the new model cannot be found, and says why."""
    images = ready_images(2)
    Embedding.objects.filter(image=images[1], model_key="test:1").delete()
    run = planned_run(chunk_size=2)
    reindex.reindex_chunk_finish(run.chunks.get(), done=1, failures=[{"image_id": images[1].id, "reason": "truncated"}])
    images[1].refresh_from_db()
    assert (images[1].status, images[1].error) == ("failed", "truncated")


@pytest.mark.django_db
def test_a_stalled_run_has_its_lost_chunks_sent_again(django_capture_on_commit_callbacks):
    """The resume sweep re-sends the chunks a dead worker held, and leaves runs that move alone."""
    ready_images(6)
    run = planned_run(chunk_size=2)
    assert reindex.reindex_resume(stall_seconds=60) == 0  # it just started
    ReindexRun.objects.filter(id=run.id).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks() as sent:
        assert reindex.reindex_resume(stall_seconds=60) == 1
    assert len(sent) == 3  # the three chunks in flight, sent again
    run.refresh_from_db()
    assert run.heartbeat_at > timezone.now() - timedelta(seconds=5)


@pytest.mark.django_db
def test_a_run_whose_planning_was_lost_is_planned_again(django_capture_on_commit_callbacks):
    """A run still queued long after it was started has its planning task sent again, once per stall."""
    run = ReindexRun.objects.create(arch="mobilenet_v2", weights="x")
    ReindexRun.objects.filter(id=run.id).update(created_at=timezone.now() - timedelta(minutes=10))
    with django_capture_on_commit_callbacks() as sent:
        assert reindex.reindex_resume(stall_seconds=60) == 1
        assert reindex.reindex_resume(stall_seconds=60) == 0
    assert len(sent) == 1


@pytest.mark.django_db
def test_a_chunk_that_keeps_failing_is_given_up_with_a_reason():
    """After its last attempt a chunk's images count as failed, so the run still ends."""
    ready_images(2)
    run = planned_run(chunk_size=2)
    for _ in range(reindex.MAX_ATTEMPTS):
        assert reindex.reindex_chunk_claim(run.id, 0) is not None
    assert reindex.reindex_chunk_claim(run.id, 0) is None
    run.refresh_from_db()
    assert (run.failed, run.status) == (2, "done")
    assert "gave up after 3 attempts" in run.failures[0]["reason"]


@pytest.mark.django_db
def test_cancel_stops_claims_and_keeps_the_active_model():
    """A cancelled run hands out no more chunks and the active model stays."""
    ready_images(4)
    run = planned_run(chunk_size=2)
    assert reindex.reindex_cancel(run.id) and not reindex.reindex_cancel(run.id)
    assert reindex.reindex_chunk_claim(run.id, 0) is None
    assert ReindexRun.objects.get(id=run.id).status == "cancelled"
    assert ModelVersion.objects.get(active=True).key == "test:old"


@pytest.mark.django_db
def test_rate_and_time_left_follow_the_counts():
    """rate is images per second since the start; eta_seconds is what is left at that rate."""
    started = timezone.now() - timedelta(seconds=10)
    run = ReindexRun(status="running", total=100, done=18, failed=2, started_at=started)
    assert run.rate == pytest.approx(2.0, rel=0.05)
    assert run.eta_seconds == pytest.approx(40, rel=0.05)
    assert ReindexRun(status="queued").rate is None and ReindexRun(status="queued").eta_seconds is None


@pytest.mark.django_db
def test_random_weights_are_never_a_default(settings):
    """Without named weights a run takes the active or configured ones, else DEFAULT; never random."""
    assert versions.default_weights(SWITCH_ARCH) == "DEFAULT"
    ModelVersion.objects.update(active=False)
    assert versions.default_weights(settings.IMGSEARCH_MODEL) == settings.IMGSEARCH_WEIGHTS
    ModelVersion.objects.create(key="mobilenet_v2:x", arch="mobilenet_v2", weights="/w/a.pth", dim=1280, active=True)
    assert versions.default_weights("mobilenet_v2") == "/w/a.pth"


@pytest.mark.django_db
def test_only_one_run_at_a_time_and_unknown_models_are_refused():
    """Starting a run while one is under way, or with a model not in the registry, is a clear error."""
    call_command("reindex", "--model", "mobilenet_v2", "--no-wait")
    with pytest.raises(CommandError, match="still queued"):
        call_command("reindex", "--model", "mobilenet_v2", "--no-wait")
    with pytest.raises(reindex.ReindexError, match="Unknown model"):
        reindex.reindex_start(ReindexRun(arch="alexnet"))
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("reindex", "--model", "alexnet")


@pytest.mark.django_db
def test_dropping_old_models_spares_the_active_one_and_one_being_built():
    """Only embeddings of models that are neither active nor the target of a run under way are dropped."""
    images = ready_images(2, key="old:1")
    for key in ("live:1", "next:1"):
        for image in images:
            Embedding.objects.create(image=image, model_key=key, vector=[0.0, 0.0, 1.0])
    ModelVersion.objects.update(active=False)
    ModelVersion.objects.create(key="live:1", arch="a", weights="w", dim=3, active=True)
    ModelVersion.objects.create(key="old:1", arch="a", weights="w", dim=3)
    ModelVersion.objects.create(key="next:1", arch="a", weights="w", dim=3)
    ReindexRun.objects.create(arch="a", weights="w", model_key="next:1", status="running")
    assert versions.model_versions_drop() == (1, 2)
    assert not ModelVersion.objects.filter(key="old:1").exists()
    assert set(Embedding.objects.values_list("model_key", flat=True)) == {"live:1", "next:1"}


def test_searches_and_bulk_work_go_to_separate_queues():
    """Searches (and their cheap reaper) use the "search" queue; every indexing and reindex task goes to "index"."""
    import workers.tasks  # noqa: F401  (registers the tasks)
    from imgsearch.celery import app

    queue = lambda name: app.amqp.router.route({}, name)["queue"].name
    search_side = {"workers.run_search", "workers.reap_searches"}
    assert {queue(name) for name in search_side} == {"search"}
    assert {queue(name) for name in app.tasks if name.startswith("workers.") and name not in search_side} == {"index"}


def test_beat_resumes_runs_every_minute_and_rescans_folders(settings):
    """The schedule names registered tasks: the resume sweep each minute and the folder rescan."""
    import workers.tasks  # noqa: F401
    from imgsearch.celery import app

    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["reindex-resume"] == {"task": "workers.reindex_resume", "schedule": 60.0}
    assert schedule["rescan-collections"]["schedule"] == settings.IMGSEARCH_RESCAN_MINUTES * 60
    assert all(entry["task"] in app.tasks for entry in schedule.values())


def test_a_worker_process_keeps_the_two_latest_models_loaded():
    """The active model and a run's model stay loaded together; a third evicts the least recently used."""
    from workers.embedder import get_embedder

    v2 = get_embedder("mobilenet_v2", str(WEIGHTS))
    v3 = get_embedder(SWITCH_ARCH, "random")
    assert get_embedder("mobilenet_v2", str(WEIGHTS)) is v2 and get_embedder(SWITCH_ARCH, "random") is v3
    get_embedder("mobilenet_v2", "random")
    assert get_embedder(SWITCH_ARCH, "random") is v3
    assert get_embedder("mobilenet_v2", str(WEIGHTS)) is not v2  # evicted, loaded again


# --- With real workers -----------------------------------------------------------------------------


def wait_for_run(run, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in ReindexRun.ACTIVE_STATUSES:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run still {run.status} after {timeout}s: {run.processed}/{run.total}")


@pytest.fixture
def many_photos(dev_images, tmp_path):
    """40 real photo cut-outs, enough for a run to last a few seconds."""
    folder = tmp_path / "many"
    folder.mkdir()
    files = sorted((dev_images / "tuxpaint").glob("*/*.png"))
    for src in random.Random(5).sample(files, 40):
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


def start_index_worker(env, name):
    """A worker for the index queue alone, in its own process group so it can be killed whole."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "imgsearch",
            "worker",
            "--queues",
            "index",
            "--concurrency",
            "1",
            "--hostname",
            f"{name}@%h",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def lone_index_queue(worker):
    """The session worker stops taking index work for this test, so the test's own workers get all of it."""
    from imgsearch.celery import app

    others = [host for reply in app.control.ping(timeout=1) for host in reply]
    app.control.cancel_consumer("index", destination=others, reply=True)
    yield
    app.control.add_consumer("index", destination=others, reply=True)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_over_real_images_completes_with_correct_counts(worker, photo_folder, settings):
    """Re-embedding with the active model covers every image chunk by chunk and counts an unreadable one."""
    settings.IMGSEARCH_TASK_SIZE = 5
    call_command("index_images", str(photo_folder))
    broken = IndexedImage.objects.order_by("id").first()
    Path(broken.file.path).write_bytes(b"this is no longer an image")
    run = wait_for_run(reindex.reindex_start(ReindexRun(arch="mobilenet_v2")))
    assert run.status == "done", run.error
    assert (run.total, run.done, run.failed, run.overwrite) == (12, 11, 1, True)
    assert run.failures == [{"image_id": broken.id, "reason": "not an image file"}]
    assert run.chunks.count() == 3 and not run.chunks.filter(finished_at=None).exists()
    assert ModelVersion.objects.get(active=True).key == run.model_key
    broken.refresh_from_db()
    assert broken.status == "failed" and not broken.embeddings.exists()  # no stale vector left to be found
    assert Embedding.objects.filter(model_key=run.model_key).count() == 11


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_resumes_after_its_worker_is_killed(worker, worker_env, many_photos, settings, lone_index_queue):
    """SIGKILL the worker mid-chunk, start another: the lost chunk is sent again and every image is done once."""
    settings.IMGSEARCH_TASK_SIZE = 4
    first = start_index_worker(worker_env, "doomed")
    call_command("index_images", str(many_photos))
    run = reindex.reindex_start(ReindexRun(arch=SWITCH_ARCH, weights="random"))
    deadline = time.monotonic() + 120
    while (
        not ReindexChunk.objects.filter(run=run, finished_at__isnull=False).exists()
        or not ReindexChunk.objects.filter(run=run, started_at__isnull=False, finished_at=None).exists()
    ):
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = timezone.now()
    first.wait()
    second = start_index_worker(worker_env, "rescuer")
    try:
        wait_until_ready(second)
        deadline = time.monotonic() + 180
        while ReindexRun.objects.get(id=run.id).status == "running":
            assert time.monotonic() < deadline, "the run never finished"
            reindex.reindex_resume(stall_seconds=5)  # what beat does every minute, with a shorter patience
            time.sleep(0.5)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)
    run.refresh_from_db()
    assert run.status == "done" and (run.total, run.done, run.failed) == (40, 40, 0)
    assert Embedding.objects.filter(model_key=run.model_key).count() == 40
    redone = run.chunks.filter(attempts__gte=2)
    assert redone.exists() or not run.chunks.filter(finished_at__gt=killed_at, started_at__lt=killed_at).exists()
    assert ModelVersion.objects.get(active=True).key == run.model_key


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_big_enough_for_an_index_builds_it_on_a_real_worker_then_switches(
    worker, worker_env, photo_folder, lone_index_queue
):
    """A worker that indexes from 5 vectors: the run's last chunk sends workers.reindex_build_index, which builds
    the new model's HNSW index and switches; searches then use it."""
    builder = start_index_worker({**worker_env, "IMGSEARCH_HNSW_MIN_VECTORS": "5"}, "builder")
    try:
        call_command("index_images", str(photo_folder))
        run = wait_for_run(reindex.reindex_start(ReindexRun(arch=SWITCH_ARCH, weights="random")))
        assert (run.status, run.done, run.failed) == ("done", 12, 0), run.error
        assert ModelVersion.objects.get(active=True).key == run.model_key
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [knn.index_name(run.model_key)])
            assert "hnsw" in cursor.fetchone()[0]
    finally:
        os.killpg(builder.pid, signal.SIGTERM)
        builder.wait(30)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_cancelled_run_stops_and_the_active_model_stays(worker, many_photos, settings):
    """Cancelling mid-run stops the work within a chunk or two; searches keep the model they had."""
    settings.IMGSEARCH_TASK_SIZE = 1
    call_command("index_images", str(many_photos))
    active = ModelVersion.objects.get(active=True).key
    run = reindex.reindex_start(ReindexRun(arch=SWITCH_ARCH, weights="random"))
    deadline = time.monotonic() + 120
    while ReindexRun.objects.get(id=run.id).done < 2:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)
    assert reindex.reindex_cancel(run.id)
    time.sleep(3)  # the chunk being embedded at the cancel may still be counted; nothing after it
    run.refresh_from_db()
    settled = run.processed
    time.sleep(2)
    run.refresh_from_db()
    assert run.status == "cancelled" and run.processed == settled < 40
    assert not run.chunks.filter(started_at__gt=run.finished_at + timedelta(seconds=0.5)).exists()
    assert ModelVersion.objects.get(active=True).key == active


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_model_switch_keeps_search_answering_and_ends_on_the_new_model(worker, client, photo_folder, settings):
    """Blue/green: searches answer with the old model during the run and with the new one after; old vectors go."""
    settings.IMGSEARCH_TASK_SIZE = 1
    client.force_login(get_user_model().objects.create_user("searcher", password="x" * 12))
    call_command("index_images", str(photo_folder))
    old = ModelVersion.objects.get(active=True).key
    query = edited_copy(IndexedImage.objects.order_by("id").first().source_path)
    call_command("reindex", "--model", SWITCH_ARCH, "--weights", "random", "--drop-old", "--no-wait")
    run = ReindexRun.objects.get()
    answered_by = []
    while ReindexRun.objects.get(id=run.id).status in ReindexRun.ACTIVE_STATUSES:
        answered_by.append(search_model(client, query))
    answered_by.append(search_model(client, query))
    run.refresh_from_db()
    assert run.status == "done" and (run.done, run.failed) == (12, 0)
    # Every search answered; the old model until the switch, the new one from then on, never a mix.
    assert old in answered_by and answered_by[-1] == run.model_key
    assert answered_by == sorted(answered_by, key=lambda key: key != old)
    assert ModelVersion.objects.get(active=True).key == run.model_key == f"{SWITCH_ARCH}:random"
    assert set(IndexedImage.objects.filter(embeddings__model_key=run.model_key).values_list("id", flat=True)) == set(
        IndexedImage.objects.values_list("id", flat=True)
    )
    deadline = time.monotonic() + reindex.DROP_GRACE_SECONDS + 30
    while Embedding.objects.filter(model_key=old).exists():
        assert time.monotonic() < deadline, "the old embeddings were not dropped"
        time.sleep(0.5)
    assert not ModelVersion.objects.filter(key=old).exists()


def search_model(client, data):
    """Search with an uploaded image; the model that answered it (the search must succeed)."""
    from search.models import SearchJob

    job = search_upload(client, data, k=3)
    assert job["status"] == "done" and job["count"] == 3, job
    return SearchJob.objects.get(id=job["id"]).model_key


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_reindex_command_follows_the_run_to_a_summary(worker, photo_folder, capsys):
    """`manage.py reindex --model NAME` waits with a progress bar and ends with counts and the rate."""
    call_command("index_images", str(photo_folder))
    capsys.readouterr()
    call_command("reindex", "--model", "mobilenet_v2", "--weights", str(WEIGHTS))
    out = capsys.readouterr().out
    assert "Reindexed 12 images with mobilenet_v2:sha256-" in out and "0 failed" in out and "images/s" in out
