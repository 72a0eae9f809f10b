"""The page gzip- and brotli-encoded as gracefail prepares it, decoded by a real Chromium.

A small ASGI app under uvicorn serves ``Renderer.encoded_body`` as it is, with the
coding the browser's own Accept-Encoding chooses (``/page/auto``) or a fixed one: the
browser shows the page, runs its script without a CSP violation, and decodes the bytes
to the very page that is served unencoded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import TabFactory
from tests.browser.support import locale_strings
from tests.conftest import free_port, start_server, stop

pytestmark = pytest.mark.browser

EN = locale_strings("en")
APP = """
import json

from gracefail import Config
from gracefail.classify import Failure
from gracefail.negotiate import accepted_encodings
from gracefail.render import Renderer

renderer = Renderer(Config(secret="encoding-secret-0123456789", recorders=[]))
seen = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = {name.decode(): value.decode() for name, value in scope["headers"]}
    path = scope["path"]
    if path == "/seen":
        body = json.dumps(seen).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    header = headers.get("accept-encoding")
    seen.append(header)
    wanted = path.rsplit("/", 1)[-1]
    accepted = {"auto": accepted_encodings(header), "identity": ()}.get(wanted, (wanted,))
    body, content_type, csp, coding = renderer.encoded_body(
        "html", Failure(502, "connection"), "en", True, "enc0incident0id", "", "/page/x",
        accepted=accepted,
    )
    reply = [(b"content-type", content_type.encode()),
             (b"content-length", str(len(body)).encode()),
             (b"content-security-policy", csp.encode()),
             (b"cache-control", b"no-store"),
             (b"vary", b"Accept, Accept-Language, Accept-Encoding")]
    if coding is not None:
        reply.append((b"content-encoding", coding.encode()))
    await send({"type": "http.response.start", "status": 502, "headers": reply})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("encoding-app")
    (folder / "encoding_app.py").write_text(APP)
    port = free_port()
    proc = start_server(
        [sys.executable, "-m", "uvicorn", "encoding_app:app", "--app-dir", str(folder),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        port,
        cwd=Path(folder),
    )  # fmt: skip
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.mark.parametrize(("path", "coding"), [("auto", "br"), ("br", "br"), ("gzip", "gzip")])
def test_chromium_decodes_the_encoded_page(
    server: str, tabs: TabFactory, path: str, coding: str
) -> None:
    tab = tabs()
    response = tab.goto(f"{server}/page/{path}")
    assert response.status == 502
    assert response.headers.get("content-encoding") == coding
    # What the browser shows and runs: the heading, the incident, the script (under its CSP).
    assert tab.text("h1") == EN["heading"]
    assert tab.text("footer code") == "enc0incident0id"
    assert tab.page.evaluate("() => document.documentElement.classList.contains('js')")
    # The bytes the browser decoded are the page as served unencoded, to the byte.
    plain = httpx.get(f"{server}/page/identity", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    decoded = tab.page.evaluate(
        """async (url) => {
            const reply = await fetch(url);
            return [reply.headers.get("content-encoding"), await reply.text()];
        }""",
        f"{server}/page/{path}",
    )
    assert decoded == [coding, plain.text]
    # Chromium asks for brotli and gzip on a plain-HTTP loopback origin too.
    seen = httpx.get(f"{server}/seen").json()
    assert "br" in seen[0]
    assert "gzip" in seen[0]
