"""Overload metrics (issue 17): shed requests as events with cause ``overload``, and the
guard's gauges read at collection, with the real prometheus_client and OTel SDK."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gracefail import Overload
from gracefail.asgi import GracefailMiddleware
from gracefail.events import ServerEvent
from gracefail.recorders import OpenTelemetryRecorder, PrometheusRecorder, StatsdRecorder

SECRET = "overload-metrics-secret-0123456789"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _shed_one(middleware: GracefailMiddleware, headers: dict[str, str]) -> httpx.Response:
    """One request while other requests hold every slot: shed."""
    guard = middleware.overload
    assert guard is not None
    taken = 0
    while guard.limiter.try_acquire():
        taken += 1
    assert taken == guard.stats().limit

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/items/1", headers=headers)

    try:
        return asyncio.run(go())
    finally:
        for _ in range(taken):
            guard.limiter.release()


def _stamped(middleware: GracefailMiddleware, seconds_ago: float) -> int:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=middleware, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            stamp = f"t={time.time() - seconds_ago:.3f}"
            return await client.get("/", headers={"x-request-start": stamp})

    return asyncio.run(go()).status_code


def test_prometheus_exports_the_gauges_the_histogram_and_the_shed_events() -> None:
    metrics = PrometheusRecorder()
    middleware = GracefailMiddleware(
        _ok,
        secret=SECRET,
        recorders=[metrics],
        overload=Overload(max_concurrency=3, max_queue_ms=1000),
        trusted_proxies=["127.0.0.1"],
    )
    assert _stamped(middleware, 0.2) == 200  # stamped 200 ms ago: within the budget
    assert _stamped(middleware, 30) == 503  # waited 30 s in the proxy's queue: shed
    assert _shed_one(middleware, NAV).status_code == 503
    middleware.engine.flush()
    got = samples(metrics.registry)
    assert got["gracefail_overload_limit", frozenset()] == 3
    assert got["gracefail_overload_in_flight", frozenset()] == 0
    assert got["gracefail_overload_queue_seconds_count", frozenset()] == 2
    assert got["gracefail_overload_queue_seconds_bucket", frozenset({("le", "0.1")})] == 0
    assert got["gracefail_overload_queue_seconds_bucket", frozenset({("le", "0.25")})] == 1
    assert got["gracefail_overload_queue_seconds_bucket", frozenset({("le", "+Inf")})] == 2
    assert got["gracefail_overload_shed_total", frozenset({("reason", "queue")})] == 1
    assert got["gracefail_overload_shed_total", frozenset({("reason", "concurrency")})] == 1
    # The shed requests' events: their own counter, never among the failures.
    where = {("route", "unknown"), ("method", "GET"), ("source", "app")}
    for reason in ("queue", "concurrency"):
        key = ("gracefail_shed_requests_total", frozenset({("reason", reason), *where}))
        assert got[key] == 1
    assert not [name for name, _ in got if name == "gracefail_failures_total"]


def test_prometheus_in_flight_is_read_at_the_scrape() -> None:
    metrics = PrometheusRecorder()
    middleware = GracefailMiddleware(
        _ok, secret=SECRET, recorders=[metrics], overload={"max_concurrency": 5}
    )
    guard = middleware.overload
    assert guard is not None
    assert guard.limiter.try_acquire()
    assert guard.limiter.try_acquire()
    assert samples(metrics.registry)["gracefail_overload_in_flight", frozenset()] == 2
    guard.limiter.release()
    assert samples(metrics.registry)["gracefail_overload_in_flight", frozenset()] == 1


def test_otel_observable_gauges_with_the_sdk_reader() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    recorder = OpenTelemetryRecorder(meter_provider=provider)
    middleware = GracefailMiddleware(
        _ok,
        secret=SECRET,
        recorders=[recorder],
        overload=Overload(max_concurrency=2, max_queue_ms=1000),
        trusted_proxies=["127.0.0.1"],
    )
    assert _stamped(middleware, 30) == 503
    assert _shed_one(middleware, {"accept": "application/json"}).status_code == 503
    middleware.engine.flush()
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert [p.value for p in found["gracefail.overload.limit"]] == [2]
    assert [p.value for p in found["gracefail.overload.in_flight"]] == [0]
    [queue] = found["gracefail.overload.queue_time"]
    assert 29 < queue.value < 60
    shed = {
        p.attributes["gracefail.shed_reason"]: p.value for p in found["gracefail.overload.shed"]
    }
    assert shed == {"queue": 1, "concurrency": 1}
    counted = {
        p.attributes["gracefail.shed_reason"]: p.value for p in found["gracefail.shed_requests"]
    }
    assert counted == {"queue": 1, "concurrency": 1}
    assert "gracefail.failures" not in found


def _event(cause: str, error_type: str | None = None) -> ServerEvent:
    return ServerEvent(
        time=time.time(), incident="i", status=503, cause=cause, method="GET",
        route="/items/{id}", reply_format="html", error_type=error_type,
    )  # fmt: skip


def test_statsd_counts_maintenance_and_shed_pages_apart_from_failures() -> None:
    recorder = StatsdRecorder(dogstatsd=True)
    lines = recorder.lines(
        [_event("maintenance"), _event("maintenance"), _event("overload", "overload.queue")]
    )
    assert sorted(lines) == [
        "gracefail.maintenance_pages:2|c|#method:GET,route:/items/{id},source:app",
        "gracefail.shed_requests:1|c|#reason:queue,method:GET,route:/items/{id},source:app",
    ]
    plain = StatsdRecorder().lines([_event("maintenance")])
    assert plain == ["gracefail.maintenance_pages.GET.items_id.app:1|c"]
