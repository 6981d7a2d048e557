"""Milepost settings: every deployment knob is read from the environment (12-factor).

Defaults are production-safe (``DEBUG`` off, secure cookies, HSTS). With no
``DATABASE_URL`` / ``CELERY_BROKER_URL`` the platform runs on embedded defaults: SQLite
and kombu's filesystem transport, so ``make demo`` needs no server. A ``.env`` file in the
project root is read when present; real environment variables win over it.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.templatetags.static import static

from config.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=False)
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-development-only-key-never-use-in-production-0123456789"  # noqa: S105
ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Unfold (the admin theme) before django.contrib.admin, so its templates win.
    "unfold",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "customers",
    "milestones",
    "journeys",
    "messaging",
    "consent",
    "audit",
    "ops",
    "roles",
    "reports",
    "audience",
]

MIDDLEWARE = [
    # First, so every response (redirects and errors included) carries its X-Request-ID.
    "config.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.context.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# PostgreSQL in production and tests; SQLite (WAL, immediate transactions) as the embedded
# default so web, worker and beat can share one file in the demo.
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side parameters let psycopg prepare a statement a connection runs repeatedly:
    # PostgreSQL parses and (once its plan settles) plans the hot path's statements once per
    # connection instead of on every call — at 1,000 events/s that is a quarter of the
    # database's CPU. DATABASE_PREPARE_THRESHOLD=0 turns preparing off (e.g. behind a
    # PgBouncer older than 1.21 in transaction mode, which cannot keep prepared statements);
    # DATABASE_PLAN_CACHE_MODE=force_custom_plan plans every execution for its values.
    _PREPARE_THRESHOLD = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
    if DATABASES["default"]["ENGINE"].endswith("postgresql"):
        _OPTIONS = DATABASES["default"].setdefault("OPTIONS", {})
        _PLANS = env.str("DATABASE_PLAN_CACHE_MODE", default="auto")
        _OPTIONS["options"] = " ".join(
            filter(None, [_OPTIONS.get("options", ""), f"-c plan_cache_mode={_PLANS}"])
        )
        if _PREPARE_THRESHOLD > 0:
            _OPTIONS.update(server_side_binding=True, prepare_threshold=_PREPARE_THRESHOLD)
else:
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "milepost.sqlite3",
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Evaluation, enrollment and the runner commit without waiting for the WAL flush; ingest,
# sends and notices always wait (config/durability.py says why that loses nothing).
DATABASE_ASYNC_COMMIT: bool = env.bool("DATABASE_ASYNC_COMMIT", default=True)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")
# The project's own static files (the admin theme's additions: static/milepost/admin.css).
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Admin theme (Unfold) --------------------------------------------------------------------
# The sidebar groups pages by what a marketer does (config/admin_navigation.py); every asset
# (CSS, JS, Inter and Material Symbols fonts) is served from Unfold's own static files.
UNFOLD = {
    "SITE_TITLE": "Milepost",
    "SITE_HEADER": "Milepost",
    "SITE_SYMBOL": "flag",
    # Django's stock classes that the project's own admin templates use, styled for Unfold.
    "STYLES": [lambda request: static("milepost/admin.css")],
    "SIDEBAR": {
        "show_search": False,
        "show_all_applications": False,
        "navigation": "config.admin_navigation.sidebar_navigation",
    },
}

# --- Security (production-safe unless DEBUG) ------------------------------------------------
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Only behind a proxy that sets (and overwrites) X-Forwarded-Proto; otherwise clients could
# claim HTTPS themselves.
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
X_FRAME_OPTIONS = "DENY"
# Admin messages can carry a new key shown once; keep them server-side, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
# Health checks from a load balancer arrive over plain HTTP on the private network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Email ----------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="smtp://localhost:25")
vars().update(EMAIL_CONFIG)
if DEBUG and "EMAIL_URL" not in env:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="Milepost <noreply@localhost>")
SERVER_EMAIL: str = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
EMAIL_TIMEOUT: int = env.int("EMAIL_TIMEOUT", default=10)

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "customers.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Milepost API",
    "DESCRIPTION": "Native REST API of Milepost. Event ingestion is the Segment-compatible "
    "`/v1/` API, authenticated with a source write key.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema maps the whole API surface; only signed-in users (token or admin session).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several apps have a `status` or `kind` choice field; name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "customers.models.SubjectStatus",
        "KindEnum": "customers.models.IdentityKind",
        "DefinitionStatusEnum": "milestones.models.DefinitionStatus",
        "MilestoneKindEnum": "milestones.models.MilestoneKind",
        "OutcomeKindEnum": "milestones.models.OutcomeKind",
        "StateEnum": "milestones.models.ProgressState",
        "CustomerMessageStatusEnum": "messaging.models.MessageStatus",
        "JourneyStatusEnum": "journeys.models.JourneyStatus",
    },
}

# --- Ingestion ------------------------------------------------------------------------------
# Segment's limits: 32 KB per message, 500 KB per batch request.
INGEST_MAX_MESSAGE_BYTES: int = env.int("INGEST_MAX_MESSAGE_BYTES", default=32 * 1024)
INGEST_MAX_BATCH_BYTES: int = env.int("INGEST_MAX_BATCH_BYTES", default=500 * 1024)
# An event timestamp (after sentAt skew correction) further than this in the future of the
# server's receive time is clamped to the receive time; the original is kept in context.
INGEST_FUTURE_TOLERANCE_SECONDS: int = env.int("INGEST_FUTURE_TOLERANCE_SECONDS", default=300)
# Write-key lookups are cached per process; a deactivated key stops working within this.
INGEST_KEY_CACHE_SECONDS: int = env.int("INGEST_KEY_CACHE_SECONDS", default=10)

# How long a process trusts its cache of configuration rows on the hot path (live journeys,
# templates, topics, caps, region policies, quiet hours, stages, webhook endpoints): a change
# made in another process takes effect within this many seconds (config/cache.py).
CONFIG_CACHE_SECONDS: float = env.float("CONFIG_CACHE_SECONDS", default=5.0)
# Python's garbage collector in workers and web processes (config/collector.py): three
# generation thresholds; empty keeps CPython's (700, 10, 10).
GC_THRESHOLDS: list[int] = env.list("GC_THRESHOLDS", cast=int, default=[50_000, 20, 20])
if len(GC_THRESHOLDS) not in (0, 3) or any(n < 0 for n in GC_THRESHOLDS):
    raise ImproperlyConfigured("GC_THRESHOLDS: give three counts, e.g. 50000,20,20, or nothing")
# --- Milestones -----------------------------------------------------------------------------
# How long a process trusts its index of active milestone versions.
MILESTONES_REGISTRY_SECONDS: int = env.int("MILESTONES_REGISTRY_SECONDS", default=5)
# (version, subject) pairs one evaluation transaction claims.
MILESTONES_EVALUATE_BATCH: int = env.int("MILESTONES_EVALUATE_BATCH", default=500)
# A deadline is swept this long after it passes, so events already on their way count.
MILESTONES_SWEEP_GRACE_SECONDS: int = env.int("MILESTONES_SWEEP_GRACE_SECONDS", default=60)
MILESTONES_SWEEP_BATCH: int = env.int("MILESTONES_SWEEP_BATCH", default=20_000)
# Sweepers run at once within one tick, each on its own database connection.
MILESTONES_SWEEP_WORKERS: int = env.int("MILESTONES_SWEEP_WORKERS", default=2)
# Pending evaluations older than this are re-enqueued by the reconciler.
MILESTONES_RECONCILE_AFTER_SECONDS: int = env.int("MILESTONES_RECONCILE_AFTER_SECONDS", default=30)
# Chunks of a backfill evaluated at once, each on its own database connection.
MILESTONES_BACKFILL_WORKERS: int = env.int("MILESTONES_BACKFILL_WORKERS", default=2)
MILESTONES_TRIAL_PLANS: list[str] = env.list("MILESTONES_TRIAL_PLANS", default=["trial"])
MILESTONES_DEFAULT_STAGE: str = env.str("MILESTONES_DEFAULT_STAGE", default="new")

# --- Journeys -------------------------------------------------------------------------------
# Due enrollments one runner transaction claims (SKIP LOCKED) and advances.
JOURNEYS_ADVANCE_BATCH: int = env.int("JOURNEYS_ADVANCE_BATCH", default=500)
# New enrollments take their first steps in the process that enrolled them, right after
# commit (no task hop between an outcome and the journey's first message).
JOURNEYS_ADVANCE_ON_ENTRY: bool = env.bool("JOURNEYS_ADVANCE_ON_ENTRY", default=True)
# Outgoing notices (team emails, webhooks) one send task claims; attempts before a notice
# that keeps failing is given up (backoff as for messages: MESSAGING_RETRY_*).
JOURNEYS_NOTICE_BATCH: int = env.int("JOURNEYS_NOTICE_BATCH", default=100)
JOURNEYS_NOTICE_MAX_ATTEMPTS: int = env.int("JOURNEYS_NOTICE_MAX_ATTEMPTS", default=8)
# A notice claimed this long ago with no result (its worker died) is sent again.
JOURNEYS_NOTICE_STALE_SECONDS: int = env.int("JOURNEYS_NOTICE_STALE_SECONDS", default=300)
# The key webhook endpoints' signing secrets are derived from (default: SECRET_KEY).
# Changing it changes every endpoint's secret.
JOURNEYS_WEBHOOK_SIGNING_KEY: str = env.str("JOURNEYS_WEBHOOK_SIGNING_KEY", default="")
# The outcome sweep re-reads outcomes this old whose signal may have been lost.
JOURNEYS_SWEEP_GRACE_SECONDS: int = env.int("JOURNEYS_SWEEP_GRACE_SECONDS", default=60)
JOURNEYS_SWEEP_BATCH: int = env.int("JOURNEYS_SWEEP_BATCH", default=2_000)

# --- Consent and the delivery policy --------------------------------------------------------
# How "unknown" consent reads for a region without a RegionPolicy row: opt_out or opt_in.
CONSENT_DEFAULT_MODE: str = env.str("CONSENT_DEFAULT_MODE", default="opt_out")
if CONSENT_DEFAULT_MODE not in ("opt_in", "opt_out"):
    raise ImproperlyConfigured("CONSENT_DEFAULT_MODE must be opt_in or opt_out")
# The key of the address hashes that keep suppressions past erasure (default: SECRET_KEY).
# Changing it orphans every stored suppression: set it once and keep it.
CONSENT_HASH_KEY: str = env.str("CONSENT_HASH_KEY", default="")
# Replies to SMS keywords (carriers require STOP and HELP answers).
CONSENT_SMS_STOP_REPLY: str = env.str(
    "CONSENT_SMS_STOP_REPLY",
    default="You are unsubscribed and will receive no more messages. Reply START to resubscribe.",
)
CONSENT_SMS_START_REPLY: str = env.str(
    "CONSENT_SMS_START_REPLY",
    default="You are subscribed again. Reply STOP to unsubscribe, HELP for help.",
)
CONSENT_SMS_HELP_REPLY: str = env.str(
    "CONSENT_SMS_HELP_REPLY", default="Reply STOP to unsubscribe. Msg&data rates may apply."
)
# The absolute URL of this deployment, for links in messages (unsubscribe, tracking).
PUBLIC_BASE_URL: str = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# A message that loses the last cap slot to a higher-priority one: recorded as
# lower_priority (False) or deferred until the slot frees (True).
MESSAGING_LOWER_PRIORITY_DEFERS: bool = env.bool("MESSAGING_LOWER_PRIORITY_DEFERS", default=False)
# Messages one policy transaction decides; sends one channel task claims.
MESSAGING_DECIDE_BATCH: int = env.int("MESSAGING_DECIDE_BATCH", default=500)
MESSAGING_SEND_BATCH: int = env.int("MESSAGING_SEND_BATCH", default=100)
# A worker that just decided messages (new enrollments' first steps) sends them itself,
# sparing them a task hop: in chunks of MESSAGING_SEND_INLINE_MAX (0: always through the
# channel's queue) for up to MESSAGING_SEND_INLINE_SECONDS, the rest through the queue —
# all of them if the channel is rate limited, or its sends took longer than
# MESSAGING_SEND_INLINE_SLOW_SECONDS each in that process in the last minute.
MESSAGING_SEND_INLINE_MAX: int = env.int("MESSAGING_SEND_INLINE_MAX", default=20)
MESSAGING_SEND_INLINE_SECONDS: float = env.float("MESSAGING_SEND_INLINE_SECONDS", default=0.1)
MESSAGING_SEND_INLINE_SLOW_SECONDS: float = env.float(
    "MESSAGING_SEND_INLINE_SLOW_SECONDS", default=0.25
)
# Send attempts before a transient failure becomes final, and the backoff base/cap.
MESSAGING_MAX_ATTEMPTS: int = env.int("MESSAGING_MAX_ATTEMPTS", default=6)
MESSAGING_RETRY_BASE_SECONDS: float = env.float("MESSAGING_RETRY_BASE_SECONDS", default=30.0)
MESSAGING_RETRY_MAX_SECONDS: float = env.float("MESSAGING_RETRY_MAX_SECONDS", default=3600.0)
# A claimed send with no recorded result after this long is resolved by the reconciler.
MESSAGING_SENDING_STALE_SECONDS: int = env.int("MESSAGING_SENDING_STALE_SECONDS", default=600)
# The secret an ESP signs its delivery/bounce/complaint reports with (POST /m/webhooks/email).
MESSAGING_INBOUND_WEBHOOK_SECRET: str = env.str("MESSAGING_INBOUND_WEBHOOK_SECRET", default="")
# The (transactional) email template that asks for a double opt-in confirmation; its
# context has ``confirm_url``.
MESSAGING_DOUBLE_OPT_IN_TEMPLATE: str = env.str(
    "MESSAGING_DOUBLE_OPT_IN_TEMPLATE", default="double-opt-in-confirmation"
)
# Signed links (unsubscribe, preferences, tracking) stay valid this long.
MESSAGING_LINK_MAX_AGE_DAYS: int = env.int("MESSAGING_LINK_MAX_AGE_DAYS", default=365)

# Django's own request body cap must admit a full batch.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(INGEST_MAX_BATCH_BYTES + 1024, 2_621_440)

# --- Operations: /readyz and /metrics (ops/) ------------------------------------------------
# GET /metrics answers a bearer of this token ('Authorization: Bearer <token>'); empty: 403.
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
# The trailing window of the *_recent metrics (outcomes, messages by status and reason).
METRICS_WINDOW_SECONDS: int = env.int("METRICS_WINDOW_SECONDS", default=300)
# /readyz fails when the beat heartbeat (maintenance.beat_heartbeat, every 15 s) is older.
READYZ_BEAT_MAX_AGE_SECONDS: int = env.int("READYZ_BEAT_MAX_AGE_SECONDS", default=90)
if METRICS_WINDOW_SECONDS <= 0 or READYZ_BEAT_MAX_AGE_SECONDS <= 0:
    raise ImproperlyConfigured("METRICS_WINDOW_SECONDS and READYZ_BEAT_MAX_AGE_SECONDS must be > 0")

# --- Reports: the admin home's dashboard (reports/) -----------------------------------------
# A process reuses a computed dashboard (per milestone and journey chosen) this long; 0: never.
REPORTS_CACHE_SECONDS: int = env.int("REPORTS_CACHE_SECONDS", default=60)
if REPORTS_CACHE_SECONDS < 0:
    raise ImproperlyConfigured("REPORTS_CACHE_SECONDS must be >= 0")

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu's default control folder is ./control, relative to wherever it was started.
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
else:
    # Must exceed the longest task run; unacked messages are redelivered after it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    }
CELERY_TASK_ALWAYS_EAGER: bool = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_PREFETCH_MULTIPLIER: int = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
# Periodic work is declared by each app's issue (missed-deadline sweep, due-step tick, ...);
# django-celery-beat's DatabaseScheduler stores it and makes it editable in the admin.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "milestones-sweep": {"task": "milestones.deadlines_sweep", "schedule": 30.0},
    "milestones-start": {"task": "milestones.progress_start", "schedule": 60.0},
    "milestones-reconcile": {"task": "milestones.reconcile", "schedule": 60.0},
    # Deferred messages whose time came, due retries, lost wake-ups, unrecorded sends.
    "messaging-due": {"task": "messaging.due", "schedule": 15.0},
    # Enrollments whose wait is over, and any whose wake-up was lost.
    "journeys-advance": {"task": "journeys.enrollments_advance", "schedule": 15.0},
    # Team emails and webhooks due (first tries after lost wake-ups, and retries).
    "journeys-notices": {"task": "journeys.notices_send", "schedule": 15.0},
    # Outcomes whose signal was lost (a crash between commit and on_commit): enroll, exit,
    # convert and notify from the durable rows.
    "journeys-sweep": {"task": "journeys.outcomes_sweep", "schedule": 60.0},
    "journeys-events-sweep": {"task": "journeys.events_sweep", "schedule": 60.0},
    "journeys-stages-sweep": {"task": "journeys.stage_changes_sweep", "schedule": 60.0},
    # Proof that beat is scheduling, read by /readyz (ops/models.py says why not last_run_at).
    # A heartbeat no worker took within a minute is dropped: a later one says it better.
    "maintenance-beat-heartbeat": {
        "task": "maintenance.beat_heartbeat",
        "schedule": 15.0,
        "options": {"expire_seconds": 60},
    },
}

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
# plain: one readable line per record; json: one JSON object per line, for a log pipeline.
# Both name the request (X-Request-ID) and the task a line belongs to (config/logs.py).
LOG_FORMAT: str = env.str("LOG_FORMAT", default="plain")
LOGGING = logging_config(level=LOG_LEVEL, log_format=LOG_FORMAT)

# --- Messaging channels (backends) ---------------------------------------------------------
# Secrets come only from the environment and are empty by default: a backend used without
# its credentials fails each message with "not configured: <SETTING>".


def _env_json_strings(name: str) -> dict[str, str]:
    """A JSON object of strings from the environment ({} when unset); fails loudly."""
    value = env.json(name, default={})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ImproperlyConfigured(f"{name} must be a JSON object of strings.")
    return value


def _env_json_rates(name: str) -> dict[str, float]:
    """A JSON object of positive numbers from the environment ({} when unset); fails loudly."""
    value = env.json(name, default={})
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value.values()
    ):
        raise ImproperlyConfigured(f"{name} must be a JSON object of positive numbers.")
    return {str(k): float(v) for k, v in value.items()}


# Backend class per channel (import paths). MESSAGING_BACKENDS (JSON) replaces single entries,
# e.g. '{"sms": "messaging.channels.null.NullBackend"}' for a load test.
MESSAGING_BACKENDS: dict[str, str] = {
    "email": "messaging.channels.email.EmailBackend",
    "sms": "messaging.channels.sms.SmsBackend",
    "push": "messaging.channels.push.PushBackend",
    "in_app": "messaging.channels.inapp.InAppBackend",
    "webhook": "messaging.channels.webhook.WebhookBackend",
} | _env_json_strings("MESSAGING_BACKENDS")
# Every provider HTTP call (SMS, FCM, APNs, webhooks); SMTP uses EMAIL_TIMEOUT.
MESSAGING_HTTP_TIMEOUT_SECONDS: float = env.float("MESSAGING_HTTP_TIMEOUT_SECONDS", default=10.0)
# Sends per second per provider name, e.g. '{"sms": 10, "push": 500}' (JSON); none = no limit.
MESSAGING_RATE_LIMITS: dict[str, float] = _env_json_rates("MESSAGING_RATE_LIMITS")
# Email goes through Django's EMAIL_BACKEND (EMAIL_URL above; any django-anymail backend too).
MESSAGING_EMAIL_FROM: str = env.str("MESSAGING_EMAIL_FROM", default=DEFAULT_FROM_EMAIL)
# SMS: a Twilio-compatible REST API. FROM is a number, a sender id or a Messaging Service SID.
MESSAGING_SMS_BASE_URL: str = env.str("MESSAGING_SMS_BASE_URL", default="https://api.twilio.com")
MESSAGING_SMS_ACCOUNT: str = env.str("MESSAGING_SMS_ACCOUNT", default="")
MESSAGING_SMS_TOKEN: str = env.str("MESSAGING_SMS_TOKEN", default="")
MESSAGING_SMS_FROM: str = env.str("MESSAGING_SMS_FROM", default="")
# Push to Android and web: FCM HTTP v1 with a service-account JSON file; the project id is
# read from that file unless set here.
MESSAGING_FCM_BASE_URL: str = env.str(
    "MESSAGING_FCM_BASE_URL", default="https://fcm.googleapis.com"
)
MESSAGING_FCM_CREDENTIALS_FILE: str = env.str("MESSAGING_FCM_CREDENTIALS_FILE", default="")
MESSAGING_FCM_PROJECT_ID: str = env.str("MESSAGING_FCM_PROJECT_ID", default="")
# Push to iOS: APNs token auth with a .p8 key. Sandbox: https://api.sandbox.push.apple.com.
# TOPIC is the app's bundle id. HTTP2 off only for tests against a plain HTTP/1.1 server.
MESSAGING_APNS_BASE_URL: str = env.str(
    "MESSAGING_APNS_BASE_URL", default="https://api.push.apple.com"
)
MESSAGING_APNS_KEY_FILE: str = env.str("MESSAGING_APNS_KEY_FILE", default="")
MESSAGING_APNS_KEY_ID: str = env.str("MESSAGING_APNS_KEY_ID", default="")
MESSAGING_APNS_TEAM_ID: str = env.str("MESSAGING_APNS_TEAM_ID", default="")
MESSAGING_APNS_TOPIC: str = env.str("MESSAGING_APNS_TOPIC", default="")
MESSAGING_APNS_HTTP2: bool = env.bool("MESSAGING_APNS_HTTP2", default=True)
# Outgoing webhooks: the HMAC signing secret, and hosts let through the SSRF guard (which
# otherwise refuses private, loopback, link-local and other non-public addresses).
MESSAGING_WEBHOOK_SECRET: str = env.str("MESSAGING_WEBHOOK_SECRET", default="")
MESSAGING_WEBHOOK_ALLOWED_HOSTS: list[str] = env.list("MESSAGING_WEBHOOK_ALLOWED_HOSTS", default=[])
# The demo (DEBUG, no provider configured) prints SMS and push like the console email backend.
if DEBUG and "MESSAGING_BACKENDS" not in env:
    if not MESSAGING_SMS_ACCOUNT:
        MESSAGING_BACKENDS["sms"] = "messaging.channels.console.ConsoleBackend"
    if not MESSAGING_FCM_CREDENTIALS_FILE and not MESSAGING_APNS_KEY_FILE:
        MESSAGING_BACKENDS["push"] = "messaging.channels.console.ConsoleBackend"
