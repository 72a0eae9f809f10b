"""What gracefail records: one ServerEvent per failure served, one ClientEvent per beacon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CLIENT_KINDS", "OUTCOMES", "ClientEvent", "Event", "ServerEvent"]

CLIENT_KINDS: Final[frozenset[str]] = frozenset(
    ("shown", "retry", "recovered", "gave_up", "abandoned", "manual_retry", "status_click")
)
OUTCOMES: Final[frozenset[str]] = frozenset(("recovered", "gave_up", "abandoned"))


# Events are values shared by every recorder's thread: treat them as read-only. They are
# not frozen=True, which costs about 100 ns a field on every construction (one event per
# failure served); unsafe_hash keeps them hashable by their fields, as frozen ones are.
@dataclass(slots=True, unsafe_hash=True)
class ServerEvent:
    """A failure reply gracefail sent.

    ``route`` is the framework's route template when known (never the raw path);
    ``reply_format`` is the reply format (html, json, text); ``probe`` marks replies to
    the page's own probes, which are not new failures; ``app_ms`` is how long the
    app ran before failing; ``source`` is where it was served from: ``app`` (the
    middleware), ``gateway`` (``gracefail serve``) or ``worker`` (the service worker).
    """

    time: float
    incident: str
    status: int
    cause: str
    method: str
    route: str | None
    reply_format: str
    probe: bool = False
    upstream: str | None = None
    error_type: str | None = None
    app_ms: float | None = None
    source: str = "app"


@dataclass(slots=True, unsafe_hash=True)
class ClientEvent:
    """What a page reported through a beacon."""

    time: float
    incident: str
    kind: str
    attempt: int
    elapsed_ms: int
    locale: str
    status: int = 502


Event = ServerEvent | ClientEvent
