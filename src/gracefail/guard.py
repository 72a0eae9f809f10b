"""Beacon hardening that needs memory: rate limits, per-page-view bound, duplicates.

Every table here is bounded (least recently used entries are forgotten first),
so a flood of beacons cannot grow the process; and each :class:`BeaconGuard`
belongs to one :class:`~gracefail.core.Engine`, so two apps in one process
never share limits.

* **Rate limit per client** (the address :func:`client_address` finds): a token
  bucket of ``burst`` beacons refilled at ``rate`` per second; over it, 429 with
  ``Retry-After`` (the page sends the beacon again after it).
* **Rate limit per page view** (the key its token vouches for): a bucket of
  ``page_burst`` refilled at ``page_rate``, so one page (or one stolen token) cannot
  spend the budget of everyone sharing its address; over it, 429 with ``Retry-After``.
* **Bound per page view**: at most ``per_incident`` distinct events; past it, 429
  without ``Retry-After`` (a page that loops cannot flood the store).
* **Duplicates**: the same (page view, kind, attempt) again is answered 204 and
  not recorded a second time (a beacon resent from ``sessionStorage`` after
  its first copy did arrive). This memory is per process and forgets: the store's
  unique key on (incident, kind, attempt) is what holds across workers and hosts.
* **Outcomes before ``shown``**: an outcome whose ``elapsed_ms`` is smaller than its
  page view's ``shown`` cannot come from a real page (the page's clock only moves
  forward); refused with 400 when this process saw that ``shown``.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

from .events import CLIENT_KINDS, OUTCOMES, ClientEvent

__all__ = ["BeaconGuard", "Verdict", "client_address", "proxy_networks"]

_DEFAULT_RATE: Final = 5.0
_DEFAULT_BURST: Final = 60
_DEFAULT_PAGE_RATE: Final = 1.0
# A page's sessionStorage queue holds at most 50 beacons; all of them may be one page
# view's, sent at once after recovery.
_DEFAULT_PAGE_BURST: Final = 50
_DEFAULT_PER_INCIDENT: Final = 64
_DEFAULT_CLIENTS: Final = 10_000
_DEFAULT_INCIDENTS: Final = 4_096
# (kind, attempt) packed into one small int: a few bytes per remembered event.
_KIND_CODE: Final = {kind: code for code, kind in enumerate(sorted(CLIENT_KINDS))}
_ATTEMPTS: Final = 1 << 20
# An address longer than this in a forwarding header is no address: cut, as a key.
_MAX_ADDRESS: Final = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Verdict(Enum):
    """What to do with a beacon."""

    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    TOO_MANY = "too_many"
    BEFORE_SHOWN = "before_shown"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class _View:
    """What is remembered of one page view: its events, its bucket, its ``shown``."""

    seen: set[int]
    bucket: _Bucket
    shown_ms: int = -1


def _take(bucket: _Bucket, now: float, rate: float, burst: int) -> float:
    """Take one token: 0.0, or the seconds until one is there."""
    elapsed = max(0.0, now - bucket.updated)
    bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate)
    bucket.updated = now
    if bucket.tokens >= 1.0:
        bucket.tokens -= 1.0
        return 0.0
    return (1.0 - bucket.tokens) / rate


class BeaconGuard:
    """Bounded, thread-safe bookkeeping of the beacons one app accepted.

    Args:
        rate: beacons per second a client may send on average.
        burst: beacons a client may send at once (bucket size).
        page_rate: beacons per second one page view (one token) may send on average.
        page_burst: beacons one page view may send at once.
        per_incident: distinct events accepted per page view.
        max_clients: clients remembered for the rate limit.
        max_incidents: page views remembered for duplicates, their limit and bound.
    """

    def __init__(
        self,
        *,
        rate: float = _DEFAULT_RATE,
        burst: int = _DEFAULT_BURST,
        page_rate: float = _DEFAULT_PAGE_RATE,
        page_burst: int = _DEFAULT_PAGE_BURST,
        per_incident: int = _DEFAULT_PER_INCIDENT,
        max_clients: int = _DEFAULT_CLIENTS,
        max_incidents: int = _DEFAULT_INCIDENTS,
    ):
        if (
            rate <= 0
            or burst < 1
            or page_rate <= 0
            or page_burst < 1
            or per_incident < 1
            or max_clients < 1
            or max_incidents < 1
        ):
            raise ValueError("gracefail: BeaconGuard limits must be positive")
        self.rate = float(rate)
        self.burst = burst
        self.page_rate = float(page_rate)
        self.page_burst = page_burst
        self.per_incident = per_incident
        self.max_clients = max_clients
        self.max_incidents = max_incidents
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._incidents: OrderedDict[str, _View] = OrderedDict()
        self._lock = threading.Lock()
        self.rate_limited = 0
        self.page_limited = 0
        self.duplicates = 0
        self.over_limit = 0
        self.before_shown = 0

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
            wait = _take(bucket, now, self.rate, self.burst)
            if wait:
                self.rate_limited += 1
            return wait

    def _view(self, incident: str, now: float) -> _View:
        # Called with the lock held.
        view = self._incidents.get(incident)
        if view is None:
            view = _View(set(), _Bucket(float(self.page_burst), now))
            self._incidents[incident] = view
            if len(self._incidents) > self.max_incidents:
                self._incidents.popitem(last=False)
        else:
            self._incidents.move_to_end(incident)
        return view

    def allow_page(self, incident: str, now: float | None = None) -> float:
        """Take one beacon from page view ``incident``'s bucket: 0.0, or seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            wait = _take(self._view(incident, now).bucket, now, self.page_rate, self.page_burst)
            if wait:
                self.page_limited += 1
            return wait

    def admit(self, event: ClientEvent) -> Verdict:
        """Whether a valid beacon's event is new, a duplicate, one too many, or impossible."""
        key = _KIND_CODE.get(event.kind, len(_KIND_CODE)) * _ATTEMPTS + event.attempt
        with self._lock:
            view = self._view(event.incident, time.monotonic())
            if key in view.seen:
                self.duplicates += 1
                return Verdict.DUPLICATE
            if len(view.seen) >= self.per_incident:
                self.over_limit += 1
                return Verdict.TOO_MANY
            if event.kind in OUTCOMES and event.elapsed_ms < view.shown_ms:
                self.before_shown += 1
                return Verdict.BEFORE_SHOWN
            if event.kind == "shown" and view.shown_ms < 0:
                view.shown_ms = event.elapsed_ms
            view.seen.add(key)
            return Verdict.ACCEPT

    def sizes(self) -> tuple[int, int]:
        """How many clients and page views are remembered now (for tests and benchmarks)."""
        with self._lock:
            return len(self._clients), len(self._incidents)


# -- the client's address -------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def proxy_networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    """``Config.trusted_proxies`` parsed (once per distinct value)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted)


def _address(text: str) -> Address | None:
    """An address as forwarding headers write it: bare, ``[v6]``, with a port, quoted."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` of each element of an RFC 7239 ``Forwarded`` header, in order."""
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, item = pair.partition("=")
            if name.strip().lower() == "for":
                found.append(item.strip())
    return found


def _trusted(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(
    peer: str | None, headers: Mapping[str, str], trusted: Sequence[str]
) -> str | None:
    """The beacon's client: the peer, or, when the peer is a trusted proxy, the rightmost
    address of ``X-Forwarded-For`` (else ``Forwarded``) that is not a trusted proxy.

    Read from the right, as Werkzeug's ``ProxyFix`` and uvicorn's
    ``--forwarded-allow-ips`` do: each proxy appends the address it saw, so the entries
    left of the last untrusted one are whatever the client chose to send. With
    ``trusted`` empty the headers are never read. When both headers are present,
    ``X-Forwarded-For`` is the one used (the header nearly every proxy writes).
    """
    if not trusted or peer is None:
        return peer
    networks = proxy_networks(tuple(trusted))  # Config holds a tuple: no copy
    if not _trusted(_address(peer), networks):
        return peer
    forwarded = headers.get("x-forwarded-for")
    hops = (
        [hop.strip() for hop in forwarded.split(",")]
        if forwarded is not None
        else _forwarded_for(headers.get("forwarded", ""))
    )
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        address = _address(hop)
        if not _trusted(address, networks):
            return str(address) if address is not None else hop[:_MAX_ADDRESS]
    # Every hop is a proxy of ours: the first one is as far as anyone can tell.
    first = _address(hops[0]) if hops else None
    return str(first) if first is not None else peer
