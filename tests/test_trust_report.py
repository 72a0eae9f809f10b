"""Issue 12, defect 3: the report cannot be poisoned by what pages say about time.

Any visitor of a failing page gets a valid token. Before, a beacon could claim
``elapsed_ms`` up to 7 days on a token issued a second earlier: 3 page views and 6
beacons moved user-minutes lost from 3.3 to 30,243 and the p90 time to recovery
from 20 s to 604,800 s. Now the endpoint bounds every duration by the token's age
on the server's clock, and the report bounds what the store already holds by the
time since the page view's failure (the same history runs on PostgreSQL in
tests/recorders/test_trust_store_postgres.py).
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gracefail import Config
from gracefail.classify import Failure
from gracefail.core import Engine, RequestView
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import generate

SECRET = "test-secret-0123456789abcdef"
ROUTE = "/shop/{item}"
WEEK_MS = 7 * 86_400_000
# Legit page views' p90 is 18.8 s, their user-minutes lost 3.33; an attacker's page
# view may add at most its real age plus the endpoint's slack (15 s).
P90_BOUND = 21.0
LOST_BOUND = 3.33 + 3 * 20 / 60


def _failure(at: float, incident: str) -> ServerEvent:
    return ServerEvent(
        time=at, incident=incident, status=502, cause="connection", method="GET",
        route=ROUTE, reply_format="html", app_ms=12.5,
    )  # fmt: skip


def _page(at: float, incident: str, kind: str, attempt: int, elapsed_ms: int) -> ClientEvent:
    return ClientEvent(at, incident, kind, attempt, elapsed_ms, "en")


def legit(start: float) -> list[Event]:
    """Three real page views: recovered after 5.3 s and 20.3 s, one left after 175 s."""
    return [
        _failure(start, "L1"),
        _page(start + 1, "L1", "shown", 0, 300),
        _page(start + 6, "L1", "recovered", 1, 5_300),
        _failure(start + 100, "L2"),
        _page(start + 101, "L2", "shown", 0, 300),
        _page(start + 121, "L2", "recovered", 3, 20_300),
        _failure(start + 200, "L3"),
        _page(start + 201, "L3", "shown", 0, 300),
        _page(start + 376, "L3", "abandoned", 5, 175_300),
    ]


def stored_attack(start: float) -> list[Event]:
    """What the endpoint stored before the fix: 3 page views, 6 beacons claiming a week."""
    events: list[Event] = []
    for n in range(3):
        at = start + 300 + n
        events += [
            _failure(at, f"A{n}"),
            _page(at + 1, f"A{n}", "shown", 0, 0),
            _page(at + 1, f"A{n}", "recovered", 1, WEEK_MS),
        ]
    return events


def report(store: Path | str, since: float, until: float) -> dict[str, Any]:
    window = {
        "since": datetime.fromtimestamp(since, UTC).isoformat(),
        "until": datetime.fromtimestamp(until, UTC).isoformat(),
    }
    data: dict[str, Any] = json.loads(generate(str(store), fmt="json", **window))
    return data


def record(path: Path, events: list[Event]) -> None:
    recorder = SQLiteRecorder(path)
    recorder.record(events)
    recorder.close()


def check_unpoisoned(data: dict[str, Any]) -> None:
    assert data["pages_shown"] == 6
    assert data["recovered"] == 5
    assert data["time_to_recovery_s"]["p90"] <= P90_BOUND
    assert data["user_minutes_lost"] <= LOST_BOUND


def test_the_legit_history_alone(tmp_path: Path) -> None:
    start = time.time() - 3600
    record(tmp_path / "s.db", legit(start))
    data = report(tmp_path / "s.db", start - 60, start + 3000)
    assert data["time_to_recovery_s"] == {"p50": 12.8, "p90": 18.8}
    assert data["user_minutes_lost"] == 3.33


def post(engine: Engine, body: dict[str, Any]) -> int:
    view = RequestView(
        method="POST", path="/_gracefail/beacon", client_addr="203.0.113.9",
        headers={"host": "shop.test", "origin": "http://shop.test", "content-type": "text/plain"},
    )  # fmt: skip
    return engine.accept_beacon(view, json.dumps(body).encode()).status


def token_of(reply_body: bytes) -> str:
    page = reply_body.decode()
    start = page.index('"token":"') + len('"token":"')
    return page[start : page.index('"', start)]


def test_a_week_claimed_through_the_endpoint_is_cut_to_the_token_age(tmp_path: Path) -> None:
    """The attack of issue 12 end to end: 3 page views, 6 beacons, through the endpoint."""
    path = tmp_path / "store.db"
    start = time.time() - 3600
    record(path, legit(start))
    engine = Engine(Config(secret=SECRET, recorders=[SQLiteRecorder(path)]))
    for n in range(3):
        view = RequestView("GET", f"/shop/{n}", headers={"accept": "text/html"}, route=ROUTE)
        token = token_of(engine.respond(Failure(502, "connection"), view).body)
        for kind, attempt, elapsed in (("shown", 0, 0), ("recovered", 1, WEEK_MS)):
            beacon = {"token": token, "kind": kind, "attempt": attempt,
                      "elapsed_ms": elapsed, "locale": "en"}  # fmt: skip
            assert post(engine, beacon) == 204
    engine.close()
    check_unpoisoned(report(path, start - 60, time.time() + 60))


def test_the_report_bounds_what_the_store_already_holds(tmp_path: Path) -> None:
    """Rows stored before the endpoint bounded durations are cut at the report."""
    start = time.time() - 3600
    record(tmp_path / "s.db", legit(start) + stored_attack(start))
    check_unpoisoned(report(tmp_path / "s.db", start - 60, start + 3000))


def test_a_page_view_of_a_reused_request_id_is_joined_to_its_failure(tmp_path: Path) -> None:
    """The page view's key carries a server-random suffix; the report still finds the
    failure (its route and source) by the request id it was served under."""
    path = tmp_path / "store.db"
    engine = Engine(Config(secret=SECRET, recorders=[SQLiteRecorder(path)]))
    headers = {"accept": "text/html", "x-request-id": "req-7"}
    view = RequestView("GET", "/shop/7", headers=headers, route=ROUTE)
    reply = engine.respond(Failure(502, "connection"), view)
    assert dict(reply.headers)["x-gracefail-incident"] == "req-7"
    token = token_of(reply.body)
    assert token.split("~")[1].startswith("req-7:")
    for kind, attempt, elapsed in (("shown", 0, 200), ("recovered", 1, 900)):
        beacon = {"token": token, "kind": kind, "attempt": attempt,
                  "elapsed_ms": elapsed, "locale": "en"}  # fmt: skip
        assert post(engine, beacon) == 204
    engine.close()
    data = report(path, time.time() - 60, time.time() + 60)
    assert data["by_route"] == [{"route": ROUTE, "failures": 1, "pages_shown": 1, "recovered": 1}]
    assert data["by_source"]["app"] == 1
    assert data["per_source"]["app"]["pages_shown"] == 1


@pytest.mark.parametrize("outcome", ["recovered", "abandoned"])
def test_an_outcome_stored_before_its_shown_counts_from_the_shown(
    tmp_path: Path, outcome: str
) -> None:
    start = time.time() - 3600
    events: list[Event] = [
        _failure(start, "X"),
        _page(start + 30, "X", "shown", 0, 30_000),
        _page(start + 31, "X", outcome, 1, 10),
    ]
    record(tmp_path / "s.db", events)
    data = report(tmp_path / "s.db", start - 60, start + 3000)
    assert data["user_minutes_lost"] == 0.0
    if outcome == "recovered":
        assert data["time_to_recovery_s"] == {"p50": 30.0, "p90": 30.0}


def test_beacons_of_exported_static_pages_are_refused(tmp_path: Path) -> None:
    """docs/gateway.md's choice: the exported pages have no server to sign a token, so
    their beacons are refused rather than counted; anyone could send unsigned ones."""
    from gracefail.export import export_pages
    from tests.apps.common import ListRecorder

    export_pages(Config(secret=SECRET, recorders=[]), tmp_path / "out")
    page = (tmp_path / "out" / "502.html").read_bytes()
    assert token_of(page) == ""
    recorder = ListRecorder()
    engine = Engine(Config(secret=SECRET, recorders=[recorder]))
    for kind in ("shown", "recovered"):
        beacon = {"token": token_of(page), "kind": kind, "attempt": 0, "elapsed_ms": 0,
                  "locale": "en"}  # fmt: skip
        assert post(engine, beacon) == 403
    engine.flush()
    assert recorder.events == []
    engine.close()


def test_the_report_stays_small_whatever_the_store_holds(tmp_path: Path) -> None:
    """Routes are templates, and the report lists the top 50: a store with many cannot
    make it large; only the rows around each percentile leave the database."""
    from gracefail.report.queries import TOP_ROUTES

    start = time.time() - 3600
    events: list[Event] = []
    for n in range(400):
        failure = _failure(start + n, f"r{n}")
        events.append(dataclasses.replace(failure, route=f"/r{n}/{{id}}"))
        events.append(_page(start + n + 1, f"r{n}", "shown", 0, 100))
        events.append(_page(start + n + 2, f"r{n}", "recovered", 1, 1_100 + n))
    record(tmp_path / "s.db", events)
    data = report(tmp_path / "s.db", start - 60, start + 3000)
    assert data["failures"] == 400
    assert len(data["by_route"]) == TOP_ROUTES
    assert data["recovered"] == 400
