"""A plain Werkzeug WSGI app with the routes of ``tests.apps.common``; no framework.

Non-upstream exceptions leave the app (a plain WSGI app has no 500 page of its
own): the server, or the test client, sees them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tests.apps import common

urls = Map(
    [
        Rule("/ok", endpoint="ok"),
        Rule("/fail/<kind>", endpoint="fail"),
        Rule("/handled", endpoint="handled"),
        Rule("/app-status/<int:code>", endpoint="app_status"),
        Rule("/stream", endpoint="stream"),
        Rule("/late", endpoint="late"),
        Rule("/early", endpoint="early"),
    ]
)


def view(request: Request, endpoint: str, args: dict[str, Any]) -> Response:
    if endpoint == "ok":
        return Response("hello", content_type="text/plain")
    if endpoint == "fail":
        common.fail(args["kind"])
    if endpoint == "handled":
        try:
            raise common.AppHandled("the app knows this one")
        except common.AppHandled:
            return Response(common.HANDLED, status=418)
    if endpoint == "app_status":
        code = args["code"]
        streamed = request.args.get("stream") == "1"
        body = common.app_body(code) if streamed else f"app said {code}"
        response = Response(body, status=code, content_type="text/plain")
        response.set_cookie("session", "abc")
        return response
    if endpoint == "stream":
        return Response(common.chunks(request.args.get("gate")), content_type="text/plain")
    if endpoint == "late":
        return Response(common.late(), content_type="text/plain")
    return Response(common.early(), content_type="text/plain")


def make_app() -> Any:
    """The bare WSGI app (no gracefail)."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, args = urls.bind_to_environ(environ).match()
            response = view(request, endpoint, args)
        except HTTPException as exc:
            return exc(environ, start_response)
        return response(environ, start_response)

    return app


def server_app() -> Any:
    """For gunicorn: gracefail wrapped around the plain app."""
    from gracefail.wsgi import GracefailMiddleware

    return GracefailMiddleware(make_app(), **common.server_options())
