"""``gracefail serve``: the error backend a proxy asks when the app process itself is down.

No middleware runs when the app is down, restarting or too slow, so the proxy in front
(nginx, ingress-nginx, Caddy, Traefik, ...) sends its error sub-request here instead.
The reply is the middleware's: the same page, headers and negotiation, a beacon token
signed with the secret the app shares (so beacons queued during the outage are accepted
by the app after recovery), and a ``ServerEvent`` with ``source="gateway"`` in the store.

Protocols understood:

* ingress-nginx's default backend: ``X-Code`` (the status to answer), ``X-Format`` (the
  client's ``Accept``), ``X-Original-URI``, ``X-Request-ID``; ``X-Namespace``,
  ``X-Ingress-Name`` and ``X-Service-Name`` are recorded as the failure's upstream label;
* a path form for proxies that put the status in the URL (Traefik's errors middleware):
  ``/502``, ``/503``, ``/504``;
* anything else (nginx's ``error_page`` to a named location forwards the original
  request): the original path, and the status from ``X-Code``.

Statuses 502, 503 and 504 are answered as asked (a 503 carries the 502 page, recorded
with cause ``app_unavailable``); any other code gets a 502 and cause ``unexpected_code``;
no code at all gets a 502 and ``unknown_code``; ``GET /healthz`` without a code (a
probe) gets 200 and is not recorded. Beacons that reach the gateway (the
page's ``POST`` to ``beacon_path`` while the app is down) are accepted here.

During planned maintenance (``gracefail maintenance on`` on the same store) every
answer but beacons and ``/healthz`` is the maintenance page (503, recorded with cause
``maintenance``): the gateway reads the switch as the middleware does, at most once a
second and off the request path.

Example::

    from gracefail import Config
    from gracefail.gateway import create_app

    app = create_app(Config(secret=os.environ["GRACEFAIL_SECRET"], store="/var/lib/gf.db"),
                     routes=["/api/", "/shop/"])
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .asgi import Message, Receive, Scope, Send, send_reply
from .classify import Failure
from .config import Config, ConfigError, config_from
from .core import Engine, Reply, RequestView
from .views import content_length, scope_view

__all__ = ["CAUSES", "Gateway", "create_app"]

# What a proxy's status says about the app process behind it.
CAUSES: Final = {502: "app_unreachable", 503: "app_unavailable", 504: "app_timeout"}
UNKNOWN_CODE: Final = "unknown_code"
UNEXPECTED_CODE: Final = "unexpected_code"
_STATUS_PATH: Final = re.compile(r"/(\d{3})/?")
_LABEL: Final = re.compile(r"[^A-Za-z0-9._-]")
_MAX_URI: Final = 2048
# What a liveness or readiness probe asks (the ingress-nginx chart probes its default
# backend with GET /healthz): 200, not a failure, and nothing recorded.
HEALTH_PATH: Final = "/healthz"
_HEALTHY: Final = Reply(
    200, [("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")], b"ok\n"
)


def _label(value: str) -> str:
    return _LABEL.sub("_", value)[:63]


class Gateway:
    """The error backend's ASGI app (see the module docs).

    Args:
        config: the page and store options, as for the middleware; ``secret`` is
            required: it must be the app's, or the app refuses the page's beacons.
        routes: route prefixes to label failures with (longest match wins); a path
            no prefix matches has no route (``unknown`` in metrics and the report),
            never the raw path.
    """

    def __init__(self, config: Config, *, routes: Iterable[str] = ()) -> None:
        if config.secret is None:
            raise ConfigError(
                "gracefail: the gateway needs secret= (or GRACEFAIL_SECRET), the same as "
                "the app's, so the page's beacons are accepted after recovery"
            )
        self.routes = sorted((str(r) for r in routes), key=len, reverse=True)
        for route in self.routes:
            if not route.startswith("/"):
                raise ConfigError(f"gracefail: routes={route!r} is not valid; expected '/...'")
        # The gateway always follows planned maintenance: when the app is down for it,
        # the proxy asks here, and users get the maintenance page, not an outage page.
        # Nobody is let through: whoever reaches the gateway, the app did not answer.
        config = dataclasses.replace(
            config, maintenance=True, maintenance_allow=(), maintenance_paths=()
        )
        self.engine = Engine(config, testing=False, source="gateway")
        self.maintenance = self.engine.maintenance
        self.beacon_path = config.beacon_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        view = scope_view(scope)
        headers = view.headers
        if view.path == HEALTH_PATH and "x-code" not in headers and view.method in ("GET", "HEAD"):
            await send_reply(
                send, _HEALTHY if view.method == "GET" else dataclasses.replace(_HEALTHY, body=b"")
            )
            return
        path, query = view.path, view.query
        original = headers.get("x-original-uri", "")
        if original.startswith("/") and len(original) <= _MAX_URI:
            path, _, query = original.partition("?")
        elif "x-code" not in headers and _STATUS_PATH.fullmatch(path):
            # The status in the path (Traefik) says nothing of the URL that failed: the
            # page's retry link stays on the page's own address, and there is no route.
            path, query = "", ""
        if path == self.beacon_path and view.method == "POST":
            await self._beacon(view, receive, send)
            return
        status, cause = self._status(headers.get("x-code"), view.path)
        request_headers = dict(headers)
        if "x-format" in headers:
            request_headers["accept"] = headers["x-format"]
        view = dataclasses.replace(
            view,
            path=path,
            query=query,
            headers=request_headers,
            route=self._route(path) if path else None,
        )
        gate = self.maintenance
        if gate is not None and gate.on() is not None:
            planned = self.engine.maintenance_reply(view)
            if planned is not None:
                await send_reply(send, planned)
                return
        failure = Failure(
            status=504 if status == 504 else 502,
            cause=cause,
            upstream=self._upstream(headers),
            error_type=f"gateway.{status}",
        )
        reply = self.engine.serve(failure, view)
        if status != reply.status and reply.status in (502, 504):
            reply = dataclasses.replace(reply, status=status)
        await send_reply(send, reply)

    @staticmethod
    def _status(code: str | None, path: str) -> tuple[int, str]:
        if code is None:
            match = _STATUS_PATH.fullmatch(path)
            code = match.group(1) if match else None
        if code is None or not code.strip().isdigit():
            return 502, UNKNOWN_CODE
        status = int(code)
        if status in CAUSES:
            return status, CAUSES[status]
        return 502, UNEXPECTED_CODE

    def _route(self, path: str) -> str | None:
        for prefix in self.routes:
            if path.startswith(prefix):
                return prefix
        return None  # recorded and reported as "unknown", like any failure without a route

    @staticmethod
    def _upstream(headers: Mapping[str, str]) -> str | None:
        parts = [
            _label(headers[name])
            for name in ("x-namespace", "x-ingress-name", "x-service-name")
            if headers.get(name)
        ]
        return "/".join(parts) or None

    async def _beacon(self, view: RequestView, receive: Receive, send: Send) -> None:
        engine = self.engine
        body = b""
        refused = engine.beacon_precheck(view, content_length(view.headers))
        if refused is None:
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > engine.max_beacon_body:
                    refused = engine.beacon_reply(413, "beacon too large")
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
        await send_reply(send, refused or engine.accept_beacon(view, body))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.engine.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    config: Config | None = None, *, routes: Iterable[str] = (), **options: Any
) -> Gateway:
    """The gateway's ASGI app; ``config`` or its fields as keywords, like the middleware."""
    return Gateway(config_from(config, options), routes=routes)
