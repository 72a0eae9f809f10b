"""Settings of the test project (sync views; ``settings_async`` switches to async views)."""

from __future__ import annotations

from tests.apps import common

SECRET_KEY = "django-insecure-test-key-0123456789abcdefghij"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["gracefail.django"]
# No CsrfViewMiddleware: the POST scenarios post forms without a token (and Django 4.2's
# csrf_exempt cannot wrap async views).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "gracefail.django.GracefailMiddleware",
    "django.middleware.common.CommonMiddleware",
    "tests.apps.django_project.middleware.AppErrorMiddleware",
]
ROOT_URLCONF = "tests.apps.django_project.urls_sync"
TEMPLATES = [
    {"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True}
]
DATABASES: dict[str, object] = {}
USE_TZ = True
GRACEFAIL = common.server_options()
# The app's own 500 view is exercised; Django's request logger would print each traceback.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.request": {"level": "CRITICAL"}},
}
