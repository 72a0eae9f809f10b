"""What a report holds: frozen dataclasses the queries fill and the renderers read.

:meth:`Report.as_dict` is the JSON form, with the keys docs/metrics.md lists; the
rates are derived from the counts, never stored beside them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from ..recorders.labels import SOURCES

__all__ = [
    "SOURCES",
    "TTR_BUCKETS",
    "HistogramBin",
    "Outcomes",
    "PeriodRow",
    "Report",
    "RouteRow",
    "TimeToRecovery",
    "Window",
    "iso",
]

TTR_BUCKETS: Final = (5, 10, 30, 60, 120, 300, 600)
"""Upper bounds (seconds) of the time-to-recovery histogram; the last bin is open."""


def iso(moment: datetime) -> str:
    """``2024-05-01T10:00:00Z``: the report's way of writing a time (UTC, seconds)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _rate(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


@dataclass(frozen=True, slots=True)
class Window:
    """The report's time window, ``[since, until)``, as aware UTC datetimes."""

    since: datetime
    until: datetime

    def as_dict(self) -> dict[str, str]:
        """``{"since": ISO, "until": ISO}``."""
        return {"since": iso(self.since), "until": iso(self.until)}


@dataclass(frozen=True, slots=True)
class TimeToRecovery:
    """Median and 90th percentile, in seconds, of recovered page views (None without any)."""

    p50: float | None = None
    p90: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        """``{"p50": s, "p90": s}``."""
        return {"p50": self.p50, "p90": self.p90}


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What became of page views: counts, and rates over ``pages_shown``."""

    pages_shown: int = 0
    recovered: int = 0
    abandoned: int = 0
    gave_up: int = 0
    time_to_recovery: TimeToRecovery = field(default_factory=TimeToRecovery)

    @property
    def recovery_rate(self) -> float:
        """Recovered page views over pages shown (0 when none was shown)."""
        return _rate(self.recovered, self.pages_shown)

    @property
    def abandonment_rate(self) -> float:
        """Abandoned page views over pages shown."""
        return _rate(self.abandoned, self.pages_shown)

    @property
    def gave_up_rate(self) -> float:
        """Page views whose page gave up, over pages shown."""
        return _rate(self.gave_up, self.pages_shown)

    def as_dict(self) -> dict[str, Any]:
        """The counts, the rates and ``time_to_recovery_s``."""
        return {
            "pages_shown": self.pages_shown,
            "recovered": self.recovered,
            "abandoned": self.abandoned,
            "gave_up": self.gave_up,
            "recovery_rate": self.recovery_rate,
            "abandonment_rate": self.abandonment_rate,
            "gave_up_rate": self.gave_up_rate,
            "time_to_recovery_s": self.time_to_recovery.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One route template: failures served, and its page views shown and recovered."""

    route: str
    failures: int
    pages_shown: int
    recovered: int

    def as_dict(self) -> dict[str, Any]:
        """``{"route", "failures", "pages_shown", "recovered"}``."""
        return {
            "route": self.route,
            "failures": self.failures,
            "pages_shown": self.pages_shown,
            "recovered": self.recovered,
        }


@dataclass(frozen=True, slots=True)
class PeriodRow:
    """Failures in the hour (or day) that starts at ``start``."""

    start: datetime
    failures: int

    def as_dict(self, key: str) -> dict[str, Any]:
        """``{key: ISO, "failures": n}``, ``key`` being ``hour`` or ``day``."""
        return {key: iso(self.start), "failures": self.failures}


@dataclass(frozen=True, slots=True)
class HistogramBin:
    """Recovered page views that took at most ``upto_s`` seconds (None: longer than all bins)."""

    upto_s: int | None
    count: int

    def as_dict(self) -> dict[str, Any]:
        """``{"upto_s", "count"}``."""
        return {"upto_s": self.upto_s, "count": self.count}


@dataclass(frozen=True, slots=True)
class Report:
    """The report of one store over one window (see :mod:`gracefail.report` for definitions).

    ``store`` names what was read (a file's absolute path, or a URL without its
    password). ``by_source`` and ``per_source`` have every one of :data:`SOURCES`,
    if only as 0; ``per_source`` has the page views of each source: the ``source``
    of the failure that served their page (``unknown`` when none was found).
    """

    store: str
    window: Window
    route: str | None
    failures: int
    probes: int
    by_status: Mapping[str, int]
    by_cause: Mapping[str, int]
    by_source: Mapping[str, int]
    by_route: tuple[RouteRow, ...]
    per_hour: tuple[PeriodRow, ...]
    per_day: tuple[PeriodRow, ...]
    outcomes: Outcomes
    per_source: Mapping[str, Outcomes]
    duplicate_outcomes: int
    time_to_recovery_histogram: tuple[HistogramBin, ...]
    user_minutes_lost: float

    @property
    def empty(self) -> bool:
        """No failure, no probe and no page report in the window."""
        return not (self.failures or self.probes or self.outcomes.pages_shown)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: plain dicts, lists, strings and numbers."""
        return {
            "store": self.store,
            "window": self.window.as_dict(),
            "route": self.route,
            "failures": self.failures,
            "probes": self.probes,
            "by_status": dict(self.by_status),
            "by_cause": dict(self.by_cause),
            "by_source": dict(self.by_source),
            "by_route": [row.as_dict() for row in self.by_route],
            "per_hour": [row.as_dict("hour") for row in self.per_hour],
            "per_day": [row.as_dict("day") for row in self.per_day],
            **self.outcomes.as_dict(),
            "duplicate_outcomes": self.duplicate_outcomes,
            "time_to_recovery_histogram": [b.as_dict() for b in self.time_to_recovery_histogram],
            "user_minutes_lost": self.user_minutes_lost,
            "per_source": {name: o.as_dict() for name, o in self.per_source.items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`as_dict` as JSON text."""
        return json.dumps(self.as_dict(), indent=indent)
