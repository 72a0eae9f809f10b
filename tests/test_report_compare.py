"""``--compare previous``: the same length of time just before the window, beside it, in
every format; a window without data says so; bad ``--compare``/``--format`` values are
clear errors. Events go in through the real SQLite recorder."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gracefail.cli import main
from gracefail.events import Event
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import ReportError, generate, load_report
from tests.test_report_episodes import fail, view

# This window: 11:00-13:00. The previous one: 09:00-11:00.
THIS = {"since": "2024-05-01T11:00:00Z", "until": "2024-05-01T13:00:00Z"}
T11 = 3600.0  # seconds after 10:00, the history's origin

HISTORY: list[Event] = [
    # Before: 2 failures, both pages recover, after 10 s and 30 s.
    fail(-1800, "P1", "/a"), *view(-1800, "P1", "recovered", 10),
    fail(-900, "P2", "/a"), *view(-900, "P2", "recovered", 30),
    # Now: 4 failures; 2 pages recover after 20 s and 40 s, 1 is abandoned after 60 s.
    fail(T11 + 60, "N1", "/a"), *view(T11 + 60, "N1", "recovered", 20),
    fail(T11 + 120, "N2", "/a"), *view(T11 + 120, "N2", "recovered", 40),
    fail(T11 + 180, "N3", "/a"), *view(T11 + 180, "N3", "abandoned", 60),
    fail(T11 + 240, "N4", "/b"),
]  # fmt: skip

EXPECTED: dict[str, dict[str, Any]] = {
    "failures": {"current": 4, "previous": 2, "change": 2, "change_ratio": 1.0,
                 "trend": "worse"},
    "pages_shown": {"current": 3, "previous": 2, "change": 1, "change_ratio": 0.5,
                    "trend": "worse"},
    "recovery_rate": {"current": 0.6667, "previous": 1.0, "change": -0.3333,
                      "change_ratio": -0.3333, "trend": "worse"},
    "abandonment_rate": {"current": 0.3333, "previous": 0.0, "change": 0.3333,
                         "change_ratio": None, "trend": "worse"},
    "time_to_recovery_p50_s": {"current": 30.1, "previous": 20.1, "change": 10.0,
                               "change_ratio": 0.4975, "trend": "worse"},
    "time_to_recovery_p90_s": {"current": 38.1, "previous": 28.1, "change": 10.0,
                               "change_ratio": 0.3559, "trend": "worse"},
    "user_minutes_lost": {"current": 2.0, "previous": 0.67, "change": 1.33,
                          "change_ratio": 1.9851, "trend": "worse"},
}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> str:
    recorder = SQLiteRecorder(tmp_path / "events.sqlite3")
    recorder.record(HISTORY)
    recorder.close()
    return str(tmp_path / "events.sqlite3")


def test_compare_previous_in_json(store: str) -> None:
    report = json.loads(generate(store, fmt="json", compare="previous", **THIS))
    comparison = report["comparison"]
    assert comparison["against"] == "previous"
    assert comparison["window"] == {"since": "2024-05-01T09:00:00Z",
                                    "until": "2024-05-01T11:00:00Z"}  # fmt: skip
    assert comparison["note"] is None
    assert comparison["metrics"] == EXPECTED
    assert json.loads(generate(store, fmt="json", **THIS))["comparison"] is None


def test_a_better_window_is_better(store: str) -> None:
    """Seen from the earlier window, the later one's numbers are the change the other way."""
    report = load_report(store, compare="previous", since="2024-05-01T09:00:00Z",
                         until="2024-05-01T11:00:00Z")  # fmt: skip
    assert report.comparison is not None
    assert report.comparison.note is not None  # 07:00-09:00 has nothing
    later = load_report(store, compare="previous", **THIS).comparison
    assert later is not None
    trends = {c.name: c.trend for c in later.changes}
    assert set(trends.values()) == {"worse"}


def test_compare_previous_in_table_csv_and_html(store: str) -> None:
    table = generate(store, compare="previous", **THIS)
    assert "Compared with the previous window (2024-05-01T09:00:00Z .. 2024-05-01T11:00:00Z)" in (
        table
    )
    for row in (
        "Failures                             4             2  +2 (+100%)  (worse)",
        "Recovery rate                    66.7%        100.0%  -33.3 pts  (worse)",
        "Time to recovery p50            30.1 s        20.1 s  +10.0 s (+50%)  (worse)",
        "User-minutes lost                  2.0           0.7  +1.3 (+199%)  (worse)",
    ):
        assert row in table.splitlines()

    cells = {
        (metric, key): value
        for metric, key, value in list(
            csv.reader(io.StringIO(generate(store, fmt="csv", compare="previous", **THIS)))
        )[1:]
    }
    assert cells["comparison.against", ""] == "previous"
    assert cells["comparison.window", "since"] == "2024-05-01T09:00:00Z"
    assert cells["comparison.previous", "failures"] == "2"
    assert cells["comparison.change", "recovery_rate"] == "-0.3333"
    assert cells["comparison.change_ratio", "abandonment_rate"] == ""
    assert cells["comparison.trend", "user_minutes_lost"] == "worse"

    page = generate(store, fmt="html", compare="previous", **THIS)
    assert "<h2>Compared with the previous window</h2>" in page
    assert (
        '<td>Failures</td><td class=n>4</td><td class=n>2</td><td class="n worse">+2 (+100%)</td>'
        in (page)
    )
    assert "Compared with the previous window" not in generate(store, fmt="html", **THIS)


@pytest.mark.parametrize("fmt", ["json", "table", "csv", "html"])
def test_a_previous_window_without_data_says_so(store: str, fmt: str) -> None:
    window = {"since": "2024-05-01T09:00:00Z", "until": "2024-05-01T11:00:00Z"}
    text = generate(store, fmt=fmt, compare="previous", **window)
    message = (
        "The previous window (2024-05-01T07:00:00Z to 2024-05-01T09:00:00Z) has no failure "
        "and no page report: nothing to compare with."
    )
    assert message in (json.loads(text)["comparison"]["note"] if fmt == "json" else text)


def test_an_empty_window_says_so_too(store: str) -> None:
    text = generate(store, compare="previous", since="2024-05-01T14:00:00Z",
                    until="2024-05-01T15:00:00Z")  # fmt: skip
    assert "No failures and no page reports in this window." in text
    assert "Neither this window nor the previous one (2024-05-01T13:00:00Z to" in text
    data = json.loads(generate(store, fmt="json", compare="previous", since="2024-05-01T12:00:00Z",
                               until="2024-05-01T14:00:00Z"))  # fmt: skip
    assert data["comparison"]["note"] == (
        "This window has no failure and no page report: nothing to compare."
    )


def test_unknown_compare_and_format_values_are_clear_errors(store: str) -> None:
    with pytest.raises(ReportError, match=r"--compare 'last-week' is not one of previous"):
        generate(store, compare="last-week", **THIS)
    with pytest.raises(ReportError, match="format 'xml' is not one of table, json, csv, html"):
        generate(store, fmt="xml", compare="previous", **THIS)
    runner = CliRunner()
    for args, message in (
        (
            ["--compare", "yesterday"],
            "Invalid value for '--compare': 'yesterday' is not 'previous'",
        ),
        (["--format", "xml"], "Invalid value for '--format': 'xml' is not one of"),
    ):
        result = runner.invoke(main, ["report", "--store", store, *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output


def test_the_command_compares(store: str) -> None:
    result = CliRunner().invoke(
        main, ["report", "--store", store, "--since", THIS["since"], "--until", THIS["until"],
               "--compare", "previous", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["comparison"]["metrics"] == EXPECTED
