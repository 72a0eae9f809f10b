"""The report as a page of a Flask app: an opt-in blueprint the app protects itself.

Nothing is served unless the app registers the blueprint, and it cannot be made
without ``authorize``: a function the app writes, called on every request, that
returns True to let it through (or aborts, to redirect to a login page). The
report shows every route's failures and what users went through, so who may see it
is the app's decision, with the app's own login::

    from flask import Flask, abort
    from flask_login import current_user
    from gracefail.flask import Gracefail
    from gracefail.flask_report import report_blueprint

    app = Flask(__name__)
    Gracefail(app)

    def staff_only() -> bool:
        return current_user.is_authenticated and current_user.is_admin

    app.register_blueprint(report_blueprint(authorize=staff_only), url_prefix="/ops/gracefail")

``GET /ops/gracefail/`` then shows the HTML report of the app's store (the one the
``Gracefail`` extension records to, or ``store=``) for the window the page's form
chooses (``?since=7d&compare=previous``...): the same parameters, checks and 92-day
bound as the Django admin view (:mod:`gracefail.report.web`). A refused request
gets 403 and no query runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ._compat import importing
from .report.reader import Store
from .report.web import report_page

with importing("flask"):
    from flask import Blueprint, Response, abort, current_app, request

__all__ = ["report_blueprint"]

_SECURITY_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _store_of_app() -> Store:
    engine: Any = current_app.extensions.get("gracefail")
    if engine is None:
        abort(
            Response(
                "gracefail's report blueprint needs the Gracefail extension on this app "
                "(Gracefail(app)) or report_blueprint(store=...)",
                status=503,
                mimetype="text/plain",
            )
        )
    store: Store = engine.config.store
    return store


def report_blueprint(
    *,
    authorize: Callable[[], bool],
    store: Store | None = None,
    name: str = "gracefail_report",
    title: str = "gracefail report",
) -> Blueprint:
    """A blueprint whose ``/`` is gracefail's HTML report (see the module docs).

    Args:
        authorize: called for each request; the page is shown only if it returns True
            (it may also ``abort()`` itself, with a redirect to the app's login).
        store: the store to read; default: the one the app's ``Gracefail`` extension uses.
        name: the blueprint's name (for ``url_for(f"{name}.report")``).
        title: the page's title.
    """
    if not callable(authorize):
        raise ValueError(
            "gracefail: report_blueprint(authorize=...) must be a function that returns "
            f"True for who may see the report, got {authorize!r}"
        )
    blueprint = Blueprint(name, __name__)

    @blueprint.get("/")
    def report() -> Response:
        if authorize() is not True:
            abort(403)
        result = report_page(store if store is not None else _store_of_app(), request.args)
        response = Response(
            result.document(title, action=request.path),
            status=result.status,
            mimetype="text/html",
        )
        response.headers.update(_SECURITY_HEADERS)
        return response

    return blueprint
