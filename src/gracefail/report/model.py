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
    "COMPARED_METRICS",
    "SOURCES",
    "TTR_BUCKETS",
    "Comparison",
    "Episode",
    "HistogramBin",
    "MetricChange",
    "Outcomes",
    "PeriodRow",
    "PeriodSummary",
    "Report",
    "RouteCount",
    "RouteRow",
    "Shed",
    "SpikeBucket",
    "Spikes",
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


def _counts(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(counts)


@dataclass(frozen=True, slots=True)
class Window:
    """The report's time window, ``[since, until)``, as aware UTC datetimes."""

    since: datetime
    until: datetime

    @property
    def seconds(self) -> float:
        """The window's length in seconds."""
        return (self.until - self.since).total_seconds()

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
class RouteCount:
    """A route template and its failures (an episode's top routes)."""

    route: str
    failures: int

    def as_dict(self) -> dict[str, Any]:
        """``{"route", "failures"}``."""
        return {"route": self.route, "failures": self.failures}


@dataclass(frozen=True, slots=True)
class Episode:
    """One outage: failures with no quiet gap longer than the report's episode gap.

    ``start`` and ``end`` are its first and last failure (so a lone failure lasts 0 s);
    ``outcomes`` and ``user_minutes_lost`` are those of the page views its failures
    served. ``ongoing``: its last failure is closer to the window's end than the gap,
    so it may not be over (or its page reports may still be on their way).

    ``planned``: a run of planned maintenance, not an outage: its ``failures`` are the
    maintenance pages served (cause ``maintenance``, status 503), grouped by the same
    gap. Planned episodes are in :attr:`Report.planned_episodes`, never among the
    outages of :attr:`Report.episodes`.
    """

    start: datetime
    end: datetime
    failures: int
    by_status: Mapping[str, int]
    by_cause: Mapping[str, int]
    by_source: Mapping[str, int]
    top_routes: tuple[RouteCount, ...]
    outcomes: Outcomes
    user_minutes_lost: float
    ongoing: bool = False
    planned: bool = False

    @property
    def duration_s(self) -> float:
        """Seconds from its first failure to its last."""
        return round((self.end - self.start).total_seconds(), 3)

    @property
    def source(self) -> str:
        """Where its failures were served from: one of the sources, or ``mixed``."""
        active = [name for name, count in self.by_source.items() if count]
        return active[0] if len(active) == 1 else "mixed"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of one episode (see docs/metrics.md)."""
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "duration_s": self.duration_s,
            "source": self.source,
            "by_source": _counts(self.by_source),
            "failures": self.failures,
            "by_status": _counts(self.by_status),
            "by_cause": _counts(self.by_cause),
            **self.outcomes.as_dict(),
            "user_minutes_lost": self.user_minutes_lost,
            "top_routes": [row.as_dict() for row in self.top_routes],
            "ongoing": self.ongoing,
            "planned": self.planned,
        }


@dataclass(frozen=True, slots=True)
class SpikeBucket:
    """One bucket of the failures series and how it compares with the ones before it.

    ``baseline`` is the median of the trailing buckets' failures; ``score`` is how
    many robust deviations (1.4826 MAD, at least the square root of the baseline and
    at least 1) the bucket is above it; ``threshold`` the fewest failures that would
    have made it a spike.
    """

    start: datetime
    failures: int
    baseline: float
    score: float
    threshold: int
    spike: bool

    def as_dict(self) -> dict[str, Any]:
        """``{"start", "failures", "baseline", "score", "threshold"}``."""
        return {
            "start": iso(self.start),
            "failures": self.failures,
            "baseline": self.baseline,
            "score": self.score,
            "threshold": self.threshold,
        }


@dataclass(frozen=True, slots=True)
class Spikes:
    """The failures series at the spike detector's resolution, each bucket scored.

    ``series`` holds every bucket that starts in the window (zeros included);
    :attr:`flagged` those that are spikes.
    """

    bucket_s: int
    baseline_buckets: int
    min_score: float
    min_failures: int
    series: tuple[SpikeBucket, ...] = ()

    @property
    def flagged(self) -> tuple[SpikeBucket, ...]:
        """The buckets flagged as spikes, oldest first."""
        return tuple(b for b in self.series if b.spike)

    def settings(self) -> dict[str, Any]:
        """How the detector ran: bucket size, trailing buckets and the two thresholds."""
        return {
            "bucket_s": self.bucket_s,
            "baseline_buckets": self.baseline_buckets,
            "min_score": self.min_score,
            "min_failures": self.min_failures,
        }


@dataclass(frozen=True, slots=True)
class PeriodSummary:
    """The numbers a period comparison puts side by side, for one window."""

    window: Window
    failures: int
    pages_shown: int
    recovery_rate: float
    abandonment_rate: float
    time_to_recovery: TimeToRecovery
    user_minutes_lost: float
    empty: bool

    def values(self) -> dict[str, float | int | None]:
        """The compared numbers by name (see :data:`COMPARED_METRICS`)."""
        return {
            "failures": self.failures,
            "pages_shown": self.pages_shown,
            "recovery_rate": self.recovery_rate,
            "abandonment_rate": self.abandonment_rate,
            "time_to_recovery_p50_s": self.time_to_recovery.p50,
            "time_to_recovery_p90_s": self.time_to_recovery.p90,
            "user_minutes_lost": self.user_minutes_lost,
        }


COMPARED_METRICS: Final = {
    "failures": "lower",
    "pages_shown": "lower",
    "recovery_rate": "higher",
    "abandonment_rate": "lower",
    "time_to_recovery_p50_s": "lower",
    "time_to_recovery_p90_s": "lower",
    "user_minutes_lost": "lower",
}
"""The numbers a comparison shows, each with the direction that is better."""


@dataclass(frozen=True, slots=True)
class MetricChange:
    """One compared number: this window's, the other window's, and the change.

    ``change`` is this minus the other (None when either is None); ``ratio`` is the
    change over the other window's value (None when that is 0 or None); ``trend`` is
    ``better``, ``worse`` or ``same`` (None when there is nothing to compare).
    """

    name: str
    current: float | int | None
    previous: float | int | None
    change: float | int | None
    ratio: float | None
    trend: str | None

    def as_dict(self) -> dict[str, Any]:
        """``{"current", "previous", "change", "change_ratio", "trend"}``."""
        return {
            "current": self.current,
            "previous": self.previous,
            "change": self.change,
            "change_ratio": self.ratio,
            "trend": self.trend,
        }


def _change(name: str, current: float | int | None, previous: float | int | None) -> MetricChange:
    if current is None or previous is None:
        return MetricChange(name, current, previous, None, None, None)
    change = round(current - previous, 4)
    if isinstance(current, int) and isinstance(previous, int):
        change = int(change)
    ratio = round(change / previous, 4) if previous else None
    if change == 0:
        trend = "same"
    else:
        better = COMPARED_METRICS[name] == "higher"
        trend = "better" if (change > 0) == better else "worse"
    return MetricChange(name, current, previous, change, ratio, trend)


@dataclass(frozen=True, slots=True)
class Comparison:
    """This window beside another (``against``: ``previous``, the same length just before)."""

    against: str
    current: PeriodSummary
    previous: PeriodSummary

    @property
    def changes(self) -> tuple[MetricChange, ...]:
        """Every compared number, in the order of :data:`COMPARED_METRICS`."""
        now, before = self.current.values(), self.previous.values()
        return tuple(_change(name, now[name], before[name]) for name in COMPARED_METRICS)

    @property
    def note(self) -> str | None:
        """What makes the comparison hollow, if anything: a window without any data."""
        if not (self.current.empty or self.previous.empty):
            return None
        window = self.previous.window.as_dict()
        span = f"{window['since']} to {window['until']}"
        if self.current.empty and self.previous.empty:
            return (
                f"Neither this window nor the previous one ({span}) has any failure or "
                "page report: there is nothing to compare."
            )
        if self.previous.empty:
            return (
                f"The previous window ({span}) has no failure and no page report: "
                "nothing to compare with."
            )
        return "This window has no failure and no page report: nothing to compare."

    def as_dict(self) -> dict[str, Any]:
        """``{"against", "window", "note", "metrics": {name: change}}``."""
        return {
            "against": self.against,
            "window": self.previous.window.as_dict(),
            "note": self.note,
            "metrics": {change.name: change.as_dict() for change in self.changes},
        }


@dataclass(frozen=True, slots=True)
class Shed:
    """Requests shed under load (the busy 503, cause ``overload``), and what happened to
    the users who got its page.

    ``requests``: users' requests shed (probes excluded), ``by_reason`` by why
    (``queue``, ``concurrency``); ``probes``: the page's own probes shed; ``outcomes``:
    the busy pages' views (shown, recovered, abandoned, gave up): never among the
    report's outages and their page views.
    """

    requests: int = 0
    probes: int = 0
    by_reason: Mapping[str, int] = field(default_factory=dict)
    outcomes: Outcomes = field(default_factory=Outcomes)

    def as_dict(self) -> dict[str, Any]:
        """``{"requests", "probes", "by_reason", "pages_shown", "recovered", ...}``."""
        return {
            "requests": self.requests,
            "probes": self.probes,
            "by_reason": dict(self.by_reason),
            **self.outcomes.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class Report:
    """The report of one store over one window (see :mod:`gracefail.report` for definitions).

    ``store`` names what was read (a file's absolute path, or a URL without its
    password). ``by_source`` and ``per_source`` have every one of :data:`SOURCES`,
    if only as 0; ``per_source`` has the page views of each source: the ``source``
    of the failure that served their page (``unknown`` when none was found).
    ``episodes`` are the newest of ``episodes_total`` outages (newest first),
    ``planned_episodes`` the newest of ``planned_episodes_total`` runs of planned
    maintenance (never counted as outages; see :attr:`Episode.planned`),
    ``spikes`` the detector's scored series, ``comparison`` the period comparison
    when one was asked for.
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
    episode_gap_s: float = 300.0
    episodes: tuple[Episode, ...] = ()
    episodes_total: int = 0
    spikes: Spikes | None = None
    comparison: Comparison | None = None
    planned: int = 0
    planned_episodes: tuple[Episode, ...] = ()
    planned_episodes_total: int = 0
    shed: Shed = field(default_factory=Shed)

    @property
    def empty(self) -> bool:
        """No failure, no probe, no page report, no planned downtime and no request shed
        in the window."""
        return not (
            self.failures
            or self.probes
            or self.outcomes.pages_shown
            or self.planned
            or self.shed.requests
            or self.shed.probes
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: plain dicts, lists, strings and numbers."""
        return {
            "store": self.store,
            "window": self.window.as_dict(),
            "route": self.route,
            "failures": self.failures,
            "probes": self.probes,
            "planned": self.planned,
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
            "episode_gap_min": round(self.episode_gap_s / 60, 3),
            "episodes_total": self.episodes_total,
            "episodes": [episode.as_dict() for episode in self.episodes],
            "planned_episodes_total": self.planned_episodes_total,
            "planned_episodes": [episode.as_dict() for episode in self.planned_episodes],
            "spikes": [b.as_dict() for b in self.spikes.flagged] if self.spikes else [],
            "spike_detection": self.spikes.settings() if self.spikes else None,
            "comparison": self.comparison.as_dict() if self.comparison else None,
            "shed": self.shed.as_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`as_dict` as JSON text."""
        return json.dumps(self.as_dict(), indent=indent)
