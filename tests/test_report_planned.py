"""Planned downtime apart from outages: maintenance pages are counted as ``planned`` in
every format of the report, never as failures, in routes, episodes or per hour."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gracefail.events import ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import generate, load_report
from tests.recorders.conftest import pg_dsn, pg_server  # noqa: F401 - fixtures for the PostgreSQL runs

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
WINDOW = {"since": "2024-05-01T09:00:00Z", "until": "2024-05-01T13:00:00Z"}


def event(n: int, cause: str, status: int, probe: bool = False) -> ServerEvent:
    return ServerEvent(
        time=START + n * 10, incident=f"i-{cause}-{n}-{probe}", status=status, cause=cause,
        method="GET", route="/shop", reply_format="html", probe=probe, source="app",
    )  # fmt: skip


def make_store(path: Path) -> str:
    recorder = SQLiteRecorder(path)
    events = [event(n, "timeout", 504) for n in range(3)]
    events += [event(100 + n, "maintenance", 503) for n in range(5)]
    events.append(event(200, "maintenance", 503, probe=True))
    recorder.record(events)
    recorder.close()
    return str(path)


def test_planned_downtime_is_counted_apart_in_every_format(tmp_path: Path) -> None:
    store = make_store(tmp_path / "events.sqlite3")
    report = load_report(store, **WINDOW)
    assert report.failures == 3
    assert report.planned == 5
    assert "maintenance" not in report.by_cause
    assert "503" not in report.by_status
    assert [row.failures for row in report.by_route] == [3]
    assert sum(row.failures for row in report.per_hour) == 3
    assert sum(e.failures for e in report.episodes) == 3

    data = json.loads(generate(store, fmt="json", **WINDOW))
    assert (data["failures"], data["planned"]) == (3, 5)
    table = generate(store, fmt="table", **WINDOW)
    assert "Planned downtime" in table
    assert "5 maintenance pages (not counted as failures)" in table
    rows = list(csv.reader(io.StringIO(generate(store, fmt="csv", **WINDOW))))
    assert ["planned", "", "5"] in rows
    assert ["failures", "", "3"] in rows
    html = generate(store, fmt="html", **WINDOW)
    assert "planned downtime: 5 maintenance pages" in html


def test_a_window_with_only_planned_downtime_is_not_empty(tmp_path: Path) -> None:
    recorder = SQLiteRecorder(tmp_path / "events.sqlite3")
    recorder.record([event(n, "maintenance", 503) for n in range(4)])
    recorder.close()
    report = load_report(str(tmp_path / "events.sqlite3"), **WINDOW)
    assert report.failures == 0
    assert report.planned == 4
    assert not report.empty
    assert "4 maintenance pages" in generate(str(tmp_path / "events.sqlite3"), **WINDOW)


# -- planned episodes ---------------------------------------------------------------------


def maintenance_run(first: float, pages: int, every: float, route: str, source: str = "app"):  # type: ignore[no-untyped-def]
    return [
        ServerEvent(
            time=START + first + i * every,
            incident=f"m-{first}-{i}",
            status=503,
            cause="maintenance",
            method="GET",
            route=route,
            reply_format="html",
            probe=False,
            source=source,
        )
        for i in range(pages)
    ]


def planned_history() -> list[ServerEvent]:
    """10:00-10:00:20 an outage (3 timeouts); 10:01-10:05 planned maintenance, 9 pages 30 s
    apart (within the gap of the outage: still apart from it), with the gateway's too;
    11:00-11:01 a second maintenance, 4 pages on /checkout."""
    events = [event(n, "timeout", 504) for n in range(3)]
    events += maintenance_run(60, 9, 30, "/shop")
    events += maintenance_run(75, 2, 60, "/shop", source="gateway")
    events += maintenance_run(3600, 4, 20, "/checkout")
    # The maintenance page's probes are not pages users met.
    events.append(event(400, "maintenance", 503, probe=True))
    return events


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def planned_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        recorder = SQLiteRecorder(tmp_path / "events.sqlite3")
        recorder.record(planned_history())
        recorder.close()
        return str(tmp_path / "events.sqlite3")
    from gracefail.recorders.postgres import PostgresRecorder

    dsn: str = request.getfixturevalue("pg_dsn")
    postgres = PostgresRecorder(dsn)
    postgres.record(planned_history())
    postgres.close()
    return dsn


def test_maintenance_runs_are_planned_episodes_never_outages(planned_store: str) -> None:
    report = load_report(planned_store, **WINDOW)
    # The outage alone is an outage episode, though maintenance followed within the gap.
    assert report.episodes_total == 1
    [outage] = report.episodes
    assert (outage.failures, outage.planned, dict(outage.by_cause)) == (3, False, {"timeout": 3})
    assert report.failures == 3
    assert report.planned == 15
    assert report.planned_episodes_total == 2
    newest, oldest = report.planned_episodes
    assert all(e.planned for e in report.planned_episodes)
    assert (newest.failures, newest.duration_s, newest.source) == (4, 60.0, "app")
    assert [r.route for r in newest.top_routes] == ["/checkout"]
    assert (oldest.failures, oldest.duration_s, oldest.source) == (11, 240.0, "mixed")
    assert dict(oldest.by_source) == {"app": 9, "gateway": 2}
    assert dict(oldest.by_status) == {"503": 11}
    assert dict(oldest.by_cause) == {"maintenance": 11}
    assert oldest.outcomes.pages_shown == 0
    assert oldest.user_minutes_lost == 0.0

    data = json.loads(generate(planned_store, fmt="json", **WINDOW))
    assert data["episodes_total"] == 1
    assert [e["planned"] for e in data["episodes"]] == [False]
    assert data["planned_episodes_total"] == 2
    assert [(e["planned"], e["start"], e["failures"]) for e in data["planned_episodes"]] == [
        (True, "2024-05-01T11:00:00Z", 4),
        (True, "2024-05-01T10:01:00Z", 11),
    ]


def test_planned_episodes_are_marked_in_table_csv_and_html(planned_store: str) -> None:
    table = generate(planned_store, **WINDOW)
    assert "Outage episodes     1" in table
    assert "Planned episodes    2  (not outages)" in table
    assert "Planned maintenance episodes (planned, not outages; newest first)" in table
    planned_rows = [line.split() for line in table.splitlines() if line.endswith("(planned)")]
    assert [row[:6] for row in planned_rows] == [
        ["2024-05-01T11:00", "60.0", "s", "app", "4", "/checkout"],
        ["2024-05-01T10:01", "4.0", "min", "mixed", "11", "/shop"],
    ]

    rows = list(csv.reader(io.StringIO(generate(planned_store, fmt="csv", **WINDOW))))
    cells = {(metric, key): value for metric, key, value in rows[1:]}
    assert cells["episodes_total", ""] == "1"
    assert cells["episode.planned", "2024-05-01T10:00:00Z"] == "false"
    assert cells["planned_episodes_total", ""] == "2"
    assert cells["planned_episode.planned", "2024-05-01T11:00:00Z"] == "true"
    assert cells["planned_episode.failures", "2024-05-01T10:01:00Z"] == "11"
    assert cells["planned_episode.by_source.gateway", "2024-05-01T10:01:00Z"] == "2"
    assert ("episode.failures", "2024-05-01T10:01:00Z") not in cells

    page = generate(planned_store, fmt="html", **WINDOW)
    assert "<h2>Planned maintenance episodes</h2>" in page
    assert page.count('<span class="tag planned">planned</span>') == 2
    assert page.count('fill="url(#gfr-planned)" data-planned="true">') == 2
    assert (
        "<title>planned maintenance (not an outage), 2024-05-01T11:00:00Z for 60.0 s: "
        "4 maintenance pages (app 4)</title>"
    ) in page
    assert "planned maintenance (not an outage)</span></p>" in page  # the legend
    assert '<div class="tile"><b>1</b><span>outage episodes</span></div>' in page
    assert '<div class="tile"><b>2</b><span>planned maintenance episodes</span></div>' in page


def test_without_maintenance_there_is_nothing_planned(tmp_path: Path) -> None:
    recorder = SQLiteRecorder(tmp_path / "events.sqlite3")
    recorder.record([event(n, "timeout", 504) for n in range(3)])
    recorder.close()
    store = str(tmp_path / "events.sqlite3")
    report = load_report(store, **WINDOW)
    assert (report.planned_episodes, report.planned_episodes_total) == ((), 0)
    assert "Planned maintenance episodes" not in generate(store, **WINDOW)
    assert "gfr-planned" not in generate(store, fmt="html", **WINDOW)
