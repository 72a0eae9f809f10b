"""The demo apps (``make demo``/``gracefail demo``), each run for real in front of the
flapping upstream: the page while it is down or slow, the app once it is up. The
Starlette demo also runs from the package alone, without the source checkout."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
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


def recovers(port: int) -> None:
    """The demo on ``port`` serves the page while its upstream (``port + 1``) is down or
    slow, and the shop once it is up."""
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
    recovers(port)


def installed_copy(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``gracefail`` is a copy of the package alone, as a wheel
    installs it: no example_apps/ beside it."""
    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "src" / "gracefail", site / "gracefail", ignore=shutil.ignore_patterns("__pycache__")
    )
    return {"PYTHONPATH": str(site), "GRACEFAIL_DB": str(tmp_path / "events.db")}


def test_gracefail_demo_runs_from_the_package_alone(server_factory: object, tmp_path: Path) -> None:
    port = two_free_ports()
    env = installed_copy(tmp_path)
    server_factory(  # type: ignore[operator]
        [sys.executable, "-m", "gracefail", "demo", "--port", str(port)], port, env
    )
    recovers(port)


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django"])
def test_gracefail_demo_from_the_package_says_where_the_other_demos_are(
    framework: str, tmp_path: Path
) -> None:
    env = {**os.environ, **installed_copy(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "gracefail", "demo", "--framework", framework],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"make demo FRAMEWORK={framework}" in done.stderr
    assert "pip download" in done.stderr
    assert "`gracefail demo`" in done.stderr, "the packaged demo is offered"
