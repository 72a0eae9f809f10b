"""Gateway mode for real: nginx in front of an app process that is down, `gracefail serve`
as nginx's error backend, Chromium on the page, the app started, the page recovering,
and the outage, its recovery and its time to recovery in the report."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from gracefail import Config
from gracefail.export import export_pages
from tests.apps.common import free_port

# Other proxies' tests start the app as tests.browser.test_browser_gateway:app_factory.
from tests.browser.proxies import NAV, SECRET, Backends, app_factory  # noqa: F401
from tests.browser.support import eventually
from tests.conftest import ROOT, require_binary, start_server, stop

pytestmark = pytest.mark.browser


class Stack(Backends):
    """nginx on ``port`` in front of the app's port and `gracefail serve`."""

    def __init__(self, tmp: Path) -> None:
        nginx = require_binary("/usr/sbin/nginx", "apt-get install nginx-light")
        self.port = free_port()
        pages = tmp / "pages"
        export_pages(Config(recorders=[], secret=SECRET), pages)
        super().__init__(tmp)
        snippet = (ROOT / "integrations" / "nginx" / "gateway.conf").read_text()
        snippet = (
            snippet.replace("127.0.0.1:8000", f"127.0.0.1:{self.app_port}")
            .replace("127.0.0.1:8080", f"127.0.0.1:{self.gateway_port}")
            .replace("/var/www/gracefail", str(pages))
        )
        for folder in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            (tmp / folder).mkdir()
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        conf.write_text(
            f"{user}daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n"
            f" proxy_temp_path {tmp}/proxy;\n fastcgi_temp_path {tmp}/fcgi;\n"
            f" uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
            f" server {{\n  listen 127.0.0.1:{self.port};\n{snippet}\n }}\n}}\n"
        )
        try:
            checked = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
            self.nginx = start_server([nginx, "-c", str(conf)], self.port)
        except BaseException:
            super().stop()
            raise
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.nginx)
        super().stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path)
    yield running
    running.stop()


def test_curl_and_json_clients_get_the_gateway_reply(stack: Stack) -> None:
    curl = httpx.get(f"{stack.base}/ok", headers={"accept": "*/*"})
    assert curl.status_code == 502
    assert curl.headers["content-type"].startswith("text/plain")
    assert curl.headers["cache-control"] == "no-store"
    assert curl.headers["retry-after"] == "1"
    assert curl.headers["x-gracefail-incident"]
    problem = httpx.get(f"{stack.base}/ok", headers={"accept": "application/json"})
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["status"] == 502


def test_static_export_answers_when_the_gateway_is_down_too(stack: Stack) -> None:
    stack.stop_gateway()
    page = httpx.get(f"{stack.base}/ok", headers=NAV)
    assert page.status_code == 502
    assert 'id="gf-config"' in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]


def test_page_recovers_when_the_app_returns_and_the_report_shows_it(
    stack: Stack, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{stack.base}/ok")
        assert response is not None
        assert response.status == 502
        assert page.locator("#gf-config").count() == 1
        # The page's "shown" beacon reaches the gateway while the app is down.
        eventually(
            lambda: stack.report()["pages_shown"] == 1, what="shown beacon recorded", page=page
        )
        stack.start_app()
        eventually(
            lambda: page.inner_text("body").strip() == "hello",
            what="the page recovered to the app's own",
            timeout=60,
            page=page,
        )
        report = eventually(
            lambda: (r := stack.report())["recovered"] == 1 and r,
            what="recovered beacon",
            page=page,
        )
    finally:
        context.close()
    assert report["by_source"]["gateway"] >= 1
    assert report["by_source"]["app"] == 0
    assert report["time_to_recovery_s"]["p50"] is not None
    assert report["per_source"]["gateway"]["recovered"] == 1
