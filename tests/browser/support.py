"""What the browser tests and ``screenshots.py`` share: servers, their logs, a watched page.

No pytest fixtures here (they live in ``conftest.py``), so the screenshot script can
start the same servers.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, Response

from tests.conftest import ROOT, free_port, start_server, stop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCALES_DIR = ROOT / "src" / "gracefail" / "locales"
BEACON_PATH = "/_gracefail/beacon"
# The suite's RetryPolicy: first probe after 1 to 1.5 s, then waits of at most 2 s. Only
# the tests about giving up give up sooner than a minute (they use GIVE_UP_RETRY).
FAST_RETRY = {"retry_after": 1, "base": 0.5, "cap": 2, "give_up_after": 60}
GIVE_UP_RETRY = {**FAST_RETRY, "give_up_after": 5}
STATUS_PAGE = "https://status.acme.example/"
UNSAFE_KEY = "unsafe"
DEFAULT_OPTIONS: dict[str, Any] = {
    "brand": {"name": "Acme"},
    "retry": FAST_RETRY,
    "status_page_url": STATUS_PAGE,
    "health_url": f"/{UNSAFE_KEY}/health",
}

T = TypeVar("T")


def locale_strings(locale: str) -> dict[str, str]:
    english: dict[str, str] = json.loads((LOCALES_DIR / "en.json").read_text("utf-8"))
    return {**english, **json.loads((LOCALES_DIR / f"{locale}.json").read_text("utf-8"))}


def eventually(
    check: Callable[[], T | None],
    what: str,
    timeout: float = 20.0,
    page: Page | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``.

    With a ``page``, waiting goes through Playwright so its events keep flowing.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except Exception as exc:  # a page navigating away, a log line half written
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        if page is not None and not page.is_closed():
            page.wait_for_timeout(50)
        else:
            time.sleep(0.05)


def incident_of(response: Any) -> str:
    incident: str = response.headers["x-gracefail-incident"]
    return incident


def first_outcome(app: App, incident: str, timeout: float = 15) -> dict[str, Any]:
    return eventually(
        lambda: next(
            (
                e
                for e in app.client_events(incident)
                if e["kind"] in ("recovered", "gave_up", "abandoned")
            ),
            None,
        ),
        f"an outcome beacon for {incident}",
        timeout,
    )


def until_equal(get: Any, expected: Any, what: str) -> None:
    """Wait until ``get()`` equals ``expected`` (events reach the log a little later)."""
    with contextlib.suppress(AssertionError):
        eventually(lambda: get() == expected, what, timeout=10)
    assert get() == expected


def new_key(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # the line being written right now
            continue
    return records


# -- servers ----------------------------------------------------------------------------


class Upstream:
    """The fake upstream (``upstream.py``) under uvicorn; each test switches its own key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_server(
            [sys.executable, "-m", "uvicorn", "tests.browser.upstream:app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
             "--timeout-graceful-shutdown", "1"],
            self.port,
        )  # fmt: skip

    def set(self, key: str, state: str) -> None:
        assert state in ("up", "down", "slow")
        response = httpx.get(f"{self.url}/_state/{key}?{state}", timeout=5)
        assert response.json() == {"state": state}

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class App:
    """One app server process (or a restartable slot for one) and the log it writes."""

    kind: str  # "asgi" (uvicorn), "flask" or "django" (gunicorn)
    upstream: Upstream
    log: Path
    options: dict[str, Any] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> App:
        env = {
            "GF_UPSTREAM": self.upstream.url,
            "GF_LOG": str(self.log),
            "GF_OPTIONS": json.dumps(self.options),
        }
        bind = ["127.0.0.1", str(self.port)]
        if self.kind == "asgi":
            args = [sys.executable, "-m", "uvicorn", "tests.browser.apps:asgi_app",
                    "--host", bind[0], "--port", bind[1], "--log-level", "warning",
                    "--timeout-graceful-shutdown", "2"]  # fmt: skip
        else:
            args = [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "8",
                    "-b", ":".join(bind), "--graceful-timeout", "2", "--log-level", "warning",
                    f"tests.browser.apps:{self.kind}_app()"]  # fmt: skip
        self.proc = start_server(args, self.port, env)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    # -- what the server saw ------------------------------------------------------------

    def records(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in read_jsonl(self.log) if r["type"] == type_]

    def requests(self, key: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records("request")
            if (key is None or r["path"].startswith(f"/{key}/"))
            and (path is None or r["path"] == path)
        ]

    def probes(self, key: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests(key, path) if r["headers"].get("x-gracefail-probe") == "1"]

    def navigations(self, key: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        return [
            r for r in self.requests(key, path) if r["headers"].get("sec-fetch-mode") == "navigate"
        ]

    def beacons(self, incident: str) -> list[dict[str, Any]]:
        """Beacon bodies as they arrived (before gracefail's duplicate check)."""
        return [
            r["body"]
            for r in self.records("beacon")
            if isinstance(r["body"], dict) and beacon_incident(r["body"]) == incident
        ]

    def client_events(self, incident: str) -> list[dict[str, Any]]:
        """The ClientEvents gracefail handed its recorders (duplicates already dropped)."""
        return [r for r in self.records("client") if r["incident"] == incident]

    def server_events(self, incident: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records("server") if incident is None or r["incident"] == incident]

    def kinds(self, incident: str) -> list[tuple[str, int]]:
        events = sorted(self.client_events(incident), key=lambda e: e["time"])
        return [(e["kind"], e["attempt"]) for e in events]


def beacon_incident(beacon: dict[str, Any]) -> str | None:
    token = beacon.get("token")
    if not isinstance(token, str) or token.count("~") != 3:
        return None
    return token.split("~")[1]


class Nginx:
    """Debian's nginx with ``proxy_cache`` in front of an app: it caches 200, 502 and 504."""

    def __init__(self, binary: str, app: App, tmp: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        root = tmp / "nginx"
        (root / "cache").mkdir(parents=True)
        (root / "temp").mkdir()
        conf = root / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(root=root, port=self.port, app_port=app.port), encoding="utf-8"
        )
        self.proc = start_server([binary, "-p", str(root), "-c", str(conf)], self.port)

    def stop(self) -> None:
        stop(self.proc)


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/temp/body;
    proxy_temp_path {root}/temp/proxy;
    fastcgi_temp_path {root}/temp/fastcgi;
    uwsgi_temp_path {root}/temp/uwsgi;
    scgi_temp_path {root}/temp/scgi;
    proxy_cache_path {root}/cache levels=1:2 keys_zone=gf:1m max_size=10m inactive=10m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{app_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_cache gf;
            proxy_cache_key $scheme$proxy_host$request_uri;
            # Would cache errors too: only the replies' own headers keep them out.
            proxy_cache_valid 200 502 504 1m;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


# -- a fake Statuspage -----------------------------------------------------------------

SUMMARY = {
    "page": {"id": "acme", "name": "Acme", "url": "https://status.acme.example"},
    "status": {"indicator": "major", "description": "Partial System Outage"},
    "components": [
        {"id": "a", "name": "Checkout API", "status": "major_outage"},
        {"id": "b", "name": "Website", "status": "operational"},
        {"id": "c", "name": "Payments", "status": "degraded_performance"},
    ],
}
SLOW_SECONDS = 10.0


class FakeStatuspage:
    """``/api/v2/summary.json`` on its own loopback port, with CORS; mode ok, slow or down.

    "slow" holds each answer SLOW_SECONDS; "down" closes the listening socket, so the
    page's request is refused; any other mode reopens it on the same port.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v2/summary.json"
        self.mode = "ok"
        self.hits: list[float] = []
        self.server: ThreadingHTTPServer | None = None
        self._open()

    def _open(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_OPTIONS(self) -> None:
                # Playwright's extra_http_headers (X-Request-ID) reach this origin too,
                # which makes Chromium ask first.
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "*")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                owner.hits.append(time.time())
                if owner.mode == "slow":
                    time.sleep(SLOW_SECONDS)
                body = json.dumps(SUMMARY).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the page gave up waiting and closed the connection
                    pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.server = server

    def _close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def set(self, mode: str) -> None:
        assert mode in ("ok", "slow", "down")
        self.mode = mode
        if mode == "down":
            self._close()
        elif self.server is None:
            self._open()

    def close(self) -> None:
        self._close()


# -- the browser side --------------------------------------------------------------------

# A CSP violation becomes a console error the Tab records (a binding per context would
# cost a third of a second per context; the herd test opens thirty).
WATCH_SCRIPT = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI);
});
"""
# Hidden tabs: Playwright keeps every page visible, so the test plays the browser's part:
# it flips document.hidden / visibilityState and fires visibilitychange, as Chromium does.
VISIBILITY_SCRIPT = """
(function () {
  var hidden = false;
  Object.defineProperty(Document.prototype, "hidden", {
    configurable: true, get: function () { return hidden; }
  });
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get: function () { return hidden ? "hidden" : "visible"; }
  });
  window.__gfSetHidden = function (value) {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""


class Tab:
    """A page in its own context, with every console error, page error and CSP violation."""

    def __init__(
        self,
        browser: Browser,
        *,
        same_context_as: Tab | None = None,
        headers: dict[str, str] | None = None,
        record_requests: bool = False,
        **options: Any,
    ):
        self.problems: list[str] = []
        self.requests: list[Request] = []
        self.owns_context = same_context_as is None
        self.closed = False
        if same_context_as is not None:
            self.context: BrowserContext = same_context_as.context
        else:
            self.context = browser.new_context(**options)
            if options.get("java_script_enabled", True):
                self.context.add_init_script(WATCH_SCRIPT)
        self.page: Page = self.context.new_page()
        if headers:
            self.page.set_extra_http_headers(headers)
        if record_requests:
            self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium logs every failed load (the error document itself, a probe or beacon
        # that got a 5xx or no connection) as "Failed to load resource": network, not script.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console error: {message.text}")
        elif message.type == "warning" and "Content Security Policy" in message.text:
            self.problems.append(f"console warning: {message.text}")

    def goto(self, url: str, **options: Any) -> Response:
        response = self.page.goto(url, **options)
        assert response is not None
        return response

    def state(self) -> dict[str, Any] | None:
        """``window.gracefail.state``, or None once the page is not the error page."""
        value: dict[str, Any] | None = self.page.evaluate(
            "() => window.gracefail ? window.gracefail.state : null"
        )
        return value

    def wait_state(self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 20):
        return eventually(
            lambda: (lambda s: s if s is not None and check(s) else None)(self.state()),
            what,
            timeout,
            self.page,
        )

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def wait_real_page(self, timeout: float = 20) -> str:
        """Wait until the browser shows the app's real page; its path."""
        return eventually(
            lambda: self.page.locator("#real").count() and self.text("#where"),
            "the real page",
            timeout,
            self.page,
        )

    def wait(self, seconds: float) -> None:
        self.page.wait_for_timeout(seconds * 1000)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.owns_context:
            self.context.close()
        elif not self.page.is_closed():
            self.page.close()
