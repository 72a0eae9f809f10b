"""The neutral :class:`~gracefail.core.RequestView` of a WSGI environ or an ASGI scope.

Every adapter builds its view here, so header names, path quoting and the body's
declared size are read one way for all of them. Django's ``request.META`` has the
shape of a WSGI environ. Only the error and beacon paths call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

from .core import RequestView

__all__ = [
    "MALFORMED",
    "content_length",
    "decode_headers",
    "environ_headers",
    "environ_view",
    "scope_headers",
    "scope_view",
]

_PATH_SAFE: Final = "/:@!$&'()*+,;=-._~"
_CONTENT_KEYS: Final = (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length"))


def environ_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """Request headers from a WSGI environ, with lower-case dashed names."""
    headers = {
        key[5:].lower().replace("_", "-"): value
        for key, value in environ.items()
        if key[:5] == "HTTP_"
    }
    for key, name in _CONTENT_KEYS:
        value = environ.get(key)
        if value:
            headers[name] = value
    return headers


def environ_view(
    environ: Mapping[str, Any],
    *,
    route: str | None = None,
    path: str | None = None,
    scheme: str | None = None,
) -> RequestView:
    """The view of a WSGI environ (``path``/``scheme`` when the framework knows better)."""
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


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """ASGI header pairs as text, in order, names as sent."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


def scope_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """Request headers of an ASGI scope; repeated names joined with ", " (RFC 9110)."""
    raw = scope.get("headers", ())
    if not isinstance(raw, list | tuple):
        raw = list(raw)  # any iterable, read once
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
    if len(headers) == len(raw):
        return headers
    # A name sent more than once: its values joined, in order (RFC 9110).
    headers = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def scope_view(scope: Mapping[str, Any]) -> RequestView:
    """The view of an ASGI HTTP scope; the route is Starlette's ``scope["route"].path``."""
    raw_path = scope.get("raw_path")
    if raw_path:
        path = raw_path.decode("latin-1").split("?", 1)[0]
    else:
        # scope["path"] is decoded: a "%" in it is a character, so it is encoded too.
        path = quote(scope.get("root_path", "") + scope.get("path", "/"), safe=_PATH_SAFE)
    route = getattr(scope.get("route"), "path", None)
    client = scope.get("client")
    return RequestView(
        method=scope.get("method", "GET"),
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=scope_headers(scope),
        scheme=scope.get("scheme", "http"),
        route=route if isinstance(route, str) else None,
        client_addr=client[0] if client else None,
    )


MALFORMED: Final = -1
"""What :func:`content_length` gives for a value that is not a number: answer 400."""
# More digits than any body gracefail reads could need, and fewer than int()'s limit
# on the digits it converts (a longer string would raise ValueError).
_MAX_DIGITS: Final = 18


def content_length(headers: Mapping[str, str]) -> int | None:
    """The request's declared body size: None when absent, :data:`MALFORMED` (negative)
    when it is not ASCII digits (``"²"`` passes ``str.isdigit`` but not ``int``)."""
    value = headers.get("content-length")
    if value is None:
        return None
    value = value.strip(" \t")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        return MALFORMED
    return int(value) if len(value) <= _MAX_DIGITS else 10**_MAX_DIGITS
