"""The demo apps (``make demo``/``gracefail demo``), each run for real in front of the
flapping upstream: the page while it is down or slow, the app once it is up."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.server

NAV = {"accept": "text/html,*/*;q=0.8", "sec-fetch-mode": "navigate"}


def two_free_ports() -> int:
    """A port whose successor is free too (the demo puts its upstream on port + 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.mark.parametrize("framework", ["fastapi", "starlette", "flask", "django"])
def test_demo_serves_the_page_and_recovers(
    framework: str, server_factory: object, tmp_path: Path
) -> None:
    port = two_free_ports()
    server_factory(  # type: ignore[operator]
        [
            sys.executable,
            str(ROOT / "example_apps" / "run_demo.py"),
            "--framework",
            framework,
            "--port",
            str(port),
        ],
        port,
        {
            "GRACEFAIL_DB": str(tmp_path / "events.db"),
            "GRACEFAIL_SECRET": "demo-test-secret-0123456789",
        },
    )
    app, upstream = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    with httpx.Client(timeout=20) as http:
        assert http.get(f"{upstream}/_state?down").json() == {"state": "down"}
        down = http.get(f"{app}/", headers=NAV)
        assert down.status_code == 502
        assert "Acme Shop" in down.text
        assert (
            http.get(f"{app}/api/items/anvil", headers={"accept": "application/json"}).json()[
                "status"
            ]
            == 502
        )
        http.get(f"{upstream}/_state?slow")
        assert http.get(f"{app}/", headers=NAV).status_code == 504
        http.get(f"{upstream}/_state?up")
        up = http.get(f"{app}/", headers=NAV)
        assert up.status_code == 200
        assert "Acme Shop" in up.text
