"""Flask extension: ``Gracefail(app)`` or ``ext.init_app(app)``.

Options come from ``app.config["GRACEFAIL"]`` (a dict of :class:`gracefail.Config`
fields, keys in either case, nested dicts for ``brand`` and ``retry``), then from
the constructor's ``config=`` and keywords, which win. ``secret`` defaults to one
derived from ``SECRET_KEY`` (unless ``GRACEFAIL_SECRET`` is set). ``template_dir``
defaults to the app's ``templates/gracefail/`` folder when it holds a ``page.html`` (which
may extend ``gracefail/base.html``) or a ``locales/`` folder: Flask's usual override path.

How it hooks in, with Flask's public API only:

* ``app.wsgi_app`` is wrapped by :class:`gracefail.wsgi.GracefailMiddleware` (one
  core engine shared with the extension): beacons, the app's own 502/504 for
  navigations, and upstream failures raised while a streamed body starts.
* Error handlers (``app.register_error_handler``) for the upstream exception classes
  (:func:`gracefail.classify.upstream_classes`: the built-in ones, those of the HTTP
  clients already imported, and ``Config.exceptions``), for each class the app has no
  handler of its own for. Flask consults them before it logs a traceback and renders
  its 500: the handler notes the failure, sends :data:`flask.got_request_exception`
  as Flask would have (error trackers still see it), and answers an empty 502/504 that
  the WSGI layer replaces with the page. An app handler for a broader class (say
  ``Exception``) still gets the failure, as before; an exception of these classes that
  is not an upstream failure (a 404 from ``raise_for_status()``) is re-raised to Flask.
* A receiver on :data:`flask.got_request_exception` (sent for every exception no
  error handler took) notes the upstream failures the handlers did not see, such as a
  class of a client imported after ``Gracefail(app)`` or ``raise AppError from exc``;
  the WSGI layer then sends the page in place of the 500 Flask made, and Flask's
  traceback for it is dropped from ``app.logger``. With ``DEBUG``/``PROPAGATE_EXCEPTIONS``
  the exception leaves Flask and the WSGI layer turns it into the page directly.

So the app's own error handlers, its 500 page and ``got_request_exception`` all work
as before; only an upstream failure the app did not handle becomes the page.

With ``maintenance`` on, planned maintenance is checked in a ``before_request``
function, inside the request context, so ``maintenance_allowed`` (a callable of no
arguments, such as ``lambda: current_user.is_authenticated and current_user.is_admin``)
can see the session; allowed requests get ``X-Gracefail-Maintenance: on``.
``flask gracefail maintenance on|off|status`` switches it in the app's store.
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
from collections.abc import Callable, Mapping
from typing import Any

import click

from ._compat import importing
from .classify import upstream_classes
from .config import Config, framework_config
from .core import Engine, under_test
from .headers import BANNER
from .locales import LOCALE_DIR
from .views import environ_view
from .worker import head_tag
from .wsgi import FAILED, KEPT, ROUTE, Environ, GracefailMiddleware

with importing("flask"):
    from flask import (
        Flask,
        Response,
        got_request_exception,
        has_request_context,
        request,
    )
    from flask.cli import AppGroup

__all__ = ["Gracefail"]

EXTENSION_KEY = "gracefail"
_PASSED = "gracefail.maintenance_passed"  # environ key: allowed through maintenance


class Gracefail:
    """The Flask extension (see the module docs).

    Args:
        app: the app to set up now; or call :meth:`init_app` later.
        config: a :class:`gracefail.Config`; keywords set single fields on top.
        maintenance_allowed: called in the request context during planned maintenance;
            True lets the request through (staff, admins).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        config: Config | None = None,
        maintenance_allowed: Callable[[], object] | None = None,
        **options: Any,
    ):
        self._config = config
        self._maintenance_allowed = maintenance_allowed
        self._options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and listen for its unhandled exceptions."""
        settings = app.config.get("GRACEFAIL")
        options = self._options
        named = {str(key).lower() for key in options}
        if isinstance(settings, Mapping):
            named |= {str(key).lower() for key in settings}
        if "template_dir" not in named and getattr(self._config, "template_dir", None) is None:
            found = _template_dir(app)
            if found is not None:
                options = {**options, "template_dir": found}
        config = framework_config(
            self._config,
            settings,
            options,
            app.config.get("SECRET_KEY"),
            project_dir=app.instance_path,
        )
        if config.recorders is None and not config.record_in_tests and not app.testing:
            # The instance folder is Flask's place for such files, but Flask does not make it.
            os.makedirs(app.instance_path, exist_ok=True)
        engine = Engine(config, testing=app.testing or under_test())
        middleware = GracefailMiddleware(app.wsgi_app, engine=engine, route=_route)
        middleware.keep = "werkzeug.request"  # read by _route only if something fails
        if engine.maintenance is not None:
            # Checked in the request context instead, where the session and the user are.
            middleware.maintenance = None
            _follow_maintenance(app, engine, self._maintenance_allowed)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        # A module-level receiver: blinker holds it weakly, and the sender filter keeps
        # each app's notes to itself.
        got_request_exception.connect(_note_failure, app)
        _handle_upstream_classes(app, config)
        app.logger.addFilter(_served_failures)
        app.extensions[EXTENSION_KEY] = engine
        app.jinja_env.globals["gracefail_head"] = lambda: head_tag(config)
        app.cli.add_command(_cli)

    @staticmethod
    def engine(app: Flask) -> Engine:
        """The core engine set up for ``app`` (``flush()``, ``config``, ...)."""
        engine: Engine = app.extensions[EXTENSION_KEY]
        return engine


def _template_dir(app: Flask) -> str | None:
    """The app's ``templates/gracefail`` folder, if it has a page or locales for gracefail."""
    if app.template_folder is None:
        return None
    folder = os.path.join(app.root_path, os.fspath(app.template_folder), "gracefail")
    page = os.path.join(folder, "page.html")
    if os.path.isfile(page) or os.path.isdir(os.path.join(folder, LOCALE_DIR)):
        return folder
    return None


def _follow_maintenance(app: Flask, engine: Engine, allowed: Callable[[], object] | None) -> None:
    gate = engine.maintenance
    assert gate is not None  # only called with maintenance followed

    def maintenance_check() -> Response | None:
        if gate.on() is None:
            return None
        environ = request.environ
        if Engine.owner(environ) is not engine:
            return None  # an outer gracefail in this stack answers
        rule = request.url_rule.rule if request.url_rule is not None else None
        passes = allowed is not None and bool(allowed())
        reply = engine.maintenance_reply(environ_view(environ, route=rule), allowed=passes)
        if reply is None:
            environ[_PASSED] = True
            return None
        return Response(reply.body, status=reply.status, headers=reply.headers)

    def maintenance_banner(response: Response) -> Response:
        if request.environ.get(_PASSED):
            response.headers[BANNER[0]] = BANNER[1]
        return response

    app.before_request(maintenance_check)
    app.after_request(maintenance_banner)


def _route(environ: Environ) -> str | None:
    # Flask clears environ["werkzeug.request"] when its request context ends: a failure
    # noted during the request kept its route; else the request the WSGI layer kept.
    if ROUTE in environ:
        route: object = environ[ROUTE]
    else:
        kept = environ.get("werkzeug.request") or environ.get(KEPT)
        route = getattr(getattr(kept, "url_rule", None), "rule", None)
    return route if isinstance(route, str) else None


def _handle_upstream_classes(app: Flask, config: Config) -> None:
    """Register the upstream handler for each upstream class the app has none for."""
    registered = app.error_handler_spec[None][None]

    def upstream_failure(exc: Exception) -> Response:
        return _upstream_failure(app, upstream_failure, exc)

    for cls in upstream_classes(config.exceptions):
        if issubclass(cls, Exception) and cls not in registered:
            app.register_error_handler(cls, upstream_failure)


def _upstream_failure(app: Flask, ours: Callable[..., object], exc: Exception) -> Response:
    """The error handler: note the failure and answer the empty 502/504 the WSGI layer
    replaces with the page, without Flask's traceback and 500 page."""
    registered = app.error_handler_spec[None][None]
    for cls in type(exc).__mro__:
        handler = registered.get(cls)
        if handler is not None and handler is not ours:
            # The app's own handler for a broader class: it took such failures before.
            return app.make_response(app.ensure_sync(handler)(exc))
    environ = request.environ
    engine = Engine.owner(environ)
    failure = engine.classify(exc) if engine is not None else None
    if failure is None:
        raise exc  # not an upstream failure: Flask's unhandled-exception path, as before
    environ[FAILED] = failure
    environ[ROUTE] = request.url_rule.rule if request.url_rule is not None else None
    # What Flask sends for an unhandled exception: error trackers keep seeing it.
    got_request_exception.send(app, _async_wrapper=app.ensure_sync, exception=exc)
    return app.response_class(status=failure.status)


def _note_failure(sender: Flask, exception: BaseException | None = None, **extra: Any) -> None:
    """Note an unhandled upstream failure so the WSGI layer replaces Flask's 500."""
    environ = request.environ
    engine = Engine.owner(environ)
    if exception is None or engine is None or FAILED in environ:
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


class _Commands(AppGroup):
    """``flask gracefail``: its commands are imported from :mod:`gracefail.flask_cli`
    when the ``flask`` command asks for them, never when the app starts."""

    NAMES = ("maintenance", "report")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.NAMES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.NAMES:
            return None
        from .flask_cli import COMMANDS

        return COMMANDS[cmd_name]


_cli = _Commands("gracefail", help="gracefail's tools, with this app's settings.")
