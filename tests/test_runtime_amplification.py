"""What a request costs in reply, under a real uvicorn: a long URL does not grow the page.

Issue 12, defect 10: a 100 KB path gave a 1 MB page (the URL written twice, escaped).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from gracefail.render import MAX_ECHOED_URL, PAGE_BUDGET
from tests.apps.common import NAV, free_port
from tests.conftest import start_server, stop


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    pytest.importorskip("uvicorn")
    port = free_port()
    proc = start_server(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.apps.asgi_app:wrapped_app",
         "--port", str(port), "--log-level", "warning", "--no-access-log",
         # h11, whatever else is installed (httptools answers 400 to a 100 KB request
         # line), with room for the long request line.
         "--http", "h11", "--h11-max-incomplete-event-size", "1000000"],
        port,
    )  # fmt: skip
    try:
        yield port
    finally:
        stop(proc)


def get(port: int, target: str) -> tuple[bytes, bytes]:
    """(status line and headers, body) of a GET sent as it is: httpx refuses URLs over 64 KB."""
    headers = "".join(f"{name}: {value}\r\n" for name, value in NAV.items())
    request = f"GET {target} HTTP/1.1\r\nHost: shop\r\n{headers}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request.encode("ascii"))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    "segment",
    [
        pytest.param("a" * 100_000, id="100KB-plain"),
        pytest.param("&" * 100_000, id="100KB-of-amp-5x-in-html"),
        pytest.param("'" * 50_000 + "%22" * 16_000, id="quotes"),
    ],
)
def test_a_100kb_path_gives_a_page_within_the_budget(port: int, segment: str) -> None:
    short_head, short = get(port, "/items/1?fail=1")
    head, body = get(port, f"/items/{segment}?fail=1")
    assert short_head.startswith(b"HTTP/1.1 502")
    assert head.startswith(b"HTTP/1.1 502"), head[:200]
    assert b"content-type: text/html" in head.lower()
    assert len(body) <= PAGE_BUDGET + MAX_ECHOED_URL, len(body)
    assert len(body) <= len(short) + MAX_ECHOED_URL
