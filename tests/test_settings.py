"""Configuration is read from the environment, and bad values stop start-up with a clear message."""

import os
import subprocess
import sys

import pytest

from .conftest import ROOT


def start_django(**env):
    """Run django.setup() in a fresh process with the given environment; return (exit code, output)."""
    full = {k: v for k, v in os.environ.items() if k not in env or env[k] is not None}
    full.update({k: v for k, v in env.items() if v is not None})
    proc = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    "env,message",
    [
        ({"DEBUG": "0", "SECRET_KEY": ""}, "SECRET_KEY must be set"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DATABASE_URL": ""}, "DATABASE_URL must be set"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "must point at PostgreSQL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379' must start with redis://"),
        ({"IMGSEARCH_MODEL": "alexnet"}, "IMGSEARCH_MODEL='alexnet' is not one of"),
        ({"IMGSEARCH_MAX_UPLOAD_MB": "lots"}, "IMGSEARCH_MAX_UPLOAD_MB='lots' is not a valid int"),
        ({"IMGSEARCH_MAX_UPLOAD_MB": "0"}, "must be between 1 and 1024"),
        ({"IMGSEARCH_PROJECTION": "sometimes"}, "IMGSEARCH_PROJECTION='sometimes' must be auto or off"),
        ({"IMGSEARCH_PROJECTION_MIN_IMAGES": "1"}, "must be between 2 and 10000000"),
        ({"IMGSEARCH_LOCAL_FEATURES": "perhaps"}, "IMGSEARCH_LOCAL_FEATURES='perhaps' is not a boolean"),
        ({"IMGSEARCH_RERANK_CANDIDATES": "0"}, "must be between 1 and 200"),
        ({"IMGSEARCH_TASK_SIZE": "many"}, "IMGSEARCH_TASK_SIZE='many' is not a valid int"),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_message(env, message):
    """Each bad value is named in an ImproperlyConfigured message at start-up."""
    code, err = start_django(**env)
    assert code != 0
    assert "ImproperlyConfigured" in err and message in err


def test_production_settings_start_with_a_secret_key():
    """With DEBUG off and SECRET_KEY given, start-up succeeds."""
    code, err = start_django(DEBUG="0", SECRET_KEY="x" * 50)
    assert code == 0, err


def test_the_web_process_never_imports_torch():
    """Loading settings, URLs, views, the API and the task module (to queue work) leaves torch out."""
    code = (
        "import django, sys; django.setup();"
        "import imgsearch.urls, search.api, search.views, workers.tasks, search.indexing;"
        "from search.management.commands import index_images;"
        "from django.test import Client; Client().get('/healthz');"
        "bad = [m for m in ('torch', 'torchvision') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


BLAS_THREADS = """
import ctypes, re, sys
{first}
import numpy
names = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")
for path in sorted(set(re.findall(r"(/\\S*openblas\\S*\\.so\\S*)", open("/proc/self/maps").read()))):
    lib = ctypes.CDLL(path)
    for name in names:
        if hasattr(lib, name):
            print(getattr(lib, name)())
            sys.exit()
print("none")
"""


def test_processes_start_numpy_with_one_blas_thread():
    """Every imgsearch process imports the package before numpy, so OpenBLAS starts one thread (not one per core)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    threads = subprocess.run(
        [sys.executable, "-c", BLAS_THREADS.format(first="import imgsearch")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if threads == "none":
        pytest.skip("numpy is not linked with OpenBLAS here")
    assert threads == "1"


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    """The models and the migrations agree: a field changed without `makemigrations` fails here, not on deploy."""
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
