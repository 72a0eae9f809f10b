"""Issue 12, defect 5: the store itself keeps one copy of each page event.

The guard's memory of duplicates is per process and forgets: one beacon sent 40
times to gunicorn with 4 workers was stored 4 times, and a replay after 4,096 other
incidents was stored again. Migration 4 gives the page events a unique key on
(incident, kind, attempt), and both recorders skip a row that is already there.
The same on PostgreSQL (tests/recorders/test_trust_store_postgres.py) and under
gunicorn (tests/recorders/test_trust_gunicorn.py).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from gracefail import Config
from gracefail.core import Engine, RequestView
from gracefail.events import ClientEvent, Event
from gracefail.recorders.schema import MIGRATIONS
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import generate
from tests.recorders import old_schemas, scenario

SECRET = "test-secret-0123456789abcdef"


def page(incident: str, kind: str = "shown", attempt: int = 0, at: float = 0.0) -> ClientEvent:
    return ClientEvent(at or time.time(), incident, kind, attempt, 100, "en")


def rows(path: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(path) as conn:
        return list(
            conn.execute(
                "SELECT incident, kind, attempt FROM gracefail_page_events ORDER BY id"
            ).fetchall()
        )


def test_a_replay_after_the_guard_forgot_is_not_stored_again(tmp_path: Path) -> None:
    """Issue 12: after 4,096 other incidents the guard has forgotten the first one."""
    path = tmp_path / "store.db"
    engine = Engine(Config(secret=SECRET, recorders=[SQLiteRecorder(path)]))
    view = RequestView(
        method="POST", path="/_gracefail/beacon", client_addr=None,
        headers={"host": "shop.test", "content-type": "text/plain"},
    )  # fmt: skip

    def beacon(incident: str) -> bytes:
        token = engine.signer.sign(incident, 502)
        data = {"token": token, "kind": "recovered", "attempt": 2, "elapsed_ms": 900,
                "locale": "en"}  # fmt: skip
        return json.dumps(data).encode()

    first = beacon("victim")
    assert engine.accept_beacon(view, first).status == 204
    for n in range(engine.guard.max_incidents):
        assert engine.accept_beacon(view, beacon(f"other-{n}")).status == 204
    assert engine.accept_beacon(view, first).status == 204
    assert engine.guard.duplicates == 0, "the guard forgot it, as it should (bounded memory)"
    engine.close()
    assert [r for r in rows(path) if r[0] == "victim"] == [("victim", "recovered", 2)]


def test_copies_in_one_batch_and_across_batches_are_stored_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    recorder = SQLiteRecorder(path)
    recorder.record([page("a", at=1.0), page("a", at=2.0), page("a", "retry", 1)])
    recorder.record([page("a", at=3.0), page("b")])
    recorder.close()
    assert rows(path) == [("a", "shown", 0), ("a", "retry", 1), ("b", "shown", 0)]
    with sqlite3.connect(path) as conn:
        kept = conn.execute(
            "SELECT time FROM gracefail_page_events WHERE incident = 'a' AND kind = 'shown'"
        ).fetchone()
    assert kept == (1.0,), "the first copy stays"


def test_another_outcome_of_a_page_view_is_kept_as_a_duplicate_outcome(tmp_path: Path) -> None:
    """The key is (incident, kind, attempt): a second, different outcome still reaches the
    report, which keeps the first and counts the other (client bugs stay visible)."""
    path = tmp_path / "store.db"
    recorder = SQLiteRecorder(path)
    recorder.record([page("a"), page("a", "recovered", 3), page("a", "abandoned", 3)])
    recorder.close()
    assert len(rows(path)) == 3


def test_workers_writing_together_store_each_event_once(tmp_path: Path) -> None:
    """Four recorders (as four workers would) write the same beacons concurrently."""
    path = tmp_path / "store.db"
    warm_up = SQLiteRecorder(path)
    warm_up.record([page("warm-up")])  # migrated before the race
    warm_up.close()
    events: list[Event] = [page(f"i{n}", "retry", n % 7) for n in range(300)]
    errors: list[BaseException] = []

    def worker() -> None:
        recorder = SQLiteRecorder(path)
        try:
            for start in range(0, len(events), 25):
                recorder.record(events[start : start + 25])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            recorder.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(rows(path)) == 301


def test_upgrading_a_store_with_copies_keeps_the_first_of_each(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        for statement in old_schemas.SQLITE_V2:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO gracefail_page_events (time, incident, kind, attempt, elapsed_ms, "
            "locale, status) VALUES (1714557602, 'old-1', 'shown', 0, 130, 'en', 504), "
            "(1714557603, 'old-1', 'shown', 0, 140, 'en', 504)"
        )
    recorder = SQLiteRecorder(path)
    recorder.record([page("old-1")])
    recorder.close()
    with sqlite3.connect(path) as conn:
        kept = conn.execute(
            "SELECT time, elapsed_ms FROM gracefail_page_events WHERE incident = 'old-1'"
        ).fetchall()
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'gracefail_page_events'"
            )
        }
        versions = [v for (v,) in conn.execute("SELECT version FROM gracefail_schema")]
    assert kept == [(1714557601.0, 120)], "the oldest copy stays"
    assert "gracefail_page_events_key" in indexes
    assert "gracefail_page_events_incident" not in indexes, "the key's index replaces it"
    assert versions == [m.version for m in MIGRATIONS]


def test_the_report_is_unchanged_by_copies_the_store_now_skips(tmp_path: Path) -> None:
    """The scenario's beacon that two workers both stored reaches the store once now;
    the report keeps its numbers (it always counted one view per key)."""
    path = tmp_path / "store.db"
    recorder = SQLiteRecorder(path)
    history = scenario.events()
    recorder.record(history)
    recorder.close()
    pages = [e for e in history if isinstance(e, ClientEvent)]
    assert len(rows(path)) == len(pages) - 1
    report = json.loads(generate(str(path), fmt="json", since=scenario.SINCE, until=scenario.UNTIL))
    scenario.check(report, scenario.EXPECTED)
