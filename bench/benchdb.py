"""A throw-away database (`imgsearch_bench`) on the server DATABASE_URL names, so benchmarks never touch real data.

`use_bench_database()` drops and recreates it, points Django (and its media folders) at it, and migrates.
Call it before importing anything that reads Django settings.
"""

import os
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench.common import CACHE, weights

NAME = "imgsearch_bench"


def _server_url(url, database):
    """The same server URL (host, or a socket folder in the query) with another database name."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def recreate(url):
    """Drop and create the bench database; returns its URL."""
    with psycopg.connect(_server_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {NAME}")
    return _server_url(url, NAME)


def use_bench_database():
    """Point this process's Django at a fresh, migrated bench database with its own media folders."""
    import django
    from django.core.management import call_command

    original = os.environ["DATABASE_URL"]
    os.environ["DATABASE_URL"] = recreate(original)
    for name, folder in (("MEDIA_ROOT", "media"), ("QUERY_ROOT", "queries"), ("INCOMING_ROOT", "incoming")):
        os.environ[name] = str(CACHE.parent / folder)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imgsearch.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ["IMGSEARCH_WEIGHTS"] = weights()
    os.environ["IMGSEARCH_DEVICE"] = "cpu"
    os.environ["IMGSEARCH_SEARCH_RATE_ANON"] = "10000/min"  # the latency part posts back to back
    # A Redis database of its own, so a `make run` worker on the same Redis never takes the bench's tasks.
    os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/9"
    django.setup()
    call_command("migrate", verbosity=0)
    return os.environ["DATABASE_URL"]


def drop():
    """Remove the bench database once the parts that need it are done."""
    from django.db import connections

    connections.close_all()
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(_server_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")


def use_once():
    """use_bench_database(), unless this process's Django is set up already (bench/run.py did it)."""
    from django.apps import apps

    if not apps.ready:
        use_bench_database()
