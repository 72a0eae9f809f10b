"""Planned downtime apart from outages: maintenance pages are counted as ``planned`` in
every format of the report, never as failures, in routes, episodes or per hour."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

from gracefail.events import ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import generate, load_report

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
WINDOW = {"since": "2024-05-01T09:00:00Z", "until": "2024-05-01T13:00:00Z"}


def event(n: int, cause: str, status: int, probe: bool = False) -> ServerEvent:
    return ServerEvent(
        time=START + n * 10, incident=f"i-{cause}-{n}-{probe}", status=status, cause=cause,
        method="GET", route="/shop", reply_format="html", probe=probe,
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
