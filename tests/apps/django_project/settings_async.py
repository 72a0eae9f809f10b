"""The test project with async views (for ASGI)."""

from tests.apps.django_project.settings import *  # noqa: F403 - extends the sync settings

ROOT_URLCONF = "tests.apps.django_project.urls_async"
