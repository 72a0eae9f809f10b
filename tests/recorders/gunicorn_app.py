"""The app the multi-worker tests run under gunicorn: a failing route, a store, /metrics.

Built once in the gunicorn master (``--preload``), then forked into the workers:
each worker must start its own recorder thread and open its own connection.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gracefail.asgi import GracefailMiddleware
from gracefail.recorders import PrometheusRecorder, SQLiteRecorder
from tests.apps import asgi_app

metrics = PrometheusRecorder()


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def pid(request: Request) -> Response:
    return PlainTextResponse(str(os.getpid()))


inner = Starlette(
    routes=[*asgi_app.routes, Route("/metrics", metrics_endpoint), Route("/pid", pid)]
)
app = GracefailMiddleware(
    inner,
    secret="gunicorn-test-secret-0123456789",
    recorders=[SQLiteRecorder(os.environ["GRACEFAIL_TEST_STORE"]), metrics],
)
