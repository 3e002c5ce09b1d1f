"""imgsearch: search by image. The Celery app is exported so `celery -A imgsearch` finds it."""

import os

# numpy's OpenBLAS starts a thread per core, and those threads wait busily between the small matrix products of a
# search's copy verification, fighting the model's and OpenCV's threads for 2 cores: with them, half the searches of
# one 463-px query spent 100-140 ms re-ranking instead of 45-50 (`make run`, see docs/benchmarks.md). This package is
# imported before numpy in every process (Django settings, gunicorn, `celery -A imgsearch`); the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .celery import app as celery_app  # noqa: E402

__all__ = ("celery_app",)
