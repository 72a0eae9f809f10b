"""The exported page behind a real nginx, when the app process itself is down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gracefail import Config
from gracefail.export import ExportError, export_pages
from tests.conftest import ROOT, free_port, require_binary, start_server, stop

pytestmark = pytest.mark.integration

NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}


def nginx_conf(tmp_path: Path, listen: int, app_port: int, pages: Path) -> Path:
    snippet = (ROOT / "integrations" / "nginx" / "gracefail.conf").read_text()
    snippet = snippet.replace("127.0.0.1:8000", f"127.0.0.1:{app_port}")
    snippet = snippet.replace("/var/www/gracefail", str(pages))
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path}/body;\n"
        f" proxy_temp_path {tmp_path}/proxy;\n fastcgi_temp_path {tmp_path}/fcgi;\n"
        f" uwsgi_temp_path {tmp_path}/uwsgi;\n scgi_temp_path {tmp_path}/scgi;\n"
        f" server {{\n  listen 127.0.0.1:{listen};\n{snippet}\n }}\n}}\n"
    )
    return conf


def test_export_writes_pages_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = export_pages(Config(recorders=[], secret="s" * 20), tmp_path)
    assert (tmp_path / "502.html").read_bytes().startswith(b"<!doctype html>")
    assert (tmp_path / "ja" / "504.html").exists()
    assert "script-src 'sha256-" in (tmp_path / "csp.conf").read_text()
    assert result.csp.startswith("default-src 'none'")
    with pytest.raises(ExportError, match="--force"):
        export_pages(Config(recorders=[], secret="s" * 20), tmp_path)
    export_pages(Config(recorders=[], secret="s" * 20), tmp_path, force=True)


def test_nginx_serves_the_exported_page_until_the_app_returns(tmp_path: Path) -> None:
    nginx = require_binary("/usr/sbin/nginx", "apt-get install nginx-light")
    pages = tmp_path / "pages"
    export_pages(Config(recorders=[], secret="s" * 20), pages)
    listen, app_port = free_port(), free_port()
    conf = nginx_conf(tmp_path, listen, app_port, pages)
    check = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proxy = start_server([nginx, "-c", str(conf)], listen)
    try:
        down = httpx.get(f"http://127.0.0.1:{listen}/orders?id=3", headers=NAV)
        assert down.status_code == 502
        assert 'id="gf-config"' in down.text
        assert down.headers["cache-control"] == "no-store"
        csp = down.headers["content-security-policy"]
        assert csp == (pages / "csp.conf").read_text().split('"')[1]
        app = start_server(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.apps.asgi_app:wrapped_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(app_port),
                "--log-level",
                "warning",
            ],
            app_port,
        )
        try:
            up = httpx.get(f"http://127.0.0.1:{listen}/ok", headers=NAV)
            assert (up.status_code, up.text) == (200, "hello")
            # The app's own gracefail page passes through nginx untouched.
            live = httpx.get(f"http://127.0.0.1:{listen}/connect", headers=NAV)
            assert live.status_code == 502
            assert live.headers["x-gracefail-incident"] != "proxy"
        finally:
            stop(app)
    finally:
        stop(proxy)
