"""Planned maintenance kept in the store: the same switch in a real SQLite file and a real
PostgreSQL, read by :class:`MaintenanceWatch` off the request path."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gracefail import maintenance
from gracefail.maintenance import Maintenance, MaintenanceError, MaintenanceWatch
from gracefail.recorders.sqlite import SQLiteRecorder
from tests.conftest import ROOT
from tests.recorders import old_schemas

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "events.sqlite3")
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


def test_on_status_off_round_trip(store: str) -> None:
    assert maintenance.status(store) is None  # a store without the table yet: off
    now = time.time()
    state = maintenance.switch_on(store, duration=600, message="Moving the database", set_by="ops")
    assert state.ends is not None
    assert abs(state.ends - (now + 600)) < 5
    assert maintenance.status(store) == state
    assert state.message == "Moving the database"
    assert state.set_by == "ops"
    ended = maintenance.switch_off(store)
    assert ended == state
    assert maintenance.status(store) is None
    assert maintenance.switch_off(store) is None  # off twice is fine


def test_switching_on_again_keeps_the_start_and_moves_the_end(store: str) -> None:
    first = maintenance.switch_on(store, duration=60, set_by="ops")
    second = maintenance.switch_on(store, duration=3600, message="Longer", set_by="ops2")
    assert second.started == first.started
    assert second.ends is not None
    assert first.ends is not None
    assert second.ends > first.ends
    assert maintenance.status(store) == second


def test_an_end_in_the_past_is_off_by_itself(store: str) -> None:
    now = time.time()
    maintenance.switch_on(store, ends=now + 1.0, set_by="ops", now=now)
    assert maintenance.status(store, now=now + 0.5) is not None
    assert maintenance.status(store, now=now + 1.0) is None
    # A new switch after the old end starts a new period (a new start).
    again = maintenance.switch_on(store, duration=60, set_by="ops", now=now + 5)
    assert again.started == now + 5


def test_no_end_lasts_until_switched_off(store: str) -> None:
    state = maintenance.switch_on(store, set_by="ops")
    assert state.ends is None
    assert state.remaining() is None
    assert maintenance.status(store, now=time.time() + 10 * 365 * 86400) == state


def test_an_unreachable_store_fails_loudly_and_changes_nothing(tmp_path: Path) -> None:
    # A folder where the file should be: SQLite cannot open it.
    folder = tmp_path / "is-a-folder"
    folder.mkdir()
    with pytest.raises(MaintenanceError, match=r"could not switch maintenance on in .*nothing"):
        maintenance.switch_on(str(folder), duration=60)
    # A PostgreSQL that does not answer; the password never appears in the message.
    with pytest.raises(MaintenanceError, match="nothing changed") as caught:
        maintenance.switch_on("postgresql://gf:hunter2@127.0.0.1:9/gf", duration=60)
    assert "hunter2" not in str(caught.value)


def test_an_older_store_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as conn:
        for statement in old_schemas.SQLITE_V2:
            conn.execute(statement)
    assert maintenance.status(str(db)) is None  # read only: no upgrade, no error
    maintenance.switch_on(str(db), duration=60, set_by="ops")
    with sqlite3.connect(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM gracefail_schema")]
        kept = conn.execute("SELECT COUNT(*) FROM gracefail_failures").fetchone()[0]
    assert versions == [1, 2, 3, 4, 5]
    assert kept == 2
    # The recorder opens the upgraded store as it is.
    recorder = SQLiteRecorder(db)
    recorder.record([])
    recorder.close()


def test_the_watch_follows_a_command_run_in_another_process_within_a_second(store: str) -> None:
    watch = MaintenanceWatch(store, interval=0.2)
    try:
        assert watch.current() is None
        command = [sys.executable, "-m", "gracefail", "maintenance"]
        subprocess.run(
            [*command, "on", "--store", store, "--for", "10m", "--message", "Back soon"],
            check=True, cwd=ROOT, capture_output=True, timeout=60,
        )  # fmt: skip
        switched = time.monotonic()
        while (state := watch.current()) is None and time.monotonic() - switched < 5:
            time.sleep(0.02)
        assert state is not None
        assert state.message == "Back soon"
        assert time.monotonic() - switched < 1.0
        subprocess.run(
            [*command, "off", "--store", store], check=True, cwd=ROOT, capture_output=True,
            timeout=60,
        )  # fmt: skip
        switched = time.monotonic()
        while watch.current() is not None and time.monotonic() - switched < 5:
            time.sleep(0.02)
        assert watch.current() is None
        assert time.monotonic() - switched < 1.0
    finally:
        watch.close()


def test_the_watch_reads_at_most_once_per_interval_however_many_requests(tmp_path: Path) -> None:
    store = str(tmp_path / "events.sqlite3")
    maintenance.switch_on(store, duration=600, set_by="ops")
    watch = MaintenanceWatch(store, interval=0.5)
    # Other tests' engines (a gateway always follows maintenance) may have readers alive.
    before = set(threading.enumerate())
    try:
        results: list[Maintenance | None] = []

        def requests() -> None:
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                results.append(watch.current())

        threads = [threading.Thread(target=requests) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # 1.2 s at one read per 0.5 s: three reads at most, one thread doing them all.
        assert 1 <= watch.reads <= 3
        assert len(results) > 1000
        started = [
            t for t in set(threading.enumerate()) - before if t.name == "gracefail-maintenance"
        ]
        assert started == [watch._thread]
        assert results[-1] is not None
    finally:
        watch.close()
    assert watch._thread is not None
    assert not watch._thread.is_alive()


def test_the_watch_ends_maintenance_at_the_planned_end_without_a_read(tmp_path: Path) -> None:
    store = str(tmp_path / "events.sqlite3")
    maintenance.switch_on(store, ends=time.time() + 0.6, set_by="ops")
    watch = MaintenanceWatch(store, interval=60)
    try:
        assert watch.refresh() is not None
        time.sleep(0.7)
        assert watch.current() is None
        assert watch.reads == 1 or watch.reads == 2  # the refresh, and the thread's first
    finally:
        watch.close()


def test_an_unreadable_store_keeps_the_state_a_while_then_fails_open_logging_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "events.sqlite3"
    maintenance.switch_on(str(db), duration=600, set_by="ops")
    watch = MaintenanceWatch(str(db), interval=0.05, keep_last=0.5)
    try:
        assert watch.refresh() is not None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        db.write_bytes(b"not a database, " * 512)
        caplog.set_level(logging.WARNING, logger="gracefail")
        time.sleep(0.2)
        assert watch.current() is not None  # kept: within keep_last
        deadline = time.monotonic() + 5
        while watch.current() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watch.current() is None  # failed open
        time.sleep(0.3)  # many more failed reads
        lines = [r.getMessage() for r in caplog.records if "maintenance state" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "as if maintenance were off" in lines[0]
    finally:
        watch.close()
