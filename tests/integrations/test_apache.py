"""integrations/apache with the real Apache httpd and the real `gracefail serve`: mod_proxy's
errors become gracefail's page, from the gateway (recorded) or from the exported files.
(The browser's recovery: tests/browser/test_browser_haproxy_apache.py.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apps.common import free_port
from tests.browser.proxies import (
    GATEWAY_RETRY_AFTER,
    NAV,
    Backends,
    SilentApp,
    post_shown_beacon,
)
from tests.browser.support import eventually
from tests.conftest import ROOT, require_binary, start_server, stop
from tests.integrations.test_haproxy import (
    CURL,
    FORM,
    ClosingApp,
    export,
    page_config,
    page_events,
    recorded,
    static_headers_hold,
)

pytestmark = pytest.mark.integration

GATEWAY_CONF = ROOT / "integrations" / "apache" / "gateway.conf"
STATIC_CONF = ROOT / "integrations" / "apache" / "gracefail.conf"
README = ROOT / "integrations" / "apache" / "README.md"
MODULES_DIR = Path("/usr/lib/apache2/modules")
MODULES = (
    "mpm_event", "authz_core", "alias", "headers", "setenvif", "proxy", "proxy_http",
    "proxy_balancer", "slotmem_shm", "lbmethod_byrequests",
)  # fmt: skip


def apache_binary() -> str:
    return require_binary("/usr/sbin/apache2", "apt-get install apache2")


@contextlib.contextmanager
def readable_folder() -> Iterator[Path]:
    """A folder Apache's children can read: started as root, they run as nobody, and
    pytest's own temporary folders are private to root."""
    folder = Path(tempfile.mkdtemp(prefix="gracefail-apache-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def readable() -> Iterator[Path]:
    with readable_folder() as folder:
        yield folder


def apache_conf(
    folder: Path, shipped: Path, port: int, backends: Backends, pages: Path, timeout: int = 1
) -> Path:
    """A whole httpd.conf: the shipped snippet in a <VirtualHost> on a loopback port, and
    a short proxy timeout."""
    snippet = shipped.read_text()
    replacements = {"127.0.0.1:8000": f"127.0.0.1:{backends.app_port}"}
    if shipped == GATEWAY_CONF:
        replacements["127.0.0.1:8080"] = f"127.0.0.1:{backends.gateway_port}"
    else:
        replacements["/var/www/gracefail"] = str(pages)
    for original, here in replacements.items():
        assert original in snippet, original
        snippet = snippet.replace(original, here)
    user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
    modules = "".join(f"LoadModule {m}_module {MODULES_DIR}/mod_{m}.so\n" for m in MODULES)
    conf = folder / f"httpd-{port}.conf"
    conf.write_text(
        f"ServerRoot {folder}\nServerName 127.0.0.1\nDefaultRuntimeDir {folder}\n"
        f"PidFile {folder}/httpd-{port}.pid\nErrorLog {folder}/error-{port}.log\n"
        f"LogLevel warn\nListen 127.0.0.1:{port}\n{user}{modules}ProxyTimeout {timeout}\n"
        f"<VirtualHost 127.0.0.1:{port}>\n{snippet}\n</VirtualHost>\n"
    )
    return conf


def apache_check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([apache_binary(), "-t", "-f", str(conf)], capture_output=True, text=True)


class Apache:
    """Apache httpd in the foreground on its own port, with a shipped snippet."""

    def __init__(self, folder: Path, backends: Backends, pages: Path, shipped: Path) -> None:
        self.port = free_port()
        conf = apache_conf(folder, shipped, self.port, backends, pages)
        checked = apache_check(conf)
        assert checked.returncode == 0, checked.stderr
        self.proc = start_server([apache_binary(), "-f", str(conf), "-DFOREGROUND"], self.port)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc)


class Stack:
    """Apache in front of the app's port (nothing listens) and `gracefail serve`."""

    def __init__(
        self, tmp: Path, readable: Path, *, gateway: bool = True, shipped: Path = GATEWAY_CONF
    ) -> None:
        self.backends = Backends(tmp, gateway=gateway)
        folder = Path(tempfile.mkdtemp(dir=readable))
        folder.chmod(0o755)
        self.pages = export(folder / "pages")
        try:
            self.apache = Apache(readable, self.backends, self.pages, shipped)
        except BaseException:
            self.backends.stop()
            raise
        self.base = self.apache.base
        self.store = self.backends.store

    def stop(self) -> None:
        self.apache.stop()
        self.backends.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, readable: Path) -> Iterator[Stack]:
    """gateway.conf for the module; the app's port refuses connections."""
    running = Stack(tmp_path_factory.mktemp("apache"), readable)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory, readable: Path) -> Iterator[Stack]:
    """gracefail.conf (the exported pages only) for the module."""
    running = Stack(tmp_path_factory.mktemp("apache"), readable, gateway=False,
                    shipped=STATIC_CONF)  # fmt: skip
    yield running
    running.stop()


def test_curl_gets_the_gateways_503_as_text(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/ok?page=2", headers=CURL)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == GATEWAY_RETRY_AFTER
    incident = response.headers["x-gracefail-incident"]
    assert incident in response.text
    row = recorded(stack.store, incident)
    assert (row["source"], row["status"], row["cause"]) == ("gateway", 502, "app_unavailable")
    assert row["route"] == "/ok"  # from X-Original-URI


def test_json_client_gets_problem_json(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/ok", headers={"accept": "application/json"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["incident"] == response.headers["x-gracefail-incident"]


def test_browser_navigation_gets_the_page_for_the_original_uri(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/ok?page=2&q=a%20b", headers=NAV)
    assert response.status_code == 503
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    # The retry link is the URL the user asked for (X-Original-URI), not the error document's.
    assert 'id="gf-link" href="/ok?page=2&amp;q=a%20b"' in response.text


def test_a_post_gets_the_get_page(stack: Stack) -> None:
    # Apache turns an error document's request into a GET: the gateway cannot know.
    form = httpx.post(f"{stack.base}/ok", content=b"qty=1", headers=FORM)
    assert form.status_code == 503
    assert page_config(form.text)["safe"] is True
    assert recorded(stack.store, form.headers["x-gracefail-incident"])["method"] == "GET"


def test_a_timeout_is_a_502_in_apache(stack: Stack) -> None:
    # mod_proxy_http answers ProxyTimeout with 502 ("Error reading from remote server").
    silent = SilentApp(stack.backends.app_port)
    try:
        response = httpx.get(f"{stack.base}/ok", headers=CURL, timeout=30)
    finally:
        silent.close()
    assert response.status_code == 502
    row = recorded(stack.store, response.headers["x-gracefail-incident"])
    assert (row["status"], row["source"]) == (502, "gateway")


def test_beacons_reach_the_gateway_while_the_app_is_down(stack: Stack) -> None:
    response, config = post_shown_beacon(
        stack.base, httpx.get(f"{stack.base}/ok", headers=NAV).text
    )
    assert response.status_code == 204
    shown = eventually(
        lambda: page_events(stack.store, str(config["incident"])), what="shown beacon recorded"
    )
    assert shown == [("shown",)]


def test_error_documents_are_not_reachable_directly(stack: Stack, static: Stack) -> None:
    assert httpx.get(f"{stack.base}/_gracefail_gateway", headers=NAV).status_code == 403
    assert httpx.get(f"{static.base}/_gracefail_static/502.html").status_code == 403


def test_the_apps_own_answers_pass_through(stack: Stack) -> None:
    stack.backends.start_app()
    try:
        assert httpx.get(f"{stack.base}/ok").text == "hello"
        own = httpx.get(f"{stack.base}/connect", headers=NAV)
        assert own.status_code == 502
        assert 'id="gf-config"' in own.text
        assert recorded(stack.store, own.headers["x-gracefail-incident"])["source"] == "app"
    finally:
        stack.backends.stop_app()
    # retry=0: the next request finds the app gone, at once.
    assert httpx.get(f"{stack.base}/ok", headers=CURL).headers["x-gracefail-incident"]


def test_with_the_gateway_down_too_apache_answers_alone(tmp_path: Path, readable: Path) -> None:
    """What does not hold: Apache does not fall back from an error document that failed."""
    stack = Stack(tmp_path, readable, gateway=False)
    try:
        page = httpx.get(f"{stack.base}/ok", headers=NAV)
        assert page.status_code == 503
        assert 'id="gf-config"' not in page.text
        assert "while trying to use an ErrorDocument" in page.text
        # A beacon nobody took: Apache's plain 503, never a page counted as a failure.
        beacon = httpx.post(f"{stack.base}/_gracefail/beacon", content=b"{}")
        assert beacon.status_code == 503
    finally:
        stack.stop()


def test_static_pages_for_an_app_down_slow_or_answering_badly(static: Stack) -> None:
    for headers in (NAV, {"accept": "application/json"}):
        page = httpx.get(f"{static.base}/ok", headers=headers)
        assert page.status_code == 503
        # Static pages are HTML only: a JSON client gets the page too.
        assert page.content == (static.pages / "502.html").read_bytes()
        static_headers_hold(page, static.pages)
    for app in (SilentApp, ClosingApp):
        running = app(static.backends.app_port)
        try:
            bad = httpx.get(f"{static.base}/ok", headers=NAV, timeout=30)
        finally:
            running.close()
        assert bad.status_code == 502, app
        assert bad.content == (static.pages / "502.html").read_bytes()
        static_headers_hold(bad, static.pages)


def test_static_pages_give_way_to_the_app(static: Stack) -> None:
    static.backends.start_app()
    try:
        assert httpx.get(f"{static.base}/ok").text == "hello"
    finally:
        static.backends.stop_app()


def test_a_missing_export_folder_fails_apachectl_t(tmp_path: Path, readable: Path) -> None:
    backends = Backends(tmp_path, gateway=False)
    exported = apache_conf(readable, STATIC_CONF, free_port(), backends, export(tmp_path / "p"))
    assert apache_check(exported).returncode == 0, apache_check(exported).stderr
    missing = tmp_path / "never-exported"
    checked = apache_check(apache_conf(readable, STATIC_CONF, free_port(), backends, missing))
    assert checked.returncode != 0
    assert f"{missing}/apache.conf" in checked.stderr
    assert "apachectl -t" in README.read_text()
