"""Waiting for a search to finish without polling: PostgreSQL NOTIFYs when a job ends, a waiting request LISTENs.

`GET /api/v1/searches/{id}/?wait=N` holds the request up to N seconds until the job is done or failed, so a
client sees the results the moment they are stored instead of at its next poll (the page polled every 350 ms
while a search took 30 to 70). A waiting request holds a server thread, so each web process lets at most
IMGSEARCH_WAIT_SLOTS of them wait at once; the others answer at once, as without `wait`.
"""

import threading

import psycopg
from django.conf import settings
from django.db import connection

CHANNEL = "search_jobs"  # a trigger (migration 0006) sends each job's id here when it ends, done or failed
_slots = {}  # slot count -> its semaphore, so a changed setting (tests) takes effect
_lock = threading.Lock()
_local = threading.local()


def wait_for(job_id, seconds, finished):
    """Block until the job's notification arrives or `seconds` pass; `finished()` is asked once listening.

    Returns False at once when every slot is taken or the database cannot be reached for listening.
    """
    slots = _semaphore(settings.IMGSEARCH_WAIT_SLOTS)
    if not slots.acquire(blocking=False):
        return False
    try:
        listener = _listener()
        listener.execute(f"LISTEN {CHANNEL}")
        try:
            if finished():  # it may have ended before we listened
                return True
            for note in listener.notifies(timeout=seconds):
                if note.payload == str(job_id):
                    break
            return True
        finally:  # an idle connection must not collect every other job's notification
            listener.execute(f"UNLISTEN {CHANNEL}")
            for _ in listener.notifies(timeout=0):
                pass
    except psycopg.Error:
        _local.__dict__.pop("connection", None)  # broken (the database restarted?): a new one next time
        return False
    finally:
        slots.release()


def _listener():
    """This thread's listening connection, kept between waits (a new one costs more than most searches)."""
    connection_ = getattr(_local, "connection", None)
    if connection_ is None or connection_.closed:
        connection_ = _local.connection = psycopg.connect(**_connection_params(), autocommit=True)
    return connection_


def close():
    """Close this thread's listening connection, if it has one (before its database goes away)."""
    connection_ = _local.__dict__.pop("connection", None)
    if connection_ is not None:
        connection_.close()


def _semaphore(count):
    with _lock:
        if count not in _slots:
            _slots[count] = threading.BoundedSemaphore(count)
        return _slots[count]


def _connection_params():
    """Django's own connection settings (the test database under tests), for a connection of our own."""
    params = connection.get_connection_params()
    return {k: v for k, v in params.items() if k not in ("cursor_factory", "context")}
