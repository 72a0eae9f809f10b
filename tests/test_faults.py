"""Fault injection: gracefail's own parts failing or hanging while the app fails upstream.

Each fault must end the same way: the user gets the failure page (never a 500 from a
fault of gracefail's), no second response is started, and every event is accounted
for, per recorder: delivered, or counted as dropped, failed or lost at shutdown.
Recorders are real (prometheus_client registries, the OpenTelemetry SDK, a UDP socket
for StatsD, a logger, a SQLite file); faults are a monkeypatched method raising or
blocking, a failing exporter, a connection that became read-only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from gracefail.asgi import GracefailMiddleware
from gracefail.events import ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders.base import Recorder
from tests.apps import asgi_app
from tests.apps.common import NAV, SECRET, ListRecorder, free_port

FAIL = "/items/1?fail=1"


def middleware(recorders: Sequence[Recorder], **options: Any) -> GracefailMiddleware:
    return GracefailMiddleware(
        asgi_app.make_app(), secret=SECRET, recorders=list(recorders), **options
    )


async def fail_requests(app: GracefailMiddleware, count: int, path: str = FAIL) -> None:
    """``count`` failing navigations; each must get the page."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as client:
        for _ in range(count):
            response = await client.get(path, headers=NAV)
            assert response.status_code in (502, 504), response.status_code
            assert "text/html" in response.headers["content-type"]
            assert response.headers.get("x-gracefail-incident")


def accounted(pipeline: Pipeline, put: int) -> None:
    """Every event put is, for every recorder, delivered or counted as lost."""
    for counts in pipeline.counts():
        assert counts.queued == counts.in_flight == 0, counts
        settled = counts.delivered + counts.dropped + counts.failed + counts.shutdown
        assert settled == put, counts


class Blocker:
    """Makes a method block until released (or 10 s): a recorder that hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.entered.set()
        self.release.wait(10)


def raising(*args: object, **kwargs: object) -> None:
    raise RuntimeError("injected fault")


# -- recorders that fail or hang -----------------------------------------------------------


def prometheus() -> tuple[Recorder, Callable[[pytest.MonkeyPatch, Callable[..., None]], None]]:
    prometheus_client = pytest.importorskip("prometheus_client")
    from gracefail.recorders import PrometheusRecorder

    def inject(monkeypatch: pytest.MonkeyPatch, fault: Callable[..., None]) -> None:
        # Every gracefail counter (children of labels() too) is a real Counter.
        monkeypatch.setattr(prometheus_client.Counter, "inc", fault)

    return PrometheusRecorder(), inject


def opentelemetry() -> tuple[Recorder, Callable[[pytest.MonkeyPatch, Callable[..., None]], None]]:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from gracefail.recorders import OpenTelemetryRecorder

    recorder = OpenTelemetryRecorder(
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()])
    )

    def inject(monkeypatch: pytest.MonkeyPatch, fault: Callable[..., None]) -> None:
        monkeypatch.setattr(recorder.failures, "add", fault)

    return recorder, inject


def statsd() -> tuple[Recorder, Callable[[pytest.MonkeyPatch, Callable[..., None]], None]]:
    from gracefail.recorders import statsd as statsd_module

    recorder = statsd_module.StatsdRecorder("127.0.0.1", free_port())

    def inject(monkeypatch: pytest.MonkeyPatch, fault: Callable[..., None]) -> None:
        # Name resolution failing (or hanging) is how an agent's address goes bad.
        monkeypatch.setattr(statsd_module.socket, "getaddrinfo", fault)

    return recorder, inject


def logging_recorder() -> tuple[
    Recorder, Callable[[pytest.MonkeyPatch, Callable[..., None]], None]
]:
    from gracefail.recorders import LoggingRecorder

    recorder = LoggingRecorder(logging.getLogger("gracefail.test_faults.events"))
    recorder.logger.setLevel(logging.INFO)

    def inject(monkeypatch: pytest.MonkeyPatch, fault: Callable[..., None]) -> None:
        monkeypatch.setattr(recorder.logger, "log", fault)

    return recorder, inject


RECORDERS = [
    pytest.param(prometheus, id="prometheus"),
    pytest.param(opentelemetry, id="opentelemetry"),
    pytest.param(statsd, id="statsd"),
    pytest.param(logging_recorder, id="logging"),
]
Faulty = Callable[[], tuple[Recorder, Callable[[pytest.MonkeyPatch, Callable[..., None]], None]]]


@pytest.mark.parametrize("make", RECORDERS)
async def test_a_failing_recorder_is_counted_and_recovers(
    make: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, inject = make()
    healthy = ListRecorder()
    app = middleware([recorder, healthy])
    pipeline = app.engine.pipeline
    with monkeypatch.context() as patch:
        inject(patch, raising)
        await fail_requests(app, 3)
        assert pipeline.flush(5)
        assert pipeline.counts()[0].failed == 3
    await fail_requests(app, 2)  # the fault is gone: the recorder takes events again
    assert pipeline.flush(5)
    faulty_counts, healthy_counts = pipeline.counts()
    assert faulty_counts.delivered == 2, faulty_counts
    assert healthy_counts.delivered == len(healthy.events) == 5
    app.engine.close()
    accounted(pipeline, 5)


@pytest.mark.parametrize("make", RECORDERS)
async def test_a_hanging_recorder_delays_nobody_and_is_counted_at_shutdown(
    make: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, inject = make()
    healthy = ListRecorder()
    app = middleware([recorder, healthy])
    pipeline = app.engine.pipeline
    blocker = Blocker()
    inject(monkeypatch, blocker)
    try:
        await fail_requests(app, 5)  # answered while the recorder is stuck
        assert blocker.entered.wait(5), "the recorder was called"
        await fail_requests(app, 5)
        deadline = time.monotonic() + 5
        while len(healthy.events) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(healthy.events) == 10, "the neighbour got every event meanwhile"
        pipeline.close(timeout=0.5)
        stuck, fine = pipeline.counts()
        assert stuck.shutdown > 0, stuck
        assert fine.delivered == 10
        accounted(pipeline, 10)
    finally:
        blocker.release.set()


async def test_an_opentelemetry_exporter_that_fails_never_reaches_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader

    from gracefail.recorders import OpenTelemetryRecorder

    class FailingExporter(MetricExporter):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            self.calls += 1
            raise ConnectionRefusedError("collector is down")

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    exporter = FailingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=50)
    provider = MeterProvider(metric_readers=[reader])
    app = middleware([OpenTelemetryRecorder(meter_provider=provider)])
    try:
        await fail_requests(app, 3)
        assert app.engine.pipeline.flush(5)
        deadline = time.monotonic() + 5
        while exporter.calls < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert exporter.calls >= 2
        assert app.engine.pipeline.counts()[0].delivered == 3
    finally:
        app.engine.close()
        provider.shutdown()
    accounted(app.engine.pipeline, 3)


async def test_statsd_datagrams_flow_again_after_the_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    from gracefail.recorders import statsd as statsd_module

    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind(("127.0.0.1", 0))
    agent.settimeout(5)
    try:
        recorder = statsd_module.StatsdRecorder("127.0.0.1", agent.getsockname()[1])
        app = middleware([recorder])
        with monkeypatch.context() as patch:
            patch.setattr(statsd_module.socket, "getaddrinfo", raising)
            await fail_requests(app, 2)
            assert app.engine.pipeline.flush(5)
        await fail_requests(app, 1)
        assert app.engine.pipeline.flush(5)
        datagrams = agent.recv(65536).decode()
        assert "failures" in datagrams
        app.engine.close()
        counts = app.engine.pipeline.counts()[0]
        assert (counts.failed, counts.delivered) == (2, 1)
    finally:
        agent.close()


# -- the store ---------------------------------------------------------------------------


async def test_store_made_read_only_while_open_drops_counts_and_recovers(
    tmp_path: Path,
) -> None:
    """The open connection is switched to read-only (PRAGMA query_only): SQLite then
    refuses writes exactly as for a read-only file (SQLITE_READONLY), whoever runs the
    test. The recorder drops the batch, backs off and opens a new, writable connection."""
    from gracefail.recorders.sqlite import SQLiteRecorder

    path = tmp_path / "events.sqlite3"
    store = SQLiteRecorder(path, retry_first=0.01, retry_cap=0.05)
    app = middleware([store])
    pipeline = app.engine.pipeline
    await fail_requests(app, 1)
    assert pipeline.flush(5)
    assert store._conn is not None
    store._conn.execute("PRAGMA query_only = ON")
    await fail_requests(app, 2)
    assert pipeline.flush(5)
    assert pipeline.counts()[0].failed == 2
    time.sleep(0.06)  # past the backoff
    await fail_requests(app, 3)
    assert pipeline.flush(5)
    app.engine.close()
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM gracefail_failures").fetchone()[0]
    counts = pipeline.counts()[0]
    assert (stored, counts.delivered, counts.failed) == (4, 4, 2)
    accounted(pipeline, 6)


# -- the ASGI exchange -------------------------------------------------------------------


async def test_config_timeout_on_a_stuck_app_sends_the_504_page() -> None:
    recorder = ListRecorder()
    asgi_app.state["cancelled"] = False
    app = middleware([recorder], timeout=0.3)
    await fail_requests(app, 1, path="/slow")
    assert asgi_app.state["cancelled"], "the stuck app was cancelled, not left running"
    app.engine.close()
    [event] = recorder.events
    assert isinstance(event, ServerEvent)
    assert (event.status, event.cause) == (504, "app_timeout")
    accounted(app.engine.pipeline, 1)


def _scope(path: str, query: bytes) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("shop.example", 80),
        "headers": [(k.encode(), v.encode()) for k, v in NAV.items()],
    }  # fmt: skip


async def test_client_gone_during_the_failure_reply() -> None:
    """The server's send raises OSError (ASGI: the client disconnected) on the page's
    start: that exception, the server's own, reaches the server; gracefail sends nothing
    more, and the failure is recorded once."""
    recorder = ListRecorder()
    app = middleware([recorder])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        raise OSError("client disconnected")

    with pytest.raises(OSError, match="client disconnected"):
        await app(_scope("/items/1", b"fail=1"), receive, send)
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert sent[0]["status"] == 502, "the page was on its way, not a 500"
    app.engine.close()
    assert [type(e) for e in recorder.events] == [ServerEvent]
    accounted(app.engine.pipeline, 1)


async def test_client_gone_during_the_page_body() -> None:
    recorder = ListRecorder()
    app = middleware([recorder])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "http.response.body":
            raise OSError("client disconnected")

    with pytest.raises(OSError, match="client disconnected"):
        await app(_scope("/items/1", b"fail=1"), receive, send)
    assert sent == ["http.response.start", "http.response.body"], "no second response"
    app.engine.close()
    assert len(recorder.events) == 1
    accounted(app.engine.pipeline, 1)


# -- Django streaming ------------------------------------------------------------------------


@pytest.fixture
def django_recorder() -> Iterator[ListRecorder]:
    pytest.importorskip("django")
    from tests.conformance.harness import django_setup

    django_setup()
    from django.test import override_settings

    recorder = ListRecorder()
    with override_settings(GRACEFAIL={"secret": SECRET, "recorders": [recorder]}):
        yield recorder


@pytest.mark.parametrize("path", ["/late", "/early"])
def test_django_stream_failing_upstream_propagates_sync(
    django_recorder: ListRecorder, path: str
) -> None:
    from django.test import Client, override_settings

    with override_settings(ROOT_URLCONF="tests.apps.django_project.urls_sync"):
        response = Client().get(path, headers=NAV)
        assert response.status_code == 200, "the stream's headers went out first"
        assert response.streaming
        chunks: list[bytes] = []
        with pytest.raises(ConnectionError):
            chunks.extend(bytes(chunk) for chunk in response.streaming_content)
        response.close()
    assert b"".join(chunks) in (b"first chunk", b"")
    assert "x-gracefail-incident" not in response.headers, "never a second response"
    assert django_recorder.events == [], "no page was served, so no failure recorded"


async def _read_all(stream: Any, into: list[bytes]) -> None:
    async for chunk in stream:
        into.append(bytes(chunk))


@pytest.mark.parametrize("path", ["/late", "/early"])
async def test_django_stream_failing_upstream_propagates_async(
    django_recorder: ListRecorder, path: str
) -> None:
    from django.test import AsyncClient, override_settings

    with override_settings(ROOT_URLCONF="tests.apps.django_project.urls_async"):
        response = await AsyncClient().get(path, headers=NAV)
        assert response.status_code == 200
        chunks: list[bytes] = []
        with pytest.raises(ConnectionError):
            await _read_all(response.streaming_content, chunks)
    assert b"".join(chunks) in (b"first chunk", b"")
    assert "x-gracefail-incident" not in response.headers
    assert django_recorder.events == []
