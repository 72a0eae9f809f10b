"""A Starlette app behind gracefail with maintenance followed, for uvicorn and gunicorn.

Settings from the environment: ``GRACEFAIL_DB`` (the store, which the test switches),
``GF_ALLOW`` (maintenance_allow) and ``GF_PROXIES`` (trusted_proxies).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.apps import common


async def ok(request: Request) -> Response:
    return PlainTextResponse(f"hello from {os.getpid()}")


async def health(request: Request) -> Response:
    return PlainTextResponse("healthy")


def app() -> object:
    """For uvicorn --factory."""
    from gracefail.asgi import GracefailMiddleware

    inner = Starlette(routes=[Route("/", ok), Route("/page", ok, methods=["GET", "POST"]),
                              Route("/healthz", health)])  # fmt: skip
    return GracefailMiddleware(
        inner,
        secret=common.SECRET,
        store=os.environ["GRACEFAIL_DB"],
        maintenance=True,
        maintenance_allow=os.environ.get("GF_ALLOW", ""),
        maintenance_paths=["/healthz"],
        trusted_proxies=os.environ.get("GF_PROXIES", ""),
    )
