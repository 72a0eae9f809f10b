"""Where events go: the Recorder protocol and the recorders gracefail ships.

Recorders are imported on first use, so ``import gracefail.recorders`` pulls in
neither prometheus_client, opentelemetry nor psycopg::

    from gracefail.recorders import PrometheusRecorder  # imports prometheus_client now
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import Recorder
from .logging import LoggingRecorder

if TYPE_CHECKING:
    from .otel import OpenTelemetryRecorder
    from .postgres import PostgresRecorder
    from .prometheus import PrometheusRecorder
    from .sqlite import SQLiteRecorder
    from .statsd import StatsdRecorder
    from .store import store_recorder
    from .webhook import WebhookRecorder

__all__ = [
    "LoggingRecorder",
    "OpenTelemetryRecorder",
    "PostgresRecorder",
    "PrometheusRecorder",
    "Recorder",
    "SQLiteRecorder",
    "StatsdRecorder",
    "WebhookRecorder",
    "store_recorder",
]

_LAZY = {
    "OpenTelemetryRecorder": ".otel",
    "PostgresRecorder": ".postgres",
    "PrometheusRecorder": ".prometheus",
    "SQLiteRecorder": ".sqlite",
    "StatsdRecorder": ".statsd",
    "store_recorder": ".store",
    "WebhookRecorder": ".webhook",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
