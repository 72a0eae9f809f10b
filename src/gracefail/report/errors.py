"""What can stop a report from being made."""

from __future__ import annotations

__all__ = ["EmptyStore", "ReportError"]


class ReportError(Exception):
    """The report cannot be made (bad window, unreadable store); the message says why."""


class EmptyStore(ReportError):
    """The store holds nothing yet (no file, or no gracefail tables)."""
