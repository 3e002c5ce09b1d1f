"""Settings, read from the environment once. Bad values stop start-up with a clear message.

`make run` / `make test` start an embedded PostgreSQL + pgvector and Redis and set DATABASE_URL and
REDIS_URL for every process they start; docker-compose and production set them explicitly.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .backbones import MODELS

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


def env_rate(name, default):
    """A DRF rate such as "30/min": a count per second, minute, hour or day."""
    value = env_str(name, default)
    count, _, period = value.partition("/")
    if not (count.isdigit() and period[:1] in {"s", "m", "h", "d"}):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate; use e.g. 30/min, 500/hour or 2000/day.")
    return value


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
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "search",
    "favorites",
    "accounts",
    "workers",
]

MIDDLEWARE = [
    "imgsearch.middleware.UnreadBodyMiddleware",  # outermost: reads what an early answer (413, 429) left unread
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "imgsearch.middleware.DatabaseUnavailableMiddleware",
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
            ]
        },
    }
]

# --- Services -------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", required=True)
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL with pgvector (postgresql://...).")
# A streaming replica of that server for the searches' read-only queries (k-NN, scores, signatures, visual words):
# search/replica.py. Everything else, and every search while the replica does not answer, uses the primary.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    try:
        DATABASES["replica"] = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_REPLICA_URL is not a valid database URL: {exc}") from None
    if not DATABASES["replica"]["ENGINE"].endswith("postgresql"):
        raise ImproperlyConfigured("DATABASE_REPLICA_URL must point at a PostgreSQL replica (postgresql://...).")
    # A replica that does not answer costs a search at most this long once, then it is left alone a while.
    DATABASES["replica"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 2)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}

REDIS_URL = env_str("REDIS_URL", required=True)
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")
# Shared by every web process, so rate limits hold across gunicorn workers.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "imgsearch",
    }
}

# --- Files ----------------------------------------------------------------------------------------
DATA_DIR = env_path("IMGSEARCH_DATA_DIR", ".local")
MEDIA_ROOT = env_path("MEDIA_ROOT", DATA_DIR / "media")  # indexed images and thumbnails (public)
MEDIA_URL = "/media/"
QUERY_ROOT = env_path("QUERY_ROOT", DATA_DIR / "queries")  # uploaded query images (never public)
INCOMING_ROOT = env_path("INCOMING_ROOT", DATA_DIR / "incoming")  # admin uploads waiting to be indexed (never public)
# Folders a collection's server folder may lie under (comma-separated); empty: none (search/collections.py).
IMGSEARCH_IMPORT_ROOTS = [
    (BASE_DIR / p.strip()).resolve() for p in env_str("IMGSEARCH_IMPORT_ROOTS", "").split(",") if p.strip()
]
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
# Images per indexing task (and reindex chunk): the worker embeds them a batch at a time while its threads decode
# the next batch, so a task of several batches keeps the model busy (bench/indexing.py).
# 8 batches: the first batch's decoding and the last one's writes, which nothing overlaps, cost little per image
# (bench/indexing.py: 0.78x of the bare forward pass with tasks of 4 batches, 0.83x with 8).
IMGSEARCH_TASK_SIZE = env_number("IMGSEARCH_TASK_SIZE", 8 * IMGSEARCH_BATCH_SIZE, minimum=1, maximum=10_000)
IMGSEARCH_MAX_UPLOAD_BYTES = env_number("IMGSEARCH_MAX_UPLOAD_MB", 20, minimum=1, maximum=1024) * 1024 * 1024
IMGSEARCH_MAX_PIXELS = env_number("IMGSEARCH_MAX_PIXELS", 50_000_000, minimum=1, maximum=1_000_000_000)
# pgvector's hnsw.ef_search; 0: by the index's size (search.knn.auto_ef_search: 100, 400 from 300k vectors).
IMGSEARCH_HNSW_EF_SEARCH = env_number("IMGSEARCH_HNSW_EF_SEARCH", 0, minimum=0, maximum=1000)
# A model's HNSW index is built once it holds this many vectors (search.knn.ensure_vector_index).
IMGSEARCH_HNSW_MIN_VECTORS = env_number("IMGSEARCH_HNSW_MIN_VECTORS", 2000, minimum=0, maximum=100_000_000)
# From this many vectors a projected model's index holds only their sign bits, re-ranked by the stored vectors (a
# quarter of the index's memory, some recall or time: search.knn, docs/retrieval.md "The vector index"); 0: never.
IMGSEARCH_HNSW_BINARY_FROM = env_number("IMGSEARCH_HNSW_BINARY_FROM", 5_000_000, minimum=0, maximum=1_000_000_000)
IMGSEARCH_TORCH_THREADS = env_number("IMGSEARCH_TORCH_THREADS", 0, minimum=0, maximum=256)  # 0: torch's default
# A running reindex with no chunk started or finished for this long has lost a worker: its chunks are re-sent.
IMGSEARCH_REINDEX_STALL_SECONDS = env_number("IMGSEARCH_REINDEX_STALL_SECONDS", 300, minimum=5, maximum=86400)
IMGSEARCH_RESCAN_MINUTES = env_number("IMGSEARCH_RESCAN_MINUTES", 60, minimum=1, maximum=7 * 24 * 60)
# Past this many waiting searches, new ones get 503 + Retry-After instead of piling up.
IMGSEARCH_MAX_PENDING_SEARCHES = env_number("IMGSEARCH_MAX_PENDING_SEARCHES", 200, minimum=1, maximum=100_000)
# A search "running" this long lost its worker and is run again, at most MAX_ATTEMPTS times in all (the reaper).
IMGSEARCH_SEARCH_STALE_SECONDS = env_number("IMGSEARCH_SEARCH_STALE_SECONDS", 60, minimum=1, maximum=3600)
IMGSEARCH_SEARCH_MAX_ATTEMPTS = env_number("IMGSEARCH_SEARCH_MAX_ATTEMPTS", 3, minimum=1, maximum=20)
# A search pending this long may have lost its message (Redis restarted) and is sent again; past the deadline it fails.
IMGSEARCH_SEARCH_REQUEUE_SECONDS = env_number("IMGSEARCH_SEARCH_REQUEUE_SECONDS", 30, minimum=1, maximum=3600)
IMGSEARCH_SEARCH_DEADLINE_SECONDS = env_number("IMGSEARCH_SEARCH_DEADLINE_SECONDS", 300, minimum=1, maximum=86400)
# GET /api/v1/searches/{id}/?wait=N (search/waiting.py): at most this many requests per web process wait at once.
IMGSEARCH_WAIT_SLOTS = env_number("IMGSEARCH_WAIT_SLOTS", 4, minimum=0, maximum=1000)
IMGSEARCH_MAX_WAIT_SECONDS = 10
IMGSEARCH_DEFAULT_K = 20
IMGSEARCH_MAX_K = 100
# Local features (workers/ranking/verification.py) are extracted at index time so that searches can verify copies; off,
# indexing does about half the work (bench/indexing.py) and no search marks a copy.
IMGSEARCH_LOCAL_FEATURES = env_bool("IMGSEARCH_LOCAL_FEATURES", True)
# Searches verify this many of the best k-NN candidates with local features (workers/ranking/verification.py), so a
# copy of the query comes first even where the global vectors rank it lower.
IMGSEARCH_RERANK_CANDIDATES = env_number("IMGSEARCH_RERANK_CANDIDATES", 20, minimum=1, maximum=200)
# Once this many images have local features, a vocabulary of visual words is learned from them (search/vocabulary.py)
# and re-ranking also verifies the few images whose words are nearest the query's (workers/ranking/words.py): in a large
# index a heavily edited copy's original often falls out of the global candidates.
IMGSEARCH_WORDS_MIN_IMAGES = env_number("IMGSEARCH_WORDS_MIN_IMAGES", 200, minimum=2, maximum=10_000_000)
# "auto": once the index holds IMGSEARCH_PROJECTION_MIN_IMAGES images, learn a projection of the vectors from it
# (workers/projection.py) and apply it in a background run; learn again when the index or its tags grow by half.
IMGSEARCH_PROJECTION = env_str("IMGSEARCH_PROJECTION", "auto")
if IMGSEARCH_PROJECTION not in ("auto", "off"):
    raise ImproperlyConfigured(f"IMGSEARCH_PROJECTION={IMGSEARCH_PROJECTION!r} must be auto or off.")
IMGSEARCH_PROJECTION_MIN_IMAGES = env_number("IMGSEARCH_PROJECTION_MIN_IMAGES", 1000, minimum=2, maximum=10_000_000)
# Uploads larger than this are refused before their body is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True  # outcomes are written to rows; the database is the source of truth
CELERY_TASK_SERIALIZER = "json"
# A web request must not hang on a broker that is down: try briefly, then leave the job to the reaper.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "search"
# Searches have a queue (and a worker) of their own, so bulk indexing never delays them; all else is "index".
# The reaper is cheap and must run even while a long reindex fills the index queue.
CELERY_TASK_ROUTES = {
    "workers.run_search": {"queue": "search"},
    "workers.reap_searches": {"queue": "search"},
    "workers.*": {"queue": "index"},
}
CELERY_BEAT_SCHEDULE = {
    "reindex-resume": {"task": "workers.reindex_resume", "schedule": 60.0},
    # A reaper message older than its period is dropped: the next one does the same work.
    "reap-searches": {"task": "workers.reap_searches", "schedule": 15.0, "options": {"expires": 15}},
    "rescan-collections": {"task": "workers.rescan_collections", "schedule": IMGSEARCH_RESCAN_MINUTES * 60.0},
    "refresh-projection": {"task": "workers.refresh_projection", "schedule": 15 * 60.0},
    "refresh-words": {"task": "workers.refresh_words", "schedule": 15 * 60.0},
    # New images join the duplicate finder's groups within this period, once it has run over the whole index.
    "follow-duplicates": {"task": "workers.follow_duplicates", "schedule": 5 * 60.0},
    # Categories that have grown common get an index of their own within this period (search/filters.py).
    "refresh-tag-indexes": {"task": "workers.refresh_tag_indexes", "schedule": 15 * 60.0, "options": {"expires": 900}},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes the database connection around every task unless this is set; a new connection cost a search
# 6 ms (bench/search_latency.py). workers.signals keeps it instead, as Django does for requests (CONN_MAX_AGE,
# health checks): it is closed only when broken or old.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_TIME_LIMIT = 600
CELERY_TASK_SOFT_TIME_LIMIT = 540
# A pool process whose peak resident memory passed this after a task is replaced (the model loads again, seconds), so a
# leak costs a restart, not the OOM killer. mobilenet_v2, make run: a search pool process 477 MiB with the model, 623
# MiB after 1,000 searches (levelling off); an index one 1,359 MiB after indexing. make run gives searches 1024.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = 1024 * env_number("IMGSEARCH_WORKER_MAX_MEMORY_MB", 2048, minimum=256)  # KiB

# --- Django REST framework ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.JSONParser",
    ],
    # Token first: a client without credentials then gets 401 (with WWW-Authenticate), not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "EXCEPTION_HANDLER": "search.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "imgsearch API",
    "DESCRIPTION": (
        "Search by image. POST a picture to /api/v1/searches/, poll the job's URL until its status is done, "
        "read the results (best first). Anonymous clients may search (keep the session cookie to read the job "
        "back); favourites and history need an account: send `Authorization: Token <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {"SearchStatusEnum": ["pending", "running", "done", "failed"]},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "search.openapi.add_links"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files: the docs work without internet
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Searches started per signed-in user and per anonymous client (by IP address); 429 beyond.
IMGSEARCH_SEARCH_RATE_USER = env_rate("IMGSEARCH_SEARCH_RATE_USER", "120/min")
IMGSEARCH_SEARCH_RATE_ANON = env_rate("IMGSEARCH_SEARCH_RATE_ANON", "30/min")

# --- Accounts and e-mail --------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_number("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "imgsearch <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- HTTPS and cookies in production (python manage.py check --deploy) ----------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 31_536_000, minimum=0, maximum=10 * 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_bool("SECURE_PROXY_SSL_HEADER", False):  # only behind a proxy that sets this header itself
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

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
