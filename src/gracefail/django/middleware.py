"""``GracefailMiddleware`` for Django: sync- and async-capable, placed high in ``MIDDLEWARE``.

* Upstream failures raised by a view are caught in :meth:`~GracefailMiddleware.process_exception`
  (after the process_exception of any middleware listed below it, so the app's own
  exception handling comes first); anything else goes on to Django's 500 handling.
* The app's own 502/504 for a browser navigation is replaced in ``__call__`` (its other
  headers and cookies kept); API clients get it untouched unless ``replace_api_responses``.
* ``Config.beacon_path`` is answered before URL resolution, CSRF and sessions.
* Under ASGI the middleware runs as a coroutine (no thread hop for async views), and
  ``Config.timeout`` sends a 504 when the rest of the stack takes longer.
* With ``Config.overload`` (``GRACEFAIL = {"overload": {...}}``), each request is
  admitted or shed before anything else (docs/overload.md): a shed request gets the busy
  503 at once; an admitted one frees its slot when its response is closed (its body
  sent), its latency measured to the moment the rest of the stack returned.
* During planned maintenance (``Config.maintenance``) the check is made in
  ``process_view`` (set only then), after every middleware's request phase,
  so ``request.user`` is known: active staff users (``is_staff``) pass, with
  ``X-Gracefail-Maintenance: on`` on the response; so do ``maintenance_allow``
  networks and ``maintenance_paths``. Everyone else gets the 503 maintenance page.

Route label: ``request.resolver_match.route``. A second gracefail in the same stack
warns (``RuntimeWarning``) and defers to the outer one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.encoding import escape_uri_path

from ..classify import Failure
from ..core import OWNER, Engine, Reply, RequestView
from ..headers import BANNER
from ..views import content_length, environ_view
from .conf import get_config, testing

if TYPE_CHECKING:
    from ..overload import Admission, OverloadGuard

__all__ = ["GracefailMiddleware"]

GetResponse = Callable[[HttpRequest], Any]
_STATE = "_gracefail"  # request attribute: (the Django middleware in charge, owner engine, start)
_PASSED = "_gracefail_maintenance"  # request attribute: allowed through maintenance


def _response(reply: Reply) -> HttpResponse:
    response = HttpResponse(reply.body, status=reply.status)
    for name, value in reply.headers:
        response[name] = value
    return response


def _page(reply: Reply) -> HttpResponse:
    response = _response(reply)
    # The engine logs failures it served, rate-limited; Django's request logger would
    # add an ERROR line per reply, the page's own probes included.
    response._has_been_logged = True
    return response


def _view(request: HttpRequest) -> RequestView:
    match = request.resolver_match
    return environ_view(
        request.META,
        path=escape_uri_path(request.path),
        scheme=request.scheme,
        route=match.route if match is not None else None,
    )


class GracefailMiddleware:
    """Serve gracefail's page when a view's upstream fails (see the module docs)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self.engine = Engine(get_config(), testing=testing())
        self.beacon_path = self.engine.beacon_path
        # The paths gracefail answers itself: one set lookup per request.
        self.own_paths = frozenset({self.beacon_path, *self.engine.worker_paths})
        self.timeout = self.engine.config.timeout
        self.maintenance = self.engine.maintenance
        self.overload: OverloadGuard | None = self.engine.overload
        if self.maintenance is not None:
            # Only with maintenance followed: Django calls a process_view on every request,
            # and one of the wrong kind would cost an async request a thread hop.
            check = self._amaintenance_view if self.async_mode else self._maintenance_view
            setattr(self, "process_view", check)  # noqa: B010 - an instance attribute only

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            if self.overload is not None:
                return self._aguarded(request)
            return self.__acall__(request)
        if self.overload is not None:
            return self._guarded(request)
        early = self._enter(request)
        if early is not None:
            return early
        response = self.get_response(request)
        if self.maintenance is None:
            status = response.status_code
            if status != 502 and status != 504:
                return response
        return self._leave(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        early = self._enter(request)
        if early is not None:
            return early
        if self.timeout is None:
            response = await self.get_response(request)
            if self.maintenance is None:
                status = response.status_code
                if status != 502 and status != 504:
                    return response
            return self._leave(request, response)
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                response = await self.get_response(request)
        except TimeoutError:
            if not deadline.expired():
                raise
            return self._reply(request, self.engine.timeout_failure())
        return self._leave(request, response)

    # -- overload -----------------------------------------------------------------

    def _admit(self, request: HttpRequest) -> tuple[Admission | None, HttpResponse | None]:
        """(the admission to release, or the busy 503 to answer with); (None, None) for
        a request this middleware does not guard (an outer gracefail's, the worker's
        files, planned maintenance)."""
        guard = self.overload
        engine = self.engine
        path = request.path_info
        owner = Engine.owner(request.META) or Engine.owner(getattr(request, "scope", None) or {})
        gate = self.maintenance
        if (
            guard is None
            or (owner is not None and owner is not engine)
            or path in engine.worker_paths
            or (gate is not None and gate.on())
        ):
            return None, None
        meta = request.META
        admission = guard.admit_environ(meta, path, beacon=path == self.beacon_path)
        if admission.admitted:
            return admission, None
        view = environ_view(meta, path=escape_uri_path(request.path), scheme=request.scheme)
        return None, _page(engine.overload_reply(view, admission.reason))

    def _release_later(
        self, response: HttpResponseBase, admission: Admission, began: float
    ) -> HttpResponseBase:
        """Free the slot when Django closes the response (after the server sent it)."""
        guard = self.overload
        assert guard is not None
        latency = time.monotonic() - began if response.status_code < 500 else None
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                guard.release(admission, latency)

        closers = getattr(response, "_resource_closers", None)
        if isinstance(closers, list):
            closers.append(release)
        else:
            release()
        return response

    def _guarded(self, request: HttpRequest) -> HttpResponseBase:
        admission, shed = self._admit(request)
        if shed is not None:
            return shed
        guard = self.overload
        assert guard is not None
        began = time.monotonic()
        try:
            early = self._enter(request)
            if early is not None:
                response: HttpResponseBase = early
            else:
                response = self._leave(request, self.get_response(request))
        except BaseException:
            if admission is not None:
                guard.release(admission)
            raise
        if admission is None:
            return response
        return self._release_later(response, admission, began)

    async def _aguarded(self, request: HttpRequest) -> HttpResponseBase:
        admission, shed = self._admit(request)
        if shed is not None:
            return shed
        guard = self.overload
        assert guard is not None
        began = time.monotonic()
        try:
            response = await self.__acall__(request)
        except BaseException:
            if admission is not None:
                guard.release(admission)
            raise
        if admission is None:
            return response
        return self._release_later(response, admission, began)

    def _enter(self, request: HttpRequest) -> HttpResponse | None:
        engine = self.engine
        if type(request) is WSGIRequest:
            marks: dict[str, Any] = request.META
        else:
            # Under ASGI the scope is what gracefail.asgi around Django marks too.
            scope = getattr(request, "scope", None)
            marks = scope if isinstance(scope, dict) else request.META
        # Engine.claim inlined; it runs (and warns) only for a second gracefail.
        owner = marks.setdefault(OWNER, engine)
        if owner is not engine:
            owner = engine.claim(marks)
        # The first gracefail middleware of the stack is in charge of this request.
        request.__dict__.setdefault(_STATE, (self, owner, time.time()))
        if owner is engine and request.path_info in self.own_paths:
            if request.path_info == self.beacon_path:
                view = environ_view(request.META, path=escape_uri_path(request.path))
                return _response(
                    engine.answer_beacon(view, content_length(view.headers), request.read)
                )
            return _response(engine.answer_worker(environ_view(request.META, path=request.path)))
        return None

    def _leave(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if self.maintenance is not None and getattr(request, _PASSED, False):
            response[BANNER[0]] = BANNER[1]
        status = response.status_code
        if status != 502 and status != 504:
            return response
        _, owner, began = getattr(request, _STATE)
        view = _view(request)
        app_headers = list(response.items())
        if owner is not self.engine or not owner.replaces_app_response(view.headers, app_headers):
            return response
        failure = owner.failure_for_status(status)
        reply = _page(owner.serve(failure, view, app_headers=app_headers, started=began))
        reply.cookies = response.cookies
        response.close()
        return reply

    async def _amaintenance_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        gate = self.maintenance
        if gate is None or gate.on() is None:
            return None
        # request.user would query the database synchronously, which Django refuses in
        # an async context; auser() (Django 5) is its async form.
        auser = getattr(request, "auser", None)
        user = await auser() if auser is not None else getattr(request, "user", None)
        return self._maintenance_check(request, user)

    def _maintenance_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        """Django's process_view during planned maintenance: the 503 page unless the
        request may pass (no I/O: the state is the watch's last read)."""
        gate = self.maintenance
        if gate is None or gate.on() is None:
            return None
        return self._maintenance_check(request, getattr(request, "user", None))

    def _maintenance_check(self, request: HttpRequest, user: object) -> HttpResponse | None:
        state = getattr(request, _STATE, None)
        if state is None or state[0] is not self or state[1] is not self.engine:
            return None  # an outer gracefail middleware in this stack answers
        staff = bool(getattr(user, "is_staff", False)) and bool(getattr(user, "is_active", False))
        reply = self.engine.maintenance_reply(_view(request), allowed=staff)
        if reply is None:
            setattr(request, _PASSED, True)
            return None
        return _page(reply)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """The page for an upstream failure, or None to let Django handle the exception."""
        state = getattr(request, _STATE, None)
        if state is None or state[0] is not self:
            return None  # an outer gracefail middleware in this stack answers
        failure = state[1].classify(exception)
        if failure is None:
            return None
        return self._reply(request, failure)

    def _reply(self, request: HttpRequest, failure: Failure) -> HttpResponse:
        _, owner, began = getattr(request, _STATE)
        return _page(owner.serve(failure, _view(request), started=began))
