"""``--since`` and ``--until``: relative spans (``24h``, ``7d``) and ISO times, in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from .errors import ReportError
from .model import Window, iso

__all__ = ["parse_since", "parse_until", "parse_window"]

_RELATIVE: Final = re.compile(r"(\d+)\s*([mhdw])")
_UNITS: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _from_iso(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{option} {text!r} is not a time: use 24h, 7d, 30m, 2w or an ISO time "
            "such as 2024-05-01T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_until(text: str | None, now: datetime | None = None) -> datetime:
    """``--until``: an ISO time (UTC if no offset); default now."""
    if text is None or not text.strip():
        return (now or datetime.now(UTC)).astimezone(UTC)
    return _from_iso(text, "--until")


def parse_since(text: str | None, until: datetime) -> datetime:
    """``--since``: ``24h``, ``7d``, ``30m``, ``2w`` before ``until``, or an ISO time."""
    if text is None or not text.strip():
        return until - timedelta(hours=24)
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match:
        return until - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    return _from_iso(text, "--since")


def parse_window(
    since: str | None = None, until: str | None = None, now: datetime | None = None
) -> Window:
    """The window the two options describe; :class:`ReportError` if it is empty."""
    end = parse_until(until, now)
    start = parse_since(since, end)
    if start >= end:
        raise ReportError(f"--since ({iso(start)}) must be before --until ({iso(end)})")
    return Window(start, end)
