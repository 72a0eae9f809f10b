"""Beacon hardening that needs memory: per-client rate limit, per-incident bound, duplicates.

Every table here is bounded (least recently used entries are forgotten first),
so a flood of beacons cannot grow the process; and each :class:`BeaconGuard`
belongs to one :class:`~gracefail.core.Engine`, so two apps in one process
never share limits.

* **Rate limit** per client (the peer address the adapter reports): a token
  bucket of ``burst`` beacons refilled at ``rate`` per second; over it, 429.
* **Bound per incident**: at most ``per_incident`` distinct events per page
  view; past it, 429 (a page that loops cannot flood the store).
* **Duplicates**: the same (incident, kind, attempt) again is answered 204 and
  not recorded a second time (a beacon resent from ``sessionStorage`` after
  its first copy did arrive).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Final

from .events import CLIENT_KINDS, ClientEvent

__all__ = ["BeaconGuard", "Verdict"]

_DEFAULT_RATE: Final = 5.0
_DEFAULT_BURST: Final = 60
_DEFAULT_PER_INCIDENT: Final = 64
_DEFAULT_CLIENTS: Final = 10_000
_DEFAULT_INCIDENTS: Final = 4_096
# (kind, attempt) packed into one small int: a few bytes per remembered event.
_KIND_CODE: Final = {kind: code for code, kind in enumerate(sorted(CLIENT_KINDS))}
_ATTEMPTS: Final = 1 << 20


class Verdict(Enum):
    """What to do with a beacon."""

    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    TOO_MANY = "too_many"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class BeaconGuard:
    """Bounded, thread-safe bookkeeping of the beacons one app accepted.

    Args:
        rate: beacons per second a client may send on average.
        burst: beacons a client may send at once (bucket size).
        per_incident: distinct events accepted per incident (page view).
        max_clients: clients remembered for the rate limit.
        max_incidents: incidents remembered for duplicates and the per-incident bound.
    """

    def __init__(
        self,
        *,
        rate: float = _DEFAULT_RATE,
        burst: int = _DEFAULT_BURST,
        per_incident: int = _DEFAULT_PER_INCIDENT,
        max_clients: int = _DEFAULT_CLIENTS,
        max_incidents: int = _DEFAULT_INCIDENTS,
    ):
        if rate <= 0 or burst < 1 or per_incident < 1 or max_clients < 1 or max_incidents < 1:
            raise ValueError("gracefail: BeaconGuard limits must be positive")
        self.rate = float(rate)
        self.burst = burst
        self.per_incident = per_incident
        self.max_clients = max_clients
        self.max_incidents = max_incidents
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._incidents: OrderedDict[str, set[int]] = OrderedDict()
        self._lock = threading.Lock()
        self.rate_limited = 0
        self.duplicates = 0
        self.over_limit = 0

    def allow(self, client: str | None, now: float | None = None) -> float:
        """Take one beacon from ``client``'s bucket: 0.0 if allowed, else seconds to wait.

        A client the adapter cannot name (``None``) is not rate limited.
        """
        if client is None:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._clients.get(client)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
                self._clients[client] = bucket
                if len(self._clients) > self.max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(client)
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            self.rate_limited += 1
            return (1.0 - bucket.tokens) / self.rate

    def admit(self, event: ClientEvent) -> Verdict:
        """Whether a valid beacon's event is new, a duplicate, or one too many."""
        key = _KIND_CODE.get(event.kind, len(_KIND_CODE)) * _ATTEMPTS + event.attempt
        with self._lock:
            seen = self._incidents.get(event.incident)
            if seen is None:
                seen = set()
                self._incidents[event.incident] = seen
                if len(self._incidents) > self.max_incidents:
                    self._incidents.popitem(last=False)
            else:
                self._incidents.move_to_end(event.incident)
            if key in seen:
                self.duplicates += 1
                return Verdict.DUPLICATE
            if len(seen) >= self.per_incident:
                self.over_limit += 1
                return Verdict.TOO_MANY
            seen.add(key)
            return Verdict.ACCEPT

    def sizes(self) -> tuple[int, int]:
        """How many clients and incidents are remembered now (for tests and benchmarks)."""
        with self._lock:
            return len(self._clients), len(self._incidents)
