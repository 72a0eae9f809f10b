"""What the gateway tests behind real proxies share: the app (down until started), the
error backend (`gracefail serve`), their shared secret and store, the report, and Caddy.

No Playwright here: the proxy tests in tests/integrations use it too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from gracefail import Config
from gracefail.export import export_pages
from tests.apps.common import free_port
from tests.conftest import ROOT, require_binary, start_server, stop, wait_for_port

SECRET = "shared-by-the-app-and-the-gateway"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
# The page's first probe waits Retry-After: the gateway says 1 s, the export says RETRY_AFTER.
GATEWAY_RETRY_AFTER = "1"


def app_factory() -> Any:
    """For uvicorn: the app behind the proxy, on the store and secret the gateway uses."""
    from gracefail.asgi import GracefailMiddleware
    from tests.apps.asgi_app import make_app

    return GracefailMiddleware(
        make_app(), secret=os.environ["GRACEFAIL_SECRET"], store=os.environ["GRACEFAIL_DB"]
    )


class Backends:
    """The app's port (nothing listens until ``start_app``) and `gracefail serve` on
    ``gateway_port`` (not started with ``gateway=False``: the proxy finds it down)."""

    def __init__(self, tmp: Path, *, gateway: bool = True) -> None:
        self.tmp = tmp
        self.store = tmp / "events.sqlite3"
        self.env = {"GRACEFAIL_SECRET": SECRET, "GRACEFAIL_DB": str(self.store)}
        self.app_port, self.gateway_port = free_port(), free_port()
        self.app: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None
        if gateway:
            self.gateway = start_server(
                [sys.executable, "-m", "gracefail", "serve", "--port", str(self.gateway_port),
                 "--retry-after", GATEWAY_RETRY_AFTER, "--route", "/ok"],
                self.gateway_port, env=self.env,
            )  # fmt: skip

    def start_app(self) -> None:
        self.app = start_server(
            [sys.executable, "-m", "uvicorn", "--factory", "tests.browser.proxies:app_factory",
             "--port", str(self.app_port), "--log-level", "warning"],
            self.app_port, env=self.env,
        )  # fmt: skip

    def stop_app(self) -> None:
        if self.app is not None:
            stop(self.app)
            self.app = None

    def report(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "gracefail", "report", "--store", str(self.store),
             "--format", "json"],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            stop(self.gateway)
            self.gateway = None

    def stop(self) -> None:
        self.stop_app()
        self.stop_gateway()


def page_config(text: str) -> dict[str, Any]:
    """The page's configuration block (token, beacon path, incident, ...)."""
    config: dict[str, Any] = json.loads(
        text.split('id="gf-config">', 1)[1].split("</script>", 1)[0]
    )
    return config


def post_shown_beacon(base: str, page_text: str) -> tuple[httpx.Response, dict[str, Any]]:
    """Send the page's ``shown`` beacon through the proxy at ``base``, as the page would."""
    config = page_config(page_text)
    beacon = {"token": config["token"], "kind": "shown", "attempt": 0, "elapsed_ms": 40,
              "locale": "en"}  # fmt: skip
    response = httpx.post(
        f"{base}{config['beacon']}",
        content=json.dumps(beacon).encode(),
        headers={"content-type": "text/plain;charset=UTF-8", "sec-fetch-site": "same-origin",
                 "origin": base},
    )  # fmt: skip
    return response, config


class SilentApp:
    """An app that accepts connections and never answers: the proxy's timeout gives a 504.

    The kernel completes the handshakes of the listen backlog; nothing is ever read."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)

    def close(self) -> None:
        self.sock.close()


CADDYFILE = ROOT / "integrations" / "caddy" / "Caddyfile"
CADDY_README = ROOT / "integrations" / "caddy" / "README.md"
# Test-only global options: no admin endpoint, no certificates, nothing but loopback.
CADDY_GLOBAL = "{\n\tadmin off\n\tauto_https off\n}\n\n"


def caddy_binary() -> str:
    return require_binary("caddy", "apt-get install caddy")


def export_for_caddy(pages: Path) -> Path:
    """``gracefail export`` and the README's command that turns csp.conf into csp.caddy."""
    export_pages(Config(recorders=[], secret=SECRET), pages)
    (command,) = [
        line.strip()
        for line in CADDY_README.read_text().splitlines()
        if line.strip().startswith("sed -E ") and "csp.caddy" in line
    ]
    subprocess.run(
        ["bash", "-c", command.replace("/var/www/gracefail", str(pages))], check=True, cwd=pages
    )
    return pages


def caddyfile(
    tmp: Path, port: int, static_port: int, backends: Backends, pages: Path, timeout: str = "1s"
) -> Path:
    """integrations/caddy/Caddyfile on loopback ports, with a short response timeout."""
    text = CADDYFILE.read_text()
    for shipped, here in (
        ("example.com {", f"http://127.0.0.1:{port} {{\n\tbind 127.0.0.1"),
        ("127.0.0.1:8000", f"127.0.0.1:{backends.app_port}"),
        ("127.0.0.1:8080", f"127.0.0.1:{backends.gateway_port}"),
        ("127.0.0.1:8081", f"127.0.0.1:{static_port}"),
        ("/var/www/gracefail", str(pages)),
        ("response_header_timeout 60s", f"response_header_timeout {timeout}"),
    ):
        assert shipped in text, shipped
        text = text.replace(shipped, here)
    conf = tmp / "Caddyfile"
    conf.write_text(CADDY_GLOBAL + text)
    return conf


def caddy_env(tmp: Path) -> dict[str, str]:
    """Caddy writes its autosave and data under these: keep them in the test's folder."""
    return {"HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "config"),
            "XDG_DATA_HOME": str(tmp / "data")}  # fmt: skip


def caddy_validate(caddy: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [caddy, "validate", "--config", str(conf), "--adapter", "caddyfile"],
        capture_output=True, text=True, env={**os.environ, **caddy_env(conf.parent)},
    )  # fmt: skip


class Caddy:
    """Caddy in front of ``backends`` on ``port``, with the static pages on a second port."""

    def __init__(self, tmp: Path, backends: Backends, *, timeout: str = "1s") -> None:
        caddy = caddy_binary()
        self.port, self.static_port = free_port(), free_port()
        pages = export_for_caddy(tmp / "pages")
        conf = caddyfile(tmp, self.port, self.static_port, backends, pages, timeout)
        checked = caddy_validate(caddy, conf)
        assert checked.returncode == 0, checked.stderr
        self.proc = start_server(
            [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"],
            self.port, env=caddy_env(tmp),
        )  # fmt: skip
        wait_for_port(self.static_port, self.proc)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc)
