"""A FastAPI app with the routes of ``tests.apps.common``; gracefail added with add_middleware."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from tests.apps import common


def make_app() -> FastAPI:
    """The bare FastAPI app (no gracefail)."""
    api = FastAPI()

    @api.get("/ok")
    async def ok() -> Response:
        return PlainTextResponse("hello")

    @api.api_route("/fail/{kind}", methods=["GET", "HEAD", "POST"])
    async def fail(kind: str) -> Response:
        common.fail(kind)
        return PlainTextResponse("unreachable")

    @api.get("/handled")
    async def handled() -> Response:
        raise common.AppHandled("the app knows this one")

    @api.get("/app-status/{code}")
    async def app_status(code: int, stream: str | None = None) -> Response:
        response: Response
        if stream == "1":
            response = StreamingResponse(common.aapp_body(code), status_code=code)
        else:
            response = PlainTextResponse(f"app said {code}", status_code=code)
        response.set_cookie("session", "abc")
        return response

    @api.get("/stream")
    async def stream(gate: str | None = None) -> Response:
        return StreamingResponse(common.achunks(gate), media_type="text/plain")

    @api.get("/late")
    async def late() -> Response:
        return StreamingResponse(common.alate(), media_type="text/plain")

    @api.get("/early")
    async def early() -> Response:
        return StreamingResponse(common.aearly(), media_type="text/plain")

    @api.get("/slow")
    async def slow() -> Response:
        await asyncio.sleep(30)
        return PlainTextResponse("too late")

    @api.exception_handler(common.AppHandled)
    async def app_handled(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(common.HANDLED, status_code=418)

    @api.exception_handler(500)
    async def server_error(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(common.APP_500, status_code=500)

    return api


def make_wrapped(**options: Any) -> FastAPI:
    from gracefail.asgi import GracefailMiddleware

    api = make_app()
    api.add_middleware(GracefailMiddleware, **options)
    return api


def server_app() -> FastAPI:
    """For uvicorn --factory."""
    return make_wrapped(**common.server_options())
