"""The report by source and by route on a real PostgreSQL: the same answers as on SQLite."""

from __future__ import annotations

import json

import psycopg
import pytest

from gracefail.events import Event
from gracefail.recorders import PostgresRecorder
from gracefail.report import generate
from tests.recorders import scenario
from tests.test_report_sources import (
    ROUTES_HISTORY,
    SOURCES_HISTORY,
    WINDOW,
    check_routes,
    check_sources,
)

pytestmark = pytest.mark.integration


def fill(dsn: str, events: list[Event]) -> str:
    recorder = PostgresRecorder(dsn)
    recorder.record(events)
    recorder.close()
    return dsn


def test_by_source_and_per_source(pg_dsn: str) -> None:
    fill(pg_dsn, SOURCES_HISTORY)
    check_sources(json.loads(generate(pg_dsn, fmt="json", **WINDOW)))


def test_route_labels_are_compared_with_a_leading_slash(pg_dsn: str) -> None:
    check_routes(fill(pg_dsn, ROUTES_HISTORY))


def test_a_store_from_before_the_source_column_is_all_app(pg_dsn: str) -> None:
    fill(pg_dsn, scenario.events())
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE gracefail_failures DROP COLUMN IF EXISTS source")
    report = json.loads(generate(pg_dsn, fmt="json", **WINDOW))
    scenario.check(report, scenario.EXPECTED)
    assert report["by_source"] == {"app": 7, "gateway": 0, "worker": 0}


def test_the_store_is_named_without_its_password(pg_dsn: str) -> None:
    fill(pg_dsn, scenario.events())
    with_password = pg_dsn.replace("gracefail@", "gracefail:not-checked@", 1)
    report = json.loads(generate(with_password, fmt="json", **WINDOW))
    assert report["store"] == pg_dsn.replace("gracefail@", "gracefail:***@", 1)
    assert "not-checked" not in generate(with_password, fmt="html", **WINDOW)
