"""Outage episodes: the window's failures grouped into outages by quiet gaps.

Failures (probes excluded) in time order belong to one episode as long as no two
consecutive ones are more than the gap apart (default 5 minutes); a longer quiet
stretch ends it. Grouping is done in SQL (``LAG`` and a running ``SUM``, the same
on SQLite and PostgreSQL), so only one row per episode and breakdown leaves the
database. Page views count in the episode of the failure that served them.
Episodes are cut at the window's edges.

The maintenance pages of planned downtime (cause ``maintenance``) never join an outage:
they are grouped apart, by the same gap, into episodes marked ``planned``
(``find_episodes(..., planned=True)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ..recorders.labels import SOURCES
from ..recorders.schema import FAILURES
from .errors import ReportError
from .model import Episode, Outcomes, RouteCount, TimeToRecovery
from .sql import ROUTE, Scope, as_int, grouped_times_to_recovery

__all__ = [
    "DEFAULT_GAP_S",
    "EPISODE_LIMIT",
    "MAX_GAP_MIN",
    "TOP_EPISODE_ROUTES",
    "find_episodes",
    "parse_gap",
]

DEFAULT_GAP_S: Final = 300.0
"""Quiet seconds that end an episode, by default."""
EPISODE_LIMIT: Final = 100
"""The report lists at most this many episodes, the newest."""
TOP_EPISODE_ROUTES: Final = 3
MAX_GAP_MIN: Final = 1440


def parse_gap(minutes: str | float | None) -> float:
    """``--episode-gap`` (minutes, default 5) as seconds; :class:`ReportError` if not valid."""
    if minutes is None or (isinstance(minutes, str) and not minutes.strip()):
        return DEFAULT_GAP_S
    try:
        value = float(minutes)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_GAP_MIN:  # also refuses nan and inf
        raise ReportError(
            f"--episode-gap {minutes!r} is not valid: give the quiet minutes that end an "
            f"outage episode, more than 0 and at most {MAX_GAP_MIN} (default 5)"
        )
    return value * 60.0


def _numbered(scope: Scope) -> str:
    """CTEs after the page views' ones: ``fe`` (each failure and its episode number, 0 the
    oldest) and ``fm`` (each failure incident's episode). Placeholders: the gap, then
    the failures' WHERE values."""
    return f""",
fl AS (
    SELECT id, time, incident, status, cause, {scope.source} AS source, {ROUTE} AS route,
           CASE WHEN time - LAG(time) OVER (ORDER BY time, id) > ? THEN 1 ELSE 0 END AS brk
    FROM {FAILURES} WHERE {scope.where} AND probe = 0
),
fe AS (
    SELECT time, incident, status, cause, source, route,
           SUM(brk) OVER (ORDER BY time, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
               AS episode
    FROM fl
),
fm AS (SELECT incident, MIN(episode) AS episode FROM fe GROUP BY incident)
"""


def _moment(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


class _Episodes:
    def __init__(self, scope: Scope, gap_s: float):
        self.scope = scope
        self.ctes = scope.views + _numbered(scope)
        self.params: tuple[object, ...] = (*scope.params, gap_s, *scope.params)

    def query(self, select: str, *extra: object) -> list[tuple[Any, ...]]:
        return self.scope.reader.query(self.ctes + select, (*self.params, *extra))

    def spans(self) -> list[tuple[Any, ...]]:
        """(episode, first, last, failures), newest first."""
        return self.query(
            "SELECT episode, MIN(time), MAX(time), COUNT(*) FROM fe "
            "GROUP BY episode ORDER BY episode DESC"
        )

    def breakdown(self, oldest: int) -> list[tuple[Any, ...]]:
        """(episode, status, cause, source, failures) of the episodes kept."""
        return self.query(
            "SELECT episode, status, cause, source, COUNT(*) FROM fe WHERE episode >= ? "
            "GROUP BY episode, status, cause, source",
            oldest,
        )

    def routes(self, oldest: int) -> list[tuple[Any, ...]]:
        """(episode, route, failures): each kept episode's top routes."""
        return self.query(
            f"""SELECT episode, route, n FROM (
    SELECT episode, route, COUNT(*) AS n,
           ROW_NUMBER() OVER (PARTITION BY episode ORDER BY COUNT(*) DESC, route) AS rk
    FROM fe WHERE episode >= ? GROUP BY episode, route
) AS r WHERE rk <= {TOP_EPISODE_ROUTES} ORDER BY episode, rk""",
            oldest,
        )

    def views(self, oldest: int) -> list[tuple[Any, ...]]:
        """(episode, shown, recovered, abandoned, gave_up, lost_ms) of the kept episodes."""
        return self.query(
            """SELECT fm.episode,
    SUM(CASE WHEN pv.shown_ms IS NOT NULL THEN 1 ELSE 0 END),
    SUM(CASE WHEN pv.outcome = 'recovered' THEN 1 ELSE 0 END),
    SUM(CASE WHEN pv.outcome = 'abandoned' THEN 1 ELSE 0 END),
    SUM(CASE WHEN pv.outcome = 'gave_up' THEN 1 ELSE 0 END),
    SUM(pv.lost_ms)
FROM pv JOIN fm ON fm.incident = pv.failure
WHERE fm.episode >= ? GROUP BY fm.episode""",
            oldest,
        )

    def times_to_recovery(self, oldest: int) -> dict[Any, TimeToRecovery]:
        ttr = grouped_times_to_recovery(
            self.scope.reader,
            self.ctes,
            "SELECT fm.episode AS grp, pv.outcome_ms FROM pv JOIN fm "
            "ON fm.incident = pv.failure WHERE pv.outcome = 'recovered' AND fm.episode >= ?",
            (*self.params, oldest),
        )
        return {int(group): value for group, value in ttr.items()}


def find_episodes(
    scope: Scope, gap_s: float, limit: int = EPISODE_LIMIT, *, planned: bool = False
) -> tuple[tuple[Episode, ...], int]:
    """The newest ``limit`` episodes in the scope (newest first), and how many there are.

    ``planned``: the episodes of planned maintenance (its pages, cause ``maintenance``)
    instead of the outages; each is marked :attr:`Episode.planned`.
    """
    if planned:
        scope = dataclasses.replace(scope, where=scope.planned)
    # An outage's statuses always list 502 and 504; planned downtime's are its 503s.
    zero: dict[str, int] = {} if planned else {"502": 0, "504": 0}
    found = _Episodes(scope, gap_s)
    spans = found.spans()
    if not spans:
        return (), 0
    kept = spans[:limit]
    oldest = int(kept[-1][0])
    statuses: dict[int, dict[str, int]] = {}
    causes: dict[int, dict[str, int]] = {}
    sources: dict[int, dict[str, int]] = {}
    for episode, status, cause, source, count in found.breakdown(oldest):
        key, n = int(episode), int(count)
        by_status = statuses.setdefault(key, dict(zero))
        by_status[str(status)] = by_status.get(str(status), 0) + n
        by_cause = causes.setdefault(key, {})
        by_cause[str(cause)] = by_cause.get(str(cause), 0) + n
        by_source = sources.setdefault(key, {})
        by_source[str(source)] = by_source.get(str(source), 0) + n
    routes: dict[int, list[RouteCount]] = {}
    for episode, route, count in found.routes(oldest):
        routes.setdefault(int(episode), []).append(RouteCount(str(route), int(count)))
    views = {int(row[0]): row[1:] for row in found.views(oldest)}
    ttr = found.times_to_recovery(oldest)
    until = scope.window.until
    gap = timedelta(seconds=gap_s)
    episodes: list[Episode] = []
    for episode, first, last, count in kept:
        key = int(episode)
        shown, recovered, abandoned, gave_up, lost = views.get(key, (0, 0, 0, 0, 0))
        by_source = sources.get(key, {})
        end = _moment(last)
        episodes.append(
            Episode(
                start=_moment(first),
                end=end,
                failures=int(count),
                by_status=statuses.get(key, dict(zero)),
                by_cause=_sorted(causes.get(key, {})),
                by_source=_with_sources(by_source),
                top_routes=tuple(routes.get(key, ())),
                outcomes=Outcomes(
                    as_int(shown),
                    as_int(recovered),
                    as_int(abandoned),
                    as_int(gave_up),
                    ttr.get(key, TimeToRecovery()),
                ),
                user_minutes_lost=round((0.0 if lost is None else float(lost)) / 60000.0, 2),
                ongoing=until - end < gap,
                planned=planned,
            )
        )
    return tuple(episodes), len(spans)


def _with_sources(counts: dict[str, int]) -> dict[str, int]:
    """Every source that served some of the episode's failures, in :data:`SOURCES` order."""
    ordered: Sequence[str] = [*SOURCES, *sorted(set(counts) - set(SOURCES))]
    return {name: counts[name] for name in ordered if counts.get(name)}
