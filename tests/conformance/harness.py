"""The adapters under test, each driven the same way: in process and through a real server.

Every adapter serves the app of ``tests.apps.<framework>`` (same routes, see
``tests.apps.common``) behind gracefail. A :class:`Client` sends one request and
returns a :class:`Result`; ``events()`` returns what gracefail recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.apps import common
from tests.apps.common import find
from tests.conftest import start_server, stop

DJANGO_SETTINGS = "tests.apps.django_project.settings"


@dataclass
class Result:
    """What the client saw: a response, or the exception that left the stack."""

    status: int | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: bytes = b""
    raised: BaseException | None = None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def incident(self) -> str | None:
        return self.headers.get("x-gracefail-incident")


class Client:
    """One adapter's app, reachable by ``request``; ``events()`` flushes and reads."""

    def __init__(
        self,
        send: Callable[[httpx.Request], httpx.Response],
        events: Callable[[Callable[[list[Any]], bool] | None], list[Any]],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._send = send
        self._events = events
        self.close = close

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Result:
        request = httpx.Request(
            method, "http://testserver" + path, headers=headers, content=content
        )
        try:
            response = self._send(request)
        except Exception as exc:  # the exception left the stack (or the stream broke)
            return Result(raised=exc)
        return Result(response.status_code, response.headers, response.content)

    def events(self, until: Callable[[list[Any]], bool] | None = None) -> list[Any]:
        """What gracefail recorded; a real server's events are awaited ``until`` holds."""
        return self._events(until)


def _asgi_send(app: Any, backend: str = "asyncio") -> Callable[[httpx.Request], httpx.Response]:
    """Each request in a fresh event loop of ``backend`` (asyncio or trio, through anyio)."""

    def send(request: httpx.Request) -> httpx.Response:
        async def go() -> httpx.Response:
            async with common.asgi_client(app) as client:
                return await client.send(request)

        if backend == "asyncio":
            return asyncio.run(go())
        response: httpx.Response = anyio.run(go, backend=backend)
        return response

    return send


def _wsgi_send(app: Any) -> Callable[[httpx.Request], httpx.Response]:
    client = httpx.Client(transport=httpx.WSGITransport(app=app, raise_app_exceptions=False))
    return client.send


def _flushed(
    engine: Callable[[], Any], recorder: common.ListRecorder
) -> Callable[[Callable[[list[Any]], bool] | None], list[Any]]:
    def events(until: Callable[[list[Any]], bool] | None) -> list[Any]:
        engine().flush()
        return list(recorder.events)

    return events


# -- in-process builders: options -> Client ----------------------------------------------


def build_starlette(options: dict[str, Any]) -> Client:
    from tests.apps import starlette_app

    app = starlette_app.make_wrapped(**options)
    return Client(_asgi_send(app), _flushed(lambda: app.engine, options["recorders"][0]))


def build_starlette_trio(options: dict[str, Any]) -> Client:
    """Starlette under trio, anyio's other backend (Starlette's own suite runs both)."""
    pytest.importorskip("trio")
    from tests.apps import starlette_app

    app = starlette_app.make_wrapped(**options)
    return Client(
        _asgi_send(app, backend="trio"), _flushed(lambda: app.engine, options["recorders"][0])
    )


def build_fastapi(options: dict[str, Any]) -> Client:
    from gracefail.asgi import GracefailMiddleware
    from tests.apps import fastapi_app

    app = fastapi_app.make_wrapped(**options)

    def engine() -> Any:
        return find(app, GracefailMiddleware, "middleware_stack", "app").engine

    return Client(_asgi_send(app), _flushed(engine, options["recorders"][0]))


def _build_flask(debug: bool, options: dict[str, Any]) -> Client:
    from gracefail.flask import Gracefail
    from tests.apps import flask_app

    app = flask_app.make_wrapped(flask_debug=debug, **options)
    return Client(_wsgi_send(app), _flushed(lambda: Gracefail.engine(app), options["recorders"][0]))


def build_flask(options: dict[str, Any]) -> Client:
    return _build_flask(False, options)


def build_flask_debug(options: dict[str, Any]) -> Client:
    return _build_flask(True, options)


def build_werkzeug(options: dict[str, Any]) -> Client:
    from gracefail.wsgi import GracefailMiddleware
    from tests.apps import wsgi_app

    app = GracefailMiddleware(wsgi_app.make_app(), **options)
    return Client(_wsgi_send(app), _flushed(lambda: app.engine, options["recorders"][0]))


def django_setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DJANGO_SETTINGS)
    import django

    django.setup()


def _build_django(asynchronous: bool, options: dict[str, Any]) -> Client:
    django_setup()
    from django.test.utils import override_settings

    from gracefail.django import GracefailMiddleware

    urlconf = "tests.apps.django_project.urls_" + ("async" if asynchronous else "sync")
    override = override_settings(GRACEFAIL=options, ROOT_URLCONF=urlconf)
    override.enable()
    try:
        if asynchronous:
            from django.core.asgi import get_asgi_application

            handler: Any = get_asgi_application()
            send = _asgi_send(handler)
        else:
            from django.core.wsgi import get_wsgi_application

            handler = get_wsgi_application()
            send = _wsgi_send(handler)
        middleware = find(handler._middleware_chain, GracefailMiddleware, "get_response")
    except BaseException:
        override.disable()
        raise
    return Client(
        send, _flushed(lambda: middleware.engine, options["recorders"][0]), override.disable
    )


def build_django_wsgi(options: dict[str, Any]) -> Client:
    return _build_django(False, options)


def build_django_asgi(options: dict[str, Any]) -> Client:
    return _build_django(True, options)


# -- the adapters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    """One adapter and what its framework lets it do."""

    id: str
    mark: str  # pytest marker; nox selects a framework's rows with it
    module: str  # the framework to import (skip when missing)
    route: str | None  # the route label recorded for /fail/<kind>
    app_500: bool  # the app's own 500 page answers a bug (else the exception leaves the stack)
    early_page: bool  # a failure before a streamed body's first chunk still gets the page
    timeout: bool  # Config.timeout is supported
    build: Callable[[dict[str, Any]], Client]
    server: list[str] | None = None  # real server command ({port} filled in)
    env: dict[str, str] = field(default_factory=dict)
    marks: tuple[Any, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.id, marks=(getattr(pytest.mark, self.mark), *self.marks))


def _starlette_route() -> str | None:
    """Starlette puts the matched route in the ASGI scope (where gracefail.asgi reads the
    label) only since 1.7; older plain-Starlette apps record no route (FastAPI sets it)."""
    try:
        version = metadata.version("starlette")
    except metadata.PackageNotFoundError:
        return None
    major, minor = (int(part) for part in version.split(".")[:2])
    return "/fail/{kind}" if (major, minor) >= (1, 7) else None


def _uvicorn(target: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", "{port}",
            "--log-level", "warning", *extra]  # fmt: skip


def _gunicorn(target: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "1",
            "--log-level", "warning", target]  # fmt: skip


ADAPTERS = [
    Adapter(
        "starlette", "starlette", "starlette", _starlette_route(), True, False, True,
        build_starlette, _uvicorn("tests.apps.starlette_app:server_app", "--factory"),
    ),
    Adapter(
        "starlette-trio", "starlette", "starlette", _starlette_route(), True, False, True,
        build_starlette_trio,
    ),
    Adapter(
        "fastapi", "fastapi", "fastapi", "/fail/{kind}", True, False, True,
        build_fastapi, _uvicorn("tests.apps.fastapi_app:server_app", "--factory"),
    ),
    Adapter(
        "flask", "flask", "flask", "/fail/<kind>", True, True, False,
        build_flask, _gunicorn("tests.apps.flask_app:server_app()"),
    ),
    Adapter("flask-debug", "flask", "flask", "/fail/<kind>", False, True, False, build_flask_debug),
    Adapter(
        "werkzeug", "wsgi", "werkzeug", None, False, True, False,
        build_werkzeug, _gunicorn("tests.apps.wsgi_app:server_app()"),
    ),
    Adapter(
        "django-wsgi", "django", "django", "/fail/<str:kind>", True, False, False,
        build_django_wsgi, _gunicorn("tests.apps.django_project.wsgi:application"),
        {"DJANGO_SETTINGS_MODULE": DJANGO_SETTINGS},
    ),
    Adapter(
        "django-asgi", "django", "django", "/fail/<str:kind>", True, False, True,
        build_django_asgi,
        _uvicorn("tests.apps.django_project.asgi:application", "--lifespan", "off"),
        {"DJANGO_SETTINGS_MODULE": DJANGO_SETTINGS + "_async"},
        # Django's ASGIHandler leaves the request body file open when a streamed body
        # raises (its own behaviour, gracefail is not involved); the GC then complains.
        (pytest.mark.filterwarnings(
            "ignore:Exception ignored in.*SpooledTemporaryFile"
            ":pytest.PytestUnraisableExceptionWarning"
        ),),
    ),
]  # fmt: skip


@contextlib.contextmanager
def in_process(adapter: Adapter, **options: Any) -> Iterator[Client]:
    """The adapter's app in this process, with a fresh gracefail built from ``options``."""
    pytest.importorskip(adapter.module)
    options.setdefault("secret", common.SECRET)
    options.setdefault("recorders", [common.ListRecorder()])
    client = adapter.build(options)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def real_server(adapter: Adapter, port: int, events_file: Path) -> Iterator[Client]:
    """The adapter's app under uvicorn or gunicorn on a free loopback port, stopped by PID."""
    pytest.importorskip(adapter.module)
    assert adapter.server is not None
    args = [part.replace("{port}", str(port)) for part in adapter.server]
    env = {**adapter.env, "GRACEFAIL_EVENTS": str(events_file), "GRACEFAIL_SECRET": common.SECRET}
    proc = start_server(args, port, env)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def send(request: httpx.Request) -> httpx.Response:
        # One connection per request: a server may drop a kept-alive connection after an
        # app error (uvicorn does), which is not what the scenario is about.
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        headers["connection"] = "close"
        # What the scenario sends, as in process: not httpx's own Accept-Encoding.
        headers.setdefault("accept-encoding", "identity")
        return http.request(request.method, request.url.raw_path.decode(), headers=headers,
                            content=request.content)  # fmt: skip

    def events(until: Callable[[list[Any]], bool] | None) -> list[Any]:
        # The server's recorder thread writes every 0.2 s.
        deadline = time.monotonic() + (10.0 if until is not None else 0.5)
        while True:
            found = common.read_jsonl(events_file)
            if (until is not None and until(found)) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    client = Client(send, events)
    client.http = http  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        http.close()
        stop(proc)
