"""The report on requests shed under load (issue 17): counted apart from the failures,
with what happened to the shed users, in every format."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import generate, load_report

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
WINDOW = {"since": "2024-05-01T09:00:00Z", "until": "2024-05-01T13:00:00Z"}


def served(
    n: int, status: int, cause: str, error_type: str | None, probe: bool = False
) -> ServerEvent:
    return ServerEvent(
        time=START + n, incident=f"i{n}", status=status, cause=cause, method="GET",
        route="/shop", reply_format="html", probe=probe, error_type=error_type,
    )  # fmt: skip


def beacon(n: int, kind: str, elapsed_ms: int) -> ClientEvent:
    return ClientEvent(START + n + elapsed_ms / 1000.0, f"i{n}", kind, 1, elapsed_ms, "en")


def make_store(path: Path) -> str:
    events: list[Event] = [
        served(1, 502, "connection", "ConnectionError"),
        beacon(1, "shown", 100),
        beacon(1, "recovered", 9_000),
        # Three users shed (two for the queue, one for the limit), one probe.
        served(2, 503, "overload", "overload.queue"),
        served(3, 503, "overload", "overload.queue"),
        served(4, 503, "overload", "overload.concurrency"),
        served(5, 503, "overload", "overload.concurrency", probe=True),
        beacon(2, "shown", 120),
        beacon(2, "recovered", 4_000),
        beacon(3, "shown", 90),
        beacon(3, "abandoned", 2_000),
    ]
    recorder = SQLiteRecorder(path)
    recorder.record(events)
    recorder.close()
    return str(path)


def test_shed_requests_are_apart_from_the_failures_with_their_users_outcomes(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path / "events.sqlite3")
    report = load_report(store, **WINDOW)
    assert (report.failures, report.probes) == (1, 0)
    assert "overload" not in report.by_cause
    assert "503" not in report.by_status
    assert [row.failures for row in report.by_route] == [1]
    assert (report.outcomes.pages_shown, report.outcomes.recovered) == (1, 1)
    shed = report.shed
    assert (shed.requests, shed.probes) == (3, 1)
    assert dict(shed.by_reason) == {"concurrency": 1, "queue": 2}
    views = shed.outcomes
    assert (views.pages_shown, views.recovered, views.abandoned, views.gave_up) == (2, 1, 1, 0)
    assert views.time_to_recovery.p50 == 4.0

    data = json.loads(generate(store, fmt="json", **WINDOW))
    assert data["failures"] == 1
    assert data["shed"]["requests"] == 3
    assert data["shed"]["by_reason"] == {"queue": 2, "concurrency": 1}
    assert (data["shed"]["recovered"], data["shed"]["abandoned"]) == (1, 1)
    table = generate(store, fmt="table", **WINDOW)
    assert "Shed under load" in table
    assert "3 busy pages (not counted as failures)" in table
    assert "recovered 1 (50.0%)" in table
    rows = list(csv.reader(io.StringIO(generate(store, fmt="csv", **WINDOW))))
    assert ["shed_requests", "", "3"] in rows
    assert ["shed_recovered", "", "1"] in rows
    assert ["shed_abandoned", "", "1"] in rows
    assert ["shed_by_reason", "queue", "2"] in rows
    html = generate(store, fmt="html", **WINDOW)
    assert "shed under load: 3 busy pages" in html
    assert "abandoned 1" in html

