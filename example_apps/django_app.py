"""The demo shop on Django, in one file: async views call the inventory service with httpx.

Served as ASGI (``application``): gracefail's middleware runs async, no thread hop.
"""

from __future__ import annotations

import os

import django
import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

UPSTREAM = os.environ.get("DEMO_UPSTREAM", "http://127.0.0.1:8001")

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        SECRET_KEY=os.environ.get("GRACEFAIL_SECRET", "demo-secret-change-me-in-production"),
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["gracefail.django"],
        MIDDLEWARE=["gracefail.django.GracefailMiddleware"],
        GRACEFAIL={
            "brand": {"name": "Acme Shop", "color": "#1d4ed8"},
            "status_page_url": "https://status.example.com",
            "retry": {"retry_after": 2, "base": 1.0, "cap": 8.0},
        },
    )
    django.setup()


async def inventory(item: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=UPSTREAM, timeout=2.0) as client:
        response = await client.get(f"/inventory/{item}")
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data


async def home(request: HttpRequest) -> HttpResponse:
    data = await inventory("anvil")
    return HttpResponse(
        f"<h1>Acme Shop (Django)</h1><p>Upstream phase {data['uptime_phase']} s.</p>"
    )


async def api_item(request: HttpRequest, name: str) -> JsonResponse:
    return JsonResponse(await inventory(name))


urlpatterns = [path("", home), path("api/items/<str:name>", api_item)]

from django.core.asgi import get_asgi_application  # noqa: E402 - needs settings first

application = get_asgi_application()
