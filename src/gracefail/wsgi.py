"""WSGI middleware (PEP 3333): Flask, Werkzeug, Bottle, Pyramid, or any WSGI app.

The happy path wraps ``start_response`` to note the status, and hands status and
headers to the server with the app's first non-empty chunk; from there the server
iterates the app's body itself (never buffered). Work happens only when:

* the app raises an upstream failure from its call, or while producing its body
  before any of it was written: the page is sent instead (``start_response`` gets
  ``exc_info`` only if the server already had the app's headers); once the body has
  started, the exception propagates to the server untouched;
* the app answers 502/504 to a browser navigation (or to anyone, with
  ``replace_api_responses``): the page replaces its body, its other headers
  (``Set-Cookie`` ...) are kept; API clients get the app's own answer;
* a request comes to ``Config.beacon_path``: answered here, reading at most 4 KiB
  of ``wsgi.input`` as ``CONTENT_LENGTH`` allows.

The app iterable's ``close()`` is always called. Example::

    from gracefail.wsgi import GracefailMiddleware

    app.wsgi_app = GracefailMiddleware(app.wsgi_app, brand=Brand(name="Acme"),
                                       status_page_url="https://status.acme.example")

Plain WSGI knows no route templates: events carry ``route=None`` unless ``route`` is
given. A second gracefail in one stack warns (``RuntimeWarning``); the outer one acts.
"""

from __future__ import annotations

import copy
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from .classify import Failure
from .config import Config, ConfigError, config_from
from .core import OWNER, Engine, Reply
from .headers import BANNER
from .views import content_length, environ_headers, environ_view

if TYPE_CHECKING:
    from .overload import Admission, OverloadGuard

__all__ = ["FAILED", "KEPT", "ROUTE", "GracefailMiddleware"]

# An upstream failure a framework turned into its own 5xx response (Flask's
# got_request_exception): the WSGI layer sends the page in its place.
FAILED: Final = "gracefail.failure"
# The route template of that failure, noted while the framework still knew it.
ROUTE: Final = "gracefail.route"

# What start_response kept of environ[GracefailMiddleware.keep], put back for ``route``.
KEPT: Final = "gracefail.kept"

Environ = dict[str, Any]
Write = Callable[[bytes], object]
StartResponse = Callable[..., Write]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
RouteOf = Callable[[Environ], str | None]


class GracefailMiddleware:
    """Serve gracefail's page when a WSGI app's upstream fails (see the module docs).

    Args:
        app: the WSGI app to wrap.
        config: a :class:`gracefail.Config`; or pass its fields as keywords.
        engine: an existing core :class:`gracefail.core.Engine` to share (the Flask
            extension passes its own); exclusive with ``config`` and keywords.
        route: ``route(environ)`` -> the route template of a failed request, for metrics.
        maintenance_allowed: ``maintenance_allowed(environ)`` -> True for a request that
            passes during planned maintenance (``Config.maintenance``) besides the
            allowed networks and paths: a staff session, a signed header.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        config: Config | None = None,
        engine: Engine | None = None,
        route: RouteOf | None = None,
        maintenance_allowed: Callable[[Environ], bool] | None = None,
        **options: Any,
    ) -> None:
        if engine is not None and (config is not None or options):
            raise ConfigError("gracefail: pass engine= or config/options, not both")
        self.app = app
        self.engine = engine if engine is not None else Engine(config_from(config, options))
        self.beacon_path = self.engine.beacon_path
        self.worker_paths = self.engine.worker_paths
        # The paths gracefail answers itself: one set lookup per request.
        self.own_paths = frozenset({self.beacon_path, *self.worker_paths})
        self.route = route
        # An environ key whose value start_response keeps, for ``route`` to read after
        # the framework dropped it (Flask's request object); None: nothing kept.
        self.keep: str | None = None
        self.maintenance = self.engine.maintenance
        self.maintenance_allowed = maintenance_allowed
        # Config.overload: every request is admitted (or shed) first, then handed to
        # this same middleware without the guard (one test on the happy path when off).
        self.overload: OverloadGuard | None = self.engine.overload
        self._inner: GracefailMiddleware | None = None

    def _admitted(self) -> GracefailMiddleware:
        """This middleware without the guard, made at the first admitted request (after
        an extension set it up: Flask's sets ``keep`` and ``maintenance``)."""
        inner = self._inner
        if inner is None:
            inner = copy.copy(self)
            inner.overload = None
            self._inner = inner
        return inner

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        engine = self.engine
        # Engine.claim inlined: the owner mark, set by the outermost gracefail.
        if environ.setdefault(OWNER, engine) is not engine and engine.claim(environ) is not engine:
            return self.app(environ, start_response)
        if self.overload is not None:
            return self._guarded(environ, start_response)
        if environ.get("PATH_INFO") in self.own_paths:
            if environ.get("PATH_INFO") == self.beacon_path:
                return self._beacon(environ, start_response)
            return _send(start_response, engine.answer_worker(environ_view(environ)))
        gate = self.maintenance
        if gate is not None and gate.on() is not None:
            allowed = self.maintenance_allowed is not None and bool(
                self.maintenance_allowed(environ)
            )
            reply = self.engine.maintenance_reply(environ_view(environ), allowed=allowed)
            if reply is not None:
                return _send(start_response, reply)
            start_response = _with_banner(start_response)
        call = _Call(self, environ, start_response)
        try:
            result = self.app(environ, call.start_response)
        except Exception as exc:
            page = call.page_for(exc)
            if page is None:
                raise
            return page
        if (
            call.status is not None
            and not call.replacing
            and (type(result) is list or _finished(environ, result))
        ):
            # A finished body or a file the server may sendfile(): nothing left that could fail.
            if call.to is None:
                call.to = start_response(call.status, call.headers)
            return result
        return _Body(call, result)

    def _guarded(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """``Config.overload``: admit the request or answer the busy 503 at once.

        The service worker's files and planned maintenance's replies are gracefail's own
        and cheap: never shed. The slot of an admitted request is freed when the server
        closes the response (its body sent), or at once if the app raises; its latency,
        admission to the headers reaching the server, feeds the adaptive limit unless the
        status is a 5xx.
        """
        guard = self.overload
        inner = self._admitted()
        # Also read by the middleware that follows: a subclass's change of
        # maintenance (Flask's extension sets it to None) is its own.
        gate = inner.maintenance
        path = environ.get("PATH_INFO", "")
        if guard is None or path in self.worker_paths or (gate is not None and gate.on()):
            return inner(environ, start_response)
        admission = guard.admit_environ(environ, path, beacon=path == self.beacon_path)
        if not admission.admitted:
            return _send(
                start_response, self.engine.overload_reply(environ_view(environ), admission.reason)
            )
        timing = _Timing(guard, admission, start_response)
        try:
            result = inner(environ, timing.start_response)
        except BaseException:
            timing.release()
            raise
        return _Admitted(result, timing)

    def _beacon(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        view = environ_view(environ)
        reply = self.engine.answer_beacon(view, content_length(view.headers), input_reader(environ))
        return _send(start_response, reply)


def status_line(status: int) -> str:
    """``"502 Bad Gateway"`` for WSGI's ``start_response``."""
    line = _STATUS_LINES.get(status)
    if line is not None:
        return line
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


_STATUS_LINES: Final = {
    code: f"{code} {HTTPStatus(code).phrase}" for code in (200, 204, 400, 413, 429, 502, 503, 504)
}


def input_reader(environ: Mapping[str, Any]) -> Callable[[int], bytes]:
    """``read(n)`` for a WSGI body: at most ``n`` bytes, never past ``CONTENT_LENGTH``."""
    length = content_length(environ_headers(environ))
    stream = environ.get("wsgi.input")

    def read(limit: int) -> bytes:
        if stream is None:
            return b""
        if length is None:
            # Without CONTENT_LENGTH, reading is only safe from a terminated input.
            return bytes(stream.read(limit)) if environ.get("wsgi.input_terminated") else b""
        return bytes(stream.read(min(length, limit)))

    return read


def _finished(environ: Environ, result: Iterable[bytes]) -> bool:
    if type(result) in (list, tuple):
        return True
    wrapper = environ.get("wsgi.file_wrapper")
    return isinstance(wrapper, type) and isinstance(result, wrapper)


def _with_banner(start_response: StartResponse) -> StartResponse:
    """``start_response`` adding ``X-Gracefail-Maintenance: on``: an allowed request
    during maintenance (staff see that users do not get this page)."""

    def banner_start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Write:
        return start_response(status, [*headers, BANNER], *args)

    return banner_start_response


def _send(start_response: StartResponse, reply: Reply, exc_info: Any = None) -> list[bytes]:
    start_response(status_line(reply.status), reply.headers, exc_info)
    return [reply.body]


class _Call:
    """One request's state: the app's pending status and headers, and what was sent."""

    __slots__ = (
        "began", "environ", "headers", "kept", "mw", "replacing", "sent", "server", "status", "to"
    )  # fmt: skip

    def __init__(self, mw: GracefailMiddleware, environ: Environ, server: StartResponse):
        self.mw, self.environ, self.server = mw, environ, server
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.to: Write | None = None  # the server's write(), once it has the headers
        self.replacing = self.sent = False
        self.kept: object = None  # environ[mw.keep] while the framework still had it
        self.began = time.time()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Write:
        if exc_info is not None and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, headers
        if status[:1] == "5":
            self.replacing = self._replaces(status)
        if self.mw.keep is not None:
            # One reference, no lookup of the route: a body that fails later is iterated
            # after the framework dropped its request (read only if something fails).
            self.kept = self.environ.get(self.mw.keep)
        if self.to is not None and not self.replacing:
            self.to = self.server(status, headers, exc_info)
        return self.write

    def _replaces(self, status: str) -> bool:
        if self.environ.get(FAILED) is not None:
            return True
        if status[:3] not in ("502", "504"):
            return False
        return self.mw.engine.replaces_app_response(environ_headers(self.environ), self.headers)

    def write(self, data: bytes) -> None:
        if self.replacing:
            return
        self.forward()(data)
        if data:
            self.sent = True

    def forward(self) -> Write:
        if self.to is None:
            self.to = self.server(self.status, self.headers)
        return self.to

    def page_for(self, exc: BaseException) -> list[bytes] | None:
        """The page for an upstream failure not yet visible to the client, else None."""
        failure = None if self.sent else self.mw.engine.classify(exc)
        if failure is None:
            return None
        return self._page(failure, [], sys.exc_info() if self.to is not None else None)

    def replacement(self) -> list[bytes]:
        """The page in place of the app's own 5xx (its other headers kept)."""
        code = int((self.status or "502")[:3])
        failure = self.environ.get(FAILED) or self.mw.engine.failure_for_status(code)
        return self._page(failure, self.headers, None)

    def _page(
        self, failure: Failure, app_headers: list[tuple[str, str]], exc_info: Any
    ) -> list[bytes]:
        route = None
        if self.mw.route is not None:
            if self.kept is not None:
                self.environ[KEPT] = self.kept
            route = self.mw.route(self.environ)
        view = environ_view(self.environ, route=route)
        reply = self.mw.engine.serve(failure, view, app_headers=app_headers, started=self.began)
        return _send(self.server, reply, exc_info)


class _Body:
    """The app's iterable, watched until its first non-empty chunk; closed exactly once."""

    __slots__ = ("_call", "_result")

    def __init__(self, call: _Call, result: Iterable[bytes]):
        self._call = call
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        call = self._call
        first = b""
        try:
            iterator = iter(self._result)
            if not call.replacing:
                for first in iterator:
                    if first or call.replacing:
                        break
        except Exception as exc:
            page = call.page_for(exc)
            if page is None:
                raise
            return iter(page)
        if call.replacing:
            return iter(call.replacement())
        call.forward()
        # From here the server iterates the app directly: no per-chunk cost.
        return itertools.chain((first,), iterator) if first else iterator

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


class _Timing:
    """An admitted request's slot: notes when its headers reach the server, frees the
    slot once (with that latency as the adaptive limit's sample, unless a 5xx)."""

    __slots__ = ("admission", "began", "guard", "latency", "released", "server")

    def __init__(self, guard: OverloadGuard, admission: Admission, server: StartResponse):
        self.guard, self.admission, self.server = guard, admission, server
        self.began = time.monotonic()
        self.latency: float | None = None
        self.released = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Write:
        if self.latency is None:
            self.latency = time.monotonic() - self.began if status[:1] != "5" else -1.0
        return self.server(status, headers, exc_info)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        latency = self.latency
        self.guard.release(
            self.admission, latency if latency is not None and latency >= 0 else None
        )


class _Admitted:
    """The response of an admitted request: iterated as it is; ``close()`` closes it and
    then frees the request's slot (PEP 3333: the server calls it once the body is sent)."""

    __slots__ = ("_result", "_timing")

    def __init__(self, result: Iterable[bytes], timing: _Timing):
        self._result = result
        self._timing = timing

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._timing.release()
