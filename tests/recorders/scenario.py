"""One known history of failures and page reports, and the report it must give.

Used by the SQLite report tests and, unchanged, by the PostgreSQL ones: both
stores must answer the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gracefail.events import ClientEvent, Event, ServerEvent

T = datetime(2024, 5, 1, 10, 0, tzinfo=UTC).timestamp()
SINCE = "2024-05-01T09:00:00Z"
UNTIL = "2024-05-01T13:00:00Z"
ITEMS = "/items/{item_id}"


def _fail(
    at: float, incident: str, route: str | None, status: int = 502, cause: str = "connection",
    method: str = "GET", probe: bool = False,
) -> ServerEvent:  # fmt: skip
    return ServerEvent(
        time=T + at, incident=incident, status=status, cause=cause, method=method,
        route=route, reply_format="html", probe=probe, upstream="inventory", app_ms=12.5,
    )  # fmt: skip


def _page(at: float, incident: str, kind: str, attempt: int, elapsed_ms: int) -> ClientEvent:
    return ClientEvent(
        time=T + at,
        incident=incident,
        kind=kind,
        attempt=attempt,
        elapsed_ms=elapsed_ms,
        locale="en",
    )


def events() -> list[Event]:
    """The history, in arrival order."""
    return [
        # Before the window: must not count.
        _fail(-7200, "old", ITEMS),
        _page(-7190, "old", "shown", 0, 100),
        _page(-7180, "old", "recovered", 1, 9_000),
        # A: recovers after 12 s.
        _fail(10, "A", ITEMS),
        _page(11, "A", "shown", 0, 120),
        _page(11.5, "A", "shown", 0, 120),  # the same beacon twice (two workers): one view
        _fail(15, "probe-1", ITEMS, probe=True),
        _page(19, "A", "retry", 1, 8_000),
        _page(22, "A", "recovered", 2, 12_120),
        # B: a timeout, recovers after 30 s; a later, second outcome is a duplicate.
        _fail(100, "B", ITEMS, status=504, cause="timeout"),
        _page(101, "B", "shown", 0, 100),
        _fail(105, "probe-2", ITEMS, status=504, cause="timeout", probe=True),
        _page(130, "B", "recovered", 3, 30_100),
        _page(131, "B", "abandoned", 3, 31_000),
        # G: /search recovers after 2 s.
        _fail(200, "G", "/search", cause="protocol"),
        _page(201, "G", "shown", 0, 50),
        _page(203, "G", "recovered", 1, 2_050),
        # C and D: a failed POST whose page gives up, one the user leaves.
        _fail(3700, "C", "/checkout", cause="upstream_error", method="POST"),
        _page(3701, "C", "shown", 0, 200),
        _page(4300, "C", "gave_up", 5, 600_200),
        _fail(3800, "D", "/checkout"),
        _page(3801, "D", "shown", 0, 150),
        _page(3846, "D", "abandoned", 0, 45_150),
        # E: no route known, no outcome yet (last beacon 5.2 s after shown).
        _fail(7300, "E", None),
        _page(7301, "E", "shown", 0, 100),
        _page(7306, "E", "retry", 1, 5_300),
        # F: a page without JavaScript: a failure, never a page shown.
        _fail(7400, "F", ITEMS),
    ]


EXPECTED: dict[str, Any] = {
    "window": {"since": SINCE, "until": UNTIL},
    "failures": 7,
    "probes": 2,
    "by_status": {"502": 6, "504": 1},
    "by_cause": {"connection": 4, "timeout": 1, "protocol": 1, "upstream_error": 1},
    "by_route": [
        {"route": ITEMS, "failures": 3, "pages_shown": 2, "recovered": 2},
        {"route": "/checkout", "failures": 2, "pages_shown": 2, "recovered": 0},
        {"route": "/search", "failures": 1, "pages_shown": 1, "recovered": 1},
        {"route": "unknown", "failures": 1, "pages_shown": 1, "recovered": 0},
    ],
    "per_hour": [
        {"hour": "2024-05-01T10:00:00Z", "failures": 3},
        {"hour": "2024-05-01T11:00:00Z", "failures": 2},
        {"hour": "2024-05-01T12:00:00Z", "failures": 2},
    ],
    "per_day": [{"day": "2024-05-01T00:00:00Z", "failures": 7}],
    "pages_shown": 6,
    "recovered": 3,
    "abandoned": 1,
    "gave_up": 1,
    "recovery_rate": 0.5,
    "abandonment_rate": 0.1667,
    "gave_up_rate": 0.1667,
    "duplicate_outcomes": 1,
    # p50 of 2.05, 12.12, 30.1 s; p90 interpolates 12.12 + 0.8 * (30.1 - 12.12)
    "time_to_recovery_s": {"p50": 12.12, "p90": 26.504},
    # 12 + 30 + 2 + 600 + 45 + 5.2 seconds
    "user_minutes_lost": 11.57,
}

EXPECTED_CHECKOUT: dict[str, Any] = {
    "failures": 2,
    "probes": 0,
    "by_status": {"502": 2, "504": 0},
    "pages_shown": 2,
    "recovered": 0,
    "gave_up": 1,
    "abandoned": 1,
    "by_route": [{"route": "/checkout", "failures": 2, "pages_shown": 2, "recovered": 0}],
    "time_to_recovery_s": {"p50": None, "p90": None},
}


def check(report: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every expected key has the expected value (by_cause compared as a dict)."""
    for key, value in expected.items():
        assert report[key] == value, f"{key}: {report[key]!r} != {value!r}"
