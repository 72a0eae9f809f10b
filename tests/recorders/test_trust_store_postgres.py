"""Issue 12 on a real PostgreSQL: one copy of each page event whichever instance stores
it, and a report that bounds what pages claimed (the SQLite twins are in
tests/recorders/test_trust_store.py and tests/test_trust_report.py)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from gracefail.events import ClientEvent, Event
from gracefail.recorders import PostgresRecorder
from gracefail.recorders.schema import MIGRATIONS
from gracefail.report import generate
from tests.recorders import old_schemas, scenario
from tests.test_trust_report import check_unpoisoned, legit, stored_attack

pytestmark = pytest.mark.integration


def page(incident: str, kind: str = "shown", attempt: int = 0, at: float = 0.0) -> ClientEvent:
    return ClientEvent(at or time.time(), incident, kind, attempt, 100, "en")


def rows(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT incident, kind, attempt FROM gracefail_page_events ORDER BY id"
        ).fetchall()


def test_copies_in_one_batch_and_across_batches_are_stored_once(pg_dsn: str) -> None:
    recorder = PostgresRecorder(pg_dsn)
    recorder.record([page("a", at=2.0), page("a", at=1.0), page("a", "retry", 1)])
    recorder.record([page("a", at=3.0), page("b")])
    recorder.close()
    assert sorted(rows(pg_dsn)) == [("a", "retry", 1), ("a", "shown", 0), ("b", "shown", 0)]
    with psycopg.connect(pg_dsn) as conn:
        kept = conn.execute(
            "SELECT time FROM gracefail_page_events WHERE incident = 'a' AND kind = 'shown'"
        ).fetchone()
    assert kept == (1.0,), "of two copies in one batch, the earlier stays"


def test_instances_writing_the_same_beacons_together_store_each_once(pg_dsn: str) -> None:
    """Four instances, the same 300 events in the same batches, at the same time: each
    event once, and no instance loses a batch (to a deadlock, say)."""
    warm_up = PostgresRecorder(pg_dsn)
    warm_up.record([page("warm-up")])  # migrated before the race
    warm_up.close()
    events: list[Event] = [page(f"i{n}", "retry", n % 7) for n in range(300)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def instance(reverse: bool) -> None:
        recorder = PostgresRecorder(pg_dsn)
        batches = [events[i : i + 25] for i in range(0, len(events), 25)]
        try:
            start.wait()
            for batch in reversed(batches) if reverse else batches:
                recorder.record(list(reversed(batch)) if reverse else batch)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            recorder.close()

    threads = [threading.Thread(target=instance, args=(n % 2 == 1,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(rows(pg_dsn)) == 301


def test_upgrading_a_store_with_copies_keeps_the_first_of_each(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        for statement in old_schemas.POSTGRESQL_V2:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO gracefail_page_events (time, incident, kind, attempt, elapsed_ms, "
            "locale, status) VALUES (1714557602, 'old-1', 'shown', 0, 130, 'en', 504), "
            "(1714557603, 'old-1', 'shown', 0, 140, 'en', 504)"
        )
    recorder = PostgresRecorder(pg_dsn)
    recorder.record([page("old-1")])
    recorder.close()
    with psycopg.connect(pg_dsn) as conn:
        kept = conn.execute(
            "SELECT time, elapsed_ms FROM gracefail_page_events WHERE incident = 'old-1'"
        ).fetchall()
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'gracefail_page_events'"
            ).fetchall()
        }
        versions = [v for (v,) in conn.execute("SELECT version FROM gracefail_schema")]
    assert kept == [(1714557601.0, 120)], "the oldest copy stays"
    assert "gracefail_page_events_key" in indexes
    assert "gracefail_page_events_incident" not in indexes
    assert versions == [m.version for m in MIGRATIONS]


def _window(since: float, until: float) -> dict[str, str]:
    return {
        "since": datetime.fromtimestamp(since, UTC).isoformat(),
        "until": datetime.fromtimestamp(until, UTC).isoformat(),
    }


def test_the_report_bounds_what_the_store_already_holds(pg_dsn: str) -> None:
    start = time.time() - 3600
    recorder = PostgresRecorder(pg_dsn)
    recorder.record(legit(start) + stored_attack(start))
    recorder.close()
    check_unpoisoned(json.loads(generate(pg_dsn, fmt="json", **_window(start - 60, start + 3000))))


def test_the_scenario_report_is_unchanged(pg_dsn: str) -> None:
    recorder = PostgresRecorder(pg_dsn)
    recorder.record(scenario.events())
    recorder.close()
    report = json.loads(generate(pg_dsn, fmt="json", since=scenario.SINCE, until=scenario.UNTIL))
    scenario.check(report, scenario.EXPECTED)
