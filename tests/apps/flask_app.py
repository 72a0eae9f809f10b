"""A Flask app with the routes of ``tests.apps.common``, its own 500 page and error handler."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request, stream_with_context

from tests.apps import common


def make_app(flask_debug: bool = False) -> Flask:
    """The bare Flask app (no gracefail)."""
    app = Flask(__name__)
    app.config.update(DEBUG=flask_debug, SECRET_KEY="flask-secret-key-for-tests")

    @app.route("/ok")
    def ok() -> Response:
        return Response("hello", content_type="text/plain")

    @app.route("/fail/<kind>", methods=["GET", "POST"])
    def fail(kind: str) -> str:
        common.fail(kind)
        return "unreachable"

    @app.route("/handled")
    def handled() -> str:
        raise common.AppHandled("the app knows this one")

    @app.route("/app-status/<int:code>")
    def app_status(code: int) -> Response:
        streamed = request.args.get("stream") == "1"
        body = common.app_body(code) if streamed else f"app said {code}"
        response = Response(body, status=code, content_type="text/plain")
        response.set_cookie("session", "abc")
        return response

    @app.route("/stream")
    def stream() -> Response:
        gate = request.args.get("gate")
        return Response(stream_with_context(common.chunks(gate)), content_type="text/plain")

    @app.route("/late")
    def late() -> Response:
        return Response(common.late(), content_type="text/plain")

    @app.route("/early")
    def early() -> Response:
        return Response(common.early(), content_type="text/plain")

    @app.errorhandler(common.AppHandled)
    def app_handled(exc: Exception) -> tuple[str, int]:
        return common.HANDLED, 418

    @app.errorhandler(500)
    def server_error(exc: Exception) -> tuple[str, int]:
        return common.APP_500, 500

    return app


def make_wrapped(flask_debug: bool = False, **options: Any) -> Flask:
    """The app with the gracefail extension."""
    from gracefail.flask import Gracefail

    app = make_app(flask_debug=flask_debug)
    Gracefail(app, **options)
    return app


def server_app() -> Flask:
    """For gunicorn."""
    return make_wrapped(**common.server_options())
