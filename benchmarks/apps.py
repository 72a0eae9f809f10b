"""The apps the benchmarks run, bare and with gracefail, in process and under real servers.

Each builder takes the variant: ``bare`` (the app alone), a pass-through middleware
(``asgi`` or ``base`` for Starlette, ``wsgi`` for WSGI and Flask, ``django`` for Django:
the least a status-watching middleware does), or ``gracefail``. Every app answers ``/``
with ``hello``, raises an upstream ``ConnectionError`` on ``/fail``, and on ``/bad``
catches the same failure itself and answers a bare 502 (the error path's baseline).

:mod:`benchmarks.e2e` serves them: ``benchmarks.apps:asgi_server_app`` (uvicorn
``--factory``) and ``benchmarks.apps:wsgi_server_app()`` (gunicorn) build the app named by
``GRACEFAIL_BENCH_APP``.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import AsyncIterator, Iterable
from typing import Any

from benchmarks.harness import FormatOnly

SECRET = "bench-secret-0123456789abcdef"
CHUNKS = 1000
CHUNK = b"x" * 64

BROWSER = {
    "host": "127.0.0.1:8000",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36",
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "accept-language": "en-GB,en;q=0.9",
    "accept-encoding": "gzip, deflate, br",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
    "sec-fetch-site": "none",
}
API = {"host": "127.0.0.1:8000", "accept": "application/json", "user-agent": "python-httpx/0.27"}
CURL = {"host": "127.0.0.1:8000", "accept": "*/*", "user-agent": "curl/8.5.0"}
HEADERS = {"html": BROWSER, "json": API, "text": CURL}


def options() -> dict[str, Any]:
    """gracefail's options in every benchmark: a fixed secret, no recorder (no disk I/O)."""
    return {"secret": SECRET, "recorders": []}


# -- ASGI apps (Starlette) -------------------------------------------------------------


class PassThroughASGI:
    """The least a status-watching pure-ASGI middleware does: wrap send, read the status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def watched(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watched)


class CatchASGI:
    """The least a middleware that serves failures does: catch the upstream exception
    and send a bare 502. The floor of the error path: what raising through the
    framework costs, before anything is rendered or recorded."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except ConnectionError:
            await send(
                {
                    "type": "http.response.start",
                    "status": 502,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"502 Bad Gateway\n"})


class Upstream(ConnectionError):
    """What an HTTP client raises when the upstream is down (a ConnectionError)."""


def _upstream() -> None:
    raise Upstream("connection refused")


def starlette_app(middleware: str = "bare", *, counter: list[int] | None = None) -> Any:
    """Starlette with the benchmark routes; ``middleware``: bare | asgi | catch | base | gracefail |
    gracefail-maintenance (``maintenance=True``, the switch off).

    Routes: ``/`` hello; ``/stream`` 1,000 chunks; ``/fail`` the upstream raises;
    ``/bad/{kind}`` the app catches the same failure itself and answers a bare 502.
    ``counter[0]`` counts stream chunks produced (to see when the first byte leaves).
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import (
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        Response,
        StreamingResponse,
    )
    from starlette.routing import Route

    produced = counter if counter is not None else [0]

    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(CHUNKS):
            produced[0] += 1
            yield CHUNK

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type="text/plain")

    async def fail(request: Request) -> Response:
        _upstream()
        return PlainTextResponse("unreachable")

    async def bad(request: Request) -> Response:
        try:
            _upstream()
        except ConnectionError:
            kind = request.path_params["kind"]
            if kind == "html":
                return HTMLResponse("<h1>502 Bad Gateway</h1>", status_code=502)
            if kind == "json":
                return JSONResponse(
                    {"title": "Bad Gateway", "status": 502},
                    status_code=502,
                    media_type="application/problem+json",
                )
            return PlainTextResponse("502 Bad Gateway\n", status_code=502)
        return PlainTextResponse("unreachable")

    class PassThroughBase(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            return response

    stack: list[Middleware] = []
    if middleware == "asgi":
        stack = [Middleware(PassThroughASGI)]
    elif middleware == "catch":
        stack = [Middleware(CatchASGI)]
    elif middleware == "base":
        stack = [Middleware(PassThroughBase)]
    elif middleware == "gracefail":
        from gracefail.asgi import GracefailMiddleware

        stack = [Middleware(GracefailMiddleware, **options())]
    elif middleware == "gracefail-maintenance":
        # Following planned maintenance, switched off: a store with no switch in it.
        import tempfile

        from gracefail.asgi import GracefailMiddleware

        store = os.path.join(tempfile.mkdtemp(prefix="gf-bench-"), "events.sqlite3")
        stack = [Middleware(GracefailMiddleware, maintenance=True, store=store, **options())]
    elif middleware != "bare":
        raise ValueError(middleware)
    routes = [
        Route("/", hello),
        Route("/stream", stream),
        Route("/fail", fail),
        Route("/bad/{kind}", bad),
    ]
    return Starlette(routes=routes, middleware=stack)


class CatchWSGI:
    """The WSGI floor of the error path: catch the upstream exception, send a bare 502."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            return self.app(environ, start_response)
        except ConnectionError:
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")], sys.exc_info())
            return [b"502 Bad Gateway\n"]


class PassThroughWSGI:
    """The least a status-watching WSGI middleware does: wrap start_response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def watched(status: str, headers: Any, exc_info: Any = None) -> Any:
            environ["bench.status"] = status
            return start_response(status, headers, exc_info)

        return self.app(environ, watched)


def plain_wsgi_app(middleware: str = "bare") -> Any:
    """A bare WSGI callable: ``/`` hello, ``/fail`` the upstream raises, ``/bad`` a bare 502."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/fail":
            _upstream()
        if path == "/bad":
            try:
                _upstream()
            except ConnectionError:
                start_response("502 Bad Gateway", [("Content-Type", "text/html; charset=utf-8")])
                return [b"<h1>502 Bad Gateway</h1>"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    return _wrap_wsgi(app, middleware)


def _wrap_wsgi(app: Any, middleware: str) -> Any:
    if middleware == "bare":
        return app
    if middleware == "wsgi":
        return PassThroughWSGI(app)
    if middleware == "catch":
        return CatchWSGI(app)
    if middleware == "gracefail":
        from gracefail.wsgi import GracefailMiddleware

        return GracefailMiddleware(app, **options())
    raise ValueError(middleware)


def flask_app(middleware: str = "bare") -> Any:
    """Flask: ``/`` hello, ``/fail`` raises, ``/bad`` a bare 502; gracefail as the extension."""
    from flask import Flask

    app = Flask(f"bench_{middleware}")

    @app.get("/")
    def hello() -> Any:
        return "hello"

    @app.get("/fail")
    def fail() -> Any:
        _upstream()
        return "unreachable"

    @app.get("/bad")
    def bad() -> Any:
        try:
            _upstream()
        except ConnectionError:
            return "<h1>502 Bad Gateway</h1>", 502
        return "unreachable"

    if middleware == "wsgi":
        app.wsgi_app = PassThroughWSGI(app.wsgi_app)  # type: ignore[method-assign]
    elif middleware == "gracefail":
        from gracefail.flask import Gracefail

        Gracefail(app, **options())
    elif middleware != "bare":
        raise ValueError(middleware)
    return app


class DjangoPassThrough:
    """The least a Django middleware does."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)


def _django_views() -> types.ModuleType:
    from django.http import HttpResponse
    from django.urls import path

    def hello(request: Any) -> Any:
        return HttpResponse("hello", content_type="text/plain")

    def fail(request: Any) -> Any:
        _upstream()
        return HttpResponse("unreachable")

    def bad(request: Any) -> Any:
        try:
            _upstream()
        except ConnectionError:
            return HttpResponse("<h1>502 Bad Gateway</h1>", status=502)
        return HttpResponse("unreachable")

    urls = types.ModuleType("gracefail_bench_urls")  # hashable, unlike a SimpleNamespace
    urls.urlpatterns = [path("", hello), path("fail", fail), path("bad", bad)]  # type: ignore[attr-defined]
    return urls


# Django's default project stack minus what needs a database (sessions, auth, messages).
DJANGO_BASE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


def django_setup() -> None:
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-django-secret-key-0123456789abcdefghij",  # noqa: S106 - a fixture
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="django.conf.urls",  # replaced below, once Django is set up
        MIDDLEWARE=list(DJANGO_BASE),
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        GRACEFAIL=options(),
        LOGGING_CONFIG=None,
    )
    import django

    django.setup()
    # Django logs every 5xx response to "django.request"; formatted, not written.
    logging.getLogger("django.request").addHandler(FormatOnly())
    logging.getLogger("django.request").propagate = False
    settings.ROOT_URLCONF = _django_views()


def django_app(middleware: str = "bare") -> Any:
    """Django's WSGIHandler with the base stack, plus a pass-through or gracefail (2nd place)."""
    django_setup()
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    stack = list(DJANGO_BASE)
    if middleware == "django":
        stack.insert(1, f"{__name__}.DjangoPassThrough")
    elif middleware == "gracefail":
        stack.insert(1, "gracefail.django.GracefailMiddleware")
    elif middleware != "bare":
        raise ValueError(middleware)
    settings.MIDDLEWARE = stack
    handler = WSGIHandler()
    settings.MIDDLEWARE = list(DJANGO_BASE)
    return handler


# -- what the servers of benchmarks.e2e import ---------------------------------------------


def asgi_server_app() -> Any:
    """uvicorn --factory: GRACEFAIL_BENCH_APP = starlette-bare | starlette-gracefail."""
    name = os.environ.get("GRACEFAIL_BENCH_APP", "starlette-bare")
    return starlette_app(name.split("-", 1)[1])


def wsgi_server_app() -> Any:
    """gunicorn: GRACEFAIL_BENCH_APP = flask-bare | flask-gracefail | wsgi-bare | wsgi-gracefail."""
    name = os.environ.get("GRACEFAIL_BENCH_APP", "flask-bare")
    family, variant = name.split("-", 1)
    if family == "flask":
        return flask_app(variant)
    return plain_wsgi_app(variant)
