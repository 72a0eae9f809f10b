"""Label values shared by the metric recorders, kept bounded so clients cannot mint series."""

from __future__ import annotations

from typing import Final

__all__ = ["DROP_REASONS", "UNKNOWN_ROUTE", "label_method"]

DROP_REASONS: Final = ("queue_full", "recorder_error")
"""Why events were lost: the pipeline's queue was full, or a recorder failed a batch."""

UNKNOWN_ROUTE: Final = "unknown"
"""The route label of a failure whose framework did not say which route matched."""

_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
)


def label_method(method: str) -> str:
    """The method as a bounded label value (``_OTHER`` for anything unusual)."""
    return method if method in _METHODS else "_OTHER"
