"""Index management for staff: images, collections (folders and uploads), model versions, visual words and
reindex runs, one module each (Django's admin discovers this package)."""

from . import collections, images, runs, versions  # noqa: F401  (each registers its ModelAdmins)
