"""A bare Starlette app for tests of the ASGI middleware itself and of its integrations.

``tests/test_asgi.py`` wraps it both ways (around it, and inside with ``add_middleware``);
the recorder tests count its failures by route, and the nginx test serves it under
uvicorn (``wrapped_app``). The adapter-neutral contract uses ``tests.apps.starlette_app``.
"""

from __future__ import annotations

import asyncio
import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gracefail import UpstreamError
from tests.apps import common

state: dict[str, object] = {"cancelled": False}


async def ok(request: Request) -> Response:
    return PlainTextResponse("hello")


async def item(request: Request) -> Response:
    if request.query_params.get("fail"):
        raise UpstreamError(502, upstream="inventory")
    return JSONResponse({"id": request.path_params["item_id"]})


async def connect_refused(request: Request) -> Response:
    async with httpx.AsyncClient() as client:
        await client.get(f"http://127.0.0.1:{common.free_port()}/")
    return PlainTextResponse("unreachable")


async def read_timeout(request: Request) -> Response:
    raise httpx.ReadTimeout("upstream did not answer")


async def bug(request: Request) -> Response:
    common.fail("bug")
    return PlainTextResponse("unreachable")


async def late_failure(request: Request) -> Response:
    return StreamingResponse(common.alate(), media_type="text/plain")


async def slow(request: Request) -> Response:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        state["cancelled"] = True
        raise
    return PlainTextResponse("too late")


routes = [
    Route("/ok", ok),
    Route("/items/{item_id}", item),
    Route("/connect", connect_refused),
    Route("/timeout", read_timeout),
    Route("/bug", bug),
    Route("/late", late_failure),
    Route("/slow", slow),
]


def make_app() -> Starlette:
    """The bare Starlette app (no gracefail)."""
    return Starlette(routes=routes)


def wrapped_app() -> object:
    """For uvicorn: gracefail wrapped around the whole app."""
    from gracefail.asgi import GracefailMiddleware

    return GracefailMiddleware(
        make_app(), secret=os.environ.get("GRACEFAIL_SECRET", common.SECRET), recorders=[]
    )
