"""Prometheus metrics, read back from the real text exposition."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gracefail.asgi import GracefailMiddleware
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders import PrometheusRecorder
from tests.apps import asgi_app

SECRET = "test-secret-0123456789abcdef"


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text, keyed by name and labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def fail(route: str | None = "/items/{item_id}", **overrides: Any) -> ServerEvent:
    values: dict[str, Any] = {
        "time": time.time(), "incident": "i", "status": 502, "cause": "connection", "method": "GET",
        "route": route, "reply_format": "html",
    }  # fmt: skip
    values.update(overrides)
    return ServerEvent(**values)


def beacon(kind: str, elapsed_ms: int = 0) -> ClientEvent:
    return ClientEvent(time.time(), "i", kind, 1, elapsed_ms, "en")


def test_exposition_has_the_documented_metrics() -> None:
    recorder = PrometheusRecorder()
    events: list[Event] = [
        fail(), fail(), fail(status=504, cause="timeout"), fail(route=None, method="BREW"),
        fail(source="gateway"), fail(source="<script>"), fail(probe=True),
        beacon("shown"), beacon("shown"), beacon("recovered", 12_500), beacon("recovered", 700),
        beacon("abandoned"),
    ]  # fmt: skip
    recorder.record(events)
    recorder.record_dropped(7, "queue_full")
    got = samples(recorder.registry)
    total = "gracefail_failures_total"
    assert got[total, labels(status="502", cause="connection", route="/items/{item_id}",
                             method="GET", source="app")] == 2  # fmt: skip
    assert got[total, labels(status="504", cause="timeout", route="/items/{item_id}",
                             method="GET", source="app")] == 1  # fmt: skip
    assert got[total, labels(status="502", cause="connection", route="unknown",
                             method="_OTHER", source="app")] == 1  # fmt: skip
    assert got[total, labels(status="502", cause="connection", route="/items/{item_id}",
                             method="GET", source="gateway")] == 1  # fmt: skip
    # An unknown source cannot mint series.
    assert got[total, labels(status="502", cause="connection", route="/items/{item_id}",
                             method="GET", source="_OTHER")] == 1  # fmt: skip
    assert got["gracefail_probes_total", labels(status="502")] == 1
    assert got["gracefail_page_events_total", labels(event="shown")] == 2
    assert got["gracefail_page_events_total", labels(event="recovered")] == 2
    assert got["gracefail_page_events_total", labels(event="gave_up")] == 0
    hist = "gracefail_time_to_recovery_seconds"
    assert got[f"{hist}_count", labels()] == 2
    assert got[f"{hist}_sum", labels()] == pytest.approx(13.2)
    assert got[f"{hist}_bucket", labels(le="1.0")] == 1
    assert got[f"{hist}_bucket", labels(le="15.0")] == 2
    assert got["gracefail_events_dropped_total", labels(reason="queue_full")] == 7
    assert got["gracefail_events_dropped_total", labels(reason="recorder_error")] == 0


def test_pipeline_drops_reach_the_dropped_counter() -> None:
    recorder = PrometheusRecorder()
    pipeline = Pipeline([recorder], maxsize=3)
    for _ in range(10):
        pipeline.put(fail())
    pipeline.close()
    got = samples(recorder.registry)
    assert pipeline.dropped == 7
    assert got["gracefail_events_dropped_total", labels(reason="queue_full")] == 7
    assert sum(v for (n, _), v in got.items() if n == "gracefail_failures_total") == 3


def test_never_the_global_registry_and_building_twice_is_fine() -> None:
    before = set(REGISTRY._names_to_collectors)
    first, second = (
        GracefailMiddleware(asgi_app.make_app(), secret=SECRET, recorders=[PrometheusRecorder()])
        for _ in range(2)
    )
    assert set(REGISTRY._names_to_collectors) == before
    assert first.engine.pipeline.recorders[0].registry is not (  # type: ignore[attr-defined]
        second.engine.pipeline.recorders[0].registry  # type: ignore[attr-defined]
    )
    for app in (first, second):
        app.engine.close()


def test_an_injected_registry_shared_by_two_apps_counts_once_each() -> None:
    registry = CollectorRegistry()
    one, two = PrometheusRecorder(registry), PrometheusRecorder(registry)
    one.record([fail()])
    two.record([fail()])
    got = samples(registry)
    key = labels(
        status="502", cause="connection", route="/items/{item_id}", method="GET", source="app"
    )
    assert got["gracefail_failures_total", key] == 2


async def test_served_failures_are_counted_end_to_end() -> None:
    recorder = PrometheusRecorder()
    app = GracefailMiddleware(asgi_app.make_app(), secret=SECRET, recorders=[recorder])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/items/1?fail=1", headers={"accept": "text/html"})
        await client.get("/timeout", headers={"accept": "application/json"})
        await client.get("/items/1?fail=1", headers={"x-gracefail-probe": "1"})
    assert app.engine.flush()
    got = samples(recorder.registry)
    failures = {dict(k)["cause"]: v for (n, k), v in got.items() if n == "gracefail_failures_total"}
    assert failures == {"upstream_error": 1, "timeout": 1}
    assert got["gracefail_probes_total", labels(status="502")] == 1
    body, content_type = recorder.exposition()
    assert content_type.startswith("text/plain")
    assert b"gracefail_failures_total" in body
    app.engine.close()


def test_maintenance_pages_are_planned_downtime_never_failures() -> None:
    recorder = PrometheusRecorder()
    maintenance = {"status": 503, "cause": "maintenance"}
    recorder.record([
        fail(), fail(route="/shop", **maintenance), fail(route="/shop", **maintenance),
        fail(route=None, method="BREW", source="gateway", **maintenance),
        fail(route="/shop", probe=True, **maintenance),
    ])  # fmt: skip
    got = samples(recorder.registry)
    pages = "gracefail_maintenance_pages_total"
    assert got[pages, labels(route="/shop", method="GET", source="app")] == 2
    assert got[pages, labels(route="unknown", method="_OTHER", source="gateway")] == 1
    failures = {k: v for (n, k), v in got.items() if n == "gracefail_failures_total"}
    assert failures == {
        labels(status="502", cause="connection", route="/items/{item_id}", method="GET",
               source="app"): 1,
    }  # fmt: skip
    assert got["gracefail_probes_total", labels(status="503")] == 1


async def test_served_maintenance_pages_are_counted_end_to_end(tmp_path: Path) -> None:
    from gracefail import maintenance

    store = str(tmp_path / "events.sqlite3")
    maintenance.switch_on(store, duration=600, set_by="test")
    recorder = PrometheusRecorder()
    app = GracefailMiddleware(
        asgi_app.make_app(), secret=SECRET, recorders=[recorder], store=store, maintenance=True
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/items/1", headers={"accept": "text/html"})
        assert page.status_code == 503
        await client.get("/items/2", headers={"accept": "application/json"})
        await client.get("/items/1", headers={"x-gracefail-probe": "1"})
    assert app.engine.flush()
    got = samples(recorder.registry)
    planned = {
        dict(k)["route"]: v for (n, k), v in got.items() if n == "gracefail_maintenance_pages_total"
    }
    assert sum(planned.values()) == 2
    assert not [k for (n, k) in got if n == "gracefail_failures_total"]
    assert got["gracefail_probes_total", labels(status="503")] == 1
    app.engine.close()
