"""GET /api/v1/searches/{id}/?wait=N answers the moment the job ends, instead of at the client's next poll."""

import threading
import time

import pytest

from search import jobs, waiting
from search.models import SearchJob

pytestmark = pytest.mark.django_db(transaction=True)  # the trigger's NOTIFY is delivered on commit


@pytest.fixture(autouse=True)
def _listener_closed():
    """The listening connection a wait keeps must not outlive the test database, which is dropped at the end."""
    yield
    waiting.close()


@pytest.fixture
def pending_job(client, django_user_model):
    """A pending search of the signed-in client's, never sent to a worker (a test's worker may be running)."""
    user = django_user_model.objects.create_user("waiter", password="x" * 12)
    client.force_login(user)
    return SearchJob.objects.create(k=5, owner=user)


def finish_later(job_id, delay, fail=False):
    """What a worker does, from another thread (another database connection) after `delay` seconds."""

    def run():
        time.sleep(delay)
        job = SearchJob.objects.get(id=job_id)
        job.started_at = job.created_at
        if fail:
            jobs.search_job_fail(job_id, "broken")
        else:
            jobs.search_job_complete(job, [], model_key="m:1", embed_ms=1.0, query_ms=1.0)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("fail", [False, True])
def test_a_waiting_request_answers_as_soon_as_the_job_ends(client, pending_job, fail):
    """The job ends 0.4 s into a 5 s wait: the answer comes then, with its final status."""
    job = pending_job
    thread = finish_later(job.id, 0.4, fail=fail)
    started = time.monotonic()
    body = client.get(f"/api/v1/searches/{job.id}/?wait=5").json()
    elapsed = time.monotonic() - started
    thread.join()
    assert body["status"] == ("failed" if fail else "done")
    assert 0.35 < elapsed < 2.5


def test_a_job_that_does_not_end_is_answered_when_the_wait_is_over(client, pending_job):
    """Nothing finishes it: after the 1 s asked for, the job comes back still pending."""
    job = pending_job
    started = time.monotonic()
    body = client.get(f"/api/v1/searches/{job.id}/?wait=1").json()
    assert body["status"] == "pending" and 0.9 < time.monotonic() - started < 3


def test_an_ended_job_or_no_wait_answers_at_once(client, pending_job):
    """wait only holds jobs still pending or running; without it nothing waits."""
    job = pending_job
    started = time.monotonic()
    assert client.get(f"/api/v1/searches/{job.id}/").json()["status"] == "pending"
    jobs.search_job_fail(job.id, "broken")
    assert client.get(f"/api/v1/searches/{job.id}/?wait=10").json()["status"] == "failed"
    assert time.monotonic() - started < 1


def test_with_every_slot_taken_the_request_answers_at_once(client, pending_job, settings):
    """A busy web process does not tie up more threads: the client gets the current state and polls."""
    settings.IMGSEARCH_WAIT_SLOTS = 1
    job = pending_job
    slot = waiting._semaphore(1)
    assert slot.acquire(blocking=False)
    try:
        started = time.monotonic()
        assert client.get(f"/api/v1/searches/{job.id}/?wait=5").json()["status"] == "pending"
        assert time.monotonic() - started < 1
    finally:
        slot.release()


@pytest.mark.parametrize("value", ["-1", "11", "soon", "1.5"])
def test_a_bad_wait_is_a_400(client, pending_job, value):
    """wait is a whole number of seconds from 0 to 10."""
    job = pending_job
    response = client.get(f"/api/v1/searches/{job.id}/?wait={value}")
    assert response.status_code == 400 and "wait" in response.json()["detail"]


def test_nobody_waits_on_someone_elses_job(client, pending_job, django_user_model):
    """The job must be visible to the requester before anything waits: others get 404 at once."""
    job = pending_job
    other = django_user_model.objects.create_user("other", password="x" * 12)
    client.force_login(other)
    started = time.monotonic()
    assert client.get(f"/api/v1/searches/{job.id}/?wait=5").status_code == 404
    assert time.monotonic() - started < 1
