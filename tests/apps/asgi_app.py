"""A Starlette app with one route per row of the contract; used in-process and under uvicorn."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gracefail import UpstreamError

CHUNK = b"x" * (1024 * 1024)
state: dict[str, object] = {"released": None, "cancelled": False, "calls": 0}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def ok(request: Request) -> Response:
    state["calls"] = int(state["calls"]) + 1  # type: ignore[call-overload]
    return PlainTextResponse("hello")


async def item(request: Request) -> Response:
    if request.query_params.get("fail"):
        raise UpstreamError(502, upstream="inventory")
    return JSONResponse({"id": request.path_params["item_id"]})


async def connect_refused(request: Request) -> Response:
    async with httpx.AsyncClient() as client:
        await client.get(f"http://127.0.0.1:{closed_port()}/")
    return PlainTextResponse("unreachable")


async def read_timeout(request: Request) -> Response:
    raise httpx.ReadTimeout("upstream did not answer")


async def upstream_504(request: Request) -> Response:
    raise UpstreamError(504, upstream="payments", detail="no answer in 3 s")


async def chained(request: Request) -> Response:
    try:
        raise ConnectionResetError("reset by peer")
    except ConnectionResetError as exc:
        raise RuntimeError("payments client gave up") from exc


async def bug(request: Request) -> Response:
    raise KeyError("a bug in the app, not an upstream failure")


async def app_502(request: Request) -> Response:
    response = PlainTextResponse("upstream said no", status_code=502)
    response.set_cookie("session", "abc")
    return response


async def app_504_streamed(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"part one,"
        yield b"part two"

    return StreamingResponse(body(), status_code=504, media_type="text/plain")


async def late_failure(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise ConnectionResetError("upstream went away mid-stream")

    return StreamingResponse(body(), media_type="text/plain")


async def stream(request: Request) -> Response:
    count = int(request.query_params.get("chunks", "50"))
    wait = request.query_params.get("wait") == "1"

    async def body() -> AsyncIterator[bytes]:
        yield CHUNK
        if wait:
            # Hold the rest until the client says it got the first chunk.
            event = asyncio.Event()
            state["released"] = event
            await asyncio.wait_for(event.wait(), 30)
        for _ in range(count - 1):
            yield CHUNK

    return StreamingResponse(body(), media_type="application/octet-stream")


async def release(request: Request) -> Response:
    event = state.get("released")
    if isinstance(event, asyncio.Event):
        event.set()
        return PlainTextResponse("released")
    return PlainTextResponse("nothing to release", status_code=409)


async def slow(request: Request) -> Response:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        state["cancelled"] = True
        raise
    return PlainTextResponse("too late")


async def streamed_500(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"error part one,"
        yield b"error part two"

    return StreamingResponse(body(), status_code=500, media_type="text/plain")


routes = [
    Route("/ok", ok),
    Route("/items/{item_id}", item),
    Route("/connect", connect_refused),
    Route("/timeout", read_timeout),
    Route("/upstream-504", upstream_504),
    Route("/chained", chained),
    Route("/bug", bug),
    Route("/app-502", app_502),
    Route("/app-504-streamed", app_504_streamed),
    Route("/late", late_failure),
    Route("/stream", stream),
    Route("/release", release),
    Route("/slow", slow),
    Route("/streamed-500", streamed_500),
    Route("/form", connect_refused, methods=["POST"]),
]


def make_app(**options: object) -> Starlette:
    """The bare Starlette app (no gracefail)."""
    return Starlette(routes=routes)


def wrapped_app() -> object:
    """For uvicorn: gracefail wrapped around the whole app."""
    from gracefail.asgi import GracefailMiddleware

    return GracefailMiddleware(
        make_app(), secret=os.environ.get("GRACEFAIL_SECRET", "x" * 32), recorders=[]
    )
