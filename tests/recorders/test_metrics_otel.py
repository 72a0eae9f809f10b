"""OpenTelemetry instruments, collected by the SDK's InMemoryMetricReader."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gracefail.events import ClientEvent, ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders import OpenTelemetryRecorder


def collect(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "gracefail"
            for metric in scope.metrics:
                found[metric.name] = [metric.unit, list(metric.data.data_points)]
    return found


def test_instruments_and_semantic_attributes() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    recorder = OpenTelemetryRecorder(meter_provider=provider)
    now = time.time()
    pipeline = Pipeline([recorder], maxsize=6)
    for event in [
        ServerEvent(now, "a", 502, "connection", "GET", "/items/{item_id}", "html"),
        ServerEvent(now, "b", 502, "connection", "GET", "/items/{item_id}", "html"),
        ServerEvent(now, "c", 504, "timeout", "PATCH", None, "json", source="gateway"),
        ServerEvent(now, "d", 502, "connection", "GET", "/x", "text", probe=True),
        ClientEvent(now, "a", "shown", 0, 90, "en"),
        ClientEvent(now, "a", "recovered", 2, 4_500, "en"),
        ClientEvent(now, "b", "gave_up", 9, 600_000, "en"),  # dropped: the queue holds 6
    ]:
        pipeline.put(event)
    pipeline.close()
    found = collect(reader)
    provider.shutdown()

    unit, points = found["gracefail.failures"]
    assert unit == "{failure}"
    by_attrs = {tuple(sorted(p.attributes.items())): p.value for p in points}
    assert by_attrs == {
        (("error.type", "connection"), ("gracefail.source", "app"),
         ("http.request.method", "GET"), ("http.response.status_code", 502),
         ("http.route", "/items/{item_id}")): 2,
        (("error.type", "timeout"), ("gracefail.source", "gateway"),
         ("http.request.method", "PATCH"), ("http.response.status_code", 504),
         ("http.route", "unknown")): 1,
    }  # fmt: skip
    [probe] = found["gracefail.probes"][1]
    assert probe.value == 1
    assert dict(probe.attributes) == {"http.response.status_code": 502}
    events = {p.attributes["gracefail.event"]: p.value for p in found["gracefail.page_events"][1]}
    assert events == {"shown": 1, "recovered": 1}
    unit, [histogram] = found["gracefail.time_to_recovery"]
    assert unit == "s"
    assert histogram.count == 1
    assert histogram.sum == 4.5
    assert 5.0 in histogram.explicit_bounds
    assert 600.0 in histogram.explicit_bounds
    [dropped] = found["gracefail.events_dropped"][1]
    assert dropped.value == 1
    assert dict(dropped.attributes) == {"gracefail.reason": "queue_full"}


def test_two_recorders_on_one_provider_do_not_clash() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    first, second = OpenTelemetryRecorder(provider), OpenTelemetryRecorder(provider)
    now = time.time()
    first.record([ServerEvent(now, "a", 502, "connection", "GET", "/a", "html")])
    second.record([ServerEvent(now, "b", 502, "connection", "GET", "/a", "html")])
    [point] = collect(reader)["gracefail.failures"][1]
    assert point.value == 2
    provider.shutdown()


def test_maintenance_pages_are_their_own_instrument_never_failures() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    recorder = OpenTelemetryRecorder(meter_provider=provider)
    now = time.time()
    recorder.record([
        ServerEvent(now, "a", 502, "connection", "GET", "/shop", "html"),
        ServerEvent(now, "m1", 503, "maintenance", "GET", "/shop", "html"),
        ServerEvent(now, "m2", 503, "maintenance", "GET", "/shop", "json"),
        ServerEvent(now, "m3", 503, "maintenance", "BREW", None, "text", source="gateway"),
        ServerEvent(now, "m4", 503, "maintenance", "GET", "/shop", "html", probe=True),
    ])  # fmt: skip
    found = collect(reader)
    provider.shutdown()
    unit, points = found["gracefail.maintenance_pages"]
    assert unit == "{page}"
    by_attrs = {tuple(sorted(p.attributes.items())): p.value for p in points}
    assert by_attrs == {
        (("gracefail.source", "app"), ("http.request.method", "GET"),
         ("http.route", "/shop")): 2,
        (("gracefail.source", "gateway"), ("http.request.method", "_OTHER"),
         ("http.route", "unknown")): 1,
    }  # fmt: skip
    [failure] = found["gracefail.failures"][1]
    assert (failure.value, failure.attributes["error.type"]) == (1, "connection")
    [probe] = found["gracefail.probes"][1]
    assert dict(probe.attributes) == {"http.response.status_code": 503}
