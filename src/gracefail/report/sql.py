"""SQL fragments every report query shares, on SQLite and PostgreSQL alike.

Only the time-bucket expression and the placeholder style differ between the two
databases. SQL text is assembled only from module constants and a reader's column
names; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..beacon import CLOCK_SLACK_MS
from ..events import OUTCOMES
from ..recorders.labels import MAINTENANCE_CAUSE, OVERLOAD_CAUSE, UNKNOWN_ROUTE
from ..recorders.schema import FAILURES, PAGE_EVENTS
from ..tokens import VIEW_SEPARATOR, VIEW_SUFFIX
from .model import TimeToRecovery, Window
from .reader import Reader

__all__ = [
    "OUTCOME_KINDS",
    "PERCENTILES",
    "PLANNED_CAUSE",
    "ROUTE",
    "SHED_CAUSE",
    "UNKNOWN_SOURCE",
    "Scope",
    "as_int",
    "bucket",
    "grouped_times_to_recovery",
    "page_views",
    "percentile_positions",
    "percentiles",
    "route_label",
    "source_column",
]

UNKNOWN_SOURCE: Final = "unknown"
"""The source of a page view whose failure is not in the store."""
PLANNED_CAUSE: Final = MAINTENANCE_CAUSE
"""The cause of the pages served during planned maintenance: planned downtime, reported
apart from outages (:mod:`gracefail.maintenance`)."""
SHED_CAUSE: Final = OVERLOAD_CAUSE
"""The cause of the busy pages of requests shed under load (:mod:`gracefail.overload`):
reported apart from outages, with what happened to the shed users."""

# Percentiles as exact fractions, so SQL (integer division) and Python pick the same rows.
PERCENTILES: Final = {"p50": (1, 2), "p90": (9, 10)}
OUTCOME_KINDS: Final = ", ".join(f"'{kind}'" for kind in sorted(OUTCOMES))

# Route templates are compared with a leading slash: Django's have none, and older
# stores hold them as the framework gave them.
ROUTE: Final = (
    f"CASE WHEN route IS NULL THEN '{UNKNOWN_ROUTE}' "
    "WHEN SUBSTR(route, 1, 1) = '/' THEN route ELSE '/' || route END"
)


# The failure a page event belongs to: its page view's key without the server-random
# suffix a reused X-Request-ID gets (gracefail.tokens.page_view). The same in both SQLs.
_FAILURE_OF: Final = (
    f"CASE WHEN LENGTH(incident) > {VIEW_SUFFIX + 1} "
    f"AND SUBSTR(incident, LENGTH(incident) - {VIEW_SUFFIX}, 1) = '{VIEW_SEPARATOR}' "
    f"THEN SUBSTR(incident, 1, LENGTH(incident) - {VIEW_SUFFIX + 1}) ELSE incident END"
)
# How long a page view can have lasted when its event arrived, on the server's clock:
# since its failure's request came in (the reply's time less the app's time), plus slack.
_AGE_MS: Final = f"((e.time - g.began) * 1000 + {CLOCK_SLACK_MS})"


def route_label(route: str) -> str:
    """A ``--route`` value as the report compares it: with a leading slash."""
    route = route.strip()
    return route if route.startswith("/") or route == UNKNOWN_ROUTE else "/" + route


def source_column(reader: Reader) -> str:
    """The failures' source as an SQL expression."""
    # A store from before the source column holds the app's failures only.
    if "source" in reader.failure_columns:
        return "COALESCE(source, 'app')"
    return "CAST('app' AS TEXT)"


def bucket(reader: Reader, seconds: int) -> str:
    """The start (epoch seconds) of the clock-aligned bucket of ``seconds`` a row's time is in."""
    if reader.dialect == "sqlite":
        return f"CAST(time / {seconds} AS INTEGER) * {seconds}"
    return f"FLOOR(time / {seconds}) * {seconds}"


def page_views(source: str, filtered: bool, shed: bool = False) -> str:
    """CTEs ending in ``pv``: one row per page view (a key with a beacon in the window).

    Its outcome is its first recovered/gave_up/abandoned beacon in arrival order; its
    route and source are those of the failure that served it, and ``failure`` is that
    failure's incident. Each is found in the one pass that aggregates the view's beacons:
    joining the views back to the ranked beacons or to their failures made SQLite's
    planner scan one side per row of the other (quadratic) once a query filtered on the
    outcome or read the views twice.

    The durations a page reported are not taken on trust: each is cut to the time that
    had passed on the server's clock since its failure, when the store has that failure
    (the beacon endpoint bounds them the same way by the token's age; this also bounds
    rows stored before it did), and an outcome cannot precede its page's ``shown``.

    The busy pages of shed requests (cause ``overload``) are not outages: without
    ``shed`` their views are left out, with it they are the only ones.

    Placeholders: since, until and, when ``filtered``, the route.
    """
    route_filter = (
        f" AND {_FAILURE_OF} IN (SELECT incident FROM {FAILURES} WHERE probe = 0 AND {ROUTE} = ?)"
        if filtered
        else ""
    )
    route_filter += (
        f" AND {_FAILURE_OF} {'' if shed else 'NOT '}IN "
        f"(SELECT incident FROM {FAILURES} WHERE cause = '{SHED_CAUSE}')"
    )
    return f"""
WITH ev AS (
    SELECT id, time, incident, {_FAILURE_OF} AS failure, kind, elapsed_ms FROM {PAGE_EVENTS}
    WHERE time >= ? AND time < ?{route_filter}
),
origin AS (
    SELECT incident, MIN({ROUTE}) AS route, MIN({source}) AS source,
           MIN(time - COALESCE(app_ms, 0) / 1000.0) AS began
    FROM {FAILURES}
    WHERE probe = 0 AND incident IN (SELECT failure FROM ev) GROUP BY incident
),
bounded AS (
    SELECT e.id, e.time, e.incident, e.failure, e.kind, g.route, g.source,
           CASE WHEN e.kind IN ({OUTCOME_KINDS}) THEN 1 ELSE 0 END AS is_outcome,
           CASE WHEN g.began IS NULL OR e.elapsed_ms <= {_AGE_MS} THEN e.elapsed_ms
                WHEN {_AGE_MS} > 0 THEN {_AGE_MS} ELSE 0 END AS elapsed_ms
    FROM ev e LEFT JOIN origin g ON g.incident = e.failure
),
ranked AS (
    SELECT incident, failure, route, source, kind, elapsed_ms, is_outcome,
           ROW_NUMBER() OVER (PARTITION BY incident, is_outcome ORDER BY time, id) AS rn
    FROM bounded
),
views AS (
    SELECT incident, MIN(failure) AS failure, MIN(route) AS route, MIN(source) AS source,
           MIN(elapsed_ms) AS first_ms, MAX(elapsed_ms) AS last_ms,
           MIN(CASE WHEN kind = 'shown' THEN elapsed_ms END) AS shown_ms,
           SUM(is_outcome) AS outcomes,
           MIN(CASE WHEN is_outcome = 1 AND rn = 1 THEN kind END) AS outcome,
           MIN(CASE WHEN is_outcome = 1 AND rn = 1 THEN elapsed_ms END) AS outcome_raw_ms
    FROM ranked GROUP BY incident
),
timed AS (
    SELECT incident, failure, route, source, first_ms, last_ms, shown_ms, outcomes, outcome,
           CASE WHEN outcome_raw_ms < shown_ms THEN shown_ms ELSE outcome_raw_ms END AS outcome_ms
    FROM views
),
pv AS (
    SELECT COALESCE(v.route, '{UNKNOWN_ROUTE}') AS route,
           COALESCE(v.source, '{UNKNOWN_SOURCE}') AS source,
           v.failure,
           v.shown_ms, v.outcome, v.outcome_ms,
           CASE WHEN v.outcomes > 1 THEN v.outcomes - 1 ELSE 0 END AS duplicates,
           CASE WHEN COALESCE(v.outcome_ms, v.last_ms) > COALESCE(v.shown_ms, v.first_ms)
                THEN COALESCE(v.outcome_ms, v.last_ms) - COALESCE(v.shown_ms, v.first_ms)
                ELSE 0 END AS lost_ms
    FROM timed v
)
"""


def percentile_positions() -> str:
    """The row positions (0-based, in a group of ``n``) either side of each percentile."""
    return ", ".join(
        f"(n - 1) * {num} / {den}, (n - 1) * {num} / {den} + 1" for num, den in PERCENTILES.values()
    )


def percentiles(values: Mapping[int, float], count: int) -> TimeToRecovery:
    """Linear interpolation between the two rows around each percentile's position."""
    found: dict[str, float] = {}
    for name, (numerator, denominator) in PERCENTILES.items():
        low, rest = divmod((count - 1) * numerator, denominator)
        first = values[low]
        second = values.get(low + 1, first)
        found[name] = round((first + (second - first) * rest / denominator) / 1000.0, 3)
    return TimeToRecovery(**found)


def as_int(value: Any) -> int:
    """A count from SQL (None for an empty SUM) as an int."""
    return 0 if value is None else int(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """What one report reads: a reader, a window and a route filter, bound once.

    ``where`` selects the window's failures (with the route filter): outages only, the
    maintenance pages of planned downtime (cause ``maintenance``) are counted apart
    (``planned``, which takes the same ``params``), and so are the busy pages of requests
    shed under load (cause ``overload``: ``shed``); ``views`` is the page views' CTE
    (:func:`page_views`, shed requests' left out), ``shed_views`` the shed requests' page
    views alone; all take ``params``.
    """

    reader: Reader
    window: Window
    route: str | None
    source: str
    where: str
    params: tuple[object, ...]
    views: str
    planned: str = ""
    shed: str = ""
    shed_views: str = ""

    @classmethod
    def of(cls, reader: Reader, window: Window, route: str | None) -> Scope:
        """The scope of ``window`` (and ``route``, already a :func:`route_label`, or None)."""
        source = source_column(reader)
        filtered = route is not None
        window_where = "time >= ? AND time < ?" + (f" AND {ROUTE} = ?" if filtered else "")
        return cls(
            reader=reader,
            window=window,
            route=route,
            source=source,
            where=f"{window_where} AND cause NOT IN ('{PLANNED_CAUSE}', '{SHED_CAUSE}')",
            planned=f"{window_where} AND cause = '{PLANNED_CAUSE}'",
            shed=f"{window_where} AND cause = '{SHED_CAUSE}'",
            shed_views=page_views(source, filtered, shed=True),
            params=(
                window.since.timestamp(),
                window.until.timestamp(),
                *([route] if filtered else []),
            ),
            views=page_views(source, filtered),
        )

    @property
    def route_params(self) -> tuple[object, ...]:
        """The route filter's value, if any (what ``where`` takes after the two times)."""
        return self.params[2:]


def grouped_times_to_recovery(
    reader: Reader, ctes: str, recovered: str, params: Sequence[object]
) -> dict[Any, TimeToRecovery]:
    """p50/p90 per group of recovered page views.

    ``ctes`` are the page views' CTEs (and any after them); ``recovered`` is a query
    over them selecting ``grp, outcome_ms``; ``params`` are the values of all the
    placeholders. Only the rows either side of each percentile's position leave the
    database.
    """
    select = f""",
rec AS ({recovered}),
ordered AS (
    SELECT grp, outcome_ms,
           ROW_NUMBER() OVER (PARTITION BY grp ORDER BY outcome_ms) - 1 AS pos,
           COUNT(*) OVER (PARTITION BY grp) AS n
    FROM rec
)
SELECT grp, n, pos, outcome_ms FROM ordered WHERE pos IN ({percentile_positions()})"""
    rows = reader.query(ctes + select, params)
    values: dict[Any, dict[int, float]] = {}
    counts: dict[Any, int] = {}
    for group, count, position, elapsed in rows:
        values.setdefault(group, {})[int(position)] = float(elapsed)
        counts[group] = int(count)
    return {group: percentiles(values[group], counts[group]) for group in values}
