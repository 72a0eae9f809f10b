"""What the WSGI, Flask and Django adapters share, so no adapter repeats another.

Nothing here decides anything about failures (that is :mod:`gracefail.core`):
these helpers read WSGI-style environs (Django's ``request.META`` has the same
shape), mark which gracefail owns a request, answer beacons, and build the
Config from framework settings.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import quote

from .classify import Failure
from .config import Config, config_from
from .core import Engine, Reply, RequestView

__all__ = [
    "FAILED",
    "MARKER",
    "ROUTE",
    "SCOPE_MARKER",
    "answer_beacon",
    "claim",
    "content_length",
    "environ_view",
    "framework_config",
    "input_reader",
    "owner_of",
    "serve",
    "status_line",
]

log = logging.getLogger("gracefail")

# The key naming the gracefail that owns a request (the outermost one) in a WSGI environ
# or Django's request.META (PEP 3333 wants a dotted name), and in an ASGI scope (as
# gracefail.asgi sets it). Its value is a core Engine or an ASGI GracefailMiddleware.
MARKER: Final = "gracefail.owner"
SCOPE_MARKER: Final = "gracefail"
# An upstream failure a framework turned into its own 5xx response (Flask's
# got_request_exception): the WSGI layer sends the page in its place.
FAILED: Final = "gracefail.failure"
# The route template of that failure, noted while the framework still knew it.
ROUTE: Final = "gracefail.route"
_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"
_warned: weakref.WeakSet[Engine] = weakref.WeakSet()


def environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """Request headers from a WSGI environ, with lower-case dashed names."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].lower().replace("_", "-")] = value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.lower().replace("_", "-")] = value
    return headers


def environ_view(
    environ: Mapping[str, Any],
    *,
    route: str | None = None,
    path: str | None = None,
    scheme: str | None = None,
) -> RequestView:
    """The neutral view of a WSGI environ (``path``/``scheme`` when the framework knows better)."""
    if path is None:
        raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        path = quote(raw.encode("latin-1", "replace"), safe=_PATH_SAFE) or "/"
    return RequestView(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=path,
        query=environ.get("QUERY_STRING", ""),
        headers=environ_headers(environ),
        scheme=scheme or environ.get("wsgi.url_scheme", "http"),
        route=route,
        client_addr=environ.get("REMOTE_ADDR") or None,
    )


def content_length(headers: Mapping[str, str]) -> int | None:
    """The request's declared body size, or None when absent or malformed."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def status_line(status: int) -> str:
    """``"502 Bad Gateway"`` for WSGI's ``start_response``."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def owner_of(marker: object) -> Engine | None:
    """The engine behind a stack marker (a core Engine or an ASGI middleware)."""
    engine = marker if isinstance(marker, Engine) else getattr(marker, "engine", None)
    return engine if isinstance(engine, Engine) else None


def claim(marks: MutableMapping[str, Any], engine: Engine, key: str = MARKER) -> Engine:
    """Mark ``engine`` as the owner of this request unless an outer gracefail did; the owner.

    A second gracefail in one stack warns (once per engine) and defers to the outer one.
    """
    marker: object = marks.setdefault(key, engine)
    if marker is engine:
        return engine
    outer = owner_of(marker)
    if engine not in _warned:
        _warned.add(engine)
        warnings.warn(
            "gracefail: a second GracefailMiddleware is in the same stack; "
            "the outer one handles failures and this one passes through",
            RuntimeWarning,
            stacklevel=3,
        )
    return outer or engine


def serve(
    engine: Engine,
    failure: Failure,
    view: RequestView,
    *,
    app_headers: Iterable[tuple[str, str]] = (),
    started: float | None = None,
) -> Reply:
    """The core's reply for ``failure``, logged once with its incident id."""
    reply = engine.respond(failure, view, app_headers=app_headers, started=started)
    engine.log_failure(view.method, view.path, failure, reply)
    return reply


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


def answer_beacon(engine: Engine, view: RequestView, read: Callable[[int], bytes]) -> Reply:
    """Answer a beacon POST; ``read(n)`` returns at most ``n`` bytes of the body."""
    from .beacon import MAX_BODY

    refused = engine.beacon_precheck(view, content_length(view.headers))
    if refused is not None:
        return refused
    return engine.accept_beacon(view, read(MAX_BODY + 1))


def _derived_secret(framework_secret: str | bytes) -> str:
    # A key of its own, so beacon tokens never share an HMAC key with the framework's uses.
    key = framework_secret.encode() if isinstance(framework_secret, str) else framework_secret
    return hmac.new(key, b"gracefail beacon tokens", hashlib.sha256).hexdigest()


def framework_config(
    config: Config | None,
    settings: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    framework_secret: str | bytes | None,
) -> Config:
    """Config from a Config, the framework's settings dict, then keyword options (later wins).

    With no ``secret`` anywhere (nor ``GRACEFAIL_SECRET``), one is derived from the
    framework's ``SECRET_KEY``.
    """
    merged = {**(settings or {}), **options}
    built = config_from(config, merged)
    if built.secret is None and framework_secret:
        built = built.replace(secret=_derived_secret(framework_secret))
    return built

