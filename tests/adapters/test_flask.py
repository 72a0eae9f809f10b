"""The Flask extension: set-up, options, and living next to the app's own error handling."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("flask")

from flask import Flask, abort, got_request_exception

from gracefail import ConfigError, UpstreamError
from gracefail.events import ServerEvent
from gracefail.flask import Gracefail
from gracefail.tokens import TokenSigner
from gracefail.wsgi import GracefailMiddleware
from tests.apps import common, flask_app

pytestmark = pytest.mark.flask

NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}


@pytest.fixture(autouse=True)
def _no_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRACEFAIL_SECRET", raising=False)


def http(app: Flask) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")


def events(app: Flask) -> list[ServerEvent]:
    engine = Gracefail.engine(app)
    engine.flush()
    [recorder] = engine.config.recorders or []
    return [e for e in recorder.events if isinstance(e, ServerEvent)]


def test_init_app_pattern_with_two_apps() -> None:
    ext = Gracefail(recorders=[common.ListRecorder()])
    first, second = flask_app.make_app(), flask_app.make_app()
    second.config["GRACEFAIL"] = {"retry": {"retry_after": 9}}
    ext.init_app(first)
    ext.init_app(second)
    assert Gracefail.engine(first) is not Gracefail.engine(second)
    assert Gracefail.engine(first).config.retry.retry_after == 5
    with http(second) as client:
        response = client.get("/fail/upstream-502", headers=NAV)
    assert (response.status_code, response.headers["retry-after"]) == (502, "9")


def test_app_config_merged_with_constructor_keywords() -> None:
    app = flask_app.make_app()
    app.config["GRACEFAIL"] = {
        "STATUS_PAGE_URL": "https://status.acme.example",
        "brand": {"Name": "Acme"},
        "debug": True,
    }
    Gracefail(app, debug=False, recorders=[])
    config = Gracefail.engine(app).config
    assert config.status_page_url == "https://status.acme.example"
    assert config.brand.name == "Acme"
    assert config.debug is False, "constructor keywords win over app.config"


def test_bad_key_in_app_config_names_it() -> None:
    app = flask_app.make_app()
    app.config["GRACEFAIL"] = {"status_page_ur": "https://status.acme.example"}
    with pytest.raises(ConfigError, match=r"status_page_ur.*did you mean 'status_page_url'"):
        Gracefail(app)


def test_secret_derived_from_secret_key() -> None:
    first, second = flask_app.make_wrapped(recorders=[]), flask_app.make_wrapped(recorders=[])
    secret = Gracefail.engine(first).config.secret
    assert isinstance(secret, str)
    assert len(secret) == 64
    assert secret != first.config["SECRET_KEY"], "a key of its own, not SECRET_KEY itself"
    assert secret == Gracefail.engine(second).config.secret, "stable across workers"
    token = TokenSigner(secret, 60).sign("incident-1", 502)
    assert Gracefail.engine(second).signer.verify(token).incident == "incident-1"
    explicit = flask_app.make_wrapped(secret=common.SECRET, recorders=[])
    assert Gracefail.engine(explicit).config.secret == common.SECRET


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_upstream_failure_signals_and_gets_the_page(debug: bool) -> None:
    app = flask_app.make_wrapped(flask_debug=debug, recorders=[common.ListRecorder()])
    seen: list[BaseException] = []

    def receiver(sender: Flask, exception: BaseException, **extra: Any) -> None:
        seen.append(exception)

    with got_request_exception.connected_to(receiver, app), http(app) as client:
        response = client.get("/fail/httpx-read-timeout", headers=NAV)
    assert response.status_code == 504
    assert common.APP_500 not in response.text
    assert [type(e).__name__ for e in seen] == ["ReadTimeout"]
    [event] = events(app)
    assert (event.cause, event.route) == ("timeout", "/fail/<kind>")


def test_bug_keeps_flasks_own_handling() -> None:
    app = flask_app.make_wrapped(recorders=[common.ListRecorder()])
    seen: list[BaseException] = []

    def receiver(sender: Flask, exception: BaseException, **extra: Any) -> None:
        seen.append(exception)

    with got_request_exception.connected_to(receiver, app), http(app) as client:
        response = client.get("/fail/bug", headers=NAV)
        missing = client.get("/nothing-here", headers=NAV)
        handled = client.get("/handled", headers=NAV)
    assert (response.status_code, response.text) == (500, common.APP_500)
    assert [type(e) for e in seen] == [KeyError]
    assert missing.status_code == 404
    assert (handled.status_code, handled.text) == (418, common.HANDLED)
    assert events(app) == []


def test_debug_mode_lets_bugs_reach_the_debugger() -> None:
    app = flask_app.make_wrapped(flask_debug=True, recorders=[])
    with http(app) as client, pytest.raises(KeyError):
        client.get("/fail/bug", headers=NAV)


def test_abort_502_is_an_app_made_502() -> None:
    app = flask_app.make_wrapped(recorders=[common.ListRecorder()])

    @app.get("/abort")
    def aborting() -> str:
        abort(502)

    with http(app) as client:
        page = client.get("/abort", headers=NAV)
        api = client.get("/abort", headers={"accept": "application/json"})
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "x-gracefail-incident" in page.headers
    assert "x-gracefail-incident" not in api.headers
    [event] = events(app)
    assert (event.cause, event.route) == ("app_response", "/abort")


def test_flask_test_client_gets_the_page() -> None:
    """Werkzeug's test client re-raises any exc_info: the page must not need it."""
    app = flask_app.make_wrapped(secret=common.SECRET, recorders=[])
    client = app.test_client()
    assert client.get("/fail/upstream-504", headers=NAV).status_code == 504
    assert client.get("/early", headers=NAV).status_code == 502
    token = TokenSigner(common.SECRET, 60).sign("incident-1", 504)
    body = {"token": token, "kind": "shown", "attempt": 0, "elapsed_ms": 0, "locale": "en"}
    beacon = client.post("/_gracefail/beacon", data=json.dumps(body), content_type="text/plain")
    assert beacon.status_code == 204


def test_template_dir_overrides_the_page(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        "<!doctype html><title>{{ brand.name }}</title><p>Custom outage page {{ status }}</p>"
        "<p>{{ incident }}</p>",
        encoding="utf-8",
    )
    app = flask_app.make_app()
    app.config["GRACEFAIL"] = {"template_dir": str(tmp_path), "brand": {"name": "Acme"}}
    Gracefail(app, recorders=[])
    with http(app) as client:
        response = client.get("/fail/upstream-502", headers=NAV)
    assert "Custom outage page 502" in response.text
    assert response.headers["x-gracefail-incident"] in response.text


def test_outer_wsgi_middleware_wins() -> None:
    inner_recorder, outer_recorder = common.ListRecorder(), common.ListRecorder()
    app = flask_app.make_wrapped(recorders=[inner_recorder])
    outer = GracefailMiddleware(app.wsgi_app, secret=common.SECRET, recorders=[outer_recorder])
    app.wsgi_app = outer  # type: ignore[method-assign]
    with http(app) as client, pytest.warns(RuntimeWarning, match="second GracefailMiddleware"):
        response = client.get("/fail/upstream-502", headers=NAV)
    assert response.status_code == 502
    assert response.text.count("<html") == 1
    outer.engine.flush()
    assert [type(e) for e in outer_recorder.events] == [ServerEvent]
    assert events(app) == []


def test_report_command(tmp_path: Path) -> None:
    """``flask gracefail report`` reads the store this app's failures went to."""
    app = flask_app.make_wrapped(store=str(tmp_path / "events.sqlite3"))
    with http(app) as client:
        client.get("/fail/upstream-504", headers=NAV)
    Gracefail.engine(app).flush()
    result = app.test_cli_runner().invoke(args=["gracefail", "report", "--format", "json"])
    if importlib.util.find_spec("gracefail.report") is None:
        assert result.exit_code != 0
        assert "the report needs gracefail's event store" in result.output
    else:
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert (report["failures"], report["by_status"]["504"]) == (1, 1)


def test_missing_flask_says_what_to_install(without: Any) -> None:
    assert "pip install 'gracefail[flask]'" in without("flask", "gracefail.flask")


def test_upstream_error_from_before_request_gets_the_page() -> None:
    app = flask_app.make_app()

    @app.before_request
    def check_upstream() -> None:
        raise UpstreamError(502, upstream="auth")

    Gracefail(app, recorders=[])
    with http(app) as client:
        assert client.get("/ok", headers=NAV).status_code == 502


class _CountingFlask(Flask):
    """Flask with its public ``log_exception`` hook counted: the traceback Flask logs."""

    logged: list[BaseException]

    def log_exception(self, exc_info: Any) -> None:
        self.logged.append(exc_info[1])
        super().log_exception(exc_info)


def _counting_app(**options: Any) -> tuple[_CountingFlask, list[BaseException]]:
    app = _CountingFlask("counting")
    app.logged = []

    @app.get("/refused")
    def refused() -> str:
        raise ConnectionRefusedError("upstream down")

    @app.get("/bug")
    def bug() -> str:
        raise KeyError("bug")

    @app.get("/not-found-upstream")
    def not_found_upstream() -> str:
        request = httpx.Request("GET", "http://upstream.test/x")
        response = httpx.Response(404, request=request)
        raise httpx.HTTPStatusError("404", request=request, response=response)

    Gracefail(app, secret=common.SECRET, recorders=[common.ListRecorder()], **options)
    return app, app.logged


def test_served_failure_skips_flasks_traceback_and_500() -> None:
    """The page for an upstream failure comes from an error handler: Flask never logs a
    traceback for it, while the app's other exceptions are logged exactly as before."""
    app, logged = _counting_app()
    seen: list[BaseException] = []

    def receiver(sender: Flask, exception: BaseException, **extra: Any) -> None:
        seen.append(exception)

    with got_request_exception.connected_to(receiver, app), http(app) as client:
        page = client.get("/refused", headers=NAV)
        bug = client.get("/bug", headers=NAV)
        not_upstream = client.get("/not-found-upstream", headers=NAV)
    assert page.status_code == 502
    assert "x-gracefail-incident" in page.headers
    assert "<!doctype html>" in page.text.lower()
    assert (bug.status_code, not_upstream.status_code) == (500, 500)
    # Flask's traceback: for the bug and the 404 from raise_for_status(), not the failure.
    assert [type(e).__name__ for e in logged] == ["KeyError", "HTTPStatusError"]
    # got_request_exception is still sent once for each, as Flask sends it.
    assert [type(e).__name__ for e in seen] == [
        "ConnectionRefusedError",
        "KeyError",
        "HTTPStatusError",
    ]
    [event] = events(app)
    assert (event.cause, event.route) == ("connection", "/refused")


@pytest.mark.parametrize("when", ["before", "after"])
def test_apps_own_handler_for_the_class_wins(when: str) -> None:
    app = _CountingFlask("own-handler")
    app.logged = []

    def own(exc: Exception) -> tuple[str, int]:
        return "handled by the app", 503

    if when == "before":
        app.register_error_handler(ConnectionError, own)

    @app.get("/refused")
    def refused() -> str:
        raise ConnectionRefusedError("upstream down")

    Gracefail(app, secret=common.SECRET, recorders=[common.ListRecorder()])
    if when == "after":
        app.register_error_handler(ConnectionError, own)
    with http(app) as client:
        response = client.get("/refused", headers=NAV)
    assert (response.status_code, response.text) == (503, "handled by the app")
    assert events(app) == []
    assert app.logged == []


def test_apps_handler_for_a_broader_class_still_wins() -> None:
    """An app that handles ``Exception`` itself took upstream failures before: it still does."""
    app = _CountingFlask("broad-handler")
    app.logged = []

    @app.errorhandler(Exception)
    def everything(exc: Exception) -> tuple[str, int]:
        return f"app page for {type(exc).__name__}", 500

    @app.get("/refused")
    def refused() -> str:
        raise ConnectionRefusedError("upstream down")

    Gracefail(app, secret=common.SECRET, recorders=[common.ListRecorder()])
    with http(app) as client:
        response = client.get("/refused", headers=NAV)
    assert (response.status_code, response.text) == (500, "app page for ConnectionRefusedError")
    assert events(app) == []
