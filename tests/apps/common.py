"""What the test apps and the tests that drive them share: routes, failures, requests, recorders.

Each app (Starlette, FastAPI, Flask, Werkzeug, Django sync and async) has the same
routes, so one scenario table can drive them all:

=========================  ====================================================
``/ok``                    200 ``hello``
``/fail/<kind>``           raises ``FAILURES[kind]`` (GET, HEAD, POST)
``/handled``               raises ``AppHandled``; the app's own handler answers 418
``/app-status/<code>``     the app's own response with that status and a cookie
                           (``?stream=1``: a streamed body)
``/stream``                a streamed body (``?gate=FILE``: waits for FILE after chunk 1)
``/late``                  streams one chunk, then fails upstream
``/early``                 a streamed body that fails upstream before its first chunk
``/slow``                  (async apps) sleeps 30 s
=========================  ====================================================
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx

from gracefail import UpstreamError
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.tokens import TokenSigner

SECRET = "test-secret-0123456789abcdef"
APP_500 = "the app's own 500 page"
HANDLED = "the app handled it"
STREAM_CHUNKS = 5

# The request headers of the three kinds of client gracefail tells apart.
NAV = {
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
}
API = {"accept": "application/json"}
CURL = {"accept": "*/*", "user-agent": "curl/8.0"}

# What the page's script sends with a beacon.
BEACON = {"content-type": "text/plain;charset=UTF-8", "sec-fetch-site": "same-origin"}


class AppHandled(ConnectionError):
    """An upstream-looking failure the app handles itself (its handler must win)."""


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, closed): for a server to come, or to
    be refused on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _connection_refused() -> BaseException:
    try:
        socket.create_connection(("127.0.0.1", free_port()), timeout=2).close()
    except OSError as exc:
        return exc
    return RuntimeError("a closed port accepted a connection")


def _httpx_connect() -> BaseException:
    try:
        httpx.get(f"http://127.0.0.1:{free_port()}/", timeout=2)
    except httpx.HTTPError as exc:
        return exc
    return RuntimeError("a closed port answered")


def _raise_for_status(status: int) -> BaseException:
    request = httpx.Request("GET", "http://payments.internal/charge")
    try:
        httpx.Response(status, request=request).raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    return RuntimeError("not an error status")


def _chained() -> BaseException:
    try:
        raise ConnectionResetError("reset by peer")
    except ConnectionResetError as exc:
        try:
            raise RuntimeError("payments client gave up") from exc
        except RuntimeError as outer:
            return outer


# kind -> a function returning the exception a view raises (real failures where cheap).
FAILURES: dict[str, Callable[[], BaseException]] = {
    "upstream-502": lambda: UpstreamError(502, upstream="inventory"),
    "upstream-504": lambda: UpstreamError(504, upstream="payments", detail="no answer in 3 s"),
    "timeout": lambda: TimeoutError("timed out"),
    "connection-refused": _connection_refused,
    "httpx-connect": _httpx_connect,
    "httpx-read-timeout": lambda: httpx.ReadTimeout("upstream did not answer"),
    "protocol": lambda: http.client.BadStatusLine("HTTP/1.1 ???"),
    "status-503": lambda: _raise_for_status(503),
    "chained": _chained,
    "bug": lambda: KeyError("a bug in the app, not an upstream failure"),
    "client-404": lambda: _raise_for_status(404),
}


def fail(kind: str) -> None:
    """What ``/fail/<kind>`` does."""
    raise FAILURES[kind]()


def wait_for_gate(gate: str | None) -> None:
    deadline = time.monotonic() + 20
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)


async def await_gate(gate: str | None) -> None:
    deadline = time.monotonic() + 20
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        await anyio.sleep(0.01)


def chunks(gate: str | None = None) -> Iterator[bytes]:
    for index in range(STREAM_CHUNKS):
        yield f"chunk-{index};".encode()
        if index == 0:
            wait_for_gate(gate)


async def achunks(gate: str | None = None) -> AsyncIterator[bytes]:
    for index in range(STREAM_CHUNKS):
        yield f"chunk-{index};".encode()
        if index == 0:
            await await_gate(gate)


def late() -> Iterator[bytes]:
    yield b"first chunk"
    raise ConnectionResetError("upstream went away mid-stream")


async def alate() -> AsyncIterator[bytes]:
    yield b"first chunk"
    raise ConnectionResetError("upstream went away mid-stream")


def early() -> Iterator[bytes]:
    fail("connection-refused")
    yield b"never"


async def aearly() -> AsyncIterator[bytes]:
    fail("connection-refused")
    yield b"never"


def app_body(code: int) -> Iterator[bytes]:
    yield f"app said {code}, ".encode()
    yield b"in two parts"


async def aapp_body(code: int) -> AsyncIterator[bytes]:
    yield f"app said {code}, ".encode()
    yield b"in two parts"


def beacon_body(kind: str = "shown", token: str | None = None, **extra: Any) -> bytes:
    """A beacon as the page sends it, for incident ``incident-1`` (a 502) unless ``token``."""
    token = token or TokenSigner(SECRET, 3600).sign("incident-1", 502)
    data = {"token": token, "kind": kind, "attempt": 0, "elapsed_ms": 1200, "locale": "en"}
    return json.dumps({**data, **extra}).encode()


async def serve_lifespan(receive: Any, send: Any) -> None:
    """An ASGI app's side of the lifespan protocol: startup completes, then shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


def asgi_client(app: Any, raise_app_exceptions: bool = False) -> httpx.AsyncClient:
    """An httpx client calling an ASGI app in process."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def find(node: Any, cls: type, *links: str) -> Any:
    """The ``cls`` instance in a chain of wrapped apps or middleware, followed by ``links``."""
    for _ in range(30):
        node = getattr(node, "__wrapped__", node)
        if isinstance(node, cls):
            return node
        node = next((getattr(node, n) for n in links if getattr(node, n, None) is not None), None)
    raise LookupError(f"no {cls.__name__} in this stack")


class ListRecorder:
    """A real Recorder that keeps events in memory."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def close(self) -> None:
        pass


class JsonLog:
    """Appends one JSON object per line; threads and processes may share the file (each line
    is one ``O_APPEND`` write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
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
    """A real Recorder writing each event as a JSON line (``"type": "server"`` or ``"client"``,
    with the writing process's ``pid``): how tests read what a real server recorded."""

    def __init__(self, path: str | Path) -> None:
        self.log = JsonLog(path)

    def record(self, events: Sequence[Event]) -> None:
        for event in events:
            kind = "client" if isinstance(event, ClientEvent) else "server"
            self.log.write({"type": kind, "pid": os.getpid(), **dataclasses.asdict(event)})

    def close(self) -> None:
        pass


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a :class:`JsonLog` (none if the file is not there yet)."""
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # the line being written right now
            continue
    return records


def read_jsonl(path: str | Path) -> list[Event]:
    """The events a :class:`JsonlRecorder` wrote, as events."""
    events: list[Event] = []
    for data in read_records(path):
        kind = data.pop("type")
        data.pop("pid", None)
        if kind in ("server", "client"):
            events.append(ServerEvent(**data) if kind == "server" else ClientEvent(**data))
    return events


def server_options() -> dict[str, object]:
    """gracefail options for an app under a real server: events to $GRACEFAIL_EVENTS."""
    path = os.environ.get("GRACEFAIL_EVENTS")
    return {
        "secret": os.environ.get("GRACEFAIL_SECRET", SECRET),
        "recorders": [JsonlRecorder(path)] if path else [],
    }
