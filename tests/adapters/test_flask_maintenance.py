"""Planned maintenance in Flask (a callable decides who passes, in the request context),
``flask gracefail maintenance``, and the plain WSGI middleware, on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flask")

from flask import Flask, session
from werkzeug.test import Client

from gracefail import maintenance
from gracefail.flask import Gracefail
from gracefail.wsgi import GracefailMiddleware
from tests.apps.common import API, NAV, SECRET

pytestmark = pytest.mark.flask


def make_app(store: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="flask-maintenance-test-secret", TESTING=True)
    app.config["GRACEFAIL"] = {"store": store, "maintenance": True,
                               "maintenance_paths": ["/healthz"]}  # fmt: skip

    @app.get("/")
    def home() -> str:
        return "the real page"

    @app.get("/login")
    def login() -> str:
        session["admin"] = True
        return "logged in"

    @app.get("/healthz")
    def health() -> str:
        return "ok"

    Gracefail(app, maintenance_allowed=lambda: session.get("admin", False))
    return app


def test_flask_users_wait_admins_pass_with_the_banner(tmp_path: Path) -> None:
    store = str(tmp_path / "gf.sqlite3")
    app = make_app(store)
    client = app.test_client()
    off = client.get("/", headers=NAV)
    assert off.status_code == 200
    assert "X-Gracefail-Maintenance" not in off.headers

    maintenance.switch_on(store, duration=120, message="Flask upgrade")
    Gracefail.engine(app).maintenance.watch.refresh()  # type: ignore[union-attr]
    page = client.get("/", headers=NAV)
    assert page.status_code == 503
    assert "Flask upgrade" in page.get_data(as_text=True)
    assert page.headers["X-Gracefail-Maintenance"] == "on"
    problem = client.get("/", headers=API)
    assert problem.status_code == 503
    assert problem.json is not None
    assert problem.json["maintenance"] is True
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.headers["X-Gracefail-Maintenance"] == "on"

    admin = app.test_client()
    admin.get("/healthz")  # (the login route itself is closed during maintenance)
    with admin.session_transaction() as stored:
        stored["admin"] = True
    passed = admin.get("/", headers=NAV)
    assert passed.status_code == 200
    assert passed.get_data(as_text=True) == "the real page"
    assert passed.headers["X-Gracefail-Maintenance"] == "on"
    Gracefail.engine(app).close()


def test_flask_gracefail_maintenance_uses_the_apps_store(tmp_path: Path) -> None:
    store = str(tmp_path / "gf.sqlite3")
    app = make_app(store)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["gracefail", "maintenance", "on", "--for", "15m",
                                 "--message", "From flask"])  # fmt: skip
    assert result.exit_code == 0, result.output
    state = maintenance.status(store)
    assert state is not None
    assert state.message == "From flask"
    status = runner.invoke(args=["gracefail", "maintenance", "status"])
    assert "maintenance: on since" in status.output
    bad = runner.invoke(args=["gracefail", "maintenance", "on", "--for", "-1m"])
    assert bad.exit_code == 1
    assert "is not a duration" in bad.output
    off = runner.invoke(args=["gracefail", "maintenance", "off"])
    assert off.output == "maintenance: off\n"
    assert maintenance.status(store) is None
    Gracefail.engine(app).close()


def test_plain_wsgi_with_an_environ_callable(tmp_path: Path) -> None:
    store = str(tmp_path / "gf.sqlite3")
    maintenance.switch_on(store, duration=60)

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"the real page"]

    wrapped = GracefailMiddleware(
        app,
        secret=SECRET,
        store=store,
        maintenance=True,
        recorders=[],
        maintenance_allowed=lambda environ: environ.get("HTTP_X_STAFF_TOKEN") == "letmein",
    )
    client = Client(wrapped)
    blocked = client.get("/", headers=NAV)
    assert blocked.status_code == 503
    assert blocked.headers["X-Gracefail-Maintenance"] == "on"
    staff = client.get("/", headers={**NAV, "X-Staff-Token": "letmein"})
    assert staff.status_code == 200
    assert staff.get_data() == b"the real page"
    assert staff.headers["X-Gracefail-Maintenance"] == "on"
    maintenance.switch_off(store)
    assert wrapped.engine.maintenance is not None
    wrapped.engine.maintenance.watch.refresh()
    back = client.get("/", headers=NAV)
    assert back.status_code == 200
    assert "X-Gracefail-Maintenance" not in back.headers
    wrapped.engine.close()
