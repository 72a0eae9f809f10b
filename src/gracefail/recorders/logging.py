"""One JSON line per event on the ``gracefail.events`` logger."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence

from ..events import Event, ServerEvent

__all__ = ["LoggingRecorder"]


class LoggingRecorder:
    """Logs each event as one JSON object (``{"event": "failure"|"page", ...}``)."""

    def __init__(
        self, logger: logging.Logger | str = "gracefail.events", level: int = logging.INFO
    ):
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def record(self, events: Sequence[Event]) -> None:
        if not self.logger.isEnabledFor(self.level):
            return
        for event in events:
            data = dataclasses.asdict(event)
            data["event"] = "failure" if isinstance(event, ServerEvent) else "page"
            self.logger.log(self.level, json.dumps(data, separators=(",", ":"), sort_keys=True))

    def close(self) -> None:
        """Nothing to release."""
