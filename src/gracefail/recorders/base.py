"""The Recorder protocol: anything with ``record(events)`` (and optionally ``close()``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..events import Event

__all__ = ["Recorder"]


@runtime_checkable
class Recorder(Protocol):
    """Receives batches of events on gracefail's background thread, never on a request."""

    def record(self, events: Sequence[Event]) -> None:
        """Store or export a batch. May raise: the pipeline logs and carries on."""

    def close(self) -> None:
        """Release connections and files; called once at shutdown."""
