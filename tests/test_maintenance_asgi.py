"""Planned maintenance through the ASGI middleware under a real uvicorn, switched by the
real command in another process, with a real SQLite store."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gracefail import maintenance
from tests.apps.common import API, CURL, NAV, free_port
from tests.conftest import ROOT, start_server, stop

pytestmark = [pytest.mark.server, pytest.mark.starlette]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, store) of the maintenance app under uvicorn; 127.0.0.1 is its proxy."""
    pytest.importorskip("uvicorn")
    store = str(tmp_path / "events.sqlite3")
    port = free_port()
    proc = start_server(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.apps.maintenance_app:app",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        port,
        env={"GRACEFAIL_DB": store, "GF_ALLOW": "10.0.0.0/8", "GF_PROXIES": "127.0.0.1",
             "GRACEFAIL_RECORD_IN_TESTS": "1"},
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        stop(proc)


def command(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "gracefail", "maintenance", *args],
        check=True, cwd=ROOT, capture_output=True, timeout=60,
    )  # fmt: skip


def wait_for(client: httpx.Client, url: str, status: int) -> float:
    """Seconds until ``url`` answers ``status`` (at most 5)."""
    start = time.monotonic()
    while time.monotonic() - start < 5:
        if client.get(url, headers=CURL).status_code == status:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{url} did not answer {status} within 5 s")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_one_command_switches_the_app_and_users_get_the_maintenance_page(
    site: tuple[str, str],
) -> None:
    base, store = site
    with httpx.Client(base_url=base, timeout=10) as client:
        plain = client.get("/", headers=NAV)
        assert plain.status_code == 200
        assert "x-gracefail-maintenance" not in plain.headers

        command("on", "--store", store, "--for", "10m", "--message", "Moving to <new> servers")
        assert wait_for(client, "/", 503) < 1.5  # one read a second, plus the command's exit

        page = client.get("/page?x=1", headers=NAV)
        assert page.status_code == 503
        assert page.headers["x-gracefail-maintenance"] == "on"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-type"].startswith("text/html")
        assert 540 < int(page.headers["retry-after"]) <= 600 + 60
        text = page.text
        assert "planned maintenance" in text
        assert "Moving to &lt;new&gt; servers" in text
        assert "<new>" not in text
        state = maintenance.status(store)
        assert state is not None
        assert state.ends is not None
        ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(state.ends)))
        assert f'<time id="gf-end" datetime="{ends}">' in text  # the script shows it locally
        # Self-contained: the only script is allowed by its hash, nothing else is loaded.
        scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
        assert len(scripts) == 1
        assert _sha256(scripts[0]) in page.headers["content-security-policy"]
        assert not re.search(r"""(src|href)=["']https?:""", text)

        problem = client.get("/page", headers=API)
        assert problem.status_code == 503
        assert problem.headers["content-type"] == "application/problem+json"
        body = problem.json()
        assert body["status"] == 503
        assert body["maintenance"] is True
        assert body["detail"] == "Moving to <new> servers"
        assert body["ends"] == ends
        assert body["retry_after"] == int(problem.headers["retry-after"])

        curl = client.get("/", headers=CURL)
        assert curl.text.startswith("503 Service Unavailable: planned maintenance.")
        head = client.head("/", headers=NAV)
        assert head.status_code == 503
        assert head.content == b""

        # POST is answered too, and its page says it will not resubmit.
        post = client.post("/page", headers=NAV, content=b"a=1")
        assert post.status_code == 503
        assert "will not be sent again" in post.text

        command("off", "--store", store)
        assert wait_for(client, "/", 200) < 1.5
        back = client.get("/", headers=NAV)
        assert "x-gracefail-maintenance" not in back.headers

    with sqlite3.connect(store) as conn:
        rows = conn.execute(
            "SELECT status, cause, source FROM gracefail_failures WHERE cause = 'maintenance'"
        ).fetchall()
    assert rows
    assert set(rows) == {(503, "maintenance", "app")}


def test_allowed_networks_and_paths_pass_with_the_banner_others_spread_out(
    site: tuple[str, str],
) -> None:
    base, store = site
    maintenance.switch_on(store, duration=300, set_by="test")
    with httpx.Client(base_url=base, timeout=10) as client:
        wait_for(client, "/", 503)
        staff = client.get("/", headers={**NAV, "x-forwarded-for": "10.1.2.3"})
        assert staff.status_code == 200
        assert staff.text.startswith("hello")
        assert staff.headers["x-gracefail-maintenance"] == "on"

        health = client.get("/healthz", headers=CURL)
        assert (health.status_code, health.text) == (200, "healthy")
        assert health.headers["x-gracefail-maintenance"] == "on"

        # Everyone else waits for the end plus their own share of the spread.
        waits = {}
        for n in range(1, 41):
            address = f"192.0.2.{n}"
            reply = client.get("/", headers={**CURL, "x-forwarded-for": address})
            assert reply.status_code == 503
            waits[address] = int(reply.headers["retry-after"])
        assert all(240 < wait <= 300 + 60 for wait in waits.values())
        assert len(set(waits.values())) > 10  # spread, not one second for all
        again = client.get("/", headers={**CURL, "x-forwarded-for": "192.0.2.7"})
        assert abs(int(again.headers["retry-after"]) - waits["192.0.2.7"]) <= 1  # stable

        # The client is the rightmost address the trusted proxy did not add itself: an
        # allowed address written further left by the client is not believed.
        spoofed = client.get("/", headers={**CURL, "x-forwarded-for": "10.1.2.3, 192.0.2.9"})
        assert spoofed.status_code == 503
