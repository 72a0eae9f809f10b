"""`gracefail report` over a real SQLite store: numbers, window, route filter, formats, errors.

The same history runs against PostgreSQL in tests/recorders/test_store_postgres.py.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gracefail.cli import main
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import ReportError, generate, parse_since, parse_until
from gracefail.report.reader import describe_store
from tests.conftest import require
from tests.recorders import scenario


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "events.sqlite3"
    recorder = SQLiteRecorder(path)
    recorder.record(scenario.events())
    recorder.close()
    return path


def report_json(store: Path | str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main,
        ["report", "--store", str(store), "--since", scenario.SINCE, "--until", scenario.UNTIL,
         "--format", "json", *args],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_report_numbers(store: Path) -> None:
    scenario.check(report_json(store), scenario.EXPECTED)


def test_report_names_the_store_it_read(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(store.parent)
    assert report_json(store.name)["store"] == str(store.resolve())
    window = {"since": scenario.SINCE, "until": scenario.UNTIL}
    table = generate(store.name, **window).splitlines()
    assert table[1] == f"store: {store.resolve()}"
    assert f"store: {store.resolve()}<br>" in generate(store.name, fmt="html", **window)
    rows = csv.reader(io.StringIO(generate(store.name, fmt="csv", **window)))
    assert ["store", "", str(store.resolve())] in list(rows)


def test_a_postgresql_store_is_named_without_its_password() -> None:
    assert describe_store("postgresql://app:s3cret@db:5432/m") == "postgresql://app:***@db:5432/m"


def test_report_route_filter(store: Path) -> None:
    scenario.check(report_json(store, "--route", "/checkout"), scenario.EXPECTED_CHECKOUT)


def test_report_accepts_sqlite_urls(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(store.parent)
    relative = report_json(f"sqlite:///{store.name}")
    absolute = report_json(f"sqlite:///{store}")
    assert relative["failures"] == absolute["failures"] == 7


def test_report_store_defaults_to_gracefail_db(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRACEFAIL_DB", str(store))
    result = CliRunner().invoke(
        main, ["report", "--since", scenario.SINCE, "--until", scenario.UNTIL, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["failures"] == 7


def test_time_to_recovery_histogram(store: Path) -> None:
    histogram = report_json(store)["time_to_recovery_histogram"]
    counts = {bucket["upto_s"]: bucket["count"] for bucket in histogram}
    assert counts == {5: 1, 10: 0, 30: 1, 60: 1, 120: 0, 300: 0, 600: 0, None: 0}


@pytest.mark.parametrize(
    ("since", "until", "failures"),
    [
        pytest.param("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", 3, id="first-hour"),
        pytest.param("1h", "2024-05-01T12:00:00Z", 2, id="relative-1h"),
        pytest.param("90m", "2024-05-01T12:00:00+00:00", 2, id="relative-minutes"),
        pytest.param("2024-05-01T11:00:00", "2024-05-01T13:00:00", 4, id="naive-is-utc"),
        pytest.param("2024-05-01T12:00:00+02:00", "2024-05-01T13:00:00Z", 7, id="offset"),
        pytest.param("7d", "2024-05-01T13:00:00Z", 8, id="relative-days"),
    ],
)
def test_window(store: Path, since: str, until: str, failures: int) -> None:
    text = generate(str(store), since=since, until=until, fmt="json")
    assert json.loads(text)["failures"] == failures


def test_window_parsing() -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_until(None, now) == now
    assert parse_since(None, now) == datetime(2024, 4, 30, 12, tzinfo=UTC)
    assert parse_since("2w", now) == datetime(2024, 4, 17, 12, tzinfo=UTC)
    with pytest.raises(ReportError, match="is not a time"):
        parse_since("yesterday", now)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--since", "soon"], "is not a time", id="bad-since"),
        pytest.param(["--until", "2024-13-01"], "is not a time", id="bad-until"),
        pytest.param(
            ["--since", "2024-05-02T00:00:00Z", "--until", "2024-05-01T00:00:00Z"],
            "must be before",
            id="reversed",
        ),
    ],
)
def test_bad_window_is_a_clear_error(store: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["report", "--store", str(store), *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_empty_store_messages(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["report", "--store", str(tmp_path / "none.db")])
    assert missing.exit_code == 1
    assert "no gracefail store at" in missing.output
    assert not (tmp_path / "none.db").exists(), "the report must not create a store"

    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    foreign = runner.invoke(main, ["report", "--store", str(tmp_path / "other.db")])
    assert foreign.exit_code == 1
    assert "holds no gracefail events yet" in foreign.output

    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    junk = runner.invoke(main, ["report", "--store", str(tmp_path / "junk.db")])
    assert junk.exit_code == 1
    assert "not a readable gracefail store" in junk.output

    bad_url = runner.invoke(main, ["report", "--store", "mysql://db/x"])
    assert bad_url.exit_code == 1
    assert "store='mysql://db/x' is not valid" in bad_url.output
    for result in (missing, foreign, junk, bad_url):
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_empty_window_reports_zeros(store: Path) -> None:
    data = json.loads(generate(str(store), since="2030-01-01T00:00:00Z",
                               until="2030-01-02T00:00:00Z", fmt="json"))  # fmt: skip
    assert data["failures"] == data["pages_shown"] == 0
    assert data["recovery_rate"] == 0.0
    assert data["time_to_recovery_s"] == {"p50": None, "p90": None}
    table = generate(str(store), since="2030-01-01T00:00:00Z", until="2030-01-02T00:00:00Z")
    assert "No failures and no page reports in this window." in table
    assert "<svg" in generate(str(store), since="2030-01-01T00:00:00Z",
                              until="2030-01-02T00:00:00Z", fmt="html")  # fmt: skip


def test_table_format(store: Path) -> None:
    text = generate(str(store), since=scenario.SINCE, until=scenario.UNTIL)
    assert "Failures            7  (502: 6, 504: 1; probes 2)" in text
    assert "By source           app 7, gateway 0, worker 0" in text
    assert "Recovered           3  (50.0%)" in text
    assert "p50 12.1 s, p90 26.5 s" in text
    assert "/items/{item_id}" in text
    assert "Failures per hour" in text


def test_csv_format(store: Path) -> None:
    rows = list(csv.reader(io.StringIO(
        generate(str(store), since=scenario.SINCE, until=scenario.UNTIL, fmt="csv")
    )))  # fmt: skip
    assert rows[0] == ["metric", "key", "value"]
    table = {(metric, key): value for metric, key, value in rows[1:]}
    assert table["failures", ""] == "7"
    assert table["by_status", "504"] == "1"
    assert table["by_route.recovered", "/items/{item_id}"] == "2"
    assert table["per_hour", "2024-05-01T11:00:00Z"] == "2"
    assert table["time_to_recovery_s", "p90"] == "26.504"
    assert table["gave_up_rate", ""] == "0.1667"
    assert table["by_source", "app"] == "7"
    assert table["by_source", "gateway"] == "0"
    assert table["per_source.recovered", "app"] == "3"
    assert table["per_source.time_to_recovery_s.p50", "app"] == "12.12"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained(tmp_path: Path, store: Path) -> None:
    recorder = SQLiteRecorder(store)
    hostile = "/x/<script>alert(1)</script>"
    recorder.record([
        scenario._fail(50, "H", hostile),
    ])  # fmt: skip
    recorder.close()
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        ["report", "--store", str(store), "--since", scenario.SINCE, "--until", scenario.UNTIL,
         "--format", "html", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = out.read_text()
    parser = _Collector()
    parser.feed(page)
    assert parser.tags.count("svg") == 4, (
        "failures over time, the episodes' timeline, time to recovery, top routes"
    )
    assert "script" not in parser.tags
    assert parser.urls == []
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)" in page
    assert "default-src 'none'" in page
    assert "<h2>By source</h2>" in page
    assert "http://" not in page
    assert "https://" not in page


@pytest.mark.browser
def test_html_opens_in_chromium_without_errors(tmp_path: Path, store: Path) -> None:
    chromium = Path("/usr/bin/chromium")
    require(chromium.exists(), "chromium", "apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "report.html"
    out.write_text(generate(str(store), since=scenario.SINCE, until=scenario.UNTIL, fmt="html"))
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        bars = page.locator("svg rect").count()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert requests == [out.as_uri()]
    assert bars > 10
    assert (tmp_path / "report.png").stat().st_size > 10_000
