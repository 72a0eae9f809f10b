"""integrations/haproxy with the real HAProxy and the real `gracefail serve`: while the app
backend has no server up, the gateway answers and records; the exported errorfiles answer
HAProxy's own errors (a timeout, a bad answer, the gateway down too). (The browser's
recovery: tests/browser/test_browser_haproxy_apache.py.)"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gracefail import Config, RetryPolicy
from gracefail.export import (
    HAPROXY_OVERHEAD,
    HAPROXY_ROOM,
    export_pages,
    haproxy_response,
    haproxy_size,
)
from tests.apps.common import free_port
from tests.browser.proxies import (
    GATEWAY_RETRY_AFTER,
    NAV,
    SECRET,
    Backends,
    SilentApp,
    page_config,
    post_shown_beacon,
)
from tests.browser.support import eventually
from tests.conftest import ROOT, require_binary, stop, wait_for_port

pytestmark = pytest.mark.integration

GATEWAY_CFG = ROOT / "integrations" / "haproxy" / "gateway.cfg"
STATIC_CFG = ROOT / "integrations" / "haproxy" / "static.cfg"
README = ROOT / "integrations" / "haproxy" / "README.md"
FORM = {"content-type": "application/x-www-form-urlencoded", **NAV}
CURL = {"accept": "*/*"}
# The exported pages' first probe waits this long (the browser tests wait for recovery).
EXPORT_RETRY = RetryPolicy(retry_after=1, base=0.5, cap=2, give_up_after=60)


def haproxy_binary() -> str:
    return require_binary("/usr/sbin/haproxy", "apt-get install haproxy")


def export(pages: Path) -> Path:
    export_pages(Config(recorders=[], secret=SECRET, retry=EXPORT_RETRY), pages)
    return pages


def haproxy_cfg(
    tmp: Path, shipped: Path, port: int, backends: Backends, pages: Path, timeout: str = "1s"
) -> Path:
    """A shipped config on loopback ports with a short server timeout."""
    text = shipped.read_text()
    for original, here in (
        ("bind :80", f"bind 127.0.0.1:{port}"),
        ("127.0.0.1:8000", f"127.0.0.1:{backends.app_port}"),
        ("127.0.0.1:8080", f"127.0.0.1:{backends.gateway_port}"),
        ("/var/www/gracefail", str(pages)),
        ("timeout server 30s", f"timeout server {timeout}"),
    ):
        if original != "127.0.0.1:8080":  # static.cfg has no gateway
            assert original in text, original
        text = text.replace(original, here)
    conf = tmp / f"haproxy-{port}.cfg"
    conf.write_text(text)
    return conf


def haproxy_check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([haproxy_binary(), "-c", "-f", str(conf)], capture_output=True, text=True)


class HAProxy:
    """HAProxy on ``port`` with a shipped config; what it writes to stderr in ``log``."""

    def __init__(
        self, tmp: Path, backends: Backends, pages: Path, shipped: Path = GATEWAY_CFG
    ) -> None:
        self.port = free_port()
        self.conf = haproxy_cfg(tmp, shipped, self.port, backends, pages)
        checked = haproxy_check(self.conf)
        assert checked.returncode == 0, checked.stderr
        self.log = tmp / f"haproxy-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [haproxy_binary(), "-f", str(self.conf)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            wait_for_port(self.port, self.proc)
        except BaseException:
            stop(self.proc)
            raise
        self.base = f"http://127.0.0.1:{self.port}"

    def app_down(self) -> None:
        """Wait until a health check has taken the app server out."""
        eventually(lambda: "app/app1 is DOWN" in self.log.read_text(), what="app server DOWN")

    def stop(self) -> None:
        stop(self.proc)


class ClosingApp:
    """An app that accepts each connection and closes it without a word: a proxy's 502."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def until(
    request: Callable[[], httpx.Response], check: Callable[[httpx.Response], bool], what: str
) -> httpx.Response:
    """Send ``request`` until its response passes ``check``."""

    def attempt() -> httpx.Response | None:
        response = request()
        return response if check(response) else None

    return eventually(attempt, what=what)


def failures(store: Path, incident: str) -> list[sqlite3.Row]:
    """What the gateway recorded for ``incident`` (its recorder writes in batches)."""
    with sqlite3.connect(store) as db:
        db.row_factory = sqlite3.Row
        return db.execute(
            "SELECT * FROM gracefail_failures WHERE incident = ?", (incident,)
        ).fetchall()


def recorded(store: Path, incident: str) -> sqlite3.Row:
    (row,) = eventually(lambda: failures(store, incident), what=f"incident {incident} recorded")
    return row


def page_events(store: Path, incident: str) -> list[tuple[str]]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT kind FROM gracefail_page_events WHERE incident = ?", (incident,)
        ).fetchall()


def static_headers_hold(response: httpx.Response, pages: Path) -> None:
    """The headers the exported page needs, as `gracefail export` wrote them."""
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == str(EXPORT_RETRY.retry_after)
    assert (
        response.headers["content-security-policy"]
        == ((pages / "csp.conf").read_text().split('"')[1])
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-gracefail-incident" not in response.headers  # nothing recorded it


class Stack:
    """gateway.cfg in front of the app's port (nothing listens) and `gracefail serve`."""

    def __init__(self, tmp: Path, *, gateway: bool = True, shipped: Path = GATEWAY_CFG) -> None:
        self.backends = Backends(tmp, gateway=gateway)
        self.pages = export(tmp / "pages")
        try:
            self.haproxy = HAProxy(tmp, self.backends, self.pages, shipped)
        except BaseException:
            self.backends.stop()
            raise
        self.base = self.haproxy.base
        self.store = self.backends.store

    def from_gateway(self, path: str = "/ok", headers: dict[str, str] = CURL) -> httpx.Response:
        """The gateway's reply, once a health check has taken the app server out."""
        return until(
            lambda: httpx.get(f"{self.base}{path}", headers=headers),
            lambda r: "x-gracefail-incident" in r.headers,
            what="HAProxy sends requests to gracefail serve",
        )

    def stop(self) -> None:
        self.haproxy.stop()
        self.backends.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One HAProxy and one gateway for the module; the app's port refuses connections."""
    running = Stack(tmp_path_factory.mktemp("haproxy"))
    yield running
    running.stop()


def test_curl_gets_the_gateways_503_as_text(stack: Stack) -> None:
    response = stack.from_gateway("/ok?page=2")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == GATEWAY_RETRY_AFTER
    incident = response.headers["x-gracefail-incident"]
    assert incident in response.text
    row = recorded(stack.store, incident)
    # Recorded as a 502 with the cause of HAProxy's 503: no server was up.
    assert (row["source"], row["status"], row["cause"]) == ("gateway", 502, "app_unavailable")
    assert row["route"] == "/ok"


def test_json_client_gets_problem_json(stack: Stack) -> None:
    response = stack.from_gateway(headers={"accept": "application/json"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["incident"] == response.headers["x-gracefail-incident"]


def test_browser_navigation_gets_the_page_for_the_original_uri(stack: Stack) -> None:
    response = stack.from_gateway("/ok?page=2", NAV)
    assert response.status_code == 503
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    assert page_config(response.text)["safe"] is True
    assert 'id="gf-link" href="/ok?page=2"' in response.text


def test_a_post_reaches_the_gateway_with_its_method(stack: Stack) -> None:
    stack.from_gateway()
    form = httpx.post(f"{stack.base}/ok", content=b"qty=1", headers=FORM)
    assert form.status_code == 503
    assert page_config(form.text)["safe"] is False
    assert recorded(stack.store, form.headers["x-gracefail-incident"])["method"] == "POST"


def test_beacons_reach_the_gateway_while_the_app_is_down(stack: Stack) -> None:
    response, config = post_shown_beacon(stack.base, stack.from_gateway(headers=NAV).text)
    assert response.status_code == 204
    shown = eventually(
        lambda: page_events(stack.store, str(config["incident"])), what="shown beacon recorded"
    )
    assert shown == [("shown",)]


def test_the_apps_own_answers_pass_through(stack: Stack) -> None:
    stack.backends.start_app()
    try:
        ok = until(
            lambda: httpx.get(f"{stack.base}/ok"),
            lambda r: r.status_code == 200,
            what="a health check brings the app server back",
        )
        assert ok.text == "hello"
        # The middleware's own 502 is not an error for HAProxy: no errorfile replaces it.
        own = httpx.get(f"{stack.base}/connect", headers=NAV)
        assert own.status_code == 502
        assert 'id="gf-config"' in own.text
        assert recorded(stack.store, own.headers["x-gracefail-incident"])["source"] == "app"
    finally:
        stack.backends.stop_app()
    assert stack.from_gateway().status_code == 503


def test_errorfiles_answer_a_timeout_and_a_bad_answer(stack: Stack) -> None:
    # A server that accepts passes the health check; HAProxy's own 504 and 502 follow.
    silent = SilentApp(stack.backends.app_port)
    try:
        timeout = until(
            lambda: httpx.get(f"{stack.base}/ok", headers=NAV, timeout=30),
            lambda r: r.status_code == 504,
            what="HAProxy's 504 (server timeout)",
        )
    finally:
        silent.close()
    assert timeout.content == (stack.pages / "504.html").read_bytes()
    static_headers_hold(timeout, stack.pages)
    closing = ClosingApp(stack.backends.app_port)
    try:
        bad = until(
            lambda: httpx.get(f"{stack.base}/ok", headers=NAV),
            lambda r: r.status_code == 502,
            what="HAProxy's 502 (no answer)",
        )
    finally:
        closing.close()
    assert bad.content == (stack.pages / "502.html").read_bytes()
    static_headers_hold(bad, stack.pages)


def test_the_exported_page_answers_when_the_gateway_is_down_too(tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway=False)
    try:
        stack.haproxy.app_down()
        for headers in (NAV, {"accept": "application/json"}):
            page = httpx.get(f"{stack.base}/ok", headers=headers)
            assert page.status_code == 503
            # Static pages are HTML only: a JSON client gets the page too.
            assert page.content == (stack.pages / "502.html").read_bytes()
            static_headers_hold(page, stack.pages)
            assert int(page.headers["content-length"]) == len(page.content)
    finally:
        stack.stop()


def test_static_cfg_without_the_gateway(tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway=False, shipped=STATIC_CFG)
    try:
        page = httpx.get(f"{stack.base}/ok", headers=NAV)
        assert page.status_code == 503
        assert page.content == (stack.pages / "502.html").read_bytes()
        static_headers_hold(page, stack.pages)
        stack.backends.start_app()
        assert httpx.get(f"{stack.base}/ok").text == "hello"
    finally:
        stack.stop()


def test_a_missing_export_folder_fails_haproxy_c(tmp_path: Path) -> None:
    backends = Backends(tmp_path, gateway=False)
    missing = tmp_path / "never-exported"
    for shipped in (GATEWAY_CFG, STATIC_CFG):
        checked = haproxy_check(haproxy_cfg(tmp_path, shipped, free_port(), backends, missing))
        assert checked.returncode != 0
        assert f"{missing}/haproxy/502.http" in checked.stderr
    assert "haproxy -c" in README.read_text()


def test_the_room_export_checks_is_what_haproxy_has(tmp_path: Path) -> None:
    """An errorfile that export's estimate puts just within HAPROXY_ROOM starts without a
    warning; one it puts HAPROXY_OVERHEAD over, with one (so the estimate errs on the safe
    side, by less than its margin)."""
    backends = Backends(tmp_path, gateway=False)
    pages = export(tmp_path / "pages")
    errorfile = pages / "haproxy" / "502.http"
    head = errorfile.read_bytes().split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]
    headers = [
        (name, value)
        for name, value in (line.split(": ", 1) for line in head)
        if name not in ("Content-Length", "Connection")
    ]

    def warned(estimate: int) -> bool:
        size = 0
        while (gap := estimate - haproxy_size(haproxy_response(502, b"x" * size, headers))) != 0:
            size += gap
        errorfile.write_bytes(haproxy_response(502, b"x" * size, headers))
        proxy = HAProxy(tmp_path, backends, pages, STATIC_CFG)
        proxy.stop()
        return "reserved to headers rewriting" in proxy.log.read_text()

    assert not warned(HAPROXY_ROOM)
    assert warned(HAPROXY_ROOM + HAPROXY_OVERHEAD)
