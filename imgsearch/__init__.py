"""imgsearch: search by image. The Celery app is exported so `celery -A imgsearch` finds it."""

from .celery import app as celery_app

__all__ = ("celery_app",)
