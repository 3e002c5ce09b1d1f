from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self):
        from . import signals  # noqa: F401  (connects the Celery worker signals; imports no torch)
