"""A few seconds of load during an outage, on real servers and real stores: every
answer a 502, every failure served either stored or counted as lost, memory bounded.
The long version is ``python -m benchmarks.load`` (part of ``make bench``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.load import LoadResult, run_load

pytestmark = pytest.mark.integration

# Generous: a leak of a page per request (13 KB x a few thousand) would exceed it.
RSS_GROWTH_MB = 150


def check(result: LoadResult, processes: int) -> None:
    assert result.served > 0
    assert set(result.statuses) == {502}, result.statuses
    assert result.errors == 0
    # Each process that served a request reports (a gunicorn worker builds its middleware
    # on its first request, so an idle one has nothing to report).
    assert 1 <= len(result.counts) <= processes
    assert result.unaccounted_in_flight == 0
    delivered = sum(c["delivered"] for c in result.counts)
    assert delivered == result.stored, (delivered, result.stored)
    assert result.served == result.stored + result.lost, (result.served, result.stored, result.lost)
    assert result.rss_after_mb - result.rss_before_mb < RSS_GROWTH_MB


@pytest.mark.parametrize(("kind", "processes"), [("uvicorn", 1), ("gunicorn", 4)])
def test_load_on_sqlite(kind: str, processes: int, tmp_path: Path) -> None:
    check(run_load(kind, str(tmp_path / "events.sqlite3"), seconds=2.0, connections=20), processes)


@pytest.mark.parametrize(("kind", "processes"), [("uvicorn", 1), ("gunicorn", 4)])
def test_load_on_postgresql(kind: str, processes: int, pg_dsn: str) -> None:
    check(run_load(kind, pg_dsn, seconds=2.0, connections=20), processes)
