"""The Recorder protocol: anything with ``record(events)`` (and optionally ``close()``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..events import Event

__all__ = ["CountsDrops", "Recorder"]


@runtime_checkable
class Recorder(Protocol):
    """Receives batches of events on gracefail's background thread, never on a request."""

    def record(self, events: Sequence[Event]) -> None:
        """Store or export a batch. May raise: the pipeline logs and carries on."""

    def close(self) -> None:
        """Release connections and files; called once at shutdown."""


@runtime_checkable
class CountsDrops(Protocol):
    """A recorder that also reports lost events (the Prometheus, OTel and StatsD ones).

    The pipeline calls ``record_dropped`` from a background thread with the number
    of events a recorder lost since the last call and why: ``"queue_full"`` (that
    recorder's queue was full) or ``"recorder_error"`` (it failed a batch, or still
    held one at shutdown).
    """

    def record_dropped(self, count: int, reason: str) -> None:
        """Count ``count`` lost events."""
