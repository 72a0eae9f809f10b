"""The opt-in Flask blueprint: off unless registered, never without the app's own
``authorize``, and then the same report page as the Django admin view (bounded
window, same checks), read from the store the app's ``Gracefail`` extension uses."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flask")

from flask import Flask, abort, redirect, request

from gracefail.flask import Gracefail
from gracefail.flask_report import report_blueprint
from gracefail.recorders.sqlite import SQLiteRecorder
from tests.apps import common, flask_app
from tests.test_report_episodes import HISTORY

pytestmark = pytest.mark.flask

WINDOW = "since=2024-05-01T09:00:00Z&until=2024-05-01T13:00:00Z"
PREFIX = "/ops/gracefail/"


def make_store(path: Path) -> str:
    recorder = SQLiteRecorder(path)
    recorder.record(HISTORY)
    recorder.close()
    return str(path)


def app_with_report(store: str, **blueprint: object) -> Flask:
    """The test app with the extension on ``store`` and the blueprint at PREFIX; a request
    is allowed when it carries ``X-Staff: yes`` (the app's own rule)."""
    app = flask_app.make_wrapped(store=store, secret=common.SECRET)

    def staff_only() -> bool:
        return request.headers.get("X-Staff") == "yes"

    options = {"authorize": staff_only, **blueprint}
    app.register_blueprint(report_blueprint(**options), url_prefix=PREFIX)  # type: ignore[arg-type]
    return app


def test_nothing_is_served_unless_the_app_registers_it(tmp_path: Path) -> None:
    app = flask_app.make_wrapped(store=make_store(tmp_path / "e.sqlite3"), secret=common.SECRET)
    assert app.test_client().get(PREFIX, headers={"X-Staff": "yes"}).status_code == 404
    assert not [rule for rule in app.url_map.iter_rules() if "gracefail_report" in rule.endpoint]


def test_it_cannot_be_made_without_authorize() -> None:
    with pytest.raises(TypeError, match="authorize"):
        report_blueprint()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="must be a function that returns True"):
        report_blueprint(authorize=True)  # type: ignore[arg-type]


def test_the_report_for_whom_the_app_allows(tmp_path: Path) -> None:
    app = app_with_report(make_store(tmp_path / "e.sqlite3"))
    response = app.test_client().get(f"{PREFIX}?{WINDOW}&compare=previous",
                                     headers={"X-Staff": "yes"})  # fmt: skip
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "form-action 'self'" in response.headers["Content-Security-Policy"]
    assert "<h1>gracefail report</h1>" in page
    assert "2024-05-01T09:00:00Z to 2024-05-01T13:00:00Z (UTC)" in page
    assert f'action="{PREFIX}"' in page
    assert "<h2>Compared with the previous window</h2>" in page
    assert "<script" not in page


def test_everyone_else_gets_403_and_no_query(tmp_path: Path) -> None:
    # A store that does not exist: reading it would answer 200 with a message.
    app = app_with_report(str(tmp_path / "nothing-here.sqlite3"))
    client = app.test_client()
    assert client.get(f"{PREFIX}?{WINDOW}").status_code == 403
    assert client.get(f"{PREFIX}?{WINDOW}", headers={"X-Staff": "no"}).status_code == 403
    allowed = client.get(f"{PREFIX}?{WINDOW}", headers={"X-Staff": "yes"})
    assert allowed.status_code == 200
    assert "no gracefail store at" in allowed.get_data(as_text=True)


def test_authorize_may_send_to_the_login_page(tmp_path: Path) -> None:
    app = Flask(__name__)
    Gracefail(app, store=make_store(tmp_path / "e.sqlite3"), secret=common.SECRET)

    def login_first() -> bool:
        abort(redirect("/login?next=" + request.full_path))

    app.register_blueprint(report_blueprint(authorize=login_first), url_prefix="/report")
    response = app.test_client().get("/report/?since=7d")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/report/")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("since=400d", "this page shows at most 92 days", id="too-long"),
        pytest.param("since=soon", "is not a time", id="bad-since"),
        pytest.param(f"{WINDOW}&compare=week", "is not one of previous", id="bad-compare"),
        pytest.param(f"{WINDOW}&gap=0", "is not valid", id="bad-gap"),
        pytest.param("route=" + "x" * 300, "route is too long", id="long-route"),
    ],
)
def test_bad_windows_are_refused_before_any_query(tmp_path: Path, query: str, message: str) -> None:
    app = app_with_report(str(tmp_path / "nothing-here.sqlite3"))
    response = app.test_client().get(f"{PREFIX}?{query}", headers={"X-Staff": "yes"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert "no gracefail store" not in page


def test_a_store_of_its_own(tmp_path: Path) -> None:
    other = make_store(tmp_path / "other.sqlite3")
    app = Flask(__name__)  # no extension at all
    app.register_blueprint(report_blueprint(authorize=lambda: True, store=other))
    page = app.test_client().get(f"/?{WINDOW}").get_data(as_text=True)
    assert f"store: {other}" in page
    bare = Flask(__name__)
    bare.register_blueprint(report_blueprint(authorize=lambda: True))
    response = bare.test_client().get("/")
    assert response.status_code == 503
    assert "needs the Gracefail extension" in response.get_data(as_text=True)


def test_what_the_query_says_is_escaped(tmp_path: Path) -> None:
    app = app_with_report(make_store(tmp_path / "e.sqlite3"))
    response = app.test_client().get(
        f"{PREFIX}?route=%22%3E%3Cscript%3Ealert(1)%3C/script%3E", headers={"X-Staff": "yes"}
    )
    page = response.get_data(as_text=True)
    assert "<script>" not in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
