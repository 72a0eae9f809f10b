"""Issue 12, defect 5, under a real gunicorn: four workers store a beacon once.

Each worker's guard remembers only the beacons it saw, so one beacon sent 40 times
was stored once per worker (4 times). The store's unique key now keeps one copy
whichever worker a copy reaches.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gracefail.tokens import TokenSigner
from tests.conftest import free_port, start_server, stop

SECRET = "gunicorn-test-secret-0123456789"  # tests/recorders/gunicorn_app.py's
COPIES = 40


def stored(store: Path, incident: str) -> list[tuple[str, int]]:
    """The page events of ``incident``; none before a worker's recorder made the tables."""
    with sqlite3.connect(store) as conn:
        try:
            rows = conn.execute(
                "SELECT kind, attempt FROM gracefail_page_events WHERE incident = ?", (incident,)
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return []
        return list(rows)


@pytest.mark.server
def test_one_beacon_sent_to_four_workers_is_stored_once(tmp_path: Path) -> None:
    store = tmp_path / "shared.sqlite3"
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    port = free_port()
    env = {"GRACEFAIL_TEST_STORE": str(store), "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    proc = start_server(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "4",
         "-k", "uvicorn.workers.UvicornWorker", "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "10", "tests.recorders.gunicorn_app:app"],
        port,
        env,
    )  # fmt: skip
    token = TokenSigner(SECRET, 3600).sign("resent-40-times", 502)
    body = json.dumps(
        {"token": token, "kind": "recovered", "attempt": 3, "elapsed_ms": 1500, "locale": "en"}
    )
    try:
        # No keep-alive: a new connection each time, so the workers share the copies.
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=10,
        )

        def send(n: int) -> tuple[int, str]:
            response = client.post(
                "/_gracefail/beacon", content=body, headers={"content-type": "text/plain"}
            )
            return response.status_code, client.get("/pid").text

        with client, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(COPIES)))
        # Every worker's recorder writes every 0.2 s; give them time to.
        deadline = time.monotonic() + 10
        while not stored(store, "resent-40-times") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert {status for status, _ in answers} == {204}
    assert len({pid for _, pid in answers}) >= 2, "the copies reached several workers"
    assert stored(store, "resent-40-times") == [("recovered", 3)]
