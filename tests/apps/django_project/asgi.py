"""For uvicorn: the project under ASGI (async views)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_project.settings_async")
application = get_asgi_application()
