"""What the metric recorders share: bounded label values and the histogram buckets.

Label values are kept bounded so that clients cannot mint series.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DROP_REASONS",
    "MAINTENANCE_CAUSE",
    "OVERLOAD_CAUSE",
    "SHED_REASONS",
    "SOURCES",
    "TIME_TO_RECOVERY_BUCKETS",
    "UNKNOWN_ROUTE",
    "label_method",
    "label_shed_reason",
    "label_source",
]

MAINTENANCE_CAUSE: Final = "maintenance"
"""The cause of the pages of planned maintenance (:mod:`gracefail.maintenance_page`):
planned downtime, counted apart from the failures by every recorder and the report."""

OVERLOAD_CAUSE: Final = "overload"
"""The cause of the busy pages (503) of requests shed under load (:mod:`gracefail.overload`):
not an upstream failure, counted apart from the failures by every recorder and the report."""

SHED_REASONS: Final = ("queue", "concurrency")
"""Why a request was shed: it waited longer than ``max_queue_ms``, or the in-flight
limit was reached."""

DROP_REASONS: Final = ("queue_full", "recorder_error")
"""Why events were lost: the pipeline's queue was full, or a recorder failed a batch."""

UNKNOWN_ROUTE: Final = "unknown"
"""The route label of a failure whose framework did not say which route matched."""

SOURCES: Final = ("app", "gateway", "worker")
"""Where a failure was served from: the middleware, ``gracefail serve``, the service worker."""

TIME_TO_RECOVERY_BUCKETS: Final = (
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip
"""Histogram bounds (seconds) of the page's time to recovery, for every metric recorder.

They reach from a one-second blip to the 30 minutes after which the page gives up
by default (``RetryPolicy.give_up_after``). One set for all exporters, so the
quantiles Prometheus and an OpenTelemetry backend compute agree.
"""

_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
)
_SOURCES: Final = frozenset(SOURCES)


def label_method(method: str) -> str:
    """The method as a bounded label value (``_OTHER`` for anything unusual)."""
    return method if method in _METHODS else "_OTHER"


def label_shed_reason(error_type: str | None) -> str:
    """The reason of a shed request's event (its ``error_type`` is ``overload.<reason>``)
    as a bounded label value (``_OTHER`` for anything else)."""
    reason = (error_type or "").removeprefix("overload.")
    return reason if reason in SHED_REASONS else "_OTHER"


def label_source(source: str) -> str:
    """The source as a bounded label value (``_OTHER`` for anything but app/gateway/worker)."""
    return source if source in _SOURCES else "_OTHER"
