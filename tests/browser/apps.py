"""The apps the browser tests drive, each in front of ``tests/browser/upstream.py``.

Served by real servers: ``uvicorn tests.browser.apps:asgi_app``,
``gunicorn 'tests.browser.apps:flask_app()'`` and ``gunicorn 'tests.browser.apps:django_app()'``.
They read the environment:

* ``GF_UPSTREAM``: the fake upstream's base URL;
* ``GF_LOG``: a JSON-lines file that receives every request as it arrives (``"type":
  "request"``, beacons with their body as ``"type": "beacon"``) and every event gracefail
  hands its recorders (``"type": "server"`` / ``"client"``), so a test can see what the
  server saw;
* ``GF_OPTIONS``: JSON of extra :class:`gracefail.Config` fields (``retry`` as a dict).

Every app has the same routes (``<key>`` is the test's upstream key):

=======================  ======================================================
``/away``                a plain page to navigate to
``/raw502``              the app's own bare 502 (no-store not set: a proxy may cache it)
``/<key>/form``          a form that POSTs to ``/<key>/submit``
``/<key>/<anything>``    GET/HEAD/POST: calls the upstream at ``/<key>``; the real page
                         when it answers, an upstream failure (502/504) when it does not
=======================  ======================================================

A key that starts with ``refused`` calls an address where nothing listens instead: the
connection is refused (a 502 whose cause is ``connection``), whatever the upstream's state.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx

from gracefail.events import ClientEvent, Event

SECRET = "browser-test-secret-0123456789abcdef"
UPSTREAM_TIMEOUT = 1.0
BEACON_PATH = "/_gracefail/beacon"
LOGGED_HEADERS = (
    "x-gracefail-probe",
    "cache-control",
    "pragma",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "accept",
    "accept-language",
    "origin",
    "x-request-id",
)


def _upstream() -> str:
    return os.environ["GF_UPSTREAM"].rstrip("/")


REFUSED_PREFIX = "refused"
# Bound but never listening: a connection to it is refused, and no other process can take
# the port while this one lives.
_closed_port: socket.socket | None = None


def _upstream_url(key: str) -> str:
    global _closed_port
    if not key.startswith(REFUSED_PREFIX):
        return f"{_upstream()}/{key}"
    if _closed_port is None:
        _closed_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _closed_port.bind(("127.0.0.1", 0))
    return f"http://127.0.0.1:{_closed_port.getsockname()[1]}/{key}"


def _options() -> dict[str, Any]:
    options: dict[str, Any] = json.loads(os.environ.get("GF_OPTIONS") or "{}")
    options.setdefault("secret", SECRET)
    options.setdefault("recorders", [JsonlRecorder(os.environ["GF_LOG"])])
    return options


class JsonLog:
    """Appends one JSON object per line; several threads and processes may share the file."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


class JsonlRecorder:
    """A gracefail recorder that writes every event to the log as a JSON line."""

    def __init__(self, path: str):
        self.log = JsonLog(path)

    def record(self, events: Sequence[Event]) -> None:
        for event in events:
            kind = "client" if isinstance(event, ClientEvent) else "server"
            self.log.write({"type": kind, "pid": os.getpid(), **dataclasses.asdict(event)})

    def close(self) -> None:
        pass


def request_record(method: str, path: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "request",
        "time": time.time(),
        "pid": os.getpid(),
        "method": method,
        "path": path,
        "query": query,
        "headers": {name: headers[name] for name in LOGGED_HEADERS if name in headers},
    }


def beacon_record(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    return {"type": "beacon", "time": time.time(), "pid": os.getpid(), "body": data}


def real_page(title: str, path: str) -> str:
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<h1 id="real">{html.escape(title)}</h1><p id="where">{html.escape(path)}</p>'
        '<p><a href="/away">elsewhere</a></p>'
    )


def form_page(key: str) -> str:
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>Form</title>'
        f'<form method="post" action="/{html.escape(key)}/submit">'
        '<input name="item" value="42"><button id="send">Send</button></form>'
    )


AWAY = real_page("Away", "/away")


# -- ASGI: Starlette behind GracefailMiddleware, under uvicorn ---------------------------


class RequestLog:
    """Outermost ASGI layer: logs each request when it arrives, and each beacon's body."""

    def __init__(self, app: Any, path: str):
        self.app = app
        self.log = JsonLog(path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.log.write(
            request_record(
                scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers
            )
        )
        if scope["path"] != BEACON_PATH:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def logged_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.log.write(beacon_record(b"".join(chunks)))
            return message

        await self.app(scope, logged_receive, send)


def _build_asgi() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from gracefail.asgi import GracefailMiddleware

    client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT)

    async def away(request: Request) -> Response:
        return HTMLResponse(AWAY)

    async def raw502(request: Request) -> Response:
        return PlainTextResponse("the app's own bad gateway\n", status_code=502)

    async def form(request: Request) -> Response:
        return HTMLResponse(form_page(request.path_params["key"]))

    async def page(request: Request) -> Response:
        key = request.path_params["key"]
        response = await client.get(_upstream_url(key))
        response.raise_for_status()
        return HTMLResponse(real_page(f"Real page {key}", request.url.path))

    inner = Starlette(
        routes=[
            Route("/away", away),
            Route("/raw502", raw502),
            Route("/{key}/form", form),
            Route("/{key}/{rest:path}", page, methods=["GET", "HEAD", "POST"]),
        ]
    )
    return RequestLog(GracefailMiddleware(inner, **_options()), os.environ["GF_LOG"])


_asgi: Any = None


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The Starlette app (built on first use, so importing this module needs no env)."""
    global _asgi
    if _asgi is None:
        _asgi = _build_asgi()
    await _asgi(scope, receive, send)


# -- WSGI: Flask and Django under gunicorn -------------------------------------------------

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_request_log(app: WSGIApp) -> WSGIApp:
    """Outermost WSGI layer: logs each request when it arrives, and each beacon's body."""
    log = JsonLog(os.environ["GF_LOG"])

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        path = environ.get("PATH_INFO", "")
        log.write(
            request_record(
                environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""), headers
            )
        )
        if path == BEACON_PATH:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            log.write(beacon_record(body))
        return app(environ, start_response)

    return logged


def _call_upstream_sync(key: str) -> None:
    with httpx.Client(timeout=UPSTREAM_TIMEOUT) as client:
        client.get(_upstream_url(key)).raise_for_status()


def flask_app() -> WSGIApp:
    """The Flask app with the gracefail extension (a factory for gunicorn)."""
    from flask import Flask, Response, request

    from gracefail.flask import Gracefail

    app = Flask("gracefail_browser_flask")
    app.config["GRACEFAIL"] = _options()

    @app.get("/away")
    def away() -> str:
        return AWAY

    @app.get("/raw502")
    def raw502() -> Response:
        return Response("the app's own bad gateway\n", status=502, mimetype="text/plain")

    @app.get("/<key>/form")
    def form(key: str) -> str:
        return form_page(key)

    @app.route("/<key>/<path:rest>", methods=["GET", "HEAD", "POST"])
    def page(key: str, rest: str) -> str:
        _call_upstream_sync(key)
        return real_page(f"Real page {key}", request.path)

    Gracefail(app)
    app.wsgi_app = wsgi_request_log(app.wsgi_app)  # type: ignore[method-assign]
    return app


def django_app() -> WSGIApp:
    """A one-module Django project with gracefail's middleware (a factory for gunicorn)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="browser-test-django-secret-key-0123456789",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF="tests.browser.apps",
            MIDDLEWARE=["gracefail.django.GracefailMiddleware"],
            INSTALLED_APPS=[],
            GRACEFAIL=_options(),
            USE_TZ=True,
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return wsgi_request_log(get_wsgi_application())


def __getattr__(name: str) -> Any:
    # Django reads ``urlpatterns`` from ROOT_URLCONF; built lazily so importing this
    # module for the ASGI or Flask app needs no Django settings.
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    def away(request: HttpRequest) -> HttpResponse:
        return HttpResponse(AWAY)

    def raw502(request: HttpRequest) -> HttpResponse:
        return HttpResponse("the app's own bad gateway\n", status=502, content_type="text/plain")

    def form(request: HttpRequest, key: str) -> HttpResponse:
        return HttpResponse(form_page(key))

    def page(request: HttpRequest, key: str, rest: str) -> HttpResponse:
        _call_upstream_sync(key)
        return HttpResponse(real_page(f"Real page {key}", request.path))

    return [
        path("away", away),
        path("raw502", raw502),
        path("<str:key>/form", form),
        path("<str:key>/<path:rest>", page),
    ]
