"""integrations/caddy/Caddyfile with the real Caddy and the real `gracefail serve`: the app
process is down or silent, Caddy's handle_errors asks the gateway, the exported page
answers when the gateway is down too. (The browser's recovery: tests/browser.)"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.proxies import (
    GATEWAY_RETRY_AFTER,
    NAV,
    Backends,
    Caddy,
    SilentApp,
    caddy_binary,
    caddy_validate,
    caddyfile,
    export_for_caddy,
    post_shown_beacon,
)
from tests.browser.support import eventually

pytestmark = pytest.mark.integration

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FORM = {"content-type": "application/x-www-form-urlencoded", **NAV}


class Stack:
    def __init__(self, tmp: Path, *, gateway: bool = True) -> None:
        self.backends = Backends(tmp, gateway=gateway)
        try:
            self.caddy = Caddy(tmp, self.backends)
        except BaseException:
            self.backends.stop()
            raise
        self.base = self.caddy.base

    def failures(self, incident: str) -> list[sqlite3.Row]:
        """What the gateway recorded for ``incident`` (its recorder writes in batches)."""
        with sqlite3.connect(self.backends.store) as db:
            db.row_factory = sqlite3.Row
            return db.execute(
                "SELECT * FROM gracefail_failures WHERE incident = ?", (incident,)
            ).fetchall()

    def stop(self) -> None:
        self.caddy.stop()
        self.backends.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Caddy and one gateway for the module; the app's port refuses connections."""
    running = Stack(tmp_path_factory.mktemp("caddy"))
    yield running
    running.stop()


def recorded(stack: Stack, incident: str) -> sqlite3.Row:
    rows = eventually(lambda: stack.failures(incident), what=f"incident {incident} recorded")
    (row,) = rows
    return row


def test_curl_gets_the_branded_502_as_text(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/ok?page=2", headers={"accept": "*/*"})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == GATEWAY_RETRY_AFTER
    # Caddy's request id, passed as X-Request-ID, is the incident id.
    incident = response.headers["x-gracefail-incident"]
    assert UUID.fullmatch(incident)
    assert incident in response.text
    assert response.headers.get_list("server") == ["Caddy"]
    row = recorded(stack, incident)
    assert (row["source"], row["status"], row["cause"]) == ("gateway", 502, "app_unreachable")
    assert row["route"] == "/ok"  # from X-Original-URI


def test_json_client_gets_problem_json(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/ok", headers={"accept": "application/json"})
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["status"], problem["retry_after"]) == (502, int(GATEWAY_RETRY_AFTER))
    assert problem["incident"] == response.headers["x-gracefail-incident"]


def test_browser_navigation_gets_the_page_for_the_original_uri(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/ok?page=2", headers=NAV)
    assert response.status_code == 502
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    # The retry link (the page without JavaScript) points at what the browser asked for.
    assert 'id="gf-link" href="/ok?page=2"' in response.text
    assert '"safe":true' in response.text
    head = httpx.head(f"{stack.base}/ok", headers=NAV)
    assert (head.status_code, head.content) == (502, b"")


def test_504_when_the_app_accepts_but_does_not_answer(stack: Stack) -> None:
    silent = SilentApp(stack.backends.app_port)
    try:
        response = httpx.get(f"{stack.base}/ok", headers={"accept": "*/*"}, timeout=30)
    finally:
        silent.close()
    assert response.status_code == 504
    assert response.headers["cache-control"] == "no-store"
    row = recorded(stack, response.headers["x-gracefail-incident"])
    assert (row["status"], row["cause"]) == (504, "app_timeout")


def test_a_form_post_gets_the_static_page_and_a_bodiless_one_the_gateway(stack: Stack) -> None:
    # Caddy cannot send a consumed body again: the exported page, unrecorded.
    form = httpx.post(f"{stack.base}/ok", content=b"qty=1", headers=FORM)
    assert form.status_code == 502
    assert 'id="gf-config"' in form.text
    assert "x-gracefail-incident" not in form.headers
    assert "script-src 'sha256-" in form.headers["content-security-policy"]
    assert form.headers["cache-control"] == "no-store"
    # Without a body the gateway answers, with the page for unsafe methods.
    bodiless = httpx.delete(f"{stack.base}/ok", headers=NAV)
    assert bodiless.status_code == 502
    assert '"safe":false' in bodiless.text
    assert recorded(stack, bodiless.headers["x-gracefail-incident"])["method"] == "DELETE"


def test_beacons_reach_the_gateway_while_the_app_is_down(stack: Stack) -> None:
    shown_before = stack.backends.report()["pages_shown"]
    page = httpx.get(f"{stack.base}/ok", headers=NAV)
    response, _ = post_shown_beacon(stack.base, page.text)
    assert response.status_code == 204
    eventually(
        lambda: stack.backends.report()["pages_shown"] == shown_before + 1,
        what="shown beacon recorded",
    )


def test_the_apps_own_page_passes_through(stack: Stack) -> None:
    stack.backends.start_app()
    try:
        assert httpx.get(f"{stack.base}/ok").text == "hello"
        # The middleware's own 502: not an error for Caddy, so not the gateway's.
        own = httpx.get(f"{stack.base}/connect", headers=NAV)
        assert own.status_code == 502
        assert 'id="gf-config"' in own.text
        assert recorded(stack, own.headers["x-gracefail-incident"])["source"] == "app"
    finally:
        stack.backends.stop_app()


def test_the_exported_page_answers_when_the_gateway_is_down_too(tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway=False)
    try:
        page = httpx.get(f"{stack.base}/ok", headers=NAV)
        assert page.status_code == 502
        assert 'id="gf-config"' in page.text
        assert "script-src 'sha256-" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        silent = SilentApp(stack.backends.app_port)
        try:
            timeout = httpx.get(f"{stack.base}/ok", headers=NAV, timeout=30)
        finally:
            silent.close()
        assert timeout.status_code == 504
        assert 'id="gf-config"' in timeout.text
    finally:
        stack.stop()


def test_caddy_validate_and_a_missing_export_folder(tmp_path: Path) -> None:
    caddy = caddy_binary()
    backends = Backends(tmp_path, gateway=False)
    pages = export_for_caddy(tmp_path / "pages")
    conf = caddyfile(tmp_path, 1, 2, backends, pages)
    assert caddy_validate(caddy, conf).returncode == 0, caddy_validate(caddy, conf).stderr
    missing = caddyfile(tmp_path, 1, 2, backends, tmp_path / "never-exported")
    checked = caddy_validate(caddy, missing)
    assert checked.returncode != 0
    assert "csp.caddy" in checked.stderr
    # Caddy does not look for root: without the import, a missing folder validates.
    text = missing.read_text()
    missing.write_text(re.sub(r"\n\s*import [^\n]*csp\.caddy", "", text))
    assert caddy_validate(caddy, missing).returncode == 0
