"""Settings, read from the environment once. Bad values stop start-up with a clear message.

`make run` / `make test` start an embedded PostgreSQL + pgvector and Redis and set DATABASE_URL and
REDIS_URL for every process they start; docker-compose and production set them explicitly.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from workers.registry import MODELS

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=None, *, required=False):
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if required:
        raise ImproperlyConfigured(f"The environment variable {name} must be set.")
    return default


def env_bool(name, default):
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def env_number(name, default, *, kind=int, minimum=None, maximum=None):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a valid {kind.__name__}.") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name}={raw!r} must be between {minimum} and {maximum}.")
    return value


def env_path(name, default):
    """A path setting; relative paths are taken from the project root."""
    return (BASE_DIR / env_str(name, str(default))).resolve()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", required=not DEBUG) or "insecure-development-key-only-used-with-DEBUG=1"
ALLOWED_HOSTS = env_str("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "search",
    "favorites",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "imgsearch.urls"
WSGI_APPLICATION = "imgsearch.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Services -------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", required=True)
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL with pgvector (postgresql://...).")

REDIS_URL = env_str("REDIS_URL", required=True)
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")

# --- Files ----------------------------------------------------------------------------------------
DATA_DIR = env_path("IMGSEARCH_DATA_DIR", ".local")
MEDIA_ROOT = env_path("MEDIA_ROOT", DATA_DIR / "media")  # indexed images and thumbnails (public)
MEDIA_URL = "/media/"
QUERY_ROOT = env_path("QUERY_ROOT", DATA_DIR / "queries")  # uploaded query images (never public)
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
SERVE_MEDIA = env_bool("SERVE_MEDIA", True)  # off when a front server (nginx) serves MEDIA_ROOT

# --- Search and the model -------------------------------------------------------------------------
IMGSEARCH_MODEL = env_str("IMGSEARCH_MODEL", "mobilenet_v2")
if IMGSEARCH_MODEL not in MODELS:
    raise ImproperlyConfigured(f"IMGSEARCH_MODEL={IMGSEARCH_MODEL!r} is not one of: {', '.join(sorted(MODELS))}.")
# A torchvision weights name (e.g. DEFAULT, IMAGENET1K_V1), a path to a .pth state_dict, or
# "random" (tests only: an untrained model, never chosen implicitly).
IMGSEARCH_WEIGHTS = env_str("IMGSEARCH_WEIGHTS", "DEFAULT")
if "/" in IMGSEARCH_WEIGHTS or IMGSEARCH_WEIGHTS.endswith((".pth", ".pt")):
    IMGSEARCH_WEIGHTS = str(env_path("IMGSEARCH_WEIGHTS", IMGSEARCH_WEIGHTS))
IMGSEARCH_DEVICE = env_str("IMGSEARCH_DEVICE", "auto")
IMGSEARCH_BATCH_SIZE = env_number("IMGSEARCH_BATCH_SIZE", 32, minimum=1, maximum=1024)
IMGSEARCH_MAX_UPLOAD_BYTES = env_number("IMGSEARCH_MAX_UPLOAD_MB", 20, minimum=1, maximum=1024) * 1024 * 1024
IMGSEARCH_MAX_PIXELS = env_number("IMGSEARCH_MAX_PIXELS", 50_000_000, minimum=1, maximum=1_000_000_000)
IMGSEARCH_HNSW_EF_SEARCH = env_number("IMGSEARCH_HNSW_EF_SEARCH", 64, minimum=1, maximum=1000)
IMGSEARCH_DEFAULT_K = 20
IMGSEARCH_MAX_K = 100
# Uploads larger than this are refused before their body is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True  # outcomes are written to rows; the database is the source of truth
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "search"
CELERY_TASK_ROUTES = {"workers.embed_images": {"queue": "index"}, "workers.run_search": {"queue": "search"}}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540

# --- Django REST framework ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.JSONParser",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "EXCEPTION_HANDLER": "search.api.exception_handler",
}

# --- The rest -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
