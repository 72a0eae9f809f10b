"""gracefail's own log lines under real servers: nothing a request carries forges a line.

Issue 12, defect 7: a path with ``%0d%0a`` (or a proxy header with a C1 line break)
put raw line breaks into gracefail's WARNING line. The servers here are real uvicorn
processes on free loopback ports, stopped by PID.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gracefail import Config
from gracefail.core import Engine, RequestView, loggable
from gracefail.views import scope_view
from tests.apps.common import SECRET, free_port
from tests.conftest import ROOT, stop, wait_for_port

FORGED = "WARNING:gracefail: forged line"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    """Start a server with its stderr in a file; ``serve(args)`` -> (port, read_log)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str]) -> tuple[int, object]:
        port = free_port()
        log_path = tmp_path / f"server-{port}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [arg.replace("{port}", str(port)) for arg in args],
                cwd=str(ROOT),
                env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        procs.append(proc)
        wait_for_port(port, proc)

        def read_log() -> str:
            stop(proc)
            return log_path.read_bytes().decode("utf-8", "replace")

        return port, read_log

    yield start
    for proc in procs:
        stop(proc)


def raw_request(port: int, request: bytes) -> bytes:
    """Send bytes as they are (no client library re-encodes them); the status line back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def gracefail_lines(text: str) -> list[str]:
    # str.splitlines breaks at every line boundary a log reader may honour: \r, \n,
    # \x85 (NEL), \u2028, \u2029, \x1c-\x1e...
    return [line for line in text.splitlines() if "gracefail" in line]


def test_asgi_path_with_crlf_under_uvicorn_logs_one_line(serve: object) -> None:
    pytest.importorskip("uvicorn")
    port, read_log = serve(  # type: ignore[operator]
        [sys.executable, "-m", "uvicorn", "--factory", "tests.apps.asgi_app:wrapped_app",
         "--port", "{port}", "--log-level", "warning", "--no-access-log"]
    )  # fmt: skip
    target = b"/items/x%0d%0aWARNING:gracefail:%20forged%20line%0d%0a?fail=1"
    status = raw_request(port, b"GET " + target + b" HTTP/1.1\r\nHost: shop\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 502"), status
    lines = gracefail_lines(read_log())
    assert not any(line.startswith(FORGED) for line in lines), lines
    [line] = [line for line in lines if "failed upstream" in line]
    assert "/items/x%0d%0aWARNING:gracefail:%20forged%20line%0d%0a " in line, line


def test_gateway_original_uri_with_c1_controls_under_uvicorn_logs_one_line(
    serve: object, tmp_path: Path
) -> None:
    """A proxy's X-Original-URI may carry bytes 0x80-0xff; as latin-1 they include C1
    controls: NEL (0x85) ends a line for many readers, CSI (0x9b) drives terminals."""
    pytest.importorskip("uvicorn")
    port, read_log = serve(  # type: ignore[operator]
        [sys.executable, "-m", "gracefail", "serve", "--port", "{port}", "--secret", SECRET,
         "--store", str(tmp_path / "gateway.sqlite3")]
    )  # fmt: skip
    request = (
        b"GET / HTTP/1.1\r\nHost: shop\r\nX-Code: 502\r\n"
        b"X-Original-URI: /shop/\x85" + FORGED.encode() + b"\x9b31m\r\n\r\n"
    )
    assert raw_request(port, request).startswith(b"HTTP/1.1 502")
    lines = gracefail_lines(read_log())
    assert not any(line.startswith(FORGED) for line in lines), lines
    [line] = [line for line in lines if "failed upstream" in line]
    assert "GET /shop/\\x85WARNING:gracefail: forged line\\x9b31m failed upstream" in line


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("/a/b?c", "/a/b?c", id="plain"),
        pytest.param("/a\r\nWARNING: x", "/a\\r\\nWARNING: x", id="crlf"),
        pytest.param("/\x00\x1b[31m\x7f", "/\\x00\\x1b[31m\\x7f", id="c0-del"),
        pytest.param("/\x85\x9b\u2028\u2029", "/\\x85\\x9b\\u2028\\u2029", id="c1-separators"),
        pytest.param("/a\\x0a", "/a\\\\x0a", id="backslash-is-escaped-too"),
        pytest.param("/caf\u00e9", "/caf\u00e9", id="printable-unicode-kept"),
    ],
)
def test_loggable(value: str, shown: str) -> None:
    assert loggable(value) == shown


def test_loggable_shortens_long_values() -> None:
    shown = loggable("/" + "x" * 100_000)
    assert len(shown) < 600
    assert shown.endswith("...(100001 characters)")


def test_log_failure_escapes_every_value(caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(Config(secret=SECRET, recorders=[]), testing=True)
    caplog.set_level(logging.WARNING, logger="gracefail")
    view = RequestView("GET\n", "/p\r\n" + FORGED, headers={"accept": "text/plain"})
    engine.serve(engine.failure_for_status(502), view)
    engine.close()
    [record] = [r for r in caplog.records if "failed upstream" in r.getMessage()]
    message = record.getMessage()
    assert message.splitlines() == [message]
    assert "GET\\n /p\\r\\nWARNING:gracefail: forged line failed upstream" in message


def test_asgi_view_without_raw_path_encodes_the_decoded_path() -> None:
    """Servers that give no raw_path: scope["path"] is decoded, so "%" is a character."""
    scope = {"type": "http", "method": "GET", "path": "/a%0d\r\n/\u00e9", "headers": []}
    assert scope_view(scope).path == "/a%250d%0D%0A/%C3%A9"
    raw = {**scope, "raw_path": b"/a%250d%0d%0a/%C3%A9"}
    assert scope_view(raw).path == "/a%250d%0d%0a/%C3%A9"
