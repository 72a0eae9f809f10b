"""One command switches a whole deployment: two gunicorn workers (forked from a preloaded
app) and ``gracefail serve`` on the same store follow it within a second, both ways."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.apps.common import CURL, NAV, SECRET, free_port
from tests.conftest import ROOT

pytestmark = [pytest.mark.server, pytest.mark.starlette]

# One read a second, plus what a loaded machine adds to the read and the requests.
WITHIN = 1.2


def command(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "gracefail", "maintenance", *args],
        check=True, cwd=ROOT, capture_output=True, timeout=60,
    )  # fmt: skip


def answers(app: str, gateway: str) -> tuple[list[tuple[float, int]], set[str]]:
    """One round: (when each request was sent and its status, the app workers seen).

    Eight requests to the app, each on a new connection so gunicorn hands them to both
    workers, and one to the gateway as ingress-nginx asks it.
    """
    seen: list[tuple[float, int]] = []
    pids = set()
    for _ in range(8):
        sent = time.monotonic()
        reply = httpx.get(app, headers={**CURL, "connection": "close"}, timeout=10)
        seen.append((sent, reply.status_code))
        if reply.status_code == 200:
            pids.add(reply.text)
    sent = time.monotonic()
    answer = httpx.get(gateway, headers={**NAV, "x-code": "502"}, timeout=10)
    seen.append((sent, 1000 + answer.status_code))  # the gateway's, told apart
    return seen, pids


def settle(app: str, gateway: str, expected_app: int, expected_gateway: int) -> float:
    """Seconds from now until every request sent afterwards got the expected status: the
    time of the first request after the last one that did not (tight, whatever a round
    of requests takes)."""
    start = time.monotonic()
    expected = {expected_app, 1000 + expected_gateway}
    log: list[tuple[float, int]] = []
    good_rounds = 0
    while good_rounds < 3:
        assert time.monotonic() - start < 10, f"not switched within 10 s: {log[-9:]}"
        round_log, _ = answers(app, gateway)
        log += round_log
        good_rounds = good_rounds + 1 if {status for _, status in round_log} == expected else 0
    last_old = max((i for i, (_, status) in enumerate(log) if status not in expected), default=-1)
    return log[last_old + 1][0] - start


def test_two_gunicorn_workers_and_the_gateway_switch_within_a_second(
    tmp_path: Path, server_factory: object
) -> None:
    pytest.importorskip("gunicorn")
    store = str(tmp_path / "events.sqlite3")
    app_port, gateway_port = free_port(), free_port()
    env = {"GRACEFAIL_DB": store, "GRACEFAIL_SECRET": SECRET}
    start = server_factory  # type: ignore[assignment]
    start(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
         "-k", "uvicorn.workers.UvicornWorker", "-b", f"127.0.0.1:{app_port}",
         "tests.apps.maintenance_app:app()"],
        app_port, env,
    )  # fmt: skip
    start(
        [sys.executable, "-m", "gracefail", "serve", "--port", str(gateway_port),
         "--store", store, "--secret", SECRET],
        gateway_port, env,
    )  # fmt: skip
    app, gateway = f"http://127.0.0.1:{app_port}/", f"http://127.0.0.1:{gateway_port}/"
    settle(app, gateway, 200, 502)
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        seen |= answers(app, gateway)[1]
    assert len(seen) == 2, "both workers answer"

    command("on", "--store", store, "--for", "10m", "--message", "Upgrading")
    assert settle(app, gateway, 503, 503) < WITHIN
    page = httpx.get(gateway, headers={**NAV, "x-code": "502"}, timeout=10)
    assert page.headers["x-gracefail-maintenance"] == "on"
    assert "Upgrading" in page.text

    command("off", "--store", store)
    assert settle(app, gateway, 200, 502) < WITHIN
