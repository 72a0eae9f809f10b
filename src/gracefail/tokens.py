"""Incident ids and the HMAC-signed tokens that let a page's beacons be trusted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

__all__ = [
    "VIEW_SEPARATOR",
    "VIEW_SUFFIX",
    "TokenError",
    "TokenSigner",
    "incident_from_request_id",
    "new_incident",
    "page_view",
    "split_view",
]

log = logging.getLogger("gracefail")

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
VIEW_SEPARATOR: Final = ":"
"""Between a reused request id and the server-random part of its page view's key."""
VIEW_SUFFIX: Final = 16
"""Characters of that server-random part."""
# The incident a token vouches for: an id the server drew, or a client's request id
# followed by ":" and 16 characters the server drew (see page_view).
_TOKEN: Final = re.compile(
    r"([0-9a-f]{1,12})~([A-Za-z0-9._-]{1,64}(?::[A-Za-z0-9_-]{16})?)~(50[24])~([A-Za-z0-9_-]{22})"
)


_POOL: list[str] = []


def _refill() -> None:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(12 * 256)).decode()
    _POOL.extend(raw[i : i + 16] for i in range(0, len(raw), 16))


def new_incident() -> str:
    """A fresh incident id: 16 URL-safe characters (12 random bytes).

    Drawn from a pool filled 256 at a time: one getrandom() call per 256 failures
    instead of one per failure. A forked child starts with an empty pool.
    """
    try:
        return _POOL.pop()
    except IndexError:
        _refill()
        return _POOL.pop()


os.register_at_fork(after_in_child=_POOL.clear)


def incident_from_request_id(value: str | None) -> str:
    """Reuse an incoming ``X-Request-ID`` when it is safe to echo, else a new id."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return new_incident()


def page_view(request_id: str | None) -> tuple[str, str]:
    """``(incident, key)`` for one failure reply: the id shown to people, and the page view's
    key that its token vouches for (the key the beacon guard and the store use).

    Without a usable ``X-Request-ID`` both are one fresh random id. A request id is the
    client's to choose, so anyone could ask for the same one (a victim's incident id read
    off a screenshot, say): it stays the shown incident, for correlation with logs, but its
    key gets a server-random suffix, so no other page view can share that key.
    """
    incident = incident_from_request_id(request_id)
    if incident != request_id:
        return incident, incident
    return incident, f"{incident}{VIEW_SEPARATOR}{new_incident()[:VIEW_SUFFIX]}"


def split_view(key: str) -> str:
    """The incident (the failure's id) a page view's key belongs to."""
    if len(key) > VIEW_SUFFIX + 1 and key[-VIEW_SUFFIX - 1] == VIEW_SEPARATOR:
        return key[: -VIEW_SUFFIX - 1]
    return key


class TokenError(ValueError):
    """A beacon token is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token vouches for."""

    incident: str
    status: int
    issued: int


_BLOCK: Final = 64  # SHA-256's block size, for HMAC's key padding


class TokenSigner:
    """Signs ``incident~status~issued`` with HMAC-SHA256 (truncated to 128 bits)."""

    def __init__(self, secret: str | bytes | None, ttl: int):
        if secret is None:
            log.warning(
                "gracefail: no secret configured (Config.secret, GRACEFAIL_SECRET or the "
                "framework's SECRET_KEY); using a random per-process key, so beacons sent "
                "to another worker or after a restart will be rejected"
            )
            secret = secrets.token_bytes(32)
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._ttl = ttl
        # HMAC-SHA256 (RFC 2104) with the key's inner and outer blocks hashed once: each
        # MAC copies two hash states instead of setting the key up again (~2x faster
        # than hmac.digest, the same bytes).
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def _mac(self, message: str) -> str:
        inner = self._inner.copy()
        inner.update(message.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return base64.urlsafe_b64encode(outer.digest()[:16]).rstrip(b"=").decode()

    def sign(self, incident: str, status: int, now: float | None = None) -> str:
        """A token for one page view of ``incident``."""
        issued = format(int(time.time() if now is None else now), "x")
        message = f"{issued}~{incident}~{status}"
        return f"{message}~{self._mac(message)}"

    def verify(self, token: object, now: float | None = None) -> TokenClaims:
        """The claims of a valid token; :class:`TokenError` otherwise."""
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            raise TokenError("malformed token")
        issued_hex, incident, status, mac = match.groups()
        if not hmac.compare_digest(mac, self._mac(f"{issued_hex}~{incident}~{status}")):
            raise TokenError("bad token signature")
        issued = int(issued_hex, 16)
        current = time.time() if now is None else now
        if issued > current + 60 or current - issued > self._ttl:
            raise TokenError("token expired")
        return TokenClaims(incident=incident, status=int(status), issued=issued)
