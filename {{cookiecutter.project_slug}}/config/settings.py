"""Django settings for the project.

Every value that differs between a laptop, CI and production comes from the environment
(https://12factor.net/config); `.env.example` documents each variable. One image runs everywhere.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable ("1", "true", "yes", "on" mean yes)."""
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable into a list, dropping blanks."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# https://docs.djangoproject.com/en/5.2/ref/settings/#debug
DEBUG = env_bool("DJANGO_DEBUG")

# https://docs.djangoproject.com/en/5.2/ref/settings/#secret-key
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it in .env (the bake wrote one), "
            "or set DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-only-key"  # noqa: S105 - only reachable with DEBUG on

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSockets in development.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# SQLite holds sessions and users; under compose its file lives on a named volume.
# https://docs.djangoproject.com/en/5.2/ref/settings/#databases
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# UTC: the servers' logs and the chat's timestamps must agree whatever the host's zone.
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# https://docs.djangoproject.com/en/5.2/howto/static-files/deployment/
STATIC_URL = "/static/"
# Collected files get their content's hash in their names, so nginx can let browsers cache
# them for days and a deploy still reaches every browser at once.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# Channels: Redis carries the groups between processes; without REDIS_URL (runserver, unit
# tests) one process keeps them in memory.
# https://channels.readthedocs.io/en/latest/topics/channel_layers.html
# "pubsub" publishes each group message once per Redis and lets every Daphne process fan it out to
# its own sockets; "core" queues a copy per socket in Redis. Measured on 2 cores (README,
# "Performance and scaling"): the same rate for 1 room x 100 sockets but a seventh of the p99,
# 1.5 times the rate for 50 rooms x 10, and 500 sockets in one room, which core could not serve
# within 100 ms. core has a per-socket capacity and expiry: past them it drops messages (and logs
# how many), where pubsub queues them in the Daphne process.
CHANNEL_LAYER_BACKENDS = {
    "pubsub": "config.channel_layer.ResilientPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}


def redis_channel_layer(url: str, kind: str = "pubsub") -> dict:
    """The channels-redis layer of `kind` for the Redis at `url` (tests reuse it)."""
    if kind not in CHANNEL_LAYER_BACKENDS:
        choices = ", ".join(CHANNEL_LAYER_BACKENDS)
        raise ImproperlyConfigured(f"CHANNEL_LAYER={kind!r} is not a layer: use one of {choices}.")
    # socket_timeout None: redis-py 8 times out channels-redis' blocking read after 5 s, which
    # closes every idle WebSocket with 1011 (channels_redis#422).
    # max_connections: redis-py 8 caps a pool at 100 connections (it was 2**31) and raises "Too
    # many connections" beyond; each message a consumer sends holds one, so 100 sockets of one
    # process chatting at once crashed consumers (1011). Connections are reused once released.
    config: dict = {"hosts": [{"address": url, "socket_timeout": None, "max_connections": 2**31}]}
    if kind == "core":
        config["capacity"] = int(os.environ.get("CHANNEL_LAYER_CAPACITY", "1000"))
        config["expiry"] = int(os.environ.get("CHANNEL_LAYER_EXPIRY", "60"))
    return {"BACKEND": CHANNEL_LAYER_BACKENDS[kind], "CONFIG": config}


REDIS_URL = os.environ.get("REDIS_URL", "")
CHANNEL_LAYERS = {
    "default": redis_channel_layer(REDIS_URL, os.environ.get("CHANNEL_LAYER", "pubsub"))
    if REDIS_URL
    else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
}

# Behind nginx: it terminates the client connection and says which scheme the client used. Safe
# only because nginx overwrites X-Forwarded-Proto with its own $scheme, never passing a client's
# (deploy/nginx/templates/default.conf.template); a balancer in front must do the same.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/#https
# One switch, on once the site is served over https (README, "TLS"): secure cookies, redirect to
# https, HSTS. While it is off the site is plain HTTP on purpose, and the four deploy checks that
# only TLS can satisfy are silenced; with it on, they all pass instead.
HTTPS = env_bool("DJANGO_HTTPS")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000")) if HTTPS else 0
# Each binds more than this site (every sub-domain; browsers' preload lists), so each is its own
# opt-in; nginx reads the same two variables for the header it sends on a TLS site.
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS and env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = HTTPS and env_bool("DJANGO_HSTS_PRELOAD")
SILENCED_SYSTEM_CHECKS = [
    *(
        []
        if HTTPS
        else [
            "security.W004",  # SECURE_HSTS_SECONDS
            "security.W008",  # SECURE_SSL_REDIRECT
            "security.W012",  # SESSION_COOKIE_SECURE
            "security.W016",  # CSRF_COOKIE_SECURE
        ]
    ),
    # Opt-ins left off on purpose (above), not forgotten.
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]

# Logs go to stdout: supervisor and compose collect them.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s pid=%(process)d %(message)s"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": LOG_FORMAT}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stdout"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    # Never silent about lost messages, whatever DJANGO_LOG_LEVEL says: the core layer logs
    # "N of M channels over capacity in group G" at INFO for every message it drops.
    "loggers": {"channels_redis": {"level": "INFO"}},
}
