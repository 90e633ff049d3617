"""Mathset settings, read from environment variables.

Embedded default: SQLite and kombu's filesystem broker, so the platform runs on a
bare machine. Setting DATABASE_URL and REDIS_URL switches the same code to
PostgreSQL and Redis (production).
"""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("MATHSET_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEV_SECRET_KEY = "dev-only-insecure-key-change-me"
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
# On for `make run` and the tests; `make serve` (config/gunicorn.conf.py) turns it off unless DEBUG is set.
DEBUG = env_bool("DEBUG", True)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    # The development key is in the repository: with it anyone could sign a /signed-files/ URL for
    # any image (curation/signed_urls.py) and forge every other signature Django makes.
    raise ImproperlyConfigured("Set SECRET_KEY (a long random string, the same for web and workers): "
                               "the development key is public and must not serve with DEBUG off.")
# Served (DEBUG off), only the names set here are answered: with "*" a forged Host header would
# choose the address in password-reset mails and absolute links. Unset, that is the loopback
# addresses `make serve` binds by default; a public name must be listed. `make run` answers any.
ALLOWED_HOSTS = [h.strip() for h in os.environ.get(
    "ALLOWED_HOSTS", "*" if DEBUG else "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# Served over HTTPS (behind a TLS-terminating proxy that sets X-Forwarded-Proto): SECURE_COOKIES=1
# keeps the session and CSRF cookies off plain HTTP, SECURE_HSTS_SECONDS asks browsers to come back
# only over HTTPS. Off by default: `make run` and `make serve` answer plain HTTP on 127.0.0.1.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "common",
    "curation",
    "labeling",
    "guides",
    "pipeline",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "common.api_errors.ApiTrailingSlashMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Content-Security-Policy (django-csp): the second line of defence should sanitised user text
# (guides' Markdown, LaTeX rendered by KaTeX) ever let markup through. Scripts come only from our
# own static files: no inline <script>, no on*="..." handlers, no eval (static/js/common.js handles
# data-autosubmit and data-confirm). Inline styles stay allowed: templates and KaTeX's output set
# style attributes. MATHSET_CSP_REPORT_ONLY=1 sends the same policy as
# Content-Security-Policy-Report-Only (browsers log violations but block nothing).
_CSP = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],  # canvas crops, thumbnails, Swagger UI's icons
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
if env_bool("MATHSET_CSP_REPORT_ONLY", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP
    CONTENT_SECURITY_POLICY = None
else:
    CONTENT_SECURITY_POLICY = _CSP

ROOT_URLCONF = "config.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "common.context_processors.roles",
            ],
        },
    },
]
WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{VAR_DIR / 'mathset.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_PREPARED_STATEMENTS", True):
    # Lets common.rawsql prepare the work queue's statements (Django's own cursors never
    # prepare). Off (0) behind a transaction-pooling PgBouncer older than 1.21.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 1_000_000
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not env_bool("DB_JIT", False):
    # PostgreSQL's JIT compiles a query whose estimated cost passes jit_above_cost: the list pages'
    # aggregates (the cost report, counts over 100,000 tasks) spent 100-200 ms compiling for 100 ms
    # of work (bench/pages.py). DB_JIT=1 gives the server's own setting back.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c jit=off".strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web server, worker) share the file: wait for locks
    # instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# QA statistics (pipeline.stats): sections computed side by side on PostgreSQL, each on its own
# connection; 1 runs them one after another.
QA_STATS_THREADS = int(os.environ.get("QA_STATS_THREADS", "2"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
# Brute-force protection (common/login_limits.py): its backend refuses a locked-out attempt
# before ModelBackend checks the password. Failures counted within the window (also the longest
# lockout) per username and address, per address, and per username from any address; 0 switches
# a limit off. The username-wide limit locks the real user out too, so it stays well above the
# per-pair one: only many addresses together (a distributed attack) reach it.
AUTHENTICATION_BACKENDS = [
    "common.login_limits.LoginLimitBackend",
    "django.contrib.auth.backends.ModelBackend",
]
MATHSET_LOGIN_FAILURES_PER_USERNAME_AND_IP = int(os.environ.get("MATHSET_LOGIN_FAILURES_PER_USERNAME_AND_IP", "10"))
MATHSET_LOGIN_FAILURES_PER_USERNAME = int(os.environ.get("MATHSET_LOGIN_FAILURES_PER_USERNAME", "100"))
MATHSET_LOGIN_FAILURES_PER_IP = int(os.environ.get("MATHSET_LOGIN_FAILURES_PER_IP", "50"))
MATHSET_LOGIN_FAILURE_WINDOW_S = int(os.environ.get("MATHSET_LOGIN_FAILURE_WINDOW_S", "900"))
# The client address is REMOTE_ADDR unless this many proxies in front of the app each append
# the address they saw to X-Forwarded-For (1 behind one nginx); a client can forge the header.
MATHSET_PROXY_COUNT = int(os.environ.get("MATHSET_PROXY_COUNT", "0"))
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
# Deadlines (DateFields) are days in this zone: every "today" is timezone.localdate(), so a team
# in Korea sets TIME_ZONE=Asia/Seoul and "deadline 2026-12-31" ends at midnight in Seoul.
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on a missing folder
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Uploads: one image may be at most this large, and decoded images may have at
# most this many pixels (a 30000x30000 PNG "bomb" is refused before decoding).
MATHSET_MAX_UPLOAD_BYTES = int(os.environ.get("MATHSET_MAX_UPLOAD_BYTES", 25 * 1024 * 1024))
MATHSET_MAX_IMAGE_PIXELS = int(os.environ.get("MATHSET_MAX_IMAGE_PIXELS", 60_000_000))
MATHSET_THUMBNAIL_SIZE = (256, 256)
MATHSET_BULK_MAX_FILES = int(os.environ.get("MATHSET_BULK_MAX_FILES", 500))
# What one bulk upload's files may add up to: each file is streamed to a temporary file before the
# view runs, so MATHSET_BULK_MAX_FILES files of MATHSET_MAX_UPLOAD_BYTES (12.5 GB) would fill the
# disk; the upload page splits its files into requests under this.
MATHSET_BULK_MAX_BYTES = int(os.environ.get("MATHSET_BULK_MAX_BYTES", 512 * 1024 * 1024))
# One zip for an import job (POST /api/v1/import-jobs/): refused while it streams in over this.
MATHSET_MAX_ARCHIVE_BYTES = int(os.environ.get("MATHSET_MAX_ARCHIVE_BYTES", 2 * 1024 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = MATHSET_MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = MATHSET_BULK_MAX_FILES + 1
# External models (HTTP ML backends) fetch images through absolute, signed, expiring URLs
# (curation/signed_urls.py): the address this server is reached at from those models, and
# how long such a URL stays valid (seconds).
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# The address people open the site at, for links in e-mails (guides.services); PUBLIC_BASE_URL
# when unset (that one is where external models fetch images, which may be an internal address).
MATHSET_BASE_URL = os.environ.get("MATHSET_BASE_URL", "").rstrip("/")
MATHSET_SIGNED_URL_MAX_AGE = int(os.environ.get("MATHSET_SIGNED_URL_MAX_AGE", 3600))
# The hosts external models may be registered at (pipeline/endpoints.py): names, ".domain"
# suffixes, addresses or networks, comma-separated; "*" (default) any but link-local and
# metadata addresses, which are always refused.
MATHSET_MODEL_HOSTS = os.environ.get("MATHSET_MODEL_HOSTS", "*")
# One call to an external model (pipeline.runtime.HttpPredictor: pre-labeling, evaluation) has
# MODEL_TIMEOUT_S in all: resolving, connecting, sending and its whole answer, however slowly it
# comes; past it the call fails as a network error does (pre-labeling tries the chunk again). Its
# answer may hold MODEL_MAX_RESPONSE_BYTES (as its Content-Length declares, or as read, decoded; its
# JSON takes several times that once parsed): a longer one is cut off there and, a broken answer,
# fails the request's items or the evaluation with the reason, not retried.
MATHSET_MODEL_TIMEOUT_S = float(os.environ.get("MATHSET_MODEL_TIMEOUT_S", 60))
MATHSET_MODEL_MAX_RESPONSE_BYTES = int(os.environ.get("MATHSET_MODEL_MAX_RESPONSE_BYTES", 64 * 1024 * 1024))
# The hosts webhooks (pipeline/webhooks.py) may be pointed at, in the same form and under the same
# rules (link-local and metadata addresses always refused). "public" (default): any globally routable
# address; list an internal receiver by name or network ("public, hooks.lab.example, 10.20.0.0/16").
MATHSET_WEBHOOK_HOSTS = os.environ.get("MATHSET_WEBHOOK_HOSTS", "public")
# The real data beside the project (never copied into it).
MATHSET_SHARED_DATA = Path(os.environ.get("MATHSET_SHARED_DATA", BASE_DIR.parent / "shared" / "data"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "common.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "common.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "common.filters.FilterBackend",  # django-filter's, with strict yes/no filters
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.exceptions.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Mathset API",
    "DESCRIPTION": "Dataset specs, sources and licences, images, labeling, pipeline and exports "
    "for photographed school-math formulas. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc served from our own static files: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge image from validator.swagger.io: nothing leaves the site (and img-src is 'self').
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # Several models share status names; name their enums apart in the schema.
    "ENUM_NAME_OVERRIDES": {
        "BatchStatusEnum": "labeling.models.Batch.Status",
        "TaskStatusEnum": "labeling.models.Task.Status",
        "AnnotationStatusEnum": "labeling.models.Annotation.Status",
        "BatchKindEnum": "labeling.models.Batch.Kind",
        "DatasetSpecStatusEnum": "curation.models.DatasetSpec.Status",
        # Export.format and the export request's format: one enum, apart from models' formats.
        "ExportFormatEnum": "curation.models.Export.Format",
        # What became of each file of a bulk upload; named, as a bare "outcome" is too generic.
        "IngestOutcomeEnum": "curation.services.INGEST_OUTCOMES",
    },
}

# --- Celery: broker, time limits and retries in one block -------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_DIR = VAR_DIR / "celery-broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Shared by web and worker processes, so a debounce marker (pipeline/refresh.py) holds across them.
    CACHES = {"default": {"BACKEND": "common.cache.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "mathset"}}
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    # kombu's filesystem transport: a broker that needs no server.
    # A host in the URL, which the transport ignores: without one kombu logs "No hostname was
    # supplied" every time a command or page enqueues work.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        # the exchange table; kombu's default is "control" in the working directory
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
    # kombu does not create them: a web process that enqueues before any worker has started
    # (a fresh checkout, a benchmark's temporary folder) would fail to publish.
    for _sub in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("MATHSET_CELERY_QUEUE", "mathset")
CELERY_TASK_ALWAYS_EAGER = env_bool("MATHSET_CELERY_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("MATHSET_TASK_SOFT_TIME_LIMIT", 600))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_TASK_DEFAULT_RETRY_DELAY = 5
MATHSET_TASK_MAX_RETRIES = 3
# Webhook deliveries (pipeline.tasks.webhook_deliver): one try has TIMEOUT_S in all (resolving,
# connecting, sending and the answer's status and headers, however slowly a receiver drips them;
# past it, the try is a retryable failure); a network error, that deadline or a 5xx is tried again
# after BACKOFF_S, doubling each time (capped at an hour), up to MAX_ATTEMPTS tries in all; a 3xx
# or 4xx is final at once.
MATHSET_WEBHOOK_TIMEOUT_S = float(os.environ.get("MATHSET_WEBHOOK_TIMEOUT_S", 10))
MATHSET_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("MATHSET_WEBHOOK_MAX_ATTEMPTS", 6))
MATHSET_WEBHOOK_BACKOFF_S = int(os.environ.get("MATHSET_WEBHOOK_BACKOFF_S", 30))
# Re-queue pre-labeling work of jobs whose worker died, without waiting for the
# broker's visibility timeout (run by `celery worker -B` or a separate `celery beat`).
CELERY_BEAT_SCHEDULE = {
    "prelabel-sweep": {"task": "pipeline.tasks.prelabel_sweep", "schedule": 300.0},
    "builds-sweep": {"task": "curation.tasks.sweep_builds", "schedule": 300.0},  # exports, snapshots
    "evaluations-sweep": {"task": "pipeline.tasks.evaluations_sweep", "schedule": 300.0},
    "webhook-deliveries-sweep": {"task": "pipeline.tasks.webhook_deliveries_sweep", "schedule": 600.0},
    "qa-stats-refresh": {"task": "pipeline.tasks.spec_stats_refresh_active", "schedule": 3600.0},
}
# ... which also refreshes an active spec whose stored quota progress is older than this
MATHSET_STATS_MAX_AGE_S = int(os.environ.get("MATHSET_STATS_MAX_AGE_S", "3600"))
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "mathset@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
