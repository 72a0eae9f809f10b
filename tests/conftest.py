"""Shared fixtures: free loopback ports, real server processes, CI-aware requirements."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apps.common import free_port

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last: sync Playwright keeps a loop running in the main thread
    until its session fixture closes, which asyncio tests after it cannot share."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def require(condition: bool, what: str, how: str) -> None:
    """Skip outside CI with how to install ``what``; in CI a missing tool is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing ({how})")
    pytest.skip(f"{what} is not installed: {how}")


def require_binary(path: str, how: str) -> str:
    found = path if os.path.isabs(path) and os.access(path, os.X_OK) else shutil.which(path)
    require(found is not None, path, how)
    assert found is not None
    return found


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server we started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start_server(
    args: list[str], port: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            args,
            cwd=str(cwd or ROOT),
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            wait_for_port(port, proc)
        except Exception:
            stop(proc)
            errors.seek(0)
            err = errors.read().decode(errors="replace")
            raise RuntimeError(f"{args[:4]} did not start:\n{err[-3000:]}") from None
    return proc


@pytest.fixture(scope="session", autouse=True)
def _event_store_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Apps built with the default store write here, not to ./gracefail.sqlite3; and they
    record although pytest runs (the suite checks what reaches the store; the default
    off-under-tests is tested on its own, in tests/adapters/test_newcomer.py)."""
    values = {
        "GRACEFAIL_DB": str(tmp_path_factory.mktemp("store") / "events.sqlite3"),
        "GRACEFAIL_RECORD_IN_TESTS": "1",
    }
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def server_factory() -> Iterator[object]:
    """Start real server processes; every one is stopped by PID at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def factory(
        args: list[str], port: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = start_server(args, port, env)
        procs.append(proc)
        return proc

    yield factory
    for proc in procs:
        stop(proc)
