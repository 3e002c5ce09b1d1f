"""WSGI entry point (gunicorn imgsearch.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imgsearch.settings")
application = get_wsgi_application()
