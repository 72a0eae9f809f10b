"""A Starlette app with the routes of ``tests.apps.common`` and its own 500 page.

gracefail is wrapped around the whole app (outside Starlette's ServerErrorMiddleware).
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.apps import common


async def ok(request: Request) -> Response:
    return PlainTextResponse("hello")


async def fail(request: Request) -> Response:
    common.fail(request.path_params["kind"])
    return PlainTextResponse("unreachable")


async def handled(request: Request) -> Response:
    raise common.AppHandled("the app knows this one")


async def app_status(request: Request) -> Response:
    code = request.path_params["code"]
    response: Response
    if request.query_params.get("stream") == "1":
        response = StreamingResponse(common.aapp_body(code), status_code=code)
    else:
        response = PlainTextResponse(f"app said {code}", status_code=code)
    response.set_cookie("session", "abc")
    return response


async def stream(request: Request) -> Response:
    gate = request.query_params.get("gate")
    return StreamingResponse(common.achunks(gate), media_type="text/plain")


async def late(request: Request) -> Response:
    return StreamingResponse(common.alate(), media_type="text/plain")


async def early(request: Request) -> Response:
    return StreamingResponse(common.aearly(), media_type="text/plain")


async def slow(request: Request) -> Response:
    await anyio.sleep(30)  # anyio: the app runs under asyncio and trio
    return PlainTextResponse("too late")


async def app_handled(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(common.HANDLED, status_code=418)


async def server_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(common.APP_500, status_code=500)


routes = [
    Route("/ok", ok),
    Route("/fail/{kind}", fail, methods=["GET", "HEAD", "POST"]),
    Route("/handled", handled),
    Route("/app-status/{code:int}", app_status),
    Route("/stream", stream),
    Route("/late", late),
    Route("/early", early),
    Route("/slow", slow),
]


def make_app() -> Starlette:
    """The bare Starlette app (no gracefail)."""
    return Starlette(
        routes=routes, exception_handlers={common.AppHandled: app_handled, 500: server_error}
    )


def make_wrapped(**options: Any) -> Any:
    from gracefail.asgi import GracefailMiddleware

    return GracefailMiddleware(make_app(), **options)


def server_app() -> Any:
    """For uvicorn --factory."""
    return make_wrapped(**common.server_options())
