"""Four gunicorn workers share one SQLite file and one Prometheus multiprocess folder.

The app is built in the master (``--preload``) and forked: every failure a
worker serves must reach the store exactly once, and /metrics (answered by any
worker) must count the failures of all of them.
"""

from __future__ import annotations

import collections
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, start_server, stop

REQUESTS = 240


def failures_counted(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "gracefail_failures":
            total += sum(s.value for s in family.samples if s.name == "gracefail_failures_total")
    return total


@pytest.mark.server
def test_four_workers_lose_nothing(tmp_path: Path) -> None:
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
    try:
        # No keep-alive: a new connection each time, so the workers share the requests.
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=10,
        )

        def hit(n: int) -> tuple[str, str]:
            response = client.get(f"/items/{n}?fail=1", headers={"accept": "text/html"})
            assert response.status_code == 502
            return response.headers["x-gracefail-incident"], client.get("/pid").text

        with client, ThreadPoolExecutor(8) as pool:
            served = list(pool.map(hit, range(REQUESTS)))
        incidents = [incident for incident, _ in served]
        workers = {pid for _, pid in served}
        assert len(set(incidents)) == REQUESTS

        deadline = time.monotonic() + 15
        while failures_counted(port) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert failures_counted(port) == REQUESTS
        recorded_by = len(list(multiproc.glob("counter_*.db")))
    finally:
        stop(proc)
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""

    with sqlite3.connect(store) as conn:
        rows = [r[0] for r in conn.execute("SELECT incident FROM gracefail_failures")]
        routes = {r[0] for r in conn.execute("SELECT DISTINCT route FROM gracefail_failures")}
    stored = collections.Counter(rows)
    assert set(stored) == set(incidents), "every failure served is in the store"
    assert max(stored.values()) == 1, "and only once"
    assert routes == {"/items/{item_id}"}
    print(f"{len(workers)} workers answered, {recorded_by} wrote metrics")
    assert len(workers) >= 2
