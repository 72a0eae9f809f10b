"""In-process overhead of gracefail: the ASGI app, the WSGI app and Django's handler, no sockets.

Each row compares variants of one app (bare, a pass-through middleware, gracefail)
called directly by a tiny driver, in batches. Every round runs each variant once, in
an order rotated every round; a variant's round result is paired with the bare app's
result of the same round. Reported: the median ns per request, the median of the
paired differences (added ns per request) and of the paired ratios, and the
interquartile range of the differences. See benchmarks/README.md for the method.

    python benchmarks/inprocess.py [--quick]

The app builders here are also what benchmarks/e2e.py serves under uvicorn and gunicorn.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import io
import json
import logging
import os
import statistics
import sys
import time
import types
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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


# -- results ---------------------------------------------------------------------------


@dataclass
class Stat:
    """One variant of one comparison."""

    name: str
    ns: float  # median ns per request
    added: float  # median of (variant - baseline) in the same round, ns per request
    ratio: float  # median of variant / baseline in the same round
    q1: float = 0.0  # interquartile range of the paired differences
    q3: float = 0.0


@dataclass
class Goal:
    """One row of the summary table."""

    row: str
    measured: str
    goal: str
    met: bool | None  # None: pending (the module under test is missing) or informational


@dataclass
class Group:
    """One comparison's detail table."""

    title: str
    baseline: str
    stats: list[Stat]
    unit: str = "request"
    note: str = ""


@dataclass
class Results:
    goals: list[Goal] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


# -- the harness -----------------------------------------------------------------------

Runner = Callable[[int], int]  # runs n requests, returns the elapsed ns


@dataclass
class Settings:
    rounds: int = 25
    batch_seconds: float = 0.06


def _batch_size(run: Runner, seconds: float) -> int:
    n = 16
    while True:
        elapsed = run(n)
        if elapsed >= 20_000_000 or n >= 1 << 22:
            return max(1, int(n * seconds * 1e9 / max(elapsed, 1)))
        n *= 4


def compare(variants: dict[str, Runner], settings: Settings, *, per: int = 1) -> list[Stat]:
    """Median ns per request of each variant, paired against the first (the baseline).

    Each variant's batch is sized to take about ``settings.batch_seconds``. ``per``
    divides every figure (for example by the number of chunks of a stream).
    """
    names = list(variants)
    baseline = names[0]
    for run in variants.values():  # warm-up: caches, lazily built middleware stacks
        run(64)
    sizes = {name: _batch_size(variants[name], settings.batch_seconds) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(settings.rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            times[name].append(variants[name](sizes[name]) / sizes[name] / per)
    stats = []
    for name in names:
        diffs = [v - b for v, b in zip(times[name], times[baseline], strict=True)]
        ratios = [v / b for v, b in zip(times[name], times[baseline], strict=True)]
        q = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
        stats.append(
            Stat(
                name,
                statistics.median(times[name]),
                statistics.median(diffs),
                statistics.median(ratios),
                q[0],
                q[2],
            )
        )
    return stats


def _stat(stats: list[Stat], name: str) -> Stat:
    return next(s for s in stats if s.name == name)


# -- gracefail's logger: format every record, write none ---------------------------------


class _FormatOnly(logging.Handler):
    """What a production handler costs minus the I/O: each record is formatted, then dropped."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def quiet_gracefail_logger() -> None:
    logger = logging.getLogger("gracefail")
    if not any(isinstance(h, _FormatOnly) for h in logger.handlers):
        handler = _FormatOnly()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


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


class Upstream(ConnectionError):
    """What an HTTP client raises when the upstream is down (a ConnectionError)."""


def _upstream() -> None:
    raise Upstream("connection refused")


def starlette_app(middleware: str = "bare", *, counter: list[int] | None = None) -> Any:
    """Starlette with the benchmark routes; ``middleware``: bare | asgi | base | gracefail.

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
    elif middleware == "base":
        stack = [Middleware(PassThroughBase)]
    elif middleware == "gracefail":
        from gracefail.asgi import GracefailMiddleware

        stack = [Middleware(GracefailMiddleware, **options())]
    elif middleware != "bare":
        raise ValueError(middleware)
    routes = [
        Route("/", hello),
        Route("/stream", stream),
        Route("/fail", fail),
        Route("/bad/{kind}", bad),
    ]
    return Starlette(routes=routes, middleware=stack)


def asgi_scope(path: str, headers: dict[str, str], method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class AsgiDriver:
    """Calls an ASGI app like a server would, minus the sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def runner(
        self,
        app: Any,
        scope: dict[str, Any],
        bodies: list[bytes] | None = None,
        scopes: list[dict[str, Any]] | None = None,
    ) -> Runner:
        """Batches of requests; ``bodies`` and ``scopes`` (if given) are cycled through,
        continuing where the previous batch stopped."""
        never = self.loop.create_future()
        bodies = bodies or [b""]
        scopes = scopes or [scope]
        offset = [0]

        async def discard(message: Any) -> None:
            pass

        async def batch(n: int) -> int:
            first = offset[0]
            start = time.perf_counter_ns()
            for i in range(first, first + n):
                # A fresh receive per request: the body once, then wait (a live connection).
                body = bodies[i % len(bodies)]
                sent = False

                async def receive(body: bytes = body) -> dict[str, Any]:
                    nonlocal sent
                    if sent:
                        await never
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}

                await app(dict(scopes[i % len(scopes)]), receive, discard)
            elapsed = time.perf_counter_ns() - start
            offset[0] = first + n
            return elapsed

        return lambda n: self.loop.run_until_complete(batch(n))

    def call(
        self, app: Any, scope: dict[str, Any], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """One request: (status, headers, body)."""
        messages: list[Any] = []
        sent = False
        never = self.loop.create_future()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await never
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            messages.append(message)

        self.loop.run_until_complete(app(dict(scope), receive, send))
        start = messages[0]
        headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        payload = b"".join(m.get("body", b"") for m in messages[1:])
        return start["status"], headers, payload


# -- WSGI apps (plain, Flask) and Django -----------------------------------------------


class _Discard(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def wsgi_environ(path: str, headers: dict[str, str], method: str = "GET") -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": _Discard(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


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
    logging.getLogger("django.request").addHandler(_FormatOnly())
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


def wsgi_runner(app: Any, environ: dict[str, Any]) -> Runner:
    def write(data: bytes) -> None:
        pass

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return write

    def batch(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            result = app(environ.copy(), start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return time.perf_counter_ns() - start

    return batch


def wsgi_call(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    seen: list[Any] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen[:] = [status, headers]
        return lambda data: None

    result = app(environ.copy(), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(seen[0][:3]), {k.lower(): v for k, v in seen[1]}, body


# -- the rows --------------------------------------------------------------------------


def _available(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _fmt_ns(ns: float) -> str:
    return f"{ns:+,.0f} ns" if abs(ns) < 10_000 else f"{ns / 1000:+,.1f} us"


def _expect(got: tuple[int, dict[str, str], bytes], status: int, what: str) -> None:
    if got[0] != status:
        raise RuntimeError(f"{what}: expected status {status}, got {got[0]}: {got[2][:200]!r}")


def happy_asgi(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    scope = asgi_scope("/", BROWSER)
    apps = {name: starlette_app(name) for name in ("bare", "asgi", "base", "gracefail")}
    for name, app in apps.items():
        got = driver.call(app, scope)
        _expect(got, 200, f"Starlette hello ({name})")
        if got[2] != b"hello":
            raise RuntimeError(f"Starlette hello ({name}) answered {got[2]!r}")
    labels = {
        "bare": "bare Starlette",
        "asgi": "pure-ASGI pass-through",
        "base": "BaseHTTPMiddleware pass-through",
        "gracefail": "gracefail",
    }
    stats = compare({labels[k]: driver.runner(a, scope) for k, a in apps.items()}, settings)
    res.groups.append(Group("Happy path, Starlette hello", "bare Starlette", stats))
    gf, asgi, base = (_stat(stats, labels[k]) for k in ("gracefail", "asgi", "base"))
    res.goals.append(
        Goal(
            "happy path, Starlette hello",
            f"{_fmt_ns(gf.added)}/request ({gf.ratio:.3f}x); pure-ASGI pass-through "
            f"{_fmt_ns(asgi.added)}, BaseHTTPMiddleware {_fmt_ns(base.added)}",
            "added <= 500 ns/request",
            gf.added <= 500,
        )
    )


def happy_stream(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    scope = asgi_scope("/stream", BROWSER)
    counters = {name: [0] for name in ("bare", "asgi", "base", "gracefail")}
    apps = {name: starlette_app(name, counter=counters[name]) for name in counters}
    first_after: dict[str, int] = {}
    for name, app in apps.items():
        counter = counters[name]
        seen: list[int] = []
        sent = False
        never = driver.loop.create_future()

        async def receive(never: asyncio.Future[None] = never) -> dict[str, Any]:
            nonlocal sent
            if sent:
                await never
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any, counter: list[int] = counter, seen: list[int] = seen) -> None:
            if message["type"] == "http.response.body" and message.get("body") and not seen:
                seen.append(counter[0])

        counter[0] = 0
        driver.loop.run_until_complete(app(dict(scope), receive, send))
        if counter[0] != CHUNKS:
            raise RuntimeError(f"stream ({name}) produced {counter[0]} chunks")
        first_after[name] = seen[0]
    labels = {
        "bare": "bare Starlette",
        "asgi": "pure-ASGI pass-through",
        "base": "BaseHTTPMiddleware pass-through",
        "gracefail": "gracefail",
    }
    stats = compare(
        {labels[k]: driver.runner(a, scope) for k, a in apps.items()}, settings, per=CHUNKS
    )
    res.groups.append(
        Group(
            f"Happy path, {CHUNKS:,}-chunk stream (per chunk)",
            "bare Starlette",
            stats,
            unit="chunk",
            note="First body byte reached the server after chunk "
            + ", ".join(f"{first_after[k]} ({labels[k]})" for k in labels)
            + ".",
        )
    )
    gf = _stat(stats, labels["gracefail"])
    res.facts["stream_first_byte_after_chunk"] = first_after["gracefail"]
    res.goals.append(
        Goal(
            f"happy path, {CHUNKS:,}-chunk stream",
            f"first byte after chunk {first_after['gracefail']}; {_fmt_ns(gf.added)}/chunk "
            f"(pure-ASGI pass-through {_fmt_ns(_stat(stats, labels['asgi']).added)})",
            "no buffering; added <= 120 ns/chunk",
            first_after["gracefail"] == 1 and gf.added <= 120,
        )
    )


def _wsgi_family(
    res: Results,
    settings: Settings,
    title: str,
    build: Callable[[str], Any],
    passthrough: str,
    label: str,
    module: str,
) -> None:
    if not _available(module):
        res.goals.append(
            Goal(
                f"happy path, {title}",
                f"pending: {module} is not there yet",
                "added <= 600 ns/request",
                None,
            )
        )
        return
    environ = wsgi_environ("/", BROWSER)
    apps = {"bare": build("bare"), passthrough: build(passthrough), "gracefail": build("gracefail")}
    for name, app in apps.items():
        got = wsgi_call(app, environ)
        _expect(got, 200, f"{title} hello ({name})")
    labels = {"bare": f"bare {title}", passthrough: label, "gracefail": "gracefail"}
    stats = compare({labels[k]: wsgi_runner(a, environ) for k, a in apps.items()}, settings)
    res.groups.append(Group(f"Happy path, {title} hello", labels["bare"], stats))
    gf = _stat(stats, "gracefail")
    res.goals.append(
        Goal(
            f"happy path, {title}",
            f"{_fmt_ns(gf.added)}/request ({gf.ratio:.3f}x); pass-through "
            f"{_fmt_ns(_stat(stats, label).added)}",
            "added <= 600 ns/request",
            gf.added <= 600,
        )
    )


def happy_wsgi(res: Results, settings: Settings) -> None:
    _wsgi_family(
        res, settings, "plain WSGI", plain_wsgi_app, "wsgi", "WSGI pass-through", "gracefail.wsgi"
    )
    _wsgi_family(res, settings, "Flask", flask_app, "wsgi", "WSGI pass-through", "gracefail.flask")
    _wsgi_family(
        res, settings, "Django", django_app, "django", "Django pass-through", "gracefail.django"
    )


def error_asgi(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    bare = starlette_app("bare")
    graceful = starlette_app("gracefail")
    goals = {"html": 1.3, "json": 1.2, "text": 1.2}
    names = {"html": "HTML page", "json": "problem+json", "text": "text/plain"}
    types_ = {"html": "text/html", "json": "application/problem+json", "text": "text/plain"}
    for kind, limit in goals.items():
        bare_scope = asgi_scope(f"/bad/{kind}", HEADERS[kind])
        gf_scope = asgi_scope("/fail", HEADERS[kind])
        got = driver.call(graceful, gf_scope)
        _expect(got, 502, f"Starlette /fail ({kind})")
        if not got[1].get("content-type", "").startswith(types_[kind]):
            raise RuntimeError(f"gracefail answered {got[1].get('content-type')} to {kind}")
        _expect(driver.call(bare, bare_scope), 502, f"Starlette /bad ({kind})")
        stats = compare(
            {
                "app answers a bare 502": driver.runner(bare, bare_scope),
                f"gracefail {names[kind]}": driver.runner(graceful, gf_scope),
            },
            settings,
        )
        res.groups.append(
            Group(f"Error path, Starlette, {names[kind]}", "app answers a bare 502", stats)
        )
        gf = stats[1]
        res.goals.append(
            Goal(
                f"error path, {names[kind]} (Starlette)",
                f"{gf.ratio:.2f}x ({_fmt_ns(gf.added)}/request; {gf.ns / 1000:.1f} us vs "
                f"{stats[0].ns / 1000:.1f} us)",
                f"<= {limit}x",
                gf.ratio <= limit,
            )
        )


def _find_gracefail(app: Any) -> Any:
    from gracefail.asgi import GracefailMiddleware

    node = app
    for _ in range(20):
        if isinstance(node, GracefailMiddleware):
            return node
        node = getattr(node, "middleware_stack", None) or getattr(node, "app", None)
    raise LookupError("no GracefailMiddleware in the stack")


def _patched(run: Runner, on: Callable[[], Callable[[], None]]) -> Runner:
    """``run`` with something switched off for the batch only (``on()`` returns the undo)."""

    def patched(n: int) -> int:
        undo = on()
        try:
            return run(n)
        finally:
            undo()

    return patched


def error_ablation(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    """Where the HTML error path's time goes: each variant switches one thing off."""
    import gracefail.tokens as tokens

    bare = starlette_app("bare")
    graceful = starlette_app("gracefail")
    bare_scope = asgi_scope("/bad/html", BROWSER)
    scope = asgi_scope("/fail", BROWSER)
    _expect(driver.call(graceful, scope), 502, "Starlette /fail")
    engine = _find_gracefail(graceful).engine
    logger = logging.getLogger("gracefail")
    run = driver.runner(graceful, scope)

    def fixed_incident() -> Callable[[], None]:
        original = tokens.new_incident
        tokens.new_incident = lambda: "AbCdEfGhIjKlMnOp"
        return lambda: setattr(tokens, "new_incident", original)

    def no_log() -> Callable[[], None]:
        logger.disabled = True
        return lambda: setattr(logger, "disabled", False)

    def no_put() -> Callable[[], None]:
        engine.pipeline.put = lambda event: None
        return lambda: delattr(engine.pipeline, "put")

    def all_three() -> Callable[[], None]:
        undo = [fixed_incident(), no_log(), no_put()]
        return lambda: [u() for u in undo] and None

    stats = compare(
        {
            "app answers a bare 502": driver.runner(bare, bare_scope),
            "gracefail HTML page": run,
            "... with a fixed incident id (no os.urandom)": _patched(run, fixed_incident),
            "... without the log line": _patched(run, no_log),
            "... without the queue put": _patched(run, no_put),
            "... without all three": _patched(run, all_three),
        },
        settings,
    )
    res.groups.append(
        Group(
            "Error path, Starlette, HTML page: what costs what",
            "app answers a bare 502",
            stats,
            note='Diagnostics, not a product setting: each "..." variant switches one part of '
            "gracefail's error path off for its batches only (the incident id's os.urandom "
            "call, the WARNING line per failure, the event's queue put).",
        )
    )


def error_wsgi(res: Results, settings: Settings) -> None:
    """The HTML page behind the WSGI adapters (rows beyond the issue's, same goal)."""
    family = [
        ("plain WSGI", plain_wsgi_app, "gracefail.wsgi"),
        ("Flask", flask_app, "gracefail.flask"),
        ("Django", django_app, "gracefail.django"),
    ]
    for title, build, module in family:
        if not _available(module):
            res.goals.append(
                Goal(
                    f"error path, HTML page ({title})",
                    f"pending: {module} is not there yet",
                    "<= 1.3x",
                    None,
                )
            )
            continue
        bare, graceful = build("bare"), build("gracefail")
        bad = wsgi_environ("/bad", BROWSER)
        fail = wsgi_environ("/fail", BROWSER)
        _expect(wsgi_call(bare, bad), 502, f"{title} /bad")
        got = wsgi_call(graceful, fail)
        _expect(got, 502, f"{title} /fail with gracefail")
        if not got[1].get("content-type", "").startswith("text/html") or b"gf-config" not in got[2]:
            raise RuntimeError(f"{title}: gracefail did not serve its page")
        stats = compare(
            {
                "app answers a bare 502": wsgi_runner(bare, bad),
                "gracefail HTML page": wsgi_runner(graceful, fail),
            },
            settings,
        )
        note = ""
        if title == "Flask":
            note = (
                "Flask logs every unhandled exception with its traceback (app.logger, here "
                "formatted into a discarded stream) before gracefail replaces its 500."
            )
        res.groups.append(
            Group(f"Error path, {title}, HTML page", "app answers a bare 502", stats, note=note)
        )
        gf = stats[1]
        res.goals.append(
            Goal(
                f"error path, HTML page ({title})",
                f"{gf.ratio:.2f}x ({_fmt_ns(gf.added)}/request; {gf.ns / 1000:.1f} us vs "
                f"{stats[0].ns / 1000:.1f} us)",
                "<= 1.3x",
                gf.ratio <= 1.3,
            )
        )


def recording(res: Results, settings: Settings) -> None:
    from gracefail.events import ServerEvent
    from gracefail.pipeline import Pipeline

    pipeline = Pipeline([], 1 << 30)
    event = ServerEvent(
        time=time.time(),
        incident="abc",
        status=502,
        cause="connection",
        method="GET",
        route="/",
        reply_format="html",
    )

    def put(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pipeline.put(event)
        elapsed = time.perf_counter_ns() - start
        pipeline.flush()
        return elapsed

    def make_and_put(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pipeline.put(
                ServerEvent(
                    time=time.time(),
                    incident="abc",
                    status=502,
                    cause="connection",
                    method="GET",
                    route="/",
                    reply_format="html",
                )
            )
        elapsed = time.perf_counter_ns() - start
        pipeline.flush()
        return elapsed

    def nothing(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pass
        return time.perf_counter_ns() - start

    stats = compare(
        {"empty loop": nothing, "queue put": put, "ServerEvent + queue put": make_and_put},
        settings,
    )
    pipeline.close()
    res.groups.append(
        Group(
            "Recording a failure",
            "empty loop",
            stats,
            note="The background thread drains the queue meanwhile (no recorders attached).",
        )
    )
    put_stat = _stat(stats, "queue put")
    res.goals.append(
        Goal(
            "recording a failure (queue put)",
            f"{put_stat.added:,.0f} ns (with building the event: "
            f"{_stat(stats, 'ServerEvent + queue put').added:,.0f} ns)",
            "< 5 us",
            put_stat.added < 5000,
        )
    )


def beacons(res: Results, settings: Settings, driver: AsgiDriver) -> None:
    from gracefail.asgi import GracefailMiddleware
    from gracefail.core import Engine, RequestView
    from gracefail.tokens import TokenSigner

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("beacons never reach the app")

    app = GracefailMiddleware(nothing, **options())
    signer = TokenSigner(SECRET, 3600)
    count = 8192  # more distinct incidents and clients than the guard remembers at once

    def body(name: str) -> bytes:
        token = signer.sign(name, 502)
        data = {"token": token, "kind": "retry", "attempt": 1, "elapsed_ms": 5000, "locale": "en"}
        return json.dumps(data).encode()

    asgi_bodies = [body(f"asgi{i:06d}") for i in range(count)]
    core_bodies = [body(f"core{i:06d}") for i in range(count)]
    headers = {
        "host": "127.0.0.1:8000",
        "origin": "http://127.0.0.1:8000",
        "content-type": "text/plain;charset=UTF-8",
        "sec-fetch-site": "same-origin",
        "content-length": str(len(asgi_bodies[0])),
    }
    scope = asgi_scope("/_gracefail/beacon", headers, method="POST")
    # One beacon per page and client, as in an outage: no client is ever rate limited.
    scopes = [
        {**scope, "client": (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 40000)}
        for i in range(count)
    ]
    got = driver.call(app, scope, body("check"))
    _expect(got, 204, "beacon")
    engine: Engine = app.engine
    index = [0]

    def core(n: int) -> int:
        i = index[0]
        start = time.perf_counter_ns()
        for j in range(i, i + n):
            view = RequestView(
                "POST", "/_gracefail/beacon", headers=headers, client_addr=f"c{j % count}"
            )
            engine.accept_beacon(view, core_bodies[j % count])
        elapsed = time.perf_counter_ns() - start
        index[0] = i + n
        return elapsed

    def nothing_loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            pass
        return time.perf_counter_ns() - start

    queued = engine.pipeline
    stats = compare(
        {
            "empty loop": nothing_loop,
            "core accept_beacon": core,
            "ASGI POST to beacon_path": driver.runner(app, scope, asgi_bodies, scopes),
        },
        settings,
    )
    guard = engine.guard
    refused = guard.duplicates + guard.rate_limited + guard.over_limit
    engine.close()
    note = (
        "Each beacon has its own incident and client, so each one is checked, admitted and "
        "queued"
        + (
            f" (but {refused:,} were refused or duplicates: the figures are too low)."
            if refused
            else f" (the guard refused none; {queued.dropped:,} events dropped by a full queue)."
        )
    )
    res.groups.append(
        Group("Beacon handling (valid beacons, token checked)", "empty loop", stats, note=note)
    )
    asgi = _stat(stats, "ASGI POST to beacon_path")
    res.goals.append(
        Goal(
            "beacon handling, in-process",
            f"{asgi.added / 1000:.1f} us through the ASGI middleware "
            f"(core alone {_stat(stats, 'core accept_beacon').added / 1000:.1f} us)",
            "< 30 us per beacon incl. token check",
            asgi.added < 30_000 and not refused,
        )
    )


def page_weight(res: Results) -> None:
    from gracefail.classify import Failure
    from gracefail.config import LOCALES, Config
    from gracefail.render import Renderer

    renderer = Renderer(Config(status_page_url="https://status.example.com", **options()))
    token = "19a2b3c4d5e~AbCdEfGhIjKlMnOp~502~" + "A" * 22
    sizes = {}
    for status in (502, 504):
        for locale in LOCALES:
            for safe in (True, False):
                body, _, _ = renderer.body(
                    "html",
                    Failure(status, "connection"),
                    locale,
                    safe,
                    "AbCdEfGhIjKlMnOp",
                    token,
                    "/checkout/cart?step=2",
                )
                sizes[(status, locale, safe)] = (len(body), len(gzip.compress(body, 6)))
    en = sizes[(502, "en", True)]
    worst = max(sizes.items(), key=lambda item: item[1][0])
    res.facts["page_bytes"] = en
    res.goals.append(
        Goal(
            "page weight",
            f"{en[0]:,} bytes, gzip {en[1]:,} (502, en, GET); largest {worst[1][0]:,} bytes "
            f"(gzip {worst[1][1]:,}: {worst[0][0]}, {worst[0][1]}, "
            f"{'GET' if worst[0][2] else 'POST'})",
            "<= 16 KB (16,384 bytes) uncompressed",
            worst[1][0] <= 16 * 1024,
        )
    )


def _failure_class_check() -> None:
    from gracefail.classify import Classifier

    if Classifier({}).classify(Upstream("x")) is None:
        raise RuntimeError("gracefail does not treat ConnectionError as an upstream failure")


def run(quick: bool = False, log: Callable[[str], None] = print) -> Results:
    """Every in-process row."""
    settings = Settings(rounds=5, batch_seconds=0.01) if quick else Settings()
    quiet_gracefail_logger()
    _failure_class_check()
    res = Results()
    loop = asyncio.new_event_loop()
    driver = AsgiDriver(loop)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("happy path, Starlette", lambda: happy_asgi(res, settings, driver)),
        ("happy path, stream", lambda: happy_stream(res, settings, driver)),
        ("happy path, WSGI/Flask/Django", lambda: happy_wsgi(res, settings)),
        ("error path, Starlette", lambda: error_asgi(res, settings, driver)),
        ("error path, what costs what", lambda: error_ablation(res, settings, driver)),
        ("error path, WSGI/Flask/Django", lambda: error_wsgi(res, settings)),
        ("recording", lambda: recording(res, settings)),
        ("beacons", lambda: beacons(res, settings, driver)),
        ("page weight", lambda: page_weight(res)),
    ]
    try:
        for title, step in steps:
            began = time.perf_counter()
            step()
            log(f"  in-process: {title} ({time.perf_counter() - began:.1f} s)")
    finally:
        loop.close()
    return res


# -- output ----------------------------------------------------------------------------


def goals_table(goals: list[Goal]) -> str:
    lines = ["| row | measured | goal | met? |", "|---|---|---|---|"]
    for g in goals:
        met = (
            "pending"
            if g.met is None and g.measured.startswith("pending")
            else ("—" if g.met is None else ("met" if g.met else "**not met**"))
        )
        lines.append(f"| {g.row} | {g.measured} | {g.goal} | {met} |")
    return "\n".join(lines)


def group_table(group: Group) -> str:
    unit = group.unit
    lines = [
        f"**{group.title}**",
        "",
        f"| variant | ns/{unit} | added ns/{unit} vs {group.baseline} (IQR) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for s in group.stats:
        if s.name == group.baseline:
            lines.append(f"| {s.name} | {s.ns:,.0f} | — | 1.000 |")
        else:
            lines.append(
                f"| {s.name} | {s.ns:,.0f} | {s.added:+,.0f} ({s.q1:+,.0f} to {s.q3:+,.0f}) "
                f"| {s.ratio:.3f} |"
            )
    if group.note:
        lines += ["", group.note]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller batches")
    args = parser.parse_args(argv)
    res = run(args.quick, log=lambda s: print(s, file=sys.stderr))
    print(goals_table(res.goals))
    for group in res.groups:
        print()
        print(group_table(group))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
