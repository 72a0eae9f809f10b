"""The report by source (app, gateway, worker), route labels compared with a leading slash,
and stores from before the source column. Events go in through the real SQLite recorder.

The same histories run against PostgreSQL in tests/recorders/test_report_postgres.py.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gracefail.events import Event, ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import Report, generate, load_report
from tests.recorders import scenario

WINDOW = {"since": scenario.SINCE, "until": scenario.UNTIL}
page = scenario._page


def fail(
    at: float, incident: str, route: str | None = scenario.ITEMS, source: str = "app",
    probe: bool = False,
) -> ServerEvent:  # fmt: skip
    return replace(scenario._fail(at, incident, route, probe=probe), source=source)


SOURCES_HISTORY: list[Event] = [
    # The app's middleware: two page views recover, after 10.1 s and 30.1 s.
    fail(10, "A1"), page(11, "A1", "shown", 0, 100), page(20, "A1", "recovered", 1, 10_100),
    fail(45, "A2"), page(46, "A2", "shown", 0, 100), page(75, "A2", "recovered", 2, 30_100),
    # gracefail serve: one recovers after 40.1 s (its beacons arrive once the app is back),
    # one is abandoned; and a probe, never a failure.
    fail(20, "G1", source="gateway"), page(21, "G1", "shown", 0, 100),
    page(60, "G1", "recovered", 3, 40_100),
    fail(30, "G2", source="gateway"), page(31, "G2", "shown", 0, 100),
    page(50, "G2", "abandoned", 2, 20_100),
    fail(35, "G-probe", source="gateway", probe=True),
    # The service worker: a failure whose page sent nothing.
    fail(40, "W1", source="worker"),
    # A page view whose failure is not in this store.
    page(70, "Z", "shown", 0, 100), page(80, "Z", "gave_up", 4, 10_100),
]  # fmt: skip

EXPECTED_SOURCES: dict[str, Any] = {
    "failures": 5,
    "probes": 1,
    "by_source": {"app": 2, "gateway": 2, "worker": 1},
    "pages_shown": 5,
    "recovered": 3,
    "abandoned": 1,
    "gave_up": 1,
    # 10.1, 30.1, 40.1 s: p90 is 30.1 + 0.8 * 10
    "time_to_recovery_s": {"p50": 30.1, "p90": 38.1},
}

EXPECTED_PER_SOURCE: dict[str, dict[str, Any]] = {
    "app": {
        "pages_shown": 2, "recovered": 2, "abandoned": 0, "gave_up": 0,
        "recovery_rate": 1.0, "abandonment_rate": 0.0, "gave_up_rate": 0.0,
        "time_to_recovery_s": {"p50": 20.1, "p90": 28.1},
    },
    "gateway": {
        "pages_shown": 2, "recovered": 1, "abandoned": 1, "gave_up": 0,
        "recovery_rate": 0.5, "abandonment_rate": 0.5, "gave_up_rate": 0.0,
        "time_to_recovery_s": {"p50": 40.1, "p90": 40.1},
    },
    "worker": {
        "pages_shown": 0, "recovered": 0, "abandoned": 0, "gave_up": 0,
        "recovery_rate": 0.0, "abandonment_rate": 0.0, "gave_up_rate": 0.0,
        "time_to_recovery_s": {"p50": None, "p90": None},
    },
    "unknown": {
        "pages_shown": 1, "recovered": 0, "abandoned": 0, "gave_up": 1,
        "recovery_rate": 0.0, "abandonment_rate": 0.0, "gave_up_rate": 1.0,
        "time_to_recovery_s": {"p50": None, "p90": None},
    },
}  # fmt: skip

ROUTES_HISTORY: list[Event] = [
    # Written before the adapters added the slash (Django's templates have none) ...
    fail(10, "P1", "prices/"), page(11, "P1", "shown", 0, 100),
    # ... and after.
    fail(20, "P2", "/prices/"), page(21, "P2", "shown", 0, 100),
    page(30, "P2", "recovered", 1, 9_100),
    fail(30, "X", "/other/"),
    fail(40, "N", None),
]  # fmt: skip

EXPECTED_ROUTES = [
    {"route": "/prices/", "failures": 2, "pages_shown": 2, "recovered": 1},
    {"route": "/other/", "failures": 1, "pages_shown": 0, "recovered": 0},
    {"route": "unknown", "failures": 1, "pages_shown": 0, "recovered": 0},
]


def make_store(path: Path, events: list[Event]) -> Path:
    recorder = SQLiteRecorder(path)
    recorder.record(events)
    recorder.close()
    return path


def check_sources(report: dict[str, Any]) -> None:
    scenario.check(report, EXPECTED_SOURCES)
    assert report["per_source"] == EXPECTED_PER_SOURCE


def check_routes(store: str) -> None:
    report = json.loads(generate(store, fmt="json", **WINDOW))
    assert report["by_route"] == EXPECTED_ROUTES
    for route in ("/prices/", "prices/", " /prices/ "):
        only = json.loads(generate(store, fmt="json", route=route, **WINDOW))
        assert only["route"] == "/prices/"
        assert (only["failures"], only["pages_shown"], only["recovered"]) == (2, 2, 1), route
        assert only["by_route"] == EXPECTED_ROUTES[:1]
    blank = json.loads(generate(store, fmt="json", route="  ", **WINDOW))
    assert (blank["route"], blank["failures"]) == (None, 4)
    unknown = json.loads(generate(store, fmt="json", route="unknown", **WINDOW))
    assert (unknown["failures"], unknown["by_route"]) == (1, EXPECTED_ROUTES[2:])


def test_by_source_and_per_source(tmp_path: Path) -> None:
    store = make_store(tmp_path / "events.sqlite3", SOURCES_HISTORY)
    check_sources(json.loads(generate(str(store), fmt="json", **WINDOW)))


def test_route_labels_are_compared_with_a_leading_slash(tmp_path: Path) -> None:
    check_routes(str(make_store(tmp_path / "events.sqlite3", ROUTES_HISTORY)))


def test_sources_in_table_csv_and_html(tmp_path: Path) -> None:
    store = str(make_store(tmp_path / "events.sqlite3", SOURCES_HISTORY))
    table = generate(store, **WINDOW)
    assert "By source           app 2, gateway 2, worker 1" in table
    lines = table.splitlines()
    assert lines[lines.index(next(x for x in lines if x.startswith("Source"))) + 2].split() == [
        "gateway", "2", "2", "1", "1", "0", "40.1", "s",
    ]  # fmt: skip
    assert "by_source,gateway,2" in generate(store, fmt="csv", **WINDOW).splitlines()
    page_html = generate(store, fmt="html", **WINDOW)
    assert "<tr><td>gateway</td><td class=n>2</td><td class=n>2</td>" in page_html


def test_a_store_from_before_the_source_column_is_all_app(tmp_path: Path) -> None:
    store = make_store(tmp_path / "events.sqlite3", scenario.events())
    with sqlite3.connect(store) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(gracefail_failures)")}
        if "source" in columns:
            conn.execute("ALTER TABLE gracefail_failures DROP COLUMN source")
    conn.close()
    report = json.loads(generate(str(store), fmt="json", **WINDOW))
    scenario.check(report, scenario.EXPECTED)
    assert report["by_source"] == {"app": 7, "gateway": 0, "worker": 0}
    assert report["per_source"]["app"]["pages_shown"] == 6


def test_report_is_a_dataclass_whose_json_is_its_dict(tmp_path: Path) -> None:
    store = make_store(tmp_path / "events.sqlite3", scenario.events())
    report = load_report(store, **WINDOW)  # a path object is a file path, as in Config.store
    assert isinstance(report, Report)
    assert report.outcomes.recovery_rate == 0.5
    assert report.per_source["app"].time_to_recovery.p90 == 26.504
    assert json.loads(report.to_json()) == report.as_dict()
    assert json.loads(generate(str(store), fmt="json", **WINDOW)) == report.as_dict()
    documented = {
        "store", "window", "route", "failures", "probes", "planned", "by_status", "by_cause",
        "by_source",
        "by_route", "per_hour", "per_day", "pages_shown", "recovered", "abandoned", "gave_up",
        "recovery_rate", "abandonment_rate", "gave_up_rate", "duplicate_outcomes",
        "time_to_recovery_s", "time_to_recovery_histogram", "user_minutes_lost", "per_source",
        "episode_gap_min", "episodes_total", "episodes", "planned_episodes_total",
        "planned_episodes", "shed", "spikes", "spike_detection", "comparison",
    }  # fmt: skip
    assert set(report.as_dict()) == documented


@pytest.mark.parametrize("fmt", ["xml", ""])
def test_unknown_format_is_a_report_error(tmp_path: Path, fmt: str) -> None:
    from gracefail.report import ReportError

    with pytest.raises(ReportError, match="is not one of table, json, csv, html"):
        generate(str(tmp_path / "never-read.db"), fmt=fmt)
