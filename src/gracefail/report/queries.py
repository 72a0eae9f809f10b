"""The report's SQL: the same queries on SQLite and PostgreSQL, filling a :class:`Report`.

Only the time-bucket expression and the placeholder style differ between the two.
SQL text is assembled only from module constants and a reader's column names;
every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ..beacon import CLOCK_SLACK_MS
from ..events import OUTCOMES
from ..recorders.labels import UNKNOWN_ROUTE
from ..recorders.schema import FAILURES, PAGE_EVENTS
from ..tokens import VIEW_SEPARATOR, VIEW_SUFFIX
from .model import (
    SOURCES,
    TTR_BUCKETS,
    HistogramBin,
    Outcomes,
    PeriodRow,
    Report,
    RouteRow,
    TimeToRecovery,
    Window,
)
from .reader import Reader

__all__ = ["TOP_ROUTES", "build_report", "route_label"]

TOP_ROUTES: Final = 50
UNKNOWN_SOURCE: Final = "unknown"
"""The source of a page view whose failure is not in the store."""

# Percentiles as exact fractions, so SQL (integer division) and Python pick the same rows.
_PERCENTILES: Final = {"p50": (1, 2), "p90": (9, 10)}
_OUTCOME_KINDS: Final = ", ".join(f"'{kind}'" for kind in sorted(OUTCOMES))

# Route templates are compared with a leading slash: Django's have none, and older
# stores hold them as the framework gave them.
_ROUTE: Final = (
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


def _source(reader: Reader) -> str:
    # A store from before the source column holds the app's failures only.
    if "source" in reader.failure_columns:
        return "COALESCE(source, 'app')"
    return "CAST('app' AS TEXT)"


def _bucket(reader: Reader, seconds: int) -> str:
    if reader.dialect == "sqlite":
        return f"CAST(time / {seconds} AS INTEGER) * {seconds}"
    return f"FLOOR(time / {seconds}) * {seconds}"


def _page_views(source: str, filtered: bool) -> str:
    """CTEs ending in ``pv``: one row per page view (a key with a beacon in the window).

    Its outcome is its first recovered/gave_up/abandoned beacon in arrival order; its
    route and source are those of the failure that served it. The durations a page
    reported are not taken on trust: each is cut to the time that had passed on the
    server's clock since its failure, when the store has that failure (the beacon
    endpoint bounds them the same way by the token's age; this also bounds rows stored
    before it did), and an outcome cannot precede its page's ``shown``.
    """
    route_filter = (
        f" AND {_FAILURE_OF} IN (SELECT incident FROM {FAILURES} WHERE probe = 0 AND {_ROUTE} = ?)"
        if filtered
        else ""
    )
    return f"""
WITH ev AS (
    SELECT id, time, incident, {_FAILURE_OF} AS failure, kind, elapsed_ms FROM {PAGE_EVENTS}
    WHERE time >= ? AND time < ?{route_filter}
),
origin AS (
    SELECT incident, MIN({_ROUTE}) AS route, MIN({source}) AS source,
           MIN(time - COALESCE(app_ms, 0) / 1000.0) AS began
    FROM {FAILURES}
    WHERE probe = 0 AND incident IN (SELECT failure FROM ev) GROUP BY incident
),
bounded AS (
    SELECT e.id, e.time, e.incident, e.failure, e.kind,
           CASE WHEN g.began IS NULL OR e.elapsed_ms <= {_AGE_MS} THEN e.elapsed_ms
                WHEN {_AGE_MS} > 0 THEN {_AGE_MS} ELSE 0 END AS elapsed_ms
    FROM ev e LEFT JOIN origin g ON g.incident = e.failure
),
ranked AS (
    SELECT incident, kind, elapsed_ms,
           ROW_NUMBER() OVER (PARTITION BY incident ORDER BY time, id) AS rn
    FROM bounded WHERE kind IN ({_OUTCOME_KINDS})
),
views AS (
    SELECT incident, MIN(failure) AS failure,
           MIN(elapsed_ms) AS first_ms, MAX(elapsed_ms) AS last_ms,
           MIN(CASE WHEN kind = 'shown' THEN elapsed_ms END) AS shown_ms,
           SUM(CASE WHEN kind IN ({_OUTCOME_KINDS}) THEN 1 ELSE 0 END) AS outcomes
    FROM bounded GROUP BY incident
),
outcome AS (
    SELECT v.incident, o.kind,
           CASE WHEN o.elapsed_ms < v.shown_ms THEN v.shown_ms ELSE o.elapsed_ms END AS ms
    FROM views v JOIN ranked o ON o.incident = v.incident AND o.rn = 1
),
pv AS (
    SELECT COALESCE(g.route, '{UNKNOWN_ROUTE}') AS route,
           COALESCE(g.source, '{UNKNOWN_SOURCE}') AS source,
           v.shown_ms, o.kind AS outcome, o.ms AS outcome_ms,
           CASE WHEN v.outcomes > 1 THEN v.outcomes - 1 ELSE 0 END AS duplicates,
           CASE WHEN COALESCE(o.ms, v.last_ms) > COALESCE(v.shown_ms, v.first_ms)
                THEN COALESCE(o.ms, v.last_ms) - COALESCE(v.shown_ms, v.first_ms)
                ELSE 0 END AS lost_ms
    FROM views v LEFT JOIN outcome o ON o.incident = v.incident
                 LEFT JOIN origin g ON g.incident = v.failure
)
"""


def _percentiles(values: Mapping[int, float], count: int) -> TimeToRecovery:
    """Linear interpolation between the two rows around each percentile's position."""
    found: dict[str, float] = {}
    for name, (numerator, denominator) in _PERCENTILES.items():
        low, rest = divmod((count - 1) * numerator, denominator)
        first = values[low]
        second = values.get(low + 1, first)
        found[name] = round((first + (second - first) * rest / denominator) / 1000.0, 3)
    return TimeToRecovery(**found)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


class _Query:
    """One report's queries: the reader, the window and the route filter, bound once."""

    def __init__(self, reader: Reader, window: Window, route: str | None):
        self.reader = reader
        self.source = _source(reader)
        filtered = route is not None
        self.where = "time >= ? AND time < ?" + (f" AND {_ROUTE} = ?" if filtered else "")
        # The failures' WHERE and the page views' CTE take the same three values.
        self.params: list[object] = [
            window.since.timestamp(),
            window.until.timestamp(),
            *([route] if filtered else []),
        ]
        self.views = _page_views(self.source, filtered)

    def failures(self) -> list[tuple[Any, ...]]:
        """(probe, status, cause, source, count) of failures in the window."""
        return self.reader.query(
            f"SELECT probe, status, cause, {self.source}, COUNT(*) FROM {FAILURES} "
            f"WHERE {self.where} GROUP BY 1, 2, 3, 4",
            self.params,
        )

    def per(self, seconds: int) -> tuple[PeriodRow, ...]:
        """Failures (probes excluded) by bucket of ``seconds``, only buckets with some."""
        rows = self.reader.query(
            f"SELECT {_bucket(self.reader, seconds)} AS bucket, COUNT(*) FROM {FAILURES} "
            f"WHERE {self.where} AND probe = 0 GROUP BY 1 ORDER BY 1",
            self.params,
        )
        return tuple(PeriodRow(datetime.fromtimestamp(int(b), UTC), int(n)) for b, n in rows)

    def outcomes(self) -> list[tuple[Any, ...]]:
        """(source, shown, recovered, abandoned, gave_up, duplicates, lost_ms) per source."""
        return self.reader.query(
            self.views
            + """SELECT source,
    SUM(CASE WHEN shown_ms IS NOT NULL THEN 1 ELSE 0 END),
    SUM(CASE WHEN outcome = 'recovered' THEN 1 ELSE 0 END),
    SUM(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END),
    SUM(CASE WHEN outcome = 'gave_up' THEN 1 ELSE 0 END),
    SUM(duplicates), SUM(lost_ms)
FROM pv GROUP BY source""",
            self.params,
        )

    def by_route(self) -> tuple[RouteRow, ...]:
        """The routes with the most failures: failures, and their pages shown and recovered."""
        rows = self.reader.query(
            self.views
            + f"""SELECT route, SUM(failures), SUM(shown), SUM(recovered) FROM (
    SELECT {_ROUTE} AS route, 1 AS failures, 0 AS shown, 0 AS recovered
    FROM {FAILURES} WHERE {self.where} AND probe = 0
    UNION ALL
    SELECT route, 0, CASE WHEN shown_ms IS NOT NULL THEN 1 ELSE 0 END,
           CASE WHEN outcome = 'recovered' THEN 1 ELSE 0 END
    FROM pv WHERE shown_ms IS NOT NULL OR outcome = 'recovered'
) AS t GROUP BY route ORDER BY 2 DESC, 3 DESC, route LIMIT {TOP_ROUTES}""",
            [*self.params, *self.params],
        )
        return tuple(RouteRow(str(r), _int(f), _int(s), _int(v)) for r, f, s, v in rows)

    def histogram(self) -> tuple[HistogramBin, ...]:
        """Recovered page views by time to recovery, in the bins of :data:`TTR_BUCKETS`."""
        case = " ".join(
            f"WHEN outcome_ms <= {limit * 1000} THEN {i}" for i, limit in enumerate(TTR_BUCKETS)
        )
        counts = dict.fromkeys(range(len(TTR_BUCKETS) + 1), 0)
        for index, count in self.reader.query(
            self.views + f"SELECT CASE {case} ELSE {len(TTR_BUCKETS)} END, COUNT(*) "
            "FROM pv WHERE outcome = 'recovered' GROUP BY 1",
            self.params,
        ):
            counts[int(index)] = int(count)
        bounds: list[int | None] = [*TTR_BUCKETS, None]
        return tuple(HistogramBin(bounds[i], counts[i]) for i in range(len(bounds)))

    def times_to_recovery(self) -> dict[str | None, TimeToRecovery]:
        """p50/p90 for all recovered page views (key None) and for each source.

        Only the rows either side of each percentile's position leave the database.
        """
        positions = ", ".join(
            f"(n - 1) * {num} / {den}, (n - 1) * {num} / {den} + 1"
            for num, den in _PERCENTILES.values()
        )
        rows = self.reader.query(
            self.views
            + f""",
rec AS (
    SELECT NULL AS grp, outcome_ms FROM pv WHERE outcome = 'recovered'
    UNION ALL
    SELECT source, outcome_ms FROM pv WHERE outcome = 'recovered'
),
ordered AS (
    SELECT grp, outcome_ms,
           ROW_NUMBER() OVER (PARTITION BY grp ORDER BY outcome_ms) - 1 AS pos,
           COUNT(*) OVER (PARTITION BY grp) AS n
    FROM rec
)
SELECT grp, n, pos, outcome_ms FROM ordered WHERE pos IN ({positions})""",
            self.params,
        )
        values: dict[str | None, dict[int, float]] = {}
        counts: dict[str | None, int] = {}
        for group, count, position, elapsed in rows:
            values.setdefault(group, {})[int(position)] = float(elapsed)
            counts[group] = int(count)
        return {group: _percentiles(values[group], counts[group]) for group in values}


def _sorted_counts(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _with_sources(keys: Iterable[str]) -> list[str]:
    return [*SOURCES, *sorted(set(keys) - set(SOURCES))]


def build_report(reader: Reader, window: Window, route: str | None = None) -> Report:
    """The report of events in ``window``, optionally for one route template."""
    route = route_label(route) if route and route.strip() else None
    query = _Query(reader, window, route)

    failures = probes = 0
    by_status: dict[str, int] = {"502": 0, "504": 0}
    by_cause: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for probe, status, cause, source, count in query.failures():
        if probe:
            probes += int(count)
            continue
        failures += int(count)
        by_status[str(status)] = by_status.get(str(status), 0) + int(count)
        by_cause[str(cause)] = by_cause.get(str(cause), 0) + int(count)
        by_source[str(source)] = by_source.get(str(source), 0) + int(count)

    ttr = query.times_to_recovery()
    per_source: dict[str, Outcomes] = {}
    duplicates = 0
    lost_ms = 0.0
    for source, shown, recovered, abandoned, gave_up, dupes, lost in query.outcomes():
        per_source[str(source)] = Outcomes(
            _int(shown), _int(recovered), _int(abandoned), _int(gave_up),
            ttr.get(str(source), TimeToRecovery()),
        )  # fmt: skip
        duplicates += _int(dupes)
        lost_ms += 0.0 if lost is None else float(lost)
    views = per_source.values()
    total = Outcomes(
        pages_shown=sum(o.pages_shown for o in views),
        recovered=sum(o.recovered for o in views),
        abandoned=sum(o.abandoned for o in views),
        gave_up=sum(o.gave_up for o in views),
        time_to_recovery=ttr.get(None, TimeToRecovery()),
    )
    return Report(
        store=reader.store,
        window=window,
        route=route,
        failures=failures,
        probes=probes,
        by_status=by_status,
        by_cause=_sorted_counts(by_cause),
        by_source={s: by_source.get(s, 0) for s in _with_sources(by_source)},
        by_route=query.by_route(),
        per_hour=query.per(3600),
        per_day=query.per(86400),
        outcomes=total,
        per_source={s: per_source.get(s, Outcomes()) for s in _with_sources(per_source)},
        duplicate_outcomes=duplicates,
        time_to_recovery_histogram=query.histogram(),
        user_minutes_lost=round(lost_ms / 60000.0, 2),
    )
