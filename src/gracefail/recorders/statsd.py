"""StatsD and DogStatsD over UDP: fire-and-forget datagrams, never a blocked thread.

Counters are summed per batch and packed several lines to a datagram (at most
``max_packet`` bytes). With ``dogstatsd=True`` dimensions are tags::

    gracefail.failures:3|c|#status:502,cause:timeout,method:GET,route:/items/{id},source:app
    gracefail.maintenance_pages:4|c|#method:GET,route:/items/{id},source:app
    gracefail.shed_requests:9|c|#reason:concurrency,method:GET,route:/items/{id},source:app
    gracefail.page_events:1|c|#event:recovered
    gracefail.time_to_recovery:12840|ms
    gracefail.events_dropped:20|c|#reason:queue_full

and with plain StatsD they become path segments
(``gracefail.failures.502.timeout.GET.items_id.app:3|c``,
``gracefail.page_events.recovered:1|c``). ``source`` (``app``, ``gateway``, ``worker``)
comes last, so queries on the leading segments keep working. Maintenance pages (cause
``maintenance``, planned downtime) and the busy pages of requests shed under load
(cause ``overload``) have counters of their own, never ``failures``.

Example::

    from gracefail.recorders import StatsdRecorder
    recorders = [StatsdRecorder("127.0.0.1", 8125, dogstatsd=True, tags={"env": "prod"})]
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..events import ClientEvent, Event, ServerEvent
from .labels import (
    MAINTENANCE_CAUSE,
    OVERLOAD_CAUSE,
    UNKNOWN_ROUTE,
    label_method,
    label_shed_reason,
    label_source,
)

__all__ = ["StatsdRecorder"]

_TAG_UNSAFE: Final = re.compile(r"[,|#\s]")
_PATH_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")


def _tag(value: str) -> str:
    return _TAG_UNSAFE.sub("_", value)[:200]


def _segment(value: str) -> str:
    return _PATH_UNSAFE.sub("_", value).strip("_")[:100] or "root"


class StatsdRecorder:
    """Sends gracefail's metrics to a StatsD or DogStatsD agent over UDP.

    Args:
        host, port: the agent's address (resolved on first use).
        prefix: the metric name prefix.
        dogstatsd: send dimensions as DogStatsD tags instead of name segments.
        tags: constant tags added to every metric (DogStatsD only).
        max_packet: the largest datagram to send, in bytes.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8125,
        *,
        prefix: str = "gracefail",
        dogstatsd: bool = False,
        tags: Mapping[str, str] | None = None,
        max_packet: int = 1432,
    ):
        if not 1 <= port <= 65535:
            raise ValueError(f"gracefail: StatsdRecorder port={port!r}; expected 1 to 65535")
        self.host = host
        self.port = port
        self.prefix = prefix.rstrip(".")
        self.dogstatsd = dogstatsd
        self.max_packet = max_packet
        self._constant = ",".join(f"{_tag(k)}:{_tag(v)}" for k, v in (tags or {}).items())
        self._sock: socket.socket | None = None
        self._address: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        kind = "DogStatsD" if self.dogstatsd else "StatsD"
        return f"StatsdRecorder({kind} at {self.host}:{self.port})"

    def _name(self, metric: str, dims: Sequence[tuple[str, str]]) -> tuple[str, str]:
        if self.dogstatsd:
            tags = ",".join(f"{key}:{_tag(value)}" for key, value in dims)
            if self._constant:
                tags = f"{tags},{self._constant}" if tags else self._constant
            return f"{self.prefix}.{metric}", tags
        path = ".".join(_segment(value) for _, value in dims)
        return f"{self.prefix}.{metric}" + (f".{path}" if path else ""), ""

    def _line(self, metric: str, dims: Sequence[tuple[str, str]], value: str, kind: str) -> str:
        name, tags = self._name(metric, dims)
        return f"{name}:{value}|{kind}" + (f"|#{tags}" if tags else "")

    def lines(self, events: Sequence[Event]) -> list[str]:
        """The StatsD lines a batch becomes (counters summed)."""
        counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        timings: list[str] = []
        for event in events:
            if isinstance(event, ServerEvent):
                if event.probe:
                    counts["probes", (("status", str(event.status)),)] += 1
                    continue
                where = (
                    ("method", label_method(event.method)),
                    ("route", event.route or UNKNOWN_ROUTE),
                    ("source", label_source(event.source)),
                )
                if event.cause == MAINTENANCE_CAUSE:
                    counts["maintenance_pages", where] += 1
                    continue
                if event.cause == OVERLOAD_CAUSE:
                    reason = ("reason", label_shed_reason(event.error_type))
                    counts["shed_requests", (reason, *where)] += 1
                    continue
                dims = (("status", str(event.status)), ("cause", event.cause), *where)
                counts["failures", dims] += 1
            elif isinstance(event, ClientEvent):
                counts["page_events", (("event", event.kind),)] += 1
                if event.kind == "recovered":
                    timings.append(self._line("time_to_recovery", (), str(event.elapsed_ms), "ms"))
        counters = [self._line(metric, dims, str(n), "c") for (metric, dims), n in counts.items()]
        return counters + timings

    def record(self, events: Sequence[Event]) -> None:
        """Send a batch; raises OSError if the agent's address cannot be used."""
        self._send(self.lines(events))

    def record_dropped(self, count: int, reason: str) -> None:
        """Count events the pipeline lost (``reason``: queue_full or recorder_error)."""
        self._send([self._line("events_dropped", (("reason", reason),), str(count), "c")])

    def _send(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self._lock:
            if self._sock is None:
                family, _, _, _, address = socket.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_DGRAM
                )[0]
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sock, self._address = sock, address
            sock = self._sock
            packet: list[bytes] = []
            size = 0
            try:
                for line in lines:
                    data = line.encode("utf-8", "replace")
                    if packet and size + 1 + len(data) > self.max_packet:
                        sock.sendto(b"\n".join(packet), self._address)
                        packet, size = [], 0
                    packet.append(data)
                    size += len(data) + (1 if size else 0)
                if packet:
                    sock.sendto(b"\n".join(packet), self._address)
            except OSError:
                # A full socket buffer or a vanished route: drop this batch, start afresh.
                self._sock = None
                sock.close()
                raise

    def close(self) -> None:
        """Close the socket."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
