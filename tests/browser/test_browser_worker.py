"""Issue 11: the opt-in service worker, in a real Chromium, in front of a real app.

The app (``worker_app``, below) serves healthy pages that load ``register.js`` through
:func:`gracefail.worker.head_tag`, a JSON API and an image, behind gracefail with
``service_worker`` on. Each test starts its own app process on its own port (the app is
stopped and started again: that is the outage) and, where a proxy's own error page is
the point, a real nginx in front of it, whose 502 carries no ``X-Gracefail-Incident``.

What is proven: with the worker installed, a navigation that nginx answers with its own
502, or that finds nothing listening at all, shows the branded page from the worker,
which recovers when the app is back; a JSON fetch, an image and a form POST during the
outage are not touched; the option turned off removes the worker and its caches (and the
next outage gets nginx's page again); a page whose CSP no longer matches is never served;
a new configuration replaces the worker and its cache; the page follows the browser's
locale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gracefail.worker import CACHE_PREFIX
from tests.browser.conftest import TabFactory
from tests.browser.support import FAST_RETRY, Tab, eventually, locale_strings, read_jsonl
from tests.conftest import free_port, require_binary, start_server, stop

pytestmark = pytest.mark.browser

SECRET = "worker-test-secret-0123456789abcdef"
WORKER = "/_gracefail/sw.js"
EN = locale_strings("en")
ES = locale_strings("es")


# -- the app --------------------------------------------------------------------------------


def worker_app() -> Any:
    """For ``uvicorn --factory``: Starlette behind gracefail, options from ``GF_OPTIONS``,
    every request logged to ``GF_LOG`` (tests.browser.apps' request log)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from gracefail.asgi import GracefailMiddleware
    from gracefail.worker import head_tag
    from tests.browser.apps import RequestLog

    options: dict[str, Any] = json.loads(os.environ["GF_OPTIONS"])

    def html(title: str, request: Request, tag: bool = True) -> HTMLResponse:
        head = head_tag() if tag else ""
        return HTMLResponse(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'{head}</head><body><h1 id="real">{title}</h1><p id="where">{request.url.path}</p>'
            '<form method="post" action="/submit"><button id="send">Send</button></form>'
            "</body></html>"
        )

    async def page(request: Request) -> Response:
        return html("Healthy page", request)

    async def plain(request: Request) -> Response:
        return html("Page without the tag", request, tag=False)

    async def data(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def image(request: Request) -> Response:
        svg = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
        return Response(svg, media_type="image/svg+xml")

    async def submit(request: Request) -> Response:
        return html("Submitted", request)

    app = Starlette(
        routes=[
            Route("/plain", plain),
            Route("/api/data", data),
            Route("/img.svg", image),
            Route("/submit", submit, methods=["POST"]),
            Route("/{rest:path}", page),
        ]
    )
    wrapped = GracefailMiddleware(app, secret=SECRET, recorders=[], **options)
    return RequestLog(wrapped, os.environ["GF_LOG"])


class Site:
    """The app on a port of its own (stopped and started by the test), and optionally nginx
    in front of it; ``base`` is what the browser talks to."""

    def __init__(self, tmp: Path, *, nginx: bool, **options: Any) -> None:
        self.tmp = tmp
        self.log = tmp / "requests.jsonl"
        self.app_port = free_port()
        self.options = {"retry": FAST_RETRY, "service_worker": True, **options}
        self.app: subprocess.Popen[bytes] | None = None
        self.nginx: subprocess.Popen[bytes] | None = None
        self.start_app()
        self.base = f"http://127.0.0.1:{self.app_port}"
        if nginx:
            try:
                self.base = self._start_nginx()
            except BaseException:
                self.stop()
                raise

    def start_app(self, **options: Any) -> None:
        self.options.update(options)
        env = {"GF_OPTIONS": json.dumps(self.options), "GF_LOG": str(self.log)}
        self.app = start_server(
            [sys.executable, "-m", "uvicorn", "--factory",
             "tests.browser.test_browser_worker:worker_app", "--host", "127.0.0.1",
             "--port", str(self.app_port), "--log-level", "warning",
             "--timeout-graceful-shutdown", "1"],
            self.app_port, env=env,
        )  # fmt: skip

    def stop_app(self) -> None:
        if self.app is not None:
            stop(self.app)
            self.app = None

    def _start_nginx(self) -> str:
        binary = require_binary("/usr/sbin/nginx", "apt-get install nginx-light")
        port = free_port()
        root = self.tmp / "nginx"
        for folder in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
            (root / folder).mkdir(parents=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = root / "nginx.conf"
        conf.write_text(
            f"{user}daemon off;\nmaster_process off;\nworker_processes 1;\n"
            f"pid {root}/nginx.pid;\nerror_log {root}/error.log;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {root}/body;\n"
            f" proxy_temp_path {root}/proxy;\n fastcgi_temp_path {root}/fcgi;\n"
            f" uwsgi_temp_path {root}/uwsgi;\n scgi_temp_path {root}/scgi;\n"
            f" server {{\n  listen 127.0.0.1:{port};\n"
            f"  location / {{ proxy_pass http://127.0.0.1:{self.app_port}; }}\n }}\n}}\n"
        )
        self.nginx = start_server([binary, "-c", str(conf)], port)
        return f"http://127.0.0.1:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def requests(self, path: str) -> list[dict[str, Any]]:
        return [r for r in read_jsonl(self.log) if r["type"] == "request" and r["path"] == path]

    def stop(self) -> None:
        self.stop_app()
        if self.nginx is not None:
            stop(self.nginx)
            self.nginx = None


@pytest.fixture
def behind_nginx(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path, nginx=True)
    yield site
    site.stop()


@pytest.fixture
def alone(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path, nginx=False)
    yield site
    site.stop()


# -- helpers --------------------------------------------------------------------------------

CONTROLLED = "() => !!navigator.serviceWorker.controller"
REGISTRATIONS = "() => navigator.serviceWorker.getRegistrations().then(r => r.length)"
OUR_CACHES = "(prefix) => caches.keys().then(names => names.filter(n => n.startsWith(prefix)))"


def installed(tab: Tab, site: Site, path: str = "/start") -> None:
    """Load a healthy page and wait until the worker controls it (it claims open pages)."""
    response = tab.goto(site.url(path))
    assert response.status == 200
    eventually(lambda: tab.page.evaluate(CONTROLLED), "the worker in control", page=tab.page)
    caches = eventually(
        lambda: tab.page.evaluate(OUR_CACHES, CACHE_PREFIX), "the worker's cache", page=tab.page
    )
    assert len(caches) == 1


def shows_the_worker_page(tab: Tab, response: Any, status: int = 502) -> str:
    """Check the worker's branded page; its incident id."""
    assert response.status == status
    assert response.from_service_worker
    headers = response.headers
    assert headers["x-gracefail-source"] == "worker"
    incident: str = headers["x-gracefail-incident"]
    assert incident.startswith("sw-")
    assert "script-src 'sha256-" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    assert tab.page.locator("#gf-config").count() == 1
    assert incident in tab.text("footer")
    config = json.loads(tab.page.locator("#gf-config").text_content() or "{}")
    assert config["token"] == ""
    return incident


# -- the worker's page, and recovery ----------------------------------------------------------


def test_nginx_own_502_becomes_the_branded_page_which_recovers(
    behind_nginx: Site, tabs: TabFactory
) -> None:
    site = behind_nginx
    tab = tabs()
    installed(tab, site)
    site.stop_app()
    raw = httpx.get(site.url("/shop?item=1"), headers={"accept": "text/html"})
    assert raw.status_code == 502
    assert "nginx" in raw.text
    assert "x-gracefail-incident" not in raw.headers

    response = tab.goto(site.url("/shop?item=1"))
    shows_the_worker_page(tab, response)
    assert tab.page.title() == f"{EN['title_502']} · This site"
    assert EN["explain_unreachable"].replace("{brand}", "This site") in tab.text("main")
    assert tab.page.locator("#gf-link").get_attribute("href") == "/shop?item=1"
    tab.wait_state("a failed probe", lambda s: s["failures"] >= 1)

    site.start_app()
    assert tab.wait_real_page() == "/shop"
    assert tab.page.url == site.url("/shop?item=1")
    # The worker's page sends no beacons (it has no token to sign them).
    assert site.requests("/_gracefail/beacon") == []
    assert tab.problems == []


def test_nothing_listening_shows_the_branded_page_which_recovers(
    alone: Site, tabs: TabFactory
) -> None:
    site = alone
    tab = tabs()
    installed(tab, site)
    site.stop_app()
    with pytest.raises(httpx.ConnectError):
        httpx.get(site.url("/orders"))

    response = tab.goto(site.url("/orders"))
    shows_the_worker_page(tab, response)
    assert EN["explain_unreachable"].replace("{brand}", "This site") in tab.text("main")
    tab.wait_state("a failed probe", lambda s: s["failures"] >= 1)

    site.start_app()
    assert tab.wait_real_page() == "/orders"
    assert tab.problems == []


def test_a_504_that_is_not_gracefails_gets_the_504_page(tmp_path: Path, tabs: TabFactory) -> None:
    # The app's own 504 with gracefail's reply replaced would carry the incident header:
    # here the worker sees a proxy's 504 (nginx timing out on a silent app).
    from tests.browser.proxies import SilentApp

    site = Site(tmp_path, nginx=True)
    try:
        tab = tabs()
        installed(tab, site)
        nginx_conf = site.tmp / "nginx" / "nginx.conf"
        site.stop_app()
        silent = SilentApp(site.app_port)
        try:
            conf = nginx_conf.read_text().replace(
                "proxy_pass", "proxy_read_timeout 1s; proxy_connect_timeout 1s; proxy_pass"
            )
            nginx_conf.write_text(conf)
            assert site.nginx is not None
            stop(site.nginx)
            site.nginx = start_server(
                [require_binary("/usr/sbin/nginx", ""), "-c", str(nginx_conf)],
                int(site.base.rsplit(":", 1)[1]),
            )
            response = tab.goto(site.url("/slow"))
            shows_the_worker_page(tab, response, 504)
            assert EN["explain_timeout"].replace("{brand}", "This site") in tab.text("main")
        finally:
            silent.close()
    finally:
        site.stop()


def test_the_retry_link_carries_the_url_that_failed_and_nothing_else(
    behind_nginx: Site, tabs: TabFactory
) -> None:
    site = behind_nginx
    tab = tabs()
    installed(tab, site)
    site.stop_app()
    tab.goto(site.url("/a\"b<c>/d?q='x'&y=<svg onload=alert(1)>"))
    shown = tab.page.evaluate("() => location.pathname + location.search")
    assert tab.page.locator("#gf-link").get_attribute("href") == shown
    assert tab.page.locator("svg, img, iframe").count() == 0
    assert tab.page.locator("script").count() == 2, "the config block and the script only"
    # A path a browser would read as another host stays on this one (render.safe_url).
    tab.goto(site.url("//evil.example/x"))
    assert tab.page.locator("#gf-link").get_attribute("href") == "/.//evil.example/x"
    assert tab.problems == []


# -- what it never touches ------------------------------------------------------------------


def test_json_an_image_and_a_post_during_the_outage_are_untouched(
    behind_nginx: Site, tabs: TabFactory
) -> None:
    site = behind_nginx
    tab = tabs()
    responses: list[Any] = []
    tab.page.on("response", lambda response: responses.append(response))
    installed(tab, site, "/form")
    site.stop_app()

    api = tab.page.evaluate(
        """() => fetch("/api/data").then(async r => ({status: r.status,
             incident: r.headers.get("x-gracefail-incident"), body: await r.text()}))"""
    )
    assert api["status"] == 502
    assert api["incident"] is None
    assert "nginx" in api["body"]

    loaded = tab.page.evaluate(
        """() => new Promise(done => { const img = new Image();
             img.onload = () => done("loaded"); img.onerror = () => done("error");
             img.src = "/img.svg?outage"; document.body.appendChild(img); })"""
    )
    assert loaded == "error"
    image = [r for r in responses if r.url.endswith("/img.svg?outage")]
    assert [(r.status, r.from_service_worker) for r in image] == [(502, False)]

    with tab.page.expect_navigation() as posted:
        tab.page.click("#send")
    response = posted.value
    assert response is not None
    assert response.status == 502
    assert not response.from_service_worker
    assert "nginx" in tab.page.content()
    assert tab.page.locator("#gf-config").count() == 0
    assert tab.problems == []


# -- removal ----------------------------------------------------------------------------------


def test_turning_the_option_off_removes_the_worker(behind_nginx: Site, tabs: TabFactory) -> None:
    site = behind_nginx
    tab = tabs()
    installed(tab, site)
    site.stop_app()
    site.start_app(service_worker=False)
    off = httpx.get(site.url(WORKER))
    assert off.status_code == 200
    assert '"enabled":false' in off.text

    # A page that still carries the tag: register.js removes the worker and its caches.
    tab.goto(site.url("/again"))
    eventually(lambda: tab.page.evaluate(REGISTRATIONS) == 0, "no registration", page=tab.page)
    eventually(lambda: tab.page.evaluate(OUR_CACHES, CACHE_PREFIX) == [], "no cache", page=tab.page)
    # Really gone: the next outage is nginx's own page again.
    tab.goto(site.url("/after"))  # a page load without the worker in control
    site.stop_app()
    response = tab.goto(site.url("/outage"))
    assert response.status == 502
    assert not response.from_service_worker
    assert "nginx" in tab.page.content()
    assert tab.problems == []


def test_the_worker_removes_itself_on_its_update_check(
    behind_nginx: Site, tabs: TabFactory
) -> None:
    # No register.js on the page: the browser's own check of sw.js installs the worker that
    # unregisters itself and deletes the caches.
    site = behind_nginx
    tab = tabs()
    installed(tab, site)
    site.stop_app()
    site.start_app(service_worker=False)
    tab.goto(site.url("/plain"))
    eventually(
        lambda: tab.page.evaluate(REGISTRATIONS) == 0,
        "the worker unregistered",
        timeout=30,
        page=tab.page,
    )
    assert tab.page.evaluate(OUR_CACHES, CACHE_PREFIX) == []
    assert len(site.requests(WORKER)) >= 2, "the browser checked sw.js again"
    assert tab.problems == []


# -- versions and CSP ---------------------------------------------------------------------------


def test_a_page_whose_csp_does_not_match_is_never_served(
    behind_nginx: Site, tabs: TabFactory
) -> None:
    site = behind_nginx
    tab = tabs()
    installed(tab, site)
    # What a worker of an older gracefail would hold if its page and its CSP disagreed:
    # the cached 502 page's CSP no longer names its script.
    tab.page.evaluate(
        """async (prefix) => {
             const name = (await caches.keys()).find(n => n.startsWith(prefix));
             const cache = await caches.open(name);
             const [request] = await cache.keys();
             const bundle = await (await cache.match(request)).json();
             bundle.pages["502"].csp = bundle.pages["502"].csp.replace(
               /script-src [^;]+/, "script-src 'sha256-AAAA'");
             await cache.put(request, new Response(JSON.stringify(bundle)));
           }""",
        CACHE_PREFIX,
    )
    site.stop_app()
    response = tab.goto(site.url("/outage"))
    assert response.status == 502
    assert "nginx" in tab.page.content(), "the network's answer, not a page that cannot run"
    assert tab.page.locator("#gf-config").count() == 0
    assert tab.problems == []


def test_a_new_configuration_replaces_the_worker_and_its_cache(
    behind_nginx: Site, tabs: TabFactory
) -> None:
    site = behind_nginx
    tab = tabs()
    installed(tab, site)
    (first,) = tab.page.evaluate(OUR_CACHES, CACHE_PREFIX)
    site.stop_app()
    site.start_app(brand={"name": "Renamed"})
    tab.goto(site.url("/again"))

    def replaced() -> list[str] | None:
        names: list[str] = tab.page.evaluate(OUR_CACHES, CACHE_PREFIX)
        return names if names and first not in names else None

    (second,) = eventually(replaced, "the new worker's cache", timeout=30, page=tab.page)
    assert second != first
    site.stop_app()
    tab.goto(site.url("/outage"))
    assert tab.page.title() == f"{EN['title_502']} · Renamed"
    assert tab.problems == []


def test_the_worker_page_is_in_the_browsers_language(behind_nginx: Site, tabs: TabFactory) -> None:
    site = behind_nginx
    tab = tabs(locale="es-ES", extra_http_headers={"Accept-Language": "es-ES,es;q=0.9"})
    installed(tab, site)
    site.stop_app()
    response = tab.goto(site.url("/pedido"))
    shows_the_worker_page(tab, response)
    assert tab.page.get_attribute("html", "lang") == "es"
    assert tab.page.title() == f"{ES['title_502']} · This site"
    site.start_app()
    tab.wait_real_page()
    assert tab.problems == []
