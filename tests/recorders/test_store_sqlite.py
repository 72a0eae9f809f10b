"""The embedded SQLite store: schema, migrations, batching, and every fault it must survive."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from gracefail import Config
from gracefail.asgi import GracefailMiddleware
from gracefail.core import Engine
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders.connected import StoreUnavailable
from gracefail.recorders.schema import MIGRATIONS, SCHEMA_VERSION
from gracefail.recorders.sqlite import SQLiteRecorder
from tests.apps import asgi_app
from tests.recorders import old_schemas

SECRET = "test-secret-0123456789abcdef"


def failure(n: int, route: str | None = "/items/{item_id}", source: str = "app") -> ServerEvent:
    return ServerEvent(
        time=time.time(), incident=f"inc-{n}", status=502, cause="connection",
        method="GET", route=route, reply_format="html", source=source,
    )  # fmt: skip


def page(n: int, kind: str = "shown") -> ClientEvent:
    return ClientEvent(
        time=time.time(), incident=f"inc-{n}", kind=kind, attempt=0, elapsed_ms=100, locale="en"
    )


def count(path: Path, table: str = "gracefail_failures") -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 - test constant


def fast(path: Path, **options: object) -> SQLiteRecorder:
    """A recorder that retries a failed store after 10-50 ms, so tests need not wait."""
    return SQLiteRecorder(path, retry_first=0.01, retry_cap=0.05, **options)  # type: ignore[arg-type]


def test_stores_both_kinds_in_wal_with_a_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.db"
    recorder = SQLiteRecorder(path)
    recorder.record(
        [failure(1), page(1), page(1, "recovered"), failure(2, route=None, source="gateway")]
    )
    recorder.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in conn.execute("SELECT version FROM gracefail_schema")]
        rows = conn.execute(
            "SELECT incident, status, cause, method, route, client, probe, upstream, source "
            "FROM gracefail_failures ORDER BY id"
        ).fetchall()
        kinds = [r[0] for r in conn.execute("SELECT kind FROM gracefail_page_events ORDER BY id")]
    assert versions == [m.version for m in MIGRATIONS]
    assert versions[-1] == SCHEMA_VERSION
    assert rows == [
        ("inc-1", 502, "connection", "GET", "/items/{item_id}", "html", 0, None, "app"),
        ("inc-2", 502, "connection", "GET", None, "html", 0, None, "gateway"),
    ]
    assert kinds == ["shown", "recovered"]


def test_migrates_an_older_store_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE gracefail_schema (version INTEGER PRIMARY KEY, summary TEXT NOT NULL, "
            "applied_at DOUBLE PRECISION NOT NULL)"
        )
        for statement in MIGRATIONS[0].sqlite:
            conn.execute(statement)
        conn.execute("INSERT INTO gracefail_schema VALUES (1, 'v1', 0)")
        conn.execute(
            "INSERT INTO gracefail_failures (time, incident, status, cause, method, client) "
            "VALUES (1, 'old', 504, 'timeout', 'GET', 'json')"
        )
    recorder = SQLiteRecorder(path)
    recorder.record([failure(1)])
    recorder.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM gracefail_schema ORDER BY 1")]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert versions == [m.version for m in MIGRATIONS]
    assert "gracefail_failures_time" in indexes
    assert count(path) == 2


def test_opens_a_store_of_the_previous_version_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        for statement in old_schemas.SQLITE_V2:
            conn.execute(statement)
    recorder = SQLiteRecorder(path)
    recorder.record([failure(1, source="gateway"), failure(2), page(1)])
    recorder.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM gracefail_schema ORDER BY 1")]
        sources = dict(conn.execute("SELECT incident, source FROM gracefail_failures"))
        old = conn.execute(
            "SELECT status, cause, route, probe, upstream, error_type, app_ms "
            "FROM gracefail_failures WHERE incident = 'old-1'"
        ).fetchone()
        pages = count(path, "gracefail_page_events")
        # The new column refuses NULL, as a fresh store's does.
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO gracefail_failures (time, incident, status, cause, method, client, "
                "source) VALUES (1, 'x', 502, 'c', 'GET', 'html', NULL)"
            )
    assert versions == [1, 2, 3, 4, 5] == [m.version for m in MIGRATIONS]
    assert sources == {"old-1": "app", "old-2": "app", "inc-1": "gateway", "inc-2": "app"}
    assert old == (504, "timeout", "/items/{item_id}", 0, "inventory", "TimeoutError", 30000.0)
    assert pages == 2


@pytest.mark.parametrize("version", range(SCHEMA_VERSION), ids=lambda v: f"from-v{v}")
def test_every_older_version_upgrades_to_the_latest(tmp_path: Path, version: int) -> None:
    path = tmp_path / f"v{version}.db"
    fresh = tmp_path / "fresh.db"
    with sqlite3.connect(path) as conn:
        if version:
            conn.execute(old_schemas.SCHEMA_TABLE)
        for migration in MIGRATIONS[:version]:
            for statement in migration.sqlite:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO gracefail_schema VALUES (?, ?, 0)",
                (migration.version, migration.summary),
            )
    for target in (path, fresh):
        recorder = SQLiteRecorder(target)
        recorder.record([failure(1, source="worker")])
        recorder.close()

    def shape(db: Path) -> tuple[list[tuple[object, ...]], ...]:
        with sqlite3.connect(db) as conn:
            tables = [
                tuple(row[1:])  # name, type, notnull, default, pk
                for table in ("gracefail_failures", "gracefail_page_events")
                for row in conn.execute(f"PRAGMA table_info({table})")
            ]
            indexes = sorted(
                conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
            )
            versions = list(conn.execute("SELECT version, summary FROM gracefail_schema"))
        return tables, indexes, versions

    assert shape(path) == shape(fresh)


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SQLiteRecorder(path).record([failure(1)])
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO gracefail_schema VALUES (99, 'from the future', 0)")
    recorder = SQLiteRecorder(path)
    with pytest.raises(StoreUnavailable, match="schema version 99, newer than this gracefail"):
        recorder.record([failure(2)])
    assert count(path) == 1


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "atomic.db"
    recorder = fast(path)
    recorder.record([failure(1)])
    broken = ServerEvent(
        time=time.time(), incident="bad", status=502, cause=None,  # type: ignore[arg-type]
        method="GET", route="/", reply_format="html",
    )  # fmt: skip
    with pytest.raises(StoreUnavailable, match="NOT NULL"):
        recorder.record([failure(2), failure(3), page(2), broken])
    assert count(path) == 1
    assert count(path, "gracefail_page_events") == 0
    time.sleep(0.06)
    recorder.record([failure(4)])
    assert count(path) == 2


def test_busy_timeout_waits_for_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    recorder = SQLiteRecorder(path, busy_timeout=5.0)
    recorder.record([failure(1)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO gracefail_failures (time, incident, status, cause, method, client) "
                  "VALUES (1, 'x', 502, 'c', 'GET', 'html')")  # fmt: skip
    pipeline = Pipeline([recorder], 100)
    pipeline.put(failure(2))
    time.sleep(0.4)  # the writer holds the lock while the recorder waits for it
    other.execute("COMMIT")
    other.close()
    assert pipeline.flush(10)
    assert pipeline.failed_events == 0
    assert count(path) == 3
    pipeline.close()


def _loss_logs(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    failed = [r.getMessage() for r in caplog.records if "failed; its events" in r.getMessage()]
    back = [r.getMessage() for r in caplog.records if " recovered; " in r.getMessage()]
    return failed, back


def test_locked_store_drops_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "locked.db"
    recorder = fast(path, busy_timeout=0.05)
    pipeline = Pipeline([recorder], 1000)
    pipeline.put(failure(0))
    pipeline.flush()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    caplog.set_level(logging.INFO, logger="gracefail")
    for n in range(1, 6):
        pipeline.put(failure(n))
        assert pipeline.flush()
        time.sleep(0.06)
    assert pipeline.failed_events == 5
    failed, back = _loss_logs(caplog)
    assert len(failed) == 1
    assert back == []
    locker.execute("ROLLBACK")
    locker.close()
    time.sleep(0.06)
    pipeline.put(failure(6))
    assert pipeline.flush()
    failed, back = _loss_logs(caplog)
    assert len(failed) == 1
    assert back == [f"gracefail: recorder {recorder!r} recovered; 5 events were dropped meanwhile"]
    assert count(path) == 2
    pipeline.close()


def test_corrupt_store_is_left_alone_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"certainly not SQLite " * 500)
    pipeline = Pipeline([fast(path)], 1000)
    caplog.set_level(logging.INFO, logger="gracefail")
    for n in range(3):
        pipeline.put(failure(n))
        pipeline.flush()
        time.sleep(0.06)
    assert pipeline.failed_events == 3
    assert path.read_bytes().startswith(b"certainly not SQLite"), "never overwrite a user's file"
    failed, _ = _loss_logs(caplog)
    assert len(failed) == 1
    assert any("file is not a database" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    path.unlink()  # the operator restores the store
    pipeline.put(failure(9))
    pipeline.flush()
    assert count(path) == 1
    assert len(_loss_logs(caplog)[1]) == 1
    pipeline.close()


def test_full_store_drops_and_recovers_when_space_returns(tmp_path: Path) -> None:
    # max_page_count makes SQLite answer SQLITE_FULL exactly as a full disk does.
    path = tmp_path / "full.db"
    recorder = fast(path, pragmas={"max_page_count": 20})
    pipeline = Pipeline([recorder], 100_000)
    for n in range(3000):
        pipeline.put(page(n))
    pipeline.flush()
    assert pipeline.failed_events > 0
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM gracefail_page_events")
    time.sleep(0.06)
    pipeline.put(failure(1))
    pipeline.flush()
    assert count(path) >= 1
    pipeline.close()


READ_ONLY_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from gracefail.events import ServerEvent
    from gracefail.pipeline import Pipeline
    from gracefail.recorders.sqlite import SQLiteRecorder

    def put(n):
        pipeline.put(ServerEvent(time.time(), f"ro-{n}", 502, "connection", "GET", "/", "html"))
        pipeline.flush()

    pipeline = Pipeline([SQLiteRecorder(sys.argv[1], retry_first=0.01, retry_cap=0.05)], 100)
    put(1); put(2)
    print(json.dumps({"failed": pipeline.failed_events}), flush=True)
    sys.stdin.readline()  # the parent makes the store writable
    time.sleep(0.06)
    put(3)
    print(json.dumps({"failed": pipeline.failed_events}), flush=True)
    pipeline.close()
    """
)


def _writer_held_to_file_modes() -> list[str]:
    """The command prefix that runs the writer subject to file modes.

    A normal user is. Root is not (CAP_DAC_OVERRIDE): as root the writer runs without that
    capability (and CAP_FOWNER), still uid 0 and still able to read everything
    (CAP_DAC_READ_SEARCH is kept), so it imports gracefail wherever the checkout, the
    interpreter and pytest's tmp dir live, and only the store's modes stop its writes.
    Running it as ``nobody`` instead failed when the checkout was not world-readable.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    drop = [setpriv or "setpriv", "--bounding-set=-dac_override,-fowner", "--"]
    if setpriv is None or subprocess.run([*drop, "true"], check=False).returncode != 0:
        pytest.skip("as root, this test needs setpriv (util-linux) and CAP_SETPCAP")
    return drop


def test_read_only_store_drops_then_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "events.db"
    first = SQLiteRecorder(path)
    first.record([failure(0)])
    first.close()
    folder.chmod(0o555)
    path.chmod(0o444)
    cmd = [*_writer_held_to_file_modes(), sys.executable, "-c", READ_ONLY_CHILD, str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        with subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd="/",
        ) as child:  # fmt: skip
            try:
                assert child.stdout is not None
                assert child.stdin is not None
                first = json.loads(child.stdout.readline() or "{}")
                assert first == {"failed": 2}, child.stderr.read() if child.stderr else ""
                folder.chmod(0o755)
                path.chmod(0o644)
                child.stdin.write("go\n")
                child.stdin.flush()
                second = json.loads(child.stdout.readline() or "{}")
                assert second == {"failed": 2}
                assert child.wait(timeout=20) == 0
            finally:
                if child.poll() is None:
                    child.kill()
    finally:
        folder.chmod(0o755)  # so pytest can clean up
    assert count(path) == 2


def test_default_recorder_is_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    gracefail = Engine(Config(secret=SECRET, store="sqlite:///rel/events.db"))
    [recorder] = gracefail.pipeline.recorders
    assert isinstance(recorder, SQLiteRecorder)
    assert recorder.path == "rel/events.db"
    gracefail.record(failure(1))
    gracefail.close()
    assert count(tmp_path / "rel" / "events.db") == 1

    monkeypatch.setenv("GRACEFAIL_DB", str(tmp_path / "env.db"))
    from_env = Engine(Config(secret=SECRET))
    [recorder] = from_env.pipeline.recorders
    assert isinstance(recorder, SQLiteRecorder)
    assert recorder.path == str(tmp_path / "env.db")
    from_env.close()


async def test_requests_are_unaffected_by_a_broken_store(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"\x00garbage" * 1000)
    app = GracefailMiddleware(asgi_app.make_app(), secret=SECRET, store=str(path))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(3):
            response = await client.get("/items/1?fail=1", headers={"accept": "text/html"})
            assert response.status_code == 502
            assert "text/html" in response.headers["content-type"]
    gracefail = app.engine
    assert gracefail.flush()
    assert gracefail.pipeline.failed_events == 3
    gracefail.close()


def test_events_survive_many_batches(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    pipeline = Pipeline([SQLiteRecorder(path)], 100_000)
    events: list[Event] = [failure(n) for n in range(5000)]
    for event in events:
        pipeline.put(event)
    pipeline.close()
    assert count(path) == 5000
    with sqlite3.connect(path) as conn:
        assert (
            conn.execute("SELECT COUNT(DISTINCT incident) FROM gracefail_failures").fetchone()[0]
            == 5000
        )
