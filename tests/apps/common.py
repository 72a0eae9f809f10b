"""What every conformance test app shares: the failures its views raise, and helpers.

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

import asyncio
import dataclasses
import http.client
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import httpx

from gracefail import UpstreamError
from gracefail.events import ClientEvent, Event, ServerEvent

SECRET = "test-secret-0123456789abcdef"
APP_500 = "the app's own 500 page"
HANDLED = "the app handled it"
STREAM_CHUNKS = 5


class AppHandled(ConnectionError):
    """An upstream-looking failure the app handles itself (its handler must win)."""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _connection_refused() -> BaseException:
    try:
        socket.create_connection(("127.0.0.1", closed_port()), timeout=2).close()
    except OSError as exc:
        return exc
    return RuntimeError("a closed port accepted a connection")


def _httpx_connect() -> BaseException:
    try:
        httpx.get(f"http://127.0.0.1:{closed_port()}/", timeout=2)
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
        await asyncio.sleep(0.01)


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


class ListRecorder:
    """A real Recorder that keeps events in memory."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def close(self) -> None:
        pass


class JsonlRecorder:
    """A real Recorder appending one JSON line per event (read by tests of real servers)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def record(self, events: Sequence[Event]) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            for event in events:
                data = dataclasses.asdict(event)
                data["type"] = "server" if isinstance(event, ServerEvent) else "client"
                out.write(json.dumps(data) + "\n")

    def close(self) -> None:
        pass


def read_jsonl(path: str | Path) -> list[Event]:
    events: list[Event] = []
    file = Path(path)
    if not file.exists():
        return events
    for line in file.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        kind = data.pop("type")
        events.append(ServerEvent(**data) if kind == "server" else ClientEvent(**data))
    return events


def server_options() -> dict[str, object]:
    """gracefail options for an app under a real server: events to $GRACEFAIL_EVENTS."""
    path = os.environ.get("GRACEFAIL_EVENTS")
    return {
        "secret": os.environ.get("GRACEFAIL_SECRET", SECRET),
        "recorders": [JsonlRecorder(path)] if path else [],
    }
