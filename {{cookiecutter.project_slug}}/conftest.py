"""Test environment, set before Django loads: the tests run with DEBUG off, like production.

Settings come from here rather than from pyproject.toml so that pytest-django configures Django
only after these variables exist.
"""

import os

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-" + "x" * 50)
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost")
# Unit tests use the in-memory layer; chat/tests/test_redis_layer.py starts a real Redis itself.
os.environ.pop("REDIS_URL", None)


@pytest.fixture(autouse=True)
def plain_static_storage(settings) -> None:
    """Render pages without a collectstatic manifest (production's storage needs one)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
