"""Baton settings, read from the environment (12-factor, django-environ).

`DJANGO_ENV=production` demands real secrets and turns on every security
setting; anything missing stops startup with a message naming the variable.
See `.env.example` and the configuration table in README.md.
"""

import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(
        f"DJANGO_ENV must be development, production or test, not {DJANGO_ENV!r}"
    )
PRODUCTION = DJANGO_ENV == "production"

_INSECURE_DEV_KEY = "django-insecure-baton-development-key-never-use-in-production"


def _required_in_production(name, parse, default):
    """Read a variable that production must set explicitly."""
    if PRODUCTION and name not in env.ENVIRON:
        raise ImproperlyConfigured(f"{name} must be set when DJANGO_ENV=production")
    try:
        return parse(name, default=default)
    except (ValueError, ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"{name} is invalid: {exc}") from exc


SECRET_KEY = _required_in_production("SECRET_KEY", env.str, _INSECURE_DEV_KEY)
if PRODUCTION and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "SECRET_KEY must be a random string of at least 50 characters in production"
    )
DEBUG = env.bool("DEBUG", default=not PRODUCTION and DJANGO_ENV != "test")
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be false when DJANGO_ENV=production")
ALLOWED_HOSTS = _required_in_production(
    "ALLOWED_HOSTS", env.list, ["127.0.0.1", "localhost", "testserver"]
)
if PRODUCTION and (not ALLOWED_HOSTS or "*" in ALLOWED_HOSTS):
    raise ImproperlyConfigured("ALLOWED_HOSTS must list real host names in production")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.BatonAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_q",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "programs",
    "programs.security.apps.SecurityConfig",
    "integrations",
    "messaging",
    "participants",
]

# Partner API requests (bearer keys, JSON) skip the browser middleware between
# ApiFastPathMiddleware and ApiFastPathEnd: see integrations/api/middleware.py.
MIDDLEWARE = [
    "config.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "integrations.api.middleware.ApiFastPathMiddleware",
    "programs.security.middleware.BatonCSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "programs.security.middleware.SessionTimeoutMiddleware",
    "programs.security.middleware.MFARequiredMiddleware",
    "programs.security.middleware.RejectNulCharacterMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "programs.security.middleware.SecurityHeadersMiddleware",
    "axes.middleware.AxesMiddleware",  # last of the browser group (django-axes)
    "integrations.api.middleware.ApiFastPathEnd",  # a pass-through marker
]
API_FAST_PATH_PREFIX = "/api/"
API_FAST_PATH_EXCLUDE = ("/api/v1/docs/", "/api/v1/schema/")  # pages browsers load

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
                "programs.security.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
# Unset DATABASE_URL: embedded SQLite in WAL mode, so web and one worker can
# share it. A postgres:// URL: psycopg 3 with Django's connection pool.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
        ),
    }
    # The queue's covering indexes (INCLUDE columns) are a PostgreSQL
    # optimization; SQLite gets the same indexes without the extra columns,
    # which is all it needs, so `migrate` need not warn about it on every run.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db["CONN_MAX_AGE"] = 0  # the pool owns connection reuse; the two cannot combine
    _db.setdefault("OPTIONS", {})
    # Prepared statements: PostgreSQL plans a statement on every execution
    # unless it is prepared, and for the hot partner API paths planning cost
    # more than executing (docs/performance.md, "Prepared statements").
    # Django turns them off by default for transaction-mode poolers
    # (PgBouncer before 1.21): set DB_PREPARED_STATEMENTS=false behind one.
    # Preparing needs server-side parameter binding; psycopg prepares a
    # statement on a connection after its fifth execution there.
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        _db["OPTIONS"]["server_side_binding"] = True
        _db["OPTIONS"]["prepare_threshold"] = env.int("DB_PREPARE_THRESHOLD", default=5)
    # qcluster forks its workers after Django starts: a pool opened in the
    # parent would be shared by the children, so workers default to no pool.
    _is_qcluster = len(sys.argv) > 1 and sys.argv[1] == "qcluster"
    if env.bool("DB_POOL", default=not _is_qcluster):
        _db["OPTIONS"]["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
            "timeout": env.int("DB_POOL_TIMEOUT", default=10),
        }
    _db["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default="test_baton")}
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must be a postgres:// or sqlite:// URL")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Validates nothing; its password_changed() hook audits every password change.
    {"NAME": "programs.security.passwords.AuditPasswordChange"},
]
# axes first: it refuses locked-out credentials before any backend checks them.
AUTHENTICATION_BACKENDS = [
    "programs.security.backends.AxesBackend",  # subclass of axes AxesStandaloneBackend
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/login/"
# The admin is also served under ADMIN_URL (default "admin/"); its login page
# redirects to LOGIN_URL so the second factor cannot be skipped there.
ADMIN_URL = env.str("ADMIN_URL", default="admin/").strip("/") + "/"
if ADMIN_URL == "/":
    raise ImproperlyConfigured("ADMIN_URL must not be empty")

# Login throttling (django-axes): lock a username, and separately an IP,
# after AXES_FAILURE_LIMIT failures; an admin lifts it (admin > Access
# attempts) or it cools off after LOGIN_LOCKOUT_MINUTES (0 = until lifted).
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
_lockout_minutes = env.int("LOGIN_LOCKOUT_MINUTES", default=30)
AXES_COOLOFF_TIME = timedelta(minutes=_lockout_minutes) if _lockout_minutes > 0 else None
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "programs.security.request_meta.client_ip"
AXES_SENSITIVE_PARAMETERS = ["password", "token", "otp_token"]
# Reverse proxies in front of Django whose X-Forwarded-For entries are trusted.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1 if PRODUCTION else 0)

# Two-factor authentication (django-otp, TOTP + single-use recovery codes).
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Baton")
BATON_MFA_REQUIRED_FOR_SUPERUSERS = env.bool("MFA_REQUIRED_FOR_SUPERUSERS", default=PRODUCTION)
BATON_RECOVERY_CODE_COUNT = 10

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Security -------------------------------------------------------------------
# Automatic logoff (HIPAA 164.312(a)(2)(iii)): idle timeout and absolute
# lifetime, enforced server side by programs.security.middleware.
SESSION_IDLE_TIMEOUT = timedelta(minutes=env.int("SESSION_IDLE_MINUTES", default=15))
SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=env.int("SESSION_ABSOLUTE_HOURS", default=12))
SESSION_COOKIE_AGE = int(SESSION_ABSOLUTE_TIMEOUT.total_seconds())
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # __Host- cookies: HTTPS only, no Domain, Path=/ (cannot be set by subdomains).
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"

# Content Security Policy (django-csp 4): no inline script anywhere; the one
# inline <style> of the Django admin change list is allowed by its hash.
# Relaxations for single paths (Swagger UI) live in CSP_PATH_OVERRIDES and are
# applied by programs.security.middleware.BatonCSPMiddleware. See docs/security.md.
_SELF = "'self'"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_SELF],
        "script-src": [_SELF],
        "style-src": [
            _SELF,
            # django/contrib/admin/templates/admin/change_list.html (no actions)
            "'sha256-blvLUW3UscWqsXGByNOqdBboM+ShWAuugp2mC/wbafU='",
        ],
        "img-src": [_SELF, "data:"],
        "font-src": [_SELF],
        "connect-src": [_SELF],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": [_SELF],
        "frame-ancestors": ["'none'"],
    }
}
CSP_PATH_OVERRIDES = {
    # Swagger UI (drf-spectacular, split view: its init script is a file).
    # Its template's one inline <style> block is allowed by hash.
    "/api/v1/docs/": {
        "style-src": [_SELF, "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='"],
    },
}

# --- Cache ------------------------------------------------------------------------
# The partner API's per-key throttle counters live in the cache. With REDIS_URL
# set, Django's RedisCache (the `redis` package) shares them across gunicorn
# workers and machines: production should set it (or CACHE_URL). Without it,
# a per-process local-memory cache: fine for development and tests, but each
# worker then counts on its own, so the effective limit is N workers x rate.
CACHE_URL = env.str("CACHE_URL", default=env.str("REDIS_URL", default=""))
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("CACHE_URL/REDIS_URL must be a redis:// or unix:// URL")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="baton"),
            # fail fast; the throttle lets requests through while the cache is down
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- REST API ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": ["integrations.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["integrations.auth.IsApiClient"],
    "DEFAULT_THROTTLE_CLASSES": ["integrations.throttling.ApiClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_client": env.str("API_THROTTLE_RATE", default="1200/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["integrations.problems.LimitedJSONParser"],
    "EXCEPTION_HANDLER": "integrations.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Baton partner API",
    "DESCRIPTION": (
        "Partner REST API for Baton programs. PHI is rejected at the door. "
        "Errors are RFC 9457 problem+json. See docs/api.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ProgramStateEnum": "programs.models.ProgramState",
        "ExceptionStateEnum": "programs.models.ExceptionState",
        "EnrollmentStateEnum": "participants.models.EnrollmentState",
        "StepStateEnum": "participants.models.StepState",
        "EventDispositionEnum": "participants.models.EventDisposition",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "integrations.api.schema.add_problem_responses",
    ],
}

# --- Task queue (django-q2) -------------------------------------------------------
# ORM broker on the default database unless Q_BROKER=redis. `retry` stays above
# `timeout` so a slow task is never handed out twice while still running.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=120)
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="baton"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": env.int("Q_RETRY", default=Q_TIMEOUT + 60),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=5),
    "catch_up": False,
    "save_limit": env.int("Q_SAVE_LIMIT", default=1000),
    "ack_failures": False,
    "poll": env.float("Q_POLL", default=0.5),
    "label": "Task queue",
}
Q_BROKER = env.str("Q_BROKER", default="orm")
if Q_BROKER == "redis":
    Q_CLUSTER["redis"] = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
elif Q_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
else:
    raise ImproperlyConfigured(f"Q_BROKER must be 'orm' or 'redis', not {Q_BROKER!r}")
if Q_CLUSTER["retry"] <= Q_CLUSTER["timeout"]:
    raise ImproperlyConfigured("Q_RETRY must be greater than Q_TIMEOUT")

# --- Baton ------------------------------------------------------------------------
# Resolution SLA of an exception-queue item, by severity.
BATON_EXCEPTION_SLA = {
    "critical": timedelta(hours=1),
    "high": timedelta(hours=4),
    "medium": timedelta(hours=24),
    "low": timedelta(hours=72),
}
# Webhooks (integrations): plain http to loopback is a development/test
# convenience only; production demands https to public addresses (S4).
BATON_ALLOW_INSECURE_WEBHOOKS = env.bool(
    "BATON_ALLOW_INSECURE_WEBHOOKS", default=DEBUG or DJANGO_ENV == "test"
)
if PRODUCTION and BATON_ALLOW_INSECURE_WEBHOOKS:
    raise ImproperlyConfigured("BATON_ALLOW_INSECURE_WEBHOOKS must be false in production")
BATON_WEBHOOK_LEASE_SECONDS = env.int("BATON_WEBHOOK_LEASE_SECONDS", default=60)
# How far ahead of Baton's clock a partner event's occurred_at may lie: room
# for a sender's clock drift or a wrong offset, not for a clock set to 2099
# (whose events would complete steps years ahead and make every later event
# look out of order). Later than this: 422.
BATON_EVENT_MAX_FUTURE = timedelta(hours=env.int("BATON_EVENT_MAX_FUTURE_HOURS", default=24))
BATON_WEBHOOK_SEND_CONCURRENCY = env.int("BATON_WEBHOOK_SEND_CONCURRENCY", default=16)
BATON_INBOUND_RECEIPT_RETENTION = timedelta(
    hours=env.int("BATON_INBOUND_RECEIPT_RETENTION_HOURS", default=72)
)

# --- Logging ----------------------------------------------------------------------
# JSON lines in production (one object per line, with the request id); a
# readable line format in development.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.request_id.RequestIdLogFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")},
        # httpx logs every request URL at INFO; deliveries have their own Attempt rows.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
