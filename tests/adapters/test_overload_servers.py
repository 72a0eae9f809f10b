"""Overload protection through every adapter, under real servers (issue 17).

The decisions, with no timing in them: ``max_concurrency=1`` and a handler held by an
event until the test lets it go (``/hold``), so a second request finds the one slot
taken and is shed; ``/healthz`` (``never_shed``) reports and releases the hold, and is
answered while the slot is taken; a proxy's stamp far older than ``max_queue_ms`` is
shed at once from a trusted peer and ignored from any other. The apps are this module's
own functions, which uvicorn and gunicorn import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gracefail.overload import ADMITTED_UNSAMPLED
from tests.apps.common import free_port
from tests.conftest import ROOT, start_server, stop

SECRET = "overload-servers-secret-0123456789"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
API = {"accept": "application/json"}
ENV = "GRACEFAIL_OVERLOAD_TEST"


def _options() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(os.environ.get(ENV, "{}"))
    return {"secret": SECRET, "recorders": [], **spec}


# -- the apps, run inside the servers ---------------------------------------------------------


def asgi_app() -> Any:
    """For ``uvicorn --factory``: a raw ASGI app inside gracefail.asgi."""
    import asyncio

    from gracefail.asgi import GracefailMiddleware

    entered = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        body = b"ok"
        if path == "/hold":
            entered.set()
            await release.wait()
            body = b"held"
        elif path == "/healthz/entered":
            body = b"yes" if entered.is_set() else b"no"
        elif path == "/healthz/release":
            release.set()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    return GracefailMiddleware(app, **_options())


def starlette_app() -> Any:
    """For uvicorn: Starlette with ``add_middleware`` (built at the first ASGI call)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from gracefail.asgi import GracefailMiddleware

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(GracefailMiddleware, **_options())
    return app


def wsgi_app() -> Any:
    """For gunicorn's threaded worker: a WSGI app inside gracefail.wsgi."""
    from gracefail.wsgi import GracefailMiddleware

    entered = threading.Event()
    release = threading.Event()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        body = b"ok"
        if path == "/hold":
            entered.set()
            release.wait(60)
            body = b"held"
        elif path == "/healthz/entered":
            body = b"yes" if entered.is_set() else b"no"
        elif path == "/healthz/release":
            release.set()
        start_response("200 OK", [("content-type", "text/plain")])
        return [body]

    return GracefailMiddleware(app, **_options())


def flask_app() -> Any:
    """For gunicorn's threaded worker: Flask with the extension, options in app.config."""
    from flask import Flask

    from gracefail.flask import Gracefail

    entered = threading.Event()
    release = threading.Event()
    app = Flask(__name__)
    app.config["GRACEFAIL"] = _options()

    @app.get("/hold")
    def hold() -> str:
        entered.set()
        release.wait(60)
        return "held"

    @app.get("/healthz/entered")
    def is_entered() -> str:
        return "yes" if entered.is_set() else "no"

    @app.get("/healthz/release")
    def do_release() -> str:
        release.set()
        return "ok"

    @app.get("/")
    def index() -> str:
        return "ok"

    Gracefail(app)
    return app


SERVERS: dict[str, list[str]] = {
    "asgi": [sys.executable, "-m", "uvicorn", "tests.adapters.test_overload_servers:asgi_app",
             "--factory", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"],
    "wsgi": [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "1",
             "--threads", "4", "--log-level", "warning",
             "tests.adapters.test_overload_servers:wsgi_app()"],
    "flask": [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--workers", "1",
              "--threads", "4", "--log-level", "warning",
              "tests.adapters.test_overload_servers:flask_app()"],
}  # fmt: skip
MODULES = {"asgi": "uvicorn", "wsgi": "gunicorn", "flask": "flask"}


class Server:
    def __init__(self, kind: str, options: dict[str, Any]):
        pytest.importorskip(MODULES[kind])
        self.port = free_port()
        args = [part.replace("{port}", str(self.port)) for part in SERVERS[kind]]
        self.proc = start_server(args, self.port, {ENV: json.dumps(options)})
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.get(path, headers={"connection": "close", **(headers or {})})

    def close(self) -> None:
        self.http.close()
        stop(self.proc)


@pytest.fixture
def serve() -> Iterator[Callable[[str, dict[str, Any]], Server]]:
    servers: list[Server] = []

    def start(kind: str, options: dict[str, Any]) -> Server:
        server = Server(kind, options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _wait_entered(server: Server) -> None:
    """Until the held request is inside the app (asked on the never-shed path)."""
    deadline = time.monotonic() + 30
    while server.get("/healthz/entered").text != "yes":
        assert time.monotonic() < deadline, "the held request never reached the app"
        time.sleep(0.02)


@pytest.mark.parametrize("kind", ["asgi", "wsgi", "flask"])
def test_over_the_limit_the_busy_page_and_the_health_path_still_answers(
    serve: Callable[[str, dict[str, Any]], Server], kind: str
) -> None:
    server = serve(kind, {"overload": {"max_concurrency": 1, "never_shed": ["/healthz"]}})
    held: list[httpx.Response] = []

    def hold() -> None:
        # A never-shed health check counts while in flight: the hold may arrive during one
        # of the test's own polls and be shed; it asks again (no timing involved).
        response = server.get("/hold")
        while response.status_code == 503:
            response = server.get("/hold")
        held.append(response)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        _wait_entered(server)  # the health path answers while the one slot is taken
        page = server.get("/", NAV)
        assert page.status_code == 503
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-store"
        assert "Accept" in page.headers["vary"]
        assert page.headers["x-gracefail-incident"]
        assert 2 <= int(page.headers["retry-after"]) < 2 + 20  # Overload's defaults
        assert "busy right now" in page.text
        assert 'id="gf-live"' in page.text  # the usual recovery panel and script
        api = server.get("/", API)
        assert api.status_code == 503
        assert api.headers["content-type"] == "application/problem+json"
        assert api.json()["status"] == 503
        curl = server.get("/", {"accept": "*/*"})
        assert curl.status_code == 503
        assert curl.text.startswith("503 ")
        head = server.http.head("/", headers={"connection": "close", **NAV})
        assert head.status_code == 503
        assert head.content == b""
        assert server.get("/healthz/entered").status_code == 200
    finally:
        server.get("/healthz/release")
        holder.join(30)
    assert [r.status_code for r in held] == [200]
    assert held[0].text == "held"
    # The slot was given back when the held response was done.
    assert server.get("/", NAV).status_code == 200


def _stamp(seconds_ago: float) -> str:
    return f"t={time.time() - seconds_ago:.3f}"


@pytest.mark.parametrize("kind", ["asgi", "wsgi", "flask"])
def test_a_stamp_older_than_the_budget_is_shed_from_a_trusted_proxy_only(
    serve: Callable[[str, dict[str, Any]], Server], kind: str
) -> None:
    budget = {"max_queue_ms": 1000}
    trusted = serve(kind, {"overload": budget, "trusted_proxies": ["127.0.0.1"]})
    old = trusted.get("/", {**NAV, "x-request-start": _stamp(60)})
    assert old.status_code == 503
    assert "busy right now" in old.text
    queued = trusted.get("/", {**NAV, "x-queue-start": _stamp(60)})
    assert queued.status_code == 503
    assert trusted.get("/", {**NAV, "x-request-start": _stamp(0)}).status_code == 200
    assert trusted.get("/", NAV).status_code == 200  # no stamp: no queue time known
    # The same stamp from a peer that is not a trusted proxy is ignored.
    untrusted = serve(kind, {"overload": budget, "trusted_proxies": ["10.9.9.9"]})
    assert untrusted.get("/", {**NAV, "x-request-start": _stamp(60)}).status_code == 200


def test_a_probe_is_shed_before_a_user(serve: Callable[[str, dict[str, Any]], Server]) -> None:
    # background_share 0.5 of a budget of 1000 ms: a probe 0.7 s old is shed, a user not.
    server = serve("asgi", {"overload": {"max_queue_ms": 1000}, "trusted_proxies": ["127.0.0.1"]})
    stamp = _stamp(0.7)
    probe = server.get("/", {**NAV, "x-request-start": stamp, "x-gracefail-probe": "1"})
    assert probe.status_code == 503
    assert server.get("/", {**NAV, "x-request-start": stamp}).status_code == 200


def _exits_naming(args: list[str], env: dict[str, str], option: str) -> None:
    done = subprocess.run(
        args, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert option in done.stderr


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"overload": {"max_concurrency": 0}}, "overload.max_concurrency"),
        ({"overload": {"max_queue_ms": 100}}, "overload.max_queue_ms"),
        ({"overload": {"adaptive": True, "min_limt": 2}}, "overload.min_limt"),
    ],
)
def test_a_bad_option_stops_the_asgi_server_at_start_up(
    options: dict[str, Any], option: str
) -> None:
    pytest.importorskip("starlette")
    port = free_port()
    target = "tests.adapters.test_overload_servers:starlette_app"
    args = [sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--lifespan", "on"]  # fmt: skip
    # Starlette builds its middleware at the first ASGI call, the lifespan's: it fails.
    _exits_naming(args, {ENV: json.dumps(options)}, option)


def test_a_bad_option_fails_flask_init(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("flask")
    from gracefail import ConfigError

    monkeypatch.setenv(ENV, json.dumps({"overload": {"max_queue_ms": 100}}))
    with pytest.raises(ConfigError, match=r"overload\.max_queue_ms.*trusted_proxies"):
        flask_app()


def test_flask_settings_take_the_overload_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("flask")
    from gracefail.flask import Gracefail
    from gracefail.overload import Overload

    monkeypatch.setenv(ENV, json.dumps({"overload": {"MAX_CONCURRENCY": 3}}))
    engine = Gracefail.engine(flask_app())
    assert engine.config.overload == Overload(max_concurrency=3)
    assert engine.overload is not None
    assert engine.overload.stats().limit == 3


def test_a_bad_option_is_a_django_check_error() -> None:
    pytest.importorskip("django")
    from django.test import override_settings

    from gracefail.django.checks import check_gracefail
    from tests.conformance.harness import django_setup

    django_setup()
    with override_settings(GRACEFAIL={"secret": SECRET, "overload": {"max_concurrency": 0}}):
        errors = [m for m in check_gracefail() if m.id == "gracefail.E001"]
    assert len(errors) == 1
    assert "overload.max_concurrency" in errors[0].msg


@pytest.mark.parametrize("asynchronous", [False, True], ids=["wsgi", "asgi"])
def test_django_sheds_over_the_limit_and_frees_the_slot(asynchronous: bool) -> None:
    """Django's middleware, sync and async, with GRACEFAIL = {"overload": {...}}."""
    pytest.importorskip("django")
    import asyncio

    from django.test.utils import override_settings

    from gracefail.django import GracefailMiddleware
    from tests.apps.common import asgi_client, find
    from tests.conformance.harness import django_setup

    django_setup()
    options = {"secret": SECRET, "recorders": [], "overload": {"max_concurrency": 1}}
    urlconf = "tests.apps.django_project.urls_" + ("async" if asynchronous else "sync")
    with override_settings(GRACEFAIL=options, ROOT_URLCONF=urlconf):
        if asynchronous:
            from django.core.asgi import get_asgi_application

            handler: Any = get_asgi_application()

            def send(request: httpx.Request) -> httpx.Response:
                async def go() -> httpx.Response:
                    async with asgi_client(handler) as client:
                        return await client.send(request)

                return asyncio.run(go())
        else:
            from django.core.wsgi import get_wsgi_application

            handler = get_wsgi_application()
            send = httpx.Client(transport=httpx.WSGITransport(app=handler)).send
        guard = find(handler._middleware_chain, GracefailMiddleware, "get_response").overload
        assert guard.limiter.try_acquire()  # another request holds the only slot
        try:
            shed = send(httpx.Request("GET", "http://testserver/ok", headers=NAV))
            assert shed.status_code == 503
            assert b"busy right now" in shed.content
        finally:
            guard.release(ADMITTED_UNSAMPLED)
        served = send(httpx.Request("GET", "http://testserver/ok", headers=NAV))
        assert served.status_code == 200
        stats = guard.stats()
        assert stats.in_flight == 0  # given back when Django closed the response
        assert stats.shed_concurrency == 1
