"""The PostgreSQL store on a real server: schema, concurrency, the report, and outages."""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg
import pytest
from click.testing import CliRunner

from gracefail.cli import main
from gracefail.events import ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders import PostgresRecorder, store_recorder
from gracefail.recorders.connected import StoreUnavailable
from gracefail.recorders.schema import MIGRATIONS, SCHEMA_VERSION
from gracefail.report import generate
from tests.recorders import old_schemas, scenario
from tests.recorders.conftest import PgServer

pytestmark = pytest.mark.integration


def failure(n: int, source: str = "app") -> ServerEvent:
    return ServerEvent(
        time.time(), f"pg-{n}", 502, "connection", "GET", "/r/{id}", "html", source=source
    )


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT COUNT(*) FROM gracefail_failures").fetchone()
        return int(row[0]) if row else -1


def test_records_with_the_shared_schema(pg_dsn: str) -> None:
    recorder = store_recorder(pg_dsn)
    assert isinstance(recorder, PostgresRecorder)
    recorder.record([*scenario.events(), failure(1, source="gateway")])
    recorder.close()
    with psycopg.connect(pg_dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM gracefail_schema ORDER BY 1")]
        pages = conn.execute("SELECT COUNT(*) FROM gracefail_page_events").fetchone()
        row = conn.execute(
            "SELECT incident, status, cause, method, route, client, probe, upstream, app_ms, "
            "source FROM gracefail_failures WHERE incident = 'A'"
        ).fetchone()
        gateway = conn.execute(
            "SELECT source FROM gracefail_failures WHERE incident = 'pg-1'"
        ).fetchone()
    assert versions == [m.version for m in MIGRATIONS]
    assert versions[-1] == SCHEMA_VERSION
    # 17 beacons, one of them stored twice by two workers: the store keeps one copy.
    assert pages == (16,)
    assert row == (
        "A", 502, "connection", "GET", "/items/{item_id}", "html", 0, "inventory", 12.5, "app"
    )  # fmt: skip
    assert gateway == ("gateway",)


def test_instances_starting_together_migrate_once(pg_dsn: str) -> None:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        recorder = PostgresRecorder(pg_dsn)
        try:
            recorder.record([failure(n)])
        except BaseException as exc:
            errors.append(exc)
        finally:
            recorder.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(pg_dsn) == 6
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT COUNT(*) FROM gracefail_schema").fetchone()
    assert row == (len(MIGRATIONS),)


def test_migrates_v1_and_refuses_a_newer_schema(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "CREATE TABLE gracefail_schema (version INTEGER PRIMARY KEY, summary TEXT NOT NULL, "
            "applied_at DOUBLE PRECISION NOT NULL)"
        )
        for statement in MIGRATIONS[0].postgresql:
            conn.execute(statement)
        conn.execute("INSERT INTO gracefail_schema VALUES (1, 'v1', 0)")
    recorder = PostgresRecorder(pg_dsn)
    recorder.record([failure(1)])
    recorder.close()
    with psycopg.connect(pg_dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM gracefail_schema ORDER BY 1")]
        conn.execute("INSERT INTO gracefail_schema VALUES (99, 'future', 0)")
    assert versions == [m.version for m in MIGRATIONS]
    with pytest.raises(StoreUnavailable, match="schema version 99"):
        PostgresRecorder(pg_dsn).record([failure(2)])


def test_opens_a_store_of_the_previous_version_in_place(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        for statement in old_schemas.POSTGRESQL_V2:
            conn.execute(statement)
    recorder = PostgresRecorder(pg_dsn)
    recorder.record([failure(1, source="gateway"), failure(2)])
    recorder.close()
    with psycopg.connect(pg_dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM gracefail_schema ORDER BY 1")]
        sources: dict[str, str] = dict(
            conn.execute("SELECT incident, source FROM gracefail_failures").fetchall()
        )
        column = conn.execute(
            "SELECT data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = 'gracefail_failures' AND column_name = 'source'"
        ).fetchone()
        old = conn.execute(
            "SELECT status, cause, route, upstream, app_ms FROM gracefail_failures "
            "WHERE incident = 'old-1'"
        ).fetchone()
    assert versions == [1, 2, 3, 4, 5] == [m.version for m in MIGRATIONS]
    assert sources == {"old-1": "app", "old-2": "app", "pg-1": "gateway", "pg-2": "app"}
    assert column == ("text", "NO", "'app'::text")
    assert old == (504, "timeout", "/items/{item_id}", "inventory", 30000.0)


def test_report_is_the_same_as_on_sqlite(pg_dsn: str) -> None:
    recorder = PostgresRecorder(pg_dsn)
    recorder.record(scenario.events())
    recorder.close()
    report = json.loads(generate(pg_dsn, since=scenario.SINCE, until=scenario.UNTIL, fmt="json"))
    scenario.check(report, scenario.EXPECTED)
    by_route = json.loads(generate(pg_dsn, since=scenario.SINCE, until=scenario.UNTIL,
                                   route="/checkout", fmt="json"))  # fmt: skip
    scenario.check(by_route, scenario.EXPECTED_CHECKOUT)
    result = CliRunner().invoke(
        main, ["report", "--store", pg_dsn, "--since", scenario.SINCE, "--until", scenario.UNTIL]
    )
    assert result.exit_code == 0, result.output
    assert "Recovered           3  (50.0%)" in result.output


def test_report_on_an_empty_database_is_a_clear_message(pg_dsn: str) -> None:
    result = CliRunner().invoke(main, ["report", "--store", pg_dsn])
    assert result.exit_code == 1
    assert "holds no gracefail events yet" in result.output
    assert "secret" not in result.output


def test_outage_drops_logs_once_and_reconnects(
    pg_server: PgServer, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = PostgresRecorder(pg_dsn, retry_first=0.05, retry_cap=0.2, connect_timeout=2)
    pipeline = Pipeline([recorder], 1000)
    pipeline.put(failure(0))
    pipeline.flush()
    caplog.set_level(logging.INFO, logger="gracefail")
    pg_server.stop()
    try:
        for n in range(1, 5):
            pipeline.put(failure(n))
            assert pipeline.flush()
            time.sleep(0.1)
        assert pipeline.failed_events == 4
    finally:
        pg_server.start()
    deadline = time.monotonic() + 10
    n = 100
    while time.monotonic() < deadline:
        pipeline.put(failure(n))
        pipeline.flush()
        if count(pg_dsn) > 1:
            break
        n += 1
        time.sleep(0.1)
    pipeline.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed; its events are dropped" in m for m in messages) == 1
    assert sum(" recovered; " in m for m in messages) == 1
    assert count(pg_dsn) == 2


def test_passwords_stay_out_of_messages() -> None:
    recorder = PostgresRecorder("postgresql://app:hunter2-secret@127.0.0.1:1/db", connect_timeout=1)
    assert "hunter2" not in repr(recorder)
    with pytest.raises(StoreUnavailable) as info:
        recorder.record([failure(1)])
    assert "hunter2" not in str(info.value)
