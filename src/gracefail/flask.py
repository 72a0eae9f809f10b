"""Flask extension: ``Gracefail(app)`` or ``ext.init_app(app)``.

Options come from ``app.config["GRACEFAIL"]`` (a dict of :class:`gracefail.Config`
fields, keys in either case, nested dicts for ``brand`` and ``retry``), then from
the constructor's ``config=`` and keywords, which win. ``secret`` defaults to one
derived from ``SECRET_KEY`` (unless ``GRACEFAIL_SECRET`` is set).

How it hooks in, with Flask's public API only:

* ``app.wsgi_app`` is wrapped by :class:`gracefail.wsgi.GracefailMiddleware` (one
  core engine shared with the extension): beacons, the app's own 502/504 for
  navigations, and upstream failures raised while a streamed body starts.
* A receiver on :data:`flask.got_request_exception` (sent for every exception no
  error handler of the app took) notes an upstream failure; the WSGI layer then
  sends the page in place of the 500 Flask made. With ``DEBUG``/``PROPAGATE_EXCEPTIONS``
  the exception leaves Flask and the WSGI layer turns it into the page directly.

So the app's own error handlers, its 500 page and ``got_request_exception`` all work
as before; only an upstream failure the app did not handle becomes the page.
The route label is ``request.url_rule.rule``.

Example::

    from flask import Flask
    from gracefail.flask import Gracefail

    app = Flask(__name__)
    app.config["GRACEFAIL"] = {"status_page_url": "https://status.acme.example",
                               "brand": {"name": "Acme"}}
    Gracefail(app)

``flask gracefail report`` runs ``gracefail report`` against the app's store. Templates
get ``gracefail_head()``, the tag that installs the service worker (``service_worker``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ._compat import importing
from .config import Config, framework_config
from .core import Engine, under_test
from .report.options import click_options, run_click
from .worker import head_tag
from .wsgi import FAILED, ROUTE, Environ, GracefailMiddleware

with importing("flask"):
    from flask import Flask, current_app, got_request_exception, has_request_context, request
    from flask.cli import AppGroup

__all__ = ["Gracefail"]

EXTENSION_KEY = "gracefail"


class Gracefail:
    """The Flask extension (see the module docs).

    Args:
        app: the app to set up now; or call :meth:`init_app` later.
        config: a :class:`gracefail.Config`; keywords set single fields on top.
    """

    def __init__(self, app: Flask | None = None, *, config: Config | None = None, **options: Any):
        self._config = config
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and listen for its unhandled exceptions."""
        config = framework_config(
            self._config,
            app.config.get("GRACEFAIL"),
            self._options,
            app.config.get("SECRET_KEY"),
            project_dir=app.instance_path,
        )
        if config.recorders is None and not config.record_in_tests and not app.testing:
            # The instance folder is Flask's place for such files, but Flask does not make it.
            os.makedirs(app.instance_path, exist_ok=True)
        engine = Engine(config, testing=app.testing or under_test())
        app.wsgi_app = GracefailMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, engine=engine, route=_route
        )
        # A module-level receiver: blinker holds it weakly, and the sender filter keeps
        # each app's notes to itself.
        got_request_exception.connect(_note_failure, app)
        app.logger.addFilter(_served_failures)
        app.extensions[EXTENSION_KEY] = engine
        app.jinja_env.globals["gracefail_head"] = lambda: head_tag(config)
        app.cli.add_command(_cli)

    @staticmethod
    def engine(app: Flask) -> Engine:
        """The core engine set up for ``app`` (``flush()``, ``config``, ...)."""
        engine: Engine = app.extensions[EXTENSION_KEY]
        return engine


def _route(environ: Environ) -> str | None:
    # Flask clears environ["werkzeug.request"] when its request context ends; a failure
    # noted during the request kept its route.
    if ROUTE in environ:
        route: object = environ[ROUTE]
    else:
        route = getattr(getattr(environ.get("werkzeug.request"), "url_rule", None), "rule", None)
    return route if isinstance(route, str) else None


def _note_failure(sender: Flask, exception: BaseException | None = None, **extra: Any) -> None:
    """Note an unhandled upstream failure so the WSGI layer replaces Flask's 500."""
    environ = request.environ
    engine = Engine.owner(environ)
    if exception is None or engine is None:
        return
    failure = engine.classify(exception)
    if failure is not None:
        environ[FAILED] = failure
        environ[ROUTE] = request.url_rule.rule if request.url_rule is not None else None


def _served_failures(record: logging.LogRecord) -> bool:
    """Drop Flask's traceback for an upstream failure gracefail serves the page for.

    The engine logs those, rate-limited; every other error the app logs is untouched.
    """
    return not (
        record.exc_info is not None
        and has_request_context()
        and request.environ.get(FAILED) is not None
    )


_cli = AppGroup("gracefail", help="gracefail's tools, with this app's settings.")


@_cli.command(
    "report",
    help="Error frequency and recovery from this app's store (the options of `gracefail report`).",
)
@click_options("this app's store")
def _report(**values: Any) -> None:
    run_click(values, configured=Gracefail.engine(current_app).config.store)
