"""Pure ASGI middleware: Starlette, FastAPI, or any ASGI app.

The happy path only wraps ``send`` to read the status of
``http.response.start``; bodies stream through untouched. Work happens only
when the app raises an upstream failure before its response started, or
answers 502/504 to a browser navigation.

Example::

    from gracefail import Brand
    from gracefail.asgi import GracefailMiddleware

    app.add_middleware(GracefailMiddleware, brand=Brand(name="Acme"),
                       status_page_url="https://status.acme.example")
    # or, around the whole app:
    app = GracefailMiddleware(app, brand=Brand(name="Acme"))

Placed outside Starlette's ``ServerErrorMiddleware``, it sees a 500 being sent
and then the exception re-raised: it holds back only a 500's start (and its
body until complete), and sends the page instead if an upstream failure follows.
A held 500 therefore reaches the client when the app returns, after its background
tasks ran; a streamed 500 is released at its first chunk. Messages that follow a held
start (``http.response.pathsend``, ``http.response.trailers``) are held with it and
sent in order; those that follow a replaced 502/504 are dropped with its body.

Async-library neutral: under asyncio or trio. ``Config.timeout`` and the recorders'
flush at shutdown use anyio when it is installed (Starlette depends on it), else asyncio.
"""

from __future__ import annotations

import asyncio
import copy
import math
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

try:
    import anyio
except ImportError:  # pragma: no cover - plain asyncio servers without anyio
    anyio = None  # type: ignore[assignment]

from .classify import Failure
from .config import Config, ConfigError, config_from
from .core import OWNER, Engine, Reply
from .headers import BANNER
from .views import content_length, decode_headers, scope_headers, scope_view

if TYPE_CHECKING:
    from .overload import Admission, OverloadGuard

__all__ = ["GracefailMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Exchange:
    """One request's response state. ``send`` is a plain function that returns the
    server's own awaitable once the response has started: no coroutine per chunk."""

    __slots__ = (
        "began", "deadline", "downstream", "engine", "held", "replacing", "scope", "started"
    )  # fmt: skip

    def __init__(self, engine: Engine, scope: Scope, downstream: Send, began: float) -> None:
        self.engine = engine
        self.scope = scope
        self.downstream = downstream
        self.started = False
        self.held: list[Message] | None = None
        self.replacing = 0
        self.deadline: _Deadline | None = None
        self.began = began

    def send(self, message: Message) -> Awaitable[None]:
        if self.started:
            return self.downstream(message)
        if message["type"] == "http.response.start":
            status = message["status"]
            if status != 500 and status != 502 and status != 504:
                # The happy path: no coroutine of ours, the server's own awaitable.
                if self.deadline is not None:
                    self.deadline.disarm()
                self.started = True
                return self.downstream(message)
        return self._before_start(message)

    async def _before_start(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.deadline is not None:
                self.deadline.disarm()
            status = message["status"]
            if status == 500:
                self.held = [message]
                return
            if (status == 502 or status == 504) and self.engine.replaces_app_response(
                scope_headers(self.scope), decode_headers(message.get("headers", ()))
            ):
                self.held, self.replacing = [message], status
                return
            self.started = True
            await self.downstream(message)
            return
        if self.held is not None:
            if self.replacing:
                # The page replaces the app's body; its last message (the end of the body,
                # or a pathsend) is when the page goes out.
                if kind == "http.response.pathsend" or (
                    kind == "http.response.body" and not message.get("more_body", False)
                ):
                    await self.finish()
                return
            self.held.append(message)
            if kind == "http.response.body" and message.get("more_body", False):
                # A streamed 500 is the app's real answer: let it flow.
                await self.finish()
            return
        await self.downstream(message)

    async def finish(self) -> None:
        """Send what was held: the page in place of an app's 502/504, or the held 500."""
        held, self.held, self.started = self.held or [], None, True
        if self.replacing:
            start = held[0]
            reply = self.engine.serve(
                self.engine.failure_for_status(start["status"]),
                scope_view(self.scope),
                app_headers=decode_headers(start.get("headers", ())),
                started=self.began,
            )
            await send_reply(self.downstream, reply)
            self.downstream = _discard  # what the app sends after its replaced body
            return
        for message in held:
            await self.downstream(message)

    async def failed(self, exc: Exception) -> None:
        """The app raised: send the page for an upstream failure, else re-raise ``exc``."""
        if self.started:
            raise exc
        failure: Failure | None
        if self.deadline is not None and self.deadline.expired:
            failure = self.engine.timeout_failure()
        else:
            failure = self.engine.classify(exc)
        if failure is None:
            if self.held is not None:
                await self.finish()
            raise exc
        reply = self.engine.serve(failure, scope_view(self.scope), started=self.began)
        await send_reply(self.downstream, reply)


async def _discard(message: Message) -> None:
    return None


class _Deadline(Protocol):
    expired: bool

    def disarm(self) -> None: ...


class _AnyioDeadline:
    """``Config.timeout`` as an anyio cancel scope: asyncio and trio alike."""

    __slots__ = ("expired", "scope")

    def __init__(self, seconds: float) -> None:
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + seconds)
        self.expired = False

    def disarm(self) -> None:
        self.scope.deadline = math.inf


class _AsyncioDeadline:
    __slots__ = ("expired", "timeout")

    def __init__(self, seconds: float) -> None:
        self.timeout = asyncio.timeout(seconds)
        self.expired = False

    def disarm(self) -> None:
        self.timeout.reschedule(None)


async def _run_with_deadline(
    app: ASGIApp, scope: Scope, receive: Receive, exchange: _Exchange, seconds: float
) -> None:
    """Run the app until it starts its response or ``seconds`` pass; then it is cancelled
    and ``exchange.failed`` sends the 504 (as if the app had raised ``TimeoutError``)."""
    if anyio is not None:
        anyio_deadline = _AnyioDeadline(seconds)
        exchange.deadline = anyio_deadline
        with anyio_deadline.scope:
            await app(scope, receive, exchange.send)
        if anyio_deadline.scope.cancelled_caught:
            anyio_deadline.expired = True
            raise TimeoutError("gracefail: Config.timeout expired")
        return
    asyncio_deadline = _AsyncioDeadline(seconds)
    exchange.deadline = asyncio_deadline
    try:
        async with asyncio_deadline.timeout:
            await app(scope, receive, exchange.send)
    except TimeoutError:
        asyncio_deadline.expired = asyncio_deadline.timeout.expired()
        raise


async def _in_thread(function: Callable[[], object]) -> None:
    if anyio is not None:
        await anyio.to_thread.run_sync(function)
    else:
        await asyncio.get_running_loop().run_in_executor(None, function)


async def send_reply(send: Send, reply: Reply) -> None:
    """Send a core Reply as one ASGI response."""
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in reply.headers],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})


def _with_banner(send: Send) -> Send:
    """``send`` adding ``X-Gracefail-Maintenance: on`` to the response's start: an allowed
    request during maintenance (staff see that users do not get this page)."""
    name, value = (part.encode("latin-1") for part in BANNER)

    async def banner_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), (name, value)]}
        await send(message)

    return banner_send


def _serving() -> bool:
    """Whether this runs inside a running event loop: a framework building its middleware
    stack lazily, on the first ASGI call (Starlette's ``add_middleware``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    sniffio = sys.modules.get("sniffio")  # trio: anyio always imports sniffio
    try:
        return sniffio is not None and bool(sniffio.current_async_library())
    except Exception:  # sniffio.AsyncLibraryNotFoundError
        return False


class GracefailMiddleware:
    """Serve gracefail's page when the app's upstream fails (see the module docs).

    Args:
        app: the ASGI app to wrap.
        config: a :class:`gracefail.Config`; or pass its fields as keywords.

    A bad option raises :class:`gracefail.ConfigError` here. When a framework builds
    the middleware on its first ASGI call (Starlette's ``add_middleware``), raising
    would be reported by the server as "lifespan unsupported" and the app would start
    anyway; so the error is kept and answers lifespan start-up with
    ``lifespan.startup.failed`` naming the option, and the server exits.
    """

    def __init__(self, app: ASGIApp, *, config: Config | None = None, **options: Any) -> None:
        self.app = app
        self._config_error: ConfigError | None = None
        self.overload: OverloadGuard | None = None
        try:
            self.engine = Engine(config_from(config, options))
        except ConfigError as exc:
            if not _serving():
                raise
            self._config_error = exc
            return
        self.beacon_path = self.engine.beacon_path
        self.worker_paths = self.engine.worker_paths
        # The paths gracefail answers itself: one set lookup per request.
        self.own_paths = frozenset({self.beacon_path, *self.worker_paths})
        self.timeout = self.engine.config.timeout
        self.maintenance = self.engine.maintenance
        # Config.overload: every request is admitted (or shed) first, then handed to
        # this same middleware without the guard (one test on the happy path when off).
        self.overload = self.engine.overload
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._config_error is not None:
            await self._refuse(scope, receive, send, self._config_error)
            return
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, self._lifespan_send(send))
            else:
                await self.app(scope, receive, send)
            return
        engine = self.engine
        # Engine.claim inlined: the owner mark, set by the outermost gracefail.
        if scope.setdefault(OWNER, engine) is not engine and engine.claim(scope) is not engine:
            await self.app(scope, receive, send)
            return
        if self.overload is not None:
            await self._guarded(scope, receive, send)
            return
        if scope["path"] in self.own_paths:
            if scope["path"] == self.beacon_path:
                await self._beacon(scope, receive, send)
            else:
                await send_reply(send, engine.answer_worker(scope_view(scope)))
            return
        gate = self.maintenance
        if gate is not None and gate.on() is not None:
            reply = engine.maintenance_reply(scope_view(scope))
            if reply is not None:
                await send_reply(send, reply)
                return
            send = _with_banner(send)
        if self.timeout is not None:
            await self._call_with_deadline(scope, receive, send)
            return
        # The happy path costs what a status-reading pass-through costs: one closure
        # that is not a coroutine (it returns the server's own awaitables). The state
        # of a held or replaced response is built only when a 500/502/504 starts or
        # the app raises.
        began = time.time()
        started = False
        exchange: _Exchange | None = None

        def watched(message: Message) -> Awaitable[None]:
            nonlocal started, exchange
            if started:
                return send(message)
            if exchange is None:
                if message["type"] != "http.response.start":
                    return send(message)
                status = message["status"]
                if status != 500 and status != 502 and status != 504:
                    started = True
                    return send(message)
                exchange = _Exchange(engine, scope, send, began)
            return exchange.send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            if exchange is None:
                exchange = _Exchange(engine, scope, send, began)
            await exchange.failed(exc)
            return
        if exchange is not None and exchange.held is not None:
            await exchange.finish()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``Config.overload``: admit the request or answer the busy 503 at once.

        The service worker's files and planned maintenance's replies are gracefail's own
        and cheap: never shed. The slot of an admitted request is freed when the app
        returns (or raises, or is cancelled); its latency, admission to the response's
        start, feeds the adaptive limit unless the response is a 5xx.
        """
        guard = self.overload
        inner = self._admitted()
        path = scope["path"]
        gate = self.maintenance
        if guard is None or path in self.worker_paths or (gate is not None and gate.on()):
            await inner(scope, receive, send)
            return
        probe = False
        stamp = queue_stamp = None
        for name, value in scope.get("headers", ()):
            if name == b"x-gracefail-probe":
                probe = value == b"1"
            elif name == b"x-request-start":
                stamp = value
            elif name == b"x-queue-start":
                queue_stamp = value
        if stamp is None:
            stamp = queue_stamp
        client = scope.get("client")
        admission: Admission = guard.admit(
            path,
            probe=probe,
            beacon=path == self.beacon_path,
            stamp=None if stamp is None else stamp.decode("latin-1"),
            peer=client[0] if client else None,
        )
        if not admission.admitted:
            await send_reply(send, self.engine.overload_reply(scope_view(scope), admission.reason))
            return
        began = time.monotonic()
        latency: float | None = None

        def timed(message: Message) -> Awaitable[None]:
            nonlocal latency
            if message["type"] == "http.response.start" and latency is None:
                # A 5xx is not the app's usual latency (a failed upstream, a held 500).
                latency = time.monotonic() - began if message["status"] < 500 else -1.0
            return send(message)

        try:
            await inner(scope, receive, timed)
        finally:
            guard.release(admission, latency if latency is not None and latency >= 0 else None)

    async def _call_with_deadline(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``Config.timeout`` set: the exchange exists from the start, for its deadline."""
        exchange = _Exchange(self.engine, scope, send, time.time())
        try:
            await _run_with_deadline(self.app, scope, receive, exchange, self.timeout or 0.0)
        except Exception as exc:
            await exchange.failed(exc)
            return
        if exchange.held is not None:
            await exchange.finish()

    async def _beacon(self, scope: Scope, receive: Receive, send: Send) -> None:
        view = scope_view(scope)
        engine = self.engine
        refused = engine.beacon_precheck(view, content_length(view.headers))
        if refused is not None:
            await send_reply(send, refused)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > engine.max_beacon_body:
                await send_reply(send, engine.beacon_reply(413, "beacon too large"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await send_reply(send, engine.accept_beacon(view, b"".join(chunks)))

    def _lifespan_send(self, send: Send) -> Send:
        engine = self.engine

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await _in_thread(engine.close)
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                # Once the server listens: the page's default-locale variants, so the
                # first failure does not pay for compiling and compressing them.
                engine.warm_in_background()

        return lifespan_send

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, error: ConfigError) -> None:
        """Fail lifespan start-up with the configuration error (see the class docs)."""
        if scope["type"] != "lifespan":
            raise error
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": str(error)})
