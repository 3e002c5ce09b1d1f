"""Index management for staff: images, collections (folders and uploads), model versions, visual words,
reindex runs and the duplicate finder, one module each (Django's admin discovers this package)."""

from . import collections, duplicates, images, runs, versions  # noqa: F401  (each registers its ModelAdmins)
