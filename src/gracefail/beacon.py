"""Validate what a page's beacon says before it becomes a ClientEvent."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, Final

from .events import CLIENT_KINDS, ClientEvent
from .tokens import TokenError, TokenSigner

__all__ = [
    "CLOCK_SLACK_MS",
    "MAX_BODY",
    "BeaconError",
    "bound_elapsed",
    "check_origin",
    "parse_beacon",
]

MAX_BODY: Final = 4096
# A beacon is one flat object: one "{" and no "[" (no value it may hold contains either).
# Counted before decoding, so no body can make json.loads recurse.
_MAX_BRACKETS: Final = 4
CLOCK_SLACK_MS: Final = 15_000
"""How much longer than its token's age a page may say it has been open.

The token is issued when the request reached the server; the page counts from its
navigation start, a little earlier (connection, redirects), and another host that
checks the token may have a slightly different clock.
"""
_KEYS: Final = frozenset(("token", "kind", "attempt", "elapsed_ms", "locale"))
_LOCALE: Final = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,2}")
_MAX_ATTEMPT: Final = 100_000
_MAX_ELAPSED_MS: Final = 7 * 86_400_000
_CONTENT_TYPES: Final = ("text/plain", "application/json", "")


class BeaconError(Exception):
    """A beacon that is refused: ``status`` is the 4xx to answer, ``reason`` a short text."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_origin(headers: Mapping[str, str], scheme: str) -> None:
    """Refuse beacons from other sites (``Sec-Fetch-Site``, then ``Origin`` vs ``Host``)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise BeaconError(403, "cross-site beacon")
    origin = headers.get("origin")
    if origin and origin != "null":
        host = headers.get("host", "")
        if origin.lower() not in (f"{scheme}://{host}".lower(), f"https://{host}".lower()):
            raise BeaconError(403, "cross-origin beacon")


def _integer(data: Mapping[str, Any], key: str, high: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise BeaconError(400, f"{key} must be a whole number from 0 to {high}")
    return value


def bound_elapsed(elapsed_ms: int, issued: float, now: float) -> int:
    """``elapsed_ms`` bounded by the age of the token (issued at ``issued``) at ``now``.

    The page measures durations on its own clock and could claim any; the server knows
    when it issued the token, so no page view can have lasted longer than that, plus
    :data:`CLOCK_SLACK_MS`.
    """
    return min(elapsed_ms, max(0, int((now - issued) * 1000)) + CLOCK_SLACK_MS)


def parse_beacon(
    body: bytes, content_type: str, signer: TokenSigner, now: float | None = None
) -> ClientEvent:
    """The ClientEvent a beacon body stands for; :class:`BeaconError` if it is refused.

    Its ``incident`` is the page view's key the token vouches for, and its ``elapsed_ms``
    is bounded by the token's age (:func:`bound_elapsed`).
    """
    if len(body) > MAX_BODY:
        raise BeaconError(413, "beacon too large")
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in _CONTENT_TYPES:
        raise BeaconError(415, "beacon must be text/plain or application/json")
    if body.count(b"{") + body.count(b"[") > _MAX_BRACKETS:
        raise BeaconError(400, "beacon must be one flat JSON object")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BeaconError(400, "beacon is not JSON") from None
    if not isinstance(data, dict):
        raise BeaconError(400, "beacon must be a JSON object")
    if set(data) != _KEYS:
        missing = sorted(_KEYS - set(data))
        extra = sorted(set(data) - _KEYS)
        raise BeaconError(400, f"beacon keys wrong (missing {missing}, unknown {extra[:5]})")
    kind = data["kind"]
    if not isinstance(kind, str) or kind not in CLIENT_KINDS:
        raise BeaconError(400, "unknown beacon kind")
    locale = data["locale"]
    if not isinstance(locale, str) or not _LOCALE.fullmatch(locale):
        raise BeaconError(400, "locale must be a language tag")
    attempt = _integer(data, "attempt", _MAX_ATTEMPT)
    elapsed = _integer(data, "elapsed_ms", _MAX_ELAPSED_MS)
    current = time.time() if now is None else now
    try:
        claims = signer.verify(data["token"], current)
    except TokenError as exc:
        raise BeaconError(403, str(exc)) from None
    return ClientEvent(
        time=current,
        incident=claims.incident,
        kind=kind,
        attempt=attempt,
        elapsed_ms=bound_elapsed(elapsed, claims.issued, current),
        locale=locale,
        status=claims.status,
    )
