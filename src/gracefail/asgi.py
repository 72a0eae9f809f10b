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
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from .beacon import MAX_BODY
from .classify import Failure
from .config import Config, config_from
from .core import Engine, Reply, RequestView

__all__ = ["GracefailMiddleware"]

log = logging.getLogger("gracefail")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SCOPE_KEY = "gracefail"


class _Exchange:
    """One request's response state. ``send`` is a plain function that returns the
    server's own awaitable once the response has started: no coroutine per chunk."""

    __slots__ = ("began", "deadline", "downstream", "held", "mw", "replacing", "scope", "started")

    def __init__(self, mw: GracefailMiddleware, scope: Scope, downstream: Send) -> None:
        self.mw = mw
        self.scope = scope
        self.downstream = downstream
        self.started = False
        self.held: list[Message] | None = None
        self.replacing = 0
        self.deadline: asyncio.Timeout | None = None
        self.began = time.time()

    def send(self, message: Message) -> Awaitable[None]:
        if self.started:
            return self.downstream(message)
        return self._before_start(message)

    async def _before_start(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.deadline is not None:
                self.deadline.reschedule(None)
            status = message["status"]
            if status == 500:
                self.held = [message]
                return
            if (status == 502 or status == 504) and self.mw.engine.replaces_app_response(
                _headers(self.scope), _decoded(message.get("headers", ()))
            ):
                self.held, self.replacing = [message], status
                return
            self.started = True
            await self.downstream(message)
            return
        if self.held is not None and kind == "http.response.body":
            if self.replacing:
                if not message.get("more_body", False):
                    await self.finish()
                return
            self.held.append(message)
            if message.get("more_body", False):
                # A streamed 500 is the app's real answer: let it flow.
                await self.finish()
            return
        await self.downstream(message)

    async def finish(self) -> None:
        """Send what was held: the page in place of an app's 502/504, or the held 500."""
        held, self.held, self.started = self.held or [], None, True
        if self.replacing:
            await self.mw._replace(self.scope, self.downstream, held[0], self.began)
            return
        for message in held:
            await self.downstream(message)


def _decoded(raw: Any) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def request_view(scope: Scope) -> RequestView:
    """The neutral view of an ASGI HTTP scope."""
    raw_path = scope.get("raw_path")
    if raw_path:
        path = raw_path.decode("latin-1").split("?", 1)[0]
    else:
        path = quote(
            scope.get("root_path", "") + scope.get("path", "/"), safe="/:@!$&'()*+,;=-._~%"
        )
    route = getattr(scope.get("route"), "path", None)
    return RequestView(
        method=scope.get("method", "GET"),
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=_headers(scope),
        scheme=scope.get("scheme", "http"),
        route=route if isinstance(route, str) else None,
        client_addr=client[0] if (client := scope.get("client")) else None,
    )


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


class GracefailMiddleware:
    """Serve gracefail's page when the app's upstream fails (see the module docs).

    Args:
        app: the ASGI app to wrap.
        config: a :class:`gracefail.Config`; or pass its fields as keywords.
    """

    def __init__(self, app: ASGIApp, *, config: Config | None = None, **options: Any) -> None:
        self.app = app
        self.engine = Engine(config_from(config, options))
        self.beacon_path = self.engine.beacon_path
        self.timeout = self.engine.config.timeout
        self._warned_nested = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, self._lifespan_send(send))
                return
            await self.app(scope, receive, send)
            return
        if _SCOPE_KEY in scope:
            self._nested()
            await self.app(scope, receive, send)
            return
        scope[_SCOPE_KEY] = self
        if scope["path"] == self.beacon_path:
            await self._beacon(scope, receive, send)
            return
        exchange = _Exchange(self, scope, send)
        try:
            if self.timeout is None:
                await self.app(scope, receive, exchange.send)
            else:
                async with asyncio.timeout(self.timeout) as exchange.deadline:
                    await self.app(scope, receive, exchange.send)
        except Exception as exc:
            await self._failed(exchange, exc)
            return
        if exchange.held is not None:
            await exchange.finish()

    async def _failed(self, exchange: _Exchange, exc: Exception) -> None:
        """The app raised: send the page for an upstream failure, else re-raise ``exc``."""
        if exchange.started:
            raise exc
        gracefail = self.engine
        deadline = exchange.deadline
        failure: Failure | None
        if deadline is not None and deadline.expired():
            failure = gracefail.classifier.app_timeout()
        else:
            failure = gracefail.classify(exc)
        if failure is None:
            if exchange.held is not None:
                await exchange.finish()
            raise exc
        scope = exchange.scope
        reply = gracefail.respond(failure, request_view(scope), started=exchange.began)
        gracefail.log_failure(scope.get("method"), scope.get("path"), failure, reply)
        await send_reply(exchange.downstream, reply)

    async def _replace(self, scope: Scope, send: Send, start: Message, began: float) -> None:
        """Send the page in place of the app's own 502/504, keeping its other headers."""
        app_headers = _decoded(start.get("headers", ()))
        failure = self.engine.failure_for_status(start["status"])
        reply = self.engine.respond(
            failure, request_view(scope), app_headers=app_headers, started=began
        )
        await send_reply(send, reply)

    async def _beacon(self, scope: Scope, receive: Receive, send: Send) -> None:
        view = request_view(scope)
        length_header = view.headers.get("content-length", "")
        length = int(length_header) if length_header.isdigit() else None
        refused = self.engine.beacon_precheck(view, length)
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
            if size > MAX_BODY:
                await send_reply(send, self.engine.beacon_reply(413, "beacon too large"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await send_reply(send, self.engine.accept_beacon(view, b"".join(chunks)))

    def _lifespan_send(self, send: Send) -> Send:
        gracefail = self.engine

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await asyncio.get_running_loop().run_in_executor(None, gracefail.close)
            await send(message)

        return lifespan_send

    def _nested(self) -> None:
        if not self._warned_nested:
            self._warned_nested = True
            warnings.warn(
                "gracefail: a second GracefailMiddleware is in the same stack; "
                "the outer one handles failures and this one passes through",
                RuntimeWarning,
                stacklevel=2,
            )
