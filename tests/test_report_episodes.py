"""Outage episodes: a run with two separated outages (one served by the app, one by the
gateway) gives two episodes with the right numbers, on SQLite and on PostgreSQL.

Events go in through the real recorders; the report reads the real store.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gracefail.cli import main
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import ReportError, generate, load_report
from gracefail.report.episodes import EPISODE_LIMIT
from tests.recorders.conftest import pg_dsn, pg_server  # noqa: F401 - fixtures for the PostgreSQL runs

T = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
WINDOW = {"since": "2024-05-01T09:00:00Z", "until": "2024-05-01T13:00:00Z"}


def fail(
    at: float, incident: str, route: str | None, *, source: str = "app", status: int = 502,
    cause: str = "connection", probe: bool = False,
) -> ServerEvent:  # fmt: skip
    return ServerEvent(
        time=T + at, incident=incident, status=status, cause=cause, method="GET", route=route,
        reply_format="html", probe=probe, app_ms=0.0, source=source,
    )  # fmt: skip


def view(at: float, incident: str, outcome: str | None, after_s: float) -> list[ClientEvent]:
    """A page view: shown 0.1 s into the page, then its outcome ``after_s`` seconds in,
    arriving on the server's clock no earlier than it could have happened."""
    shown = ClientEvent(T + at + 0.2, incident, "shown", 0, 100, "en")
    if outcome is None:
        return [shown]
    ms = int(after_s * 1000) + 100
    return [shown, ClientEvent(T + at + after_s + 1, incident, outcome, 2, ms, "en")]


def app_outage() -> list[Event]:
    """10:00:00 to 10:04:00, the app's middleware: 9 failures 30 s apart (7 on /checkout,
    2 timeouts on /items/{id}), 4 pages shown: 3 recover after 10, 20 and 30 s, 1 is
    abandoned after 40 s; the page's probes are not failures."""
    events: list[Event] = []
    for i in range(9):
        items = i in (2, 5)
        events.append(fail(
            i * 30, f"A{i}", "/items/{id}" if items else "/checkout",
            status=504 if items else 502, cause="timeout" if items else "connection",
        ))  # fmt: skip
        events.append(fail(i * 30 + 5, f"A{i}-probe", "/checkout", probe=True))
    events += view(0, "A0", "recovered", 10)
    events += view(30, "A1", "recovered", 20)
    events += view(60, "A2", "recovered", 30)
    events += view(90, "A3", "abandoned", 40)
    return events


def gateway_outage() -> list[Event]:
    """11:00:00 to 11:02:00, ``gracefail serve`` while the app was down: 7 failures 20 s
    apart, 3 pages shown: 1 recovers after 60 s, 1 gives up after 90 s, 1 is abandoned
    after 15 s."""
    events: list[Event] = [
        fail(3600 + i * 20, f"G{i}", "/checkout" if i < 4 else "/", source="gateway")
        for i in range(7)
    ]
    events += view(3600, "G0", "recovered", 60)
    events += view(3620, "G1", "gave_up", 90)
    events += view(3640, "G2", "abandoned", 15)
    return events


HISTORY: list[Event] = [*app_outage(), *gateway_outage()]

EXPECTED_GATEWAY: dict[str, Any] = {
    "start": "2024-05-01T11:00:00Z",
    "end": "2024-05-01T11:02:00Z",
    "duration_s": 120.0,
    "source": "gateway",
    "by_source": {"gateway": 7},
    "failures": 7,
    "by_status": {"502": 7, "504": 0},
    "by_cause": {"connection": 7},
    "pages_shown": 3,
    "recovered": 1,
    "abandoned": 1,
    "gave_up": 1,
    "recovery_rate": 0.3333,
    "abandonment_rate": 0.3333,
    "gave_up_rate": 0.3333,
    "time_to_recovery_s": {"p50": 60.1, "p90": 60.1},
    "user_minutes_lost": round((60 + 90 + 15) / 60, 2),
    "top_routes": [{"route": "/checkout", "failures": 4}, {"route": "/", "failures": 3}],
    "ongoing": False,
    "planned": False,
}
EXPECTED_APP: dict[str, Any] = {
    "start": "2024-05-01T10:00:00Z",
    "end": "2024-05-01T10:04:00Z",
    "duration_s": 240.0,
    "source": "app",
    "by_source": {"app": 9},
    "failures": 9,
    "by_status": {"502": 7, "504": 2},
    "by_cause": {"connection": 7, "timeout": 2},
    "pages_shown": 4,
    "recovered": 3,
    "abandoned": 1,
    "gave_up": 0,
    "recovery_rate": 0.75,
    "abandonment_rate": 0.25,
    "gave_up_rate": 0.0,
    # 10.1, 20.1, 30.1 s: p90 is 20.1 + 0.8 * 10
    "time_to_recovery_s": {"p50": 20.1, "p90": 28.1},
    "user_minutes_lost": round((10 + 20 + 30 + 40) / 60, 2),
    "top_routes": [{"route": "/checkout", "failures": 7}, {"route": "/items/{id}", "failures": 2}],
    "ongoing": False,
    "planned": False,
}


def fill_sqlite(path: Path, events: list[Event]) -> str:
    recorder = SQLiteRecorder(path)
    recorder.record(events)
    recorder.close()
    return str(path)


def fill_postgres(dsn: str, events: list[Event]) -> str:
    from gracefail.recorders.postgres import PostgresRecorder

    recorder = PostgresRecorder(dsn)
    recorder.record(events)
    recorder.close()
    return dsn


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def fill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``fill(events)``: a store of the parameter's kind holding ``events``; its URL or path."""
    if request.param == "sqlite":
        yield lambda events: fill_sqlite(tmp_path / "events.sqlite3", events)
    else:
        dsn = request.getfixturevalue("pg_dsn")
        yield lambda events: fill_postgres(dsn, events)


def test_two_separated_outages_are_two_episodes_with_their_numbers(fill: Any) -> None:
    store = fill(HISTORY)
    report = json.loads(generate(store, fmt="json", **WINDOW))
    assert report["episode_gap_min"] == 5.0
    assert report["episodes_total"] == 2
    newest, oldest = report["episodes"]
    assert newest == EXPECTED_GATEWAY
    assert oldest == EXPECTED_APP
    # The episodes add up to the window (every page view here belongs to one).
    assert report["failures"] == newest["failures"] + oldest["failures"] == 16
    assert report["pages_shown"] == 7
    assert report["user_minutes_lost"] == pytest.approx(
        newest["user_minutes_lost"] + oldest["user_minutes_lost"], abs=0.01
    )


def test_the_gap_decides_what_is_one_episode(fill: Any) -> None:
    store = fill(HISTORY)
    one = json.loads(generate(store, fmt="json", episode_gap="90", **WINDOW))
    assert one["episodes_total"] == 1, "an hour apart: one episode with a 90-minute gap"
    assert one["episodes"][0]["source"] == "mixed"
    assert one["episodes"][0]["by_source"] == {"app": 9, "gateway": 7}
    split = json.loads(generate(store, fmt="json", episode_gap=0.25, **WINDOW))
    # 15 s: the app's failures (30 s apart) are 9 episodes, the gateway's (20 s) 7.
    assert split["episodes_total"] == 16
    assert split["episode_gap_min"] == 0.25


def test_route_filter_applies_to_episodes(fill: Any) -> None:
    store = fill(HISTORY)
    report = json.loads(generate(store, fmt="json", route="/items/{id}", **WINDOW))
    [episode] = report["episodes"]
    assert (episode["failures"], episode["by_status"]) == (2, {"502": 0, "504": 2})
    assert (episode["start"], episode["end"]) == ("2024-05-01T10:01:00Z", "2024-05-01T10:02:30Z")
    # A2 (failed at 10:01:00) was shown and recovered after 30 s.
    assert (episode["pages_shown"], episode["recovered"]) == (1, 1)


def test_an_episode_near_the_end_of_the_window_is_ongoing(tmp_path: Path) -> None:
    store = fill_sqlite(tmp_path / "events.sqlite3", HISTORY)
    report = load_report(store, since="2024-05-01T09:00:00Z", until="2024-05-01T11:04:00Z")
    assert [e.ongoing for e in report.episodes] == [True, False]
    assert "(ongoing)" in generate(store, since="2024-05-01T09:00:00Z",
                                   until="2024-05-01T11:04:00Z")  # fmt: skip


def test_episodes_in_table_csv_and_html(tmp_path: Path) -> None:
    store = fill_sqlite(tmp_path / "events.sqlite3", HISTORY)
    table = generate(store, **WINDOW)
    assert "Outage episodes     2" in table
    assert "Outage episodes (newest first; a quiet gap of 5 min ends one)" in table
    rows = [line.split() for line in table.splitlines() if line.startswith("2024-05-01T1")]
    assert rows[0][:9] == ["2024-05-01T11:00", "2.0", "min", "gateway", "7", "3", "33.3%",
                           "33.3%", "60.1"]  # fmt: skip
    assert rows[1][:9] == ["2024-05-01T10:00", "4.0", "min", "app", "9", "4", "75.0%",
                           "25.0%", "20.1"]  # fmt: skip

    table_csv = list(csv.reader(io.StringIO(generate(store, fmt="csv", **WINDOW))))
    cells = {(metric, key): value for metric, key, value in table_csv[1:]}
    assert cells["episodes_total", ""] == "2"
    assert cells["episode.failures", "2024-05-01T11:00:00Z"] == "7"
    assert cells["episode.source", "2024-05-01T10:00:00Z"] == "app"
    assert cells["episode.time_to_recovery_s.p90", "2024-05-01T10:00:00Z"] == "28.1"
    assert cells["episode.ongoing", "2024-05-01T10:00:00Z"] == "false"
    assert cells["episode.planned", "2024-05-01T10:00:00Z"] == "false"
    assert ("planned_episodes_total", "") not in cells, "no planned downtime, no rows for it"

    page = generate(store, fmt="html", **WINDOW)
    assert page.count('aria-label="Outage episodes over the window, coloured by source"') == 1
    # One bar per episode (a single source each), in its source's colour.
    assert page.count('fill="#d97706"><title>2024-05-01T11:00:00Z for 2.0 min: 7 failures') == 1
    assert page.count('fill="#2563eb"><title>2024-05-01T10:00:00Z for 4.0 min: 9 failures') == 1
    assert '<span class="sw sw-gateway"></span>gateway</td><td class=n>7</td>' in page


def test_a_mixed_episode_is_drawn_stacked_by_source(tmp_path: Path) -> None:
    store = fill_sqlite(tmp_path / "events.sqlite3", HISTORY)
    page = generate(store, fmt="html", episode_gap="90", **WINDOW)
    # 9 app failures over 16: 56.25% of the bar's 30 px height, then the gateway's 7.
    assert 'height="16.9" fill="#2563eb"' in page
    assert 'height="13.1" fill="#d97706"' in page


def test_only_the_newest_episodes_are_listed(tmp_path: Path) -> None:
    events: list[Event] = [fail(i * 600, f"E{i}", "/a") for i in range(EPISODE_LIMIT + 5)]
    store = fill_sqlite(tmp_path / "events.sqlite3", events)
    report = load_report(store, since="2024-05-01T09:00:00Z", until="2024-05-02T09:00:00Z")
    assert report.episodes_total == EPISODE_LIMIT + 5
    assert len(report.episodes) == EPISODE_LIMIT
    assert report.episodes[0].start > report.episodes[-1].start
    assert report.episodes[-1].start == datetime.fromtimestamp(T + 5 * 600, UTC)
    assert "The 100 newest of 105 episodes" in generate(
        store, fmt="html", since="2024-05-01T09:00:00Z", until="2024-05-02T09:00:00Z"
    )


def test_probes_and_page_views_of_older_failures_are_in_no_episode(tmp_path: Path) -> None:
    events: list[Event] = [
        fail(-7200, "OLD", "/a"),  # before the window: its page view's report arrives inside
        *view(-7200 + 7000, "OLD", "recovered", 5),
        fail(10, "P", "/a", probe=True),
        fail(20, "N", "/a"),
    ]
    store = fill_sqlite(tmp_path / "events.sqlite3", events)
    report = json.loads(generate(store, fmt="json", **WINDOW))
    [episode] = report["episodes"]
    assert (episode["failures"], episode["pages_shown"]) == (1, 0)
    assert report["pages_shown"] == 1, "counted in the window, in no episode"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("0", "--episode-gap '0' is not valid", id="zero"),
        pytest.param("-5", "--episode-gap '-5' is not valid", id="negative"),
        pytest.param("five", "--episode-gap 'five' is not valid", id="words"),
        pytest.param("nan", "--episode-gap 'nan' is not valid", id="nan"),
        pytest.param("1441", "at most 1440", id="over-a-day"),
    ],
)
def test_a_bad_episode_gap_is_a_clear_error(tmp_path: Path, value: str, message: str) -> None:
    store = fill_sqlite(tmp_path / "events.sqlite3", HISTORY)
    with pytest.raises(ReportError, match=message):
        generate(store, episode_gap=value, **WINDOW)
    result = CliRunner().invoke(main, ["report", "--store", store, "--episode-gap", value])
    assert result.exit_code == 1
    assert "--episode-gap" in result.output
    assert "Traceback" not in result.output


def test_a_failure_stored_twice_counts_its_page_view_once(tmp_path: Path) -> None:
    """A proxy's gateway replacing the app's own 502 records the same incident twice
    (docs/gateway.md): two failures, but one page view, in the episode."""
    events: list[Event] = [
        fail(0, "D", "/a"),
        fail(0.5, "D", "/a", source="gateway"),
        *view(0, "D", "recovered", 12),
    ]
    store = fill_sqlite(tmp_path / "events.sqlite3", events)
    [episode] = json.loads(generate(store, fmt="json", **WINDOW))["episodes"]
    assert (episode["failures"], episode["source"]) == (2, "mixed")
    assert (episode["pages_shown"], episode["recovered"]) == (1, 1)
    assert episode["time_to_recovery_s"] == {"p50": 12.1, "p90": 12.1}
