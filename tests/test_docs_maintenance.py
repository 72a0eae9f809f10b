"""The deploy scripts of docs/maintenance.md, run for real: each takes the app beside it in
the docs (FastAPI and Flask under gunicorn, a Django project under gunicorn, the FastAPI
app stopped behind nginx and ``gracefail serve``) through planned maintenance and back.

A script runs as written, in bash, with the host's own values of the docs (the store's
URL, the pid file, the ports) replaced by the test's. A DEBUG trap holds it before one
of its commands (``maintenance off``, or starting the app again): there, the test is the
users. Forty clients, each from its own loopback address, get the 503 maintenance page
with ``Retry-After`` spread out between them, the health check passes, and API clients
get problem+json; then the script goes on, and the same clients get the app.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gracefail import Config
from gracefail.export import export_pages
from tests.apps.common import free_port
from tests.conftest import ROOT, require_binary, start_server, stop, wait_for_port
from tests.doc_snippets import examples

pytestmark = pytest.mark.server

DOC = (ROOT / "docs" / "maintenance.md").read_text(encoding="utf-8")
DEPLOY = dict(re.findall(r"<!-- deploy: (\w+) -->\s*```sh\n(.*?)```", DOC, re.S))
PROXY = dict(re.findall(r"<!-- proxy: (\w+) -->\s*```\w+\n(.*?)```", DOC, re.S))
NGINX_GATEWAY = ROOT / "integrations" / "nginx" / "gateway.conf"

# The host's own values in the docs, and what each becomes here.
DOC_STORE = "postgresql://gf@db.internal/gf"
DOC_PID = "/run/shop/gunicorn.pid"
DOC_APP = "127.0.0.1:8000"

SECRET = "docs-maintenance-secret-0123456789"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}
API = {"accept": "application/json"}
CLIENTS = [f"127.0.0.{10 + i}" for i in range(40)]
VENV_BIN = str(Path(sys.executable).parent)


def test_the_page_has_every_deploy_script_and_app() -> None:
    assert set(DEPLOY) == {"fastapi", "django", "flask", "gateway"}
    assert set(PROXY) == {"nginx", "gateway"}
    for name in ("maintenance-fastapi", "maintenance-django", "maintenance-flask"):
        assert len(examples(DOC, name)) == 1, name
    for script in DEPLOY.values():
        assert script.startswith("#!/bin/sh -e\n")
        assert "maintenance on --for" in script
        assert script.rstrip().splitlines()[-1].split("#")[0].strip().endswith("maintenance off")


class Site:
    """A project folder, its store and ports, and the environment its commands run in."""

    def __init__(self, tmp: Path) -> None:
        self.folder = tmp / "shop"
        self.folder.mkdir()
        self.store = str(tmp / "events.sqlite3")
        self.pid = str(tmp / "run" / "gunicorn.pid")
        (tmp / "run").mkdir()
        self.app_port = free_port()
        self.app = f"http://127.0.0.1:{self.app_port}"
        self.sync = tmp / "sync"
        self.sync.mkdir()
        self.env = {
            **os.environ,
            "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
            "GRACEFAIL_DB": self.store,
            "GRACEFAIL_SECRET": SECRET,
            "PYTHONPATH": str(self.folder),
        }
        # The docs' wsgi.py and manage.py name "settings" with os.environ.setdefault: a
        # value left in this process by an earlier test (start_server merges os.environ)
        # must not win over it.
        self.env["DJANGO_SETTINGS_MODULE"] = "settings"

    def localise(self, text: str) -> str:
        """The docs' host values replaced by this site's."""
        return (
            text.replace(DOC_STORE, self.store)
            .replace(DOC_PID, self.pid)
            .replace(DOC_APP, f"127.0.0.1:{self.app_port}")
        )

    def gunicorn(self, app: str, *extra: str) -> subprocess.Popen[bytes]:
        """The app under gunicorn, as the docs run it (with its pid file)."""
        return start_server(
            [sys.executable, "-m", "gunicorn", "--pid", self.pid, "--bind",
             f"127.0.0.1:{self.app_port}", "--chdir", str(self.folder), *extra, app],
            self.app_port, env=self.env, cwd=self.folder,
        )  # fmt: skip

    def run_held(self, script: str, before: str) -> subprocess.Popen[str]:
        """The script, held before its first command that contains ``before`` until
        :meth:`release`; :meth:`held` says when it is there."""
        path = self.folder / "deploy.sh"
        path.write_text(self.localise(script), encoding="utf-8")
        hold = (
            f'case "$BASH_COMMAND" in *"{before}"*) : > "{self.sync}/held"; '
            f'while [ ! -e "{self.sync}/go" ]; do sleep 0.05; done;; esac'
        )
        # The script's own shebang asks for `sh -e`: the same, with the hold added.
        # -T: the DEBUG trap holds inside the sourced script too.
        harness = f"set -eT\ntrap '{hold}' DEBUG\n. ./deploy.sh\n"
        return subprocess.Popen(
            ["bash", "-c", harness], cwd=self.folder, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def held(self, script: subprocess.Popen[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.sync / "held").exists():
            if script.poll() is not None:
                raise AssertionError(f"the script ended early:\n{script.communicate()[0]}")
            assert time.monotonic() < deadline, "the script did not reach the hold"
            time.sleep(0.05)

    def release(self, script: subprocess.Popen[str]) -> str:
        (self.sync / "go").touch()
        output, _ = script.communicate(timeout=120)
        assert script.returncode == 0, output
        return output

    def report(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "gracefail", "report", "--store", self.store,
             "--format", "json", "--since", "1h"],
            capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        report: dict[str, Any] = json.loads(done.stdout)
        return report


def client(address: str) -> httpx.Client:
    """A client whose connections come from its own loopback address."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def eventually(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        return httpx.get(url, headers=headers or NAV, timeout=5).status_code
    except httpx.TransportError:
        return 0


def users_meet_maintenance(base: str, message: str) -> None:
    """Every client gets the maintenance page; their Retry-After values are spread."""
    eventually(lambda: status_of(f"{base}/") == 503, "the maintenance page")
    waits = []
    for address in CLIENTS:
        with client(address) as http:
            page = http.get(f"{base}/", headers=NAV)
            assert page.status_code == 503, (address, page.status_code)
            assert page.headers["x-gracefail-maintenance"] == "on"
            assert page.headers["cache-control"] == "no-store"
            assert message in page.text
            assert "content-security-policy" in page.headers
            waits.append(int(page.headers["retry-after"]))
    # Each client its own share of the 60 s spread after the planned end (the time left,
    # which shrinks by a second now and then while the clients ask, aside).
    assert len(set(waits)) >= 15, sorted(waits)
    assert max(waits) - min(waits) <= 65, sorted(waits)
    assert min(waits) > 60, "the end is minutes away"
    problem = httpx.get(f"{base}/", headers=API, timeout=10)
    assert problem.status_code == 503
    assert problem.headers["content-type"] == "application/problem+json"
    body = problem.json()
    assert (body["maintenance"], body["detail"]) == (True, message)
    assert body["retry_after"] == int(problem.headers["retry-after"])


def users_are_back(base: str) -> None:
    eventually(lambda: status_of(f"{base}/") == 200, "the app again")
    for address in CLIENTS[:5]:
        with client(address) as http:
            page = http.get(f"{base}/", headers=NAV)
            assert page.status_code == 200
            assert "x-gracefail-maintenance" not in page.headers


def planned_downtime_reported(site: Site, source: str) -> None:
    """The pages went to the store as planned downtime: one planned episode, no outage."""

    def seen() -> bool:
        report = site.report()
        return bool(report["planned"] >= len(CLIENTS))

    eventually(seen, "the maintenance pages in the report", timeout=20)
    report = site.report()
    assert report["failures"] == 0
    assert report["episodes_total"] == 0
    assert report["planned_episodes_total"] == 1
    [episode] = report["planned_episodes"]
    assert episode["planned"] is True
    assert episode["by_source"].get(source, 0) >= len(CLIENTS)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    pytest.importorskip("gunicorn")
    require_binary("curl", "apt-get install curl")
    made = Site(tmp_path)
    yield made
    # A gunicorn the script started itself (gateway mode) is stopped by its pid file.
    pid_file = Path(made.pid)
    if pid_file.exists():
        pid = int(pid_file.read_text().strip())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


# -- FastAPI ----------------------------------------------------------------------------------


def fastapi_app(site: Site) -> None:
    pytest.importorskip("fastapi")
    [code] = examples(DOC, "maintenance-fastapi")
    (site.folder / "shop.py").write_text(code, encoding="utf-8")


@pytest.mark.fastapi
def test_the_fastapi_deploy_script(site: Site) -> None:
    fastapi_app(site)
    server = site.gunicorn("shop:app", "--worker-class", "uvicorn.workers.UvicornWorker")
    try:
        # gunicorn listens before its worker has loaded the app: wait for the app.
        eventually(lambda: status_of(f"{site.app}/") == 200, "the app", timeout=60)
        script = site.run_held(DEPLOY["fastapi"], "maintenance off")
        site.held(script)
        users_meet_maintenance(site.app, "Moving to the new servers")
        healthz = httpx.get(f"{site.app}/healthz", timeout=10)
        assert (healthz.status_code, healthz.headers["x-gracefail-maintenance"]) == (200, "on")
        output = site.release(script)
        assert "off" in output.lower()
        users_are_back(site.app)
        planned_downtime_reported(site, "app")
    finally:
        stop(server)


# -- Flask ------------------------------------------------------------------------------------


@pytest.mark.flask
def test_the_flask_deploy_script(site: Site) -> None:
    pytest.importorskip("flask")
    [code] = examples(DOC, "maintenance-flask")
    (site.folder / "shop.py").write_text(code, encoding="utf-8")
    server = site.gunicorn("shop:app")
    try:
        # gunicorn listens before its worker has loaded the app: wait for the app.
        eventually(lambda: status_of(f"{site.app}/") == 200, "the app", timeout=60)
        script = site.run_held(DEPLOY["flask"], "maintenance off")
        site.held(script)
        users_meet_maintenance(site.app, "Upgrading the database")
        site.release(script)
        users_are_back(site.app)
        planned_downtime_reported(site, "app")
    finally:
        stop(server)


# -- Django -----------------------------------------------------------------------------------

DJANGO_SETTINGS = """\
SECRET_KEY = "django-insecure-docs-maintenance-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "gracefail.django",
]
MIDDLEWARE = [
    "gracefail.django.GracefailMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": __DATABASE__}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# docs/maintenance.md, as written there (the store is the test's):
__DOCS__
"""

DJANGO_URLS = """\
from django.http import HttpResponse
from django.urls import path

urlpatterns = [
    path("", lambda request: HttpResponse("the shop is open")),
    path("healthz", lambda request: HttpResponse("ok")),
]
"""

DJANGO_WSGI = """\
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
"""

DJANGO_MANAGE = """\
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""


@pytest.mark.django
def test_the_django_deploy_script(site: Site, tmp_path: Path) -> None:
    pytest.importorskip("django")
    [block] = examples(DOC, "maintenance-django")
    settings = DJANGO_SETTINGS.replace("__DATABASE__", repr(str(tmp_path / "db.sqlite3"))).replace(
        "__DOCS__", site.localise(block)
    )
    files = {"settings.py": settings, "urls.py": DJANGO_URLS, "wsgi.py": DJANGO_WSGI,
             "manage.py": DJANGO_MANAGE}  # fmt: skip
    for name, text in files.items():
        (site.folder / name).write_text(text, encoding="utf-8")
    server = site.gunicorn("wsgi:application")
    try:
        # gunicorn listens before its worker has loaded the app: wait for the app.
        eventually(lambda: status_of(f"{site.app}/") == 200, "the app", timeout=60)
        script = site.run_held(DEPLOY["django"], "maintenance off")
        site.held(script)
        users_meet_maintenance(site.app, "Upgrading the database")
        # The script migrated the database on the way.
        assert (tmp_path / "db.sqlite3").stat().st_size > 0
        site.release(script)
        users_are_back(site.app)
        planned_downtime_reported(site, "app")
    finally:
        stop(server)


# -- behind nginx, the app stopped: gracefail serve -------------------------------------------


class Proxy:
    """nginx with integrations/nginx/gateway.conf and the docs' addition, in front of the
    site's app port and ``gracefail serve`` with the docs' gateway.toml."""

    def __init__(self, site: Site, tmp: Path) -> None:
        nginx = require_binary("/usr/sbin/nginx", "apt-get install nginx-light")
        self.gateway_port, self.port = free_port(), free_port()
        (tmp / "gateway.toml").write_text(PROXY["gateway"], encoding="utf-8")
        self.gateway = start_server(
            [sys.executable, "-m", "gracefail", "serve", "--port", str(self.gateway_port),
             "--config", str(tmp / "gateway.toml")],
            self.gateway_port, env=site.env,
        )  # fmt: skip
        pages = tmp / "pages"
        export_pages(Config(recorders=[], secret=SECRET), pages)
        snippet = NGINX_GATEWAY.read_text()
        # The docs' addition: in location / and in both @gracefail_ locations.
        addition = PROXY["nginx"].strip()
        locations = re.findall(r"^location (?:/|@gracefail_50[24]) \{$", snippet, re.M)
        assert len(locations) == 3, locations
        if addition not in snippet:  # once gateway.conf carries it, as it is
            for location in locations:
                snippet = snippet.replace(location, f"{location}\n    {addition}")
        snippet = (
            snippet.replace(DOC_APP, f"127.0.0.1:{site.app_port}")
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
            "events { worker_connections 256; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n"
            f" proxy_temp_path {tmp}/proxy;\n fastcgi_temp_path {tmp}/fcgi;\n"
            f" uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
            f" server {{\n  listen 127.0.0.1:{self.port};\n{snippet}\n }}\n}}\n"
        )
        checked = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        try:
            self.nginx = start_server([nginx, "-c", str(conf)], self.port)
        except BaseException:
            stop(self.gateway)
            raise
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.nginx)
        stop(self.gateway)


@pytest.mark.fastapi
@pytest.mark.integration
def test_the_gateway_deploy_script_behind_nginx(site: Site, tmp_path: Path) -> None:
    fastapi_app(site)
    server = site.gunicorn("shop:app", "--worker-class", "uvicorn.workers.UvicornWorker")
    proxy = Proxy(site, tmp_path)
    try:
        assert status_of(f"{proxy.base}/") == 200
        # Held while the work is done: the app is stopped, nginx asks gracefail serve.
        script = site.run_held(DEPLOY["gateway"], "gunicorn --daemon")
        site.held(script)
        assert server.wait(timeout=30) == 0, "the script stopped the app"
        assert status_of(f"{site.app}/") == 0, "nothing listens on the app's port"
        users_meet_maintenance(proxy.base, "Replacing the database server")
        site.release(script)
        wait_for_port(site.app_port)
        users_are_back(proxy.base)
        planned_downtime_reported(site, "gateway")
    finally:
        proxy.stop()
        stop(server)
