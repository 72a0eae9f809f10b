"""The demo shop on Starlette, with gracefail wrapped around the whole app.

Its pages call the flapping upstream (``DEMO_UPSTREAM``, default 127.0.0.1:8001)
with httpx: a timeout becomes the 504 page, a refused connection or an upstream
5xx (through ``raise_for_status``) the 502 page.
"""

from __future__ import annotations

import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from gracefail import Brand, Config, RetryPolicy, UpstreamError
from gracefail.asgi import GracefailMiddleware

__all__ = ["app"]

UPSTREAM = os.environ.get("DEMO_UPSTREAM", "http://127.0.0.1:8001")
client = httpx.AsyncClient(base_url=UPSTREAM, timeout=2.0)


async def home(request: Request) -> HTMLResponse:
    try:
        response = await client.get("/inventory/anvil")
    except httpx.TimeoutException as exc:
        # Naming the upstream makes metrics and logs clearer; users never see it.
        raise UpstreamError(504, upstream="inventory") from exc
    response.raise_for_status()
    return HTMLResponse(f"<h1>Acme Shop</h1><p>Upstream answered: {response.json()['item']}</p>")


async def api_item(request: Request) -> JSONResponse:
    response = await client.get(f"/inventory/{request.path_params['name']}")
    response.raise_for_status()
    return JSONResponse(response.json())


routes = [Route("/", home), Route("/api/items/{name}", api_item)]
config = Config(
    brand=Brand(name="Acme Shop", color="#7c3aed"),
    # Short waits so the demo recovers quickly; the defaults suit production.
    retry=RetryPolicy(retry_after=2, base=1.0, cap=8.0),
    secret=os.environ.get("GRACEFAIL_SECRET", "demo-secret-change-me-in-production"),
)
app = GracefailMiddleware(Starlette(routes=routes), config=config)
