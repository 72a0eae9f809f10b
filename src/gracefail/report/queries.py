"""The report's SQL: the same queries on SQLite and PostgreSQL, filling a :class:`Report`.

The fragments they share are in :mod:`.sql`; outage episodes and spikes have their
own modules (:mod:`.episodes`, :mod:`.spikes`). SQL text is assembled only from
module constants and a reader's column names; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from ..recorders.schema import FAILURES
from .compare import previous_window
from .episodes import DEFAULT_GAP_S, EPISODE_LIMIT, find_episodes
from .model import (
    SOURCES,
    TTR_BUCKETS,
    Comparison,
    HistogramBin,
    Outcomes,
    PeriodRow,
    PeriodSummary,
    Report,
    RouteRow,
    Shed,
    TimeToRecovery,
    Window,
)
from .reader import Reader
from .spikes import SpikeSettings, find_spikes
from .sql import (
    ROUTE,
    UNKNOWN_SOURCE,
    Scope,
    as_int,
    bucket,
    grouped_times_to_recovery,
    route_label,
)

__all__ = ["TOP_ROUTES", "UNKNOWN_SOURCE", "build_report", "route_label"]

TOP_ROUTES: Final = 50


class _Query:
    """One report's queries over a :class:`~.sql.Scope`."""

    def __init__(self, scope: Scope):
        self.scope = scope
        self.reader = scope.reader
        self.where = scope.where
        # The failures' WHERE and the page views' CTE take the same values.
        self.params = list(scope.params)
        self.views = scope.views
        self.source = scope.source

    def failures(self) -> list[tuple[Any, ...]]:
        """(probe, status, cause, source, count) of failures in the window."""
        return self.reader.query(
            f"SELECT probe, status, cause, {self.source}, COUNT(*) FROM {FAILURES} "
            f"WHERE {self.where} GROUP BY 1, 2, 3, 4",
            self.params,
        )

    def planned(self) -> int:
        """Maintenance pages served to users' requests in the window (probes excluded)."""
        rows = self.reader.query(
            f"SELECT COUNT(*) FROM {FAILURES} WHERE {self.scope.planned} AND probe = 0",
            self.params,
        )
        return as_int(rows[0][0]) if rows else 0

    def shed(self) -> Shed:
        """Requests shed under load in the window, and their busy pages' views."""
        requests = probes = 0
        by_reason: dict[str, int] = {}
        for probe, error_type, count in self.reader.query(
            f"SELECT probe, error_type, COUNT(*) FROM {FAILURES} WHERE {self.scope.shed} "
            "GROUP BY 1, 2",
            self.params,
        ):
            if probe:
                probes += int(count)
                continue
            requests += int(count)
            reason = str(error_type or "").removeprefix("overload.") or "unknown"
            by_reason[reason] = by_reason.get(reason, 0) + int(count)
        if not (requests or probes):
            return Shed()
        rows = self.reader.query(
            self.scope.shed_views
            + """SELECT
    SUM(CASE WHEN shown_ms IS NOT NULL THEN 1 ELSE 0 END),
    SUM(CASE WHEN outcome = 'recovered' THEN 1 ELSE 0 END),
    SUM(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END),
    SUM(CASE WHEN outcome = 'gave_up' THEN 1 ELSE 0 END)
FROM pv""",
            self.params,
        )
        shown, recovered, abandoned, gave_up = rows[0] if rows else (0, 0, 0, 0)
        ttr = grouped_times_to_recovery(
            self.reader,
            self.scope.shed_views,
            "SELECT NULL AS grp, outcome_ms FROM pv WHERE outcome = 'recovered'",
            self.params,
        )
        return Shed(
            requests,
            probes,
            _sorted_counts(by_reason),
            Outcomes(
                as_int(shown),
                as_int(recovered),
                as_int(abandoned),
                as_int(gave_up),
                ttr.get(None, TimeToRecovery()),
            ),
        )

    def per(self, seconds: int) -> tuple[PeriodRow, ...]:
        """Failures (probes excluded) by bucket of ``seconds``, only buckets with some."""
        rows = self.reader.query(
            f"SELECT {bucket(self.reader, seconds)} AS bucket, COUNT(*) FROM {FAILURES} "
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
    SELECT {ROUTE} AS route, 1 AS failures, 0 AS shown, 0 AS recovered
    FROM {FAILURES} WHERE {self.where} AND probe = 0
    UNION ALL
    SELECT route, 0, CASE WHEN shown_ms IS NOT NULL THEN 1 ELSE 0 END,
           CASE WHEN outcome = 'recovered' THEN 1 ELSE 0 END
    FROM pv WHERE shown_ms IS NOT NULL OR outcome = 'recovered'
) AS t GROUP BY route ORDER BY 2 DESC, 3 DESC, route LIMIT {TOP_ROUTES}""",
            [*self.params, *self.params],
        )
        return tuple(RouteRow(str(r), as_int(f), as_int(s), as_int(v)) for r, f, s, v in rows)

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
        """p50/p90 for all recovered page views (key None) and for each source."""
        return grouped_times_to_recovery(
            self.reader,
            self.views,
            "SELECT NULL AS grp, outcome_ms FROM pv WHERE outcome = 'recovered' "
            "UNION ALL SELECT source, outcome_ms FROM pv WHERE outcome = 'recovered'",
            self.scope.params,
        )


def _sorted_counts(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _with_sources(keys: Iterable[str]) -> list[str]:
    return [*SOURCES, *sorted(set(keys) - set(SOURCES))]


class _Totals:
    """The window's failures and page views, as the report and a comparison need them."""

    def __init__(self, query: _Query):
        self.failures = self.probes = 0
        self.by_status: dict[str, int] = {"502": 0, "504": 0}
        self.by_cause: dict[str, int] = {}
        self.by_source: dict[str, int] = {}
        for probe, status, cause, source, count in query.failures():
            if probe:
                self.probes += int(count)
                continue
            self.failures += int(count)
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + int(count)
            self.by_cause[str(cause)] = self.by_cause.get(str(cause), 0) + int(count)
            self.by_source[str(source)] = self.by_source.get(str(source), 0) + int(count)

        ttr = query.times_to_recovery()
        self.per_source: dict[str, Outcomes] = {}
        self.duplicates = 0
        lost_ms = 0.0
        for source, shown, recovered, abandoned, gave_up, dupes, lost in query.outcomes():
            self.per_source[str(source)] = Outcomes(
                as_int(shown), as_int(recovered), as_int(abandoned), as_int(gave_up),
                ttr.get(str(source), TimeToRecovery()),
            )  # fmt: skip
            self.duplicates += as_int(dupes)
            lost_ms += 0.0 if lost is None else float(lost)
        views = self.per_source.values()
        self.outcomes = Outcomes(
            pages_shown=sum(o.pages_shown for o in views),
            recovered=sum(o.recovered for o in views),
            abandoned=sum(o.abandoned for o in views),
            gave_up=sum(o.gave_up for o in views),
            time_to_recovery=ttr.get(None, TimeToRecovery()),
        )
        self.user_minutes_lost = round(lost_ms / 60000.0, 2)

    def summary(self, window: Window) -> PeriodSummary:
        views = self.outcomes
        return PeriodSummary(
            window=window,
            failures=self.failures,
            pages_shown=views.pages_shown,
            recovery_rate=views.recovery_rate,
            abandonment_rate=views.abandonment_rate,
            time_to_recovery=views.time_to_recovery,
            user_minutes_lost=self.user_minutes_lost,
            empty=not (self.failures or self.probes or views.pages_shown),
        )


def build_report(
    reader: Reader,
    window: Window,
    route: str | None = None,
    *,
    episode_gap_s: float = DEFAULT_GAP_S,
    compare: str | None = None,
    spike_settings: SpikeSettings | None = None,
) -> Report:
    """The report of events in ``window``, optionally for one route template.

    ``episode_gap_s``: the quiet seconds that end an outage episode. ``compare``:
    ``"previous"`` to put the same length of time just before ``window`` beside it.
    ``spike_settings``: the spike detector's thresholds (default :class:`SpikeSettings`).
    """
    route = route_label(route) if route and route.strip() else None
    scope = Scope.of(reader, window, route)
    query = _Query(scope)
    totals = _Totals(query)
    episodes, episodes_total = find_episodes(scope, episode_gap_s, EPISODE_LIMIT)
    planned = query.planned()
    planned_episodes, planned_total = (
        find_episodes(scope, episode_gap_s, EPISODE_LIMIT, planned=True) if planned else ((), 0)
    )
    comparison = None
    if compare is not None:
        before = previous_window(window)
        comparison = Comparison(
            against=compare,
            current=totals.summary(window),
            previous=_Totals(_Query(Scope.of(reader, before, route))).summary(before),
        )
    return Report(
        store=reader.store,
        window=window,
        route=route,
        failures=totals.failures,
        probes=totals.probes,
        planned=planned,
        planned_episodes=planned_episodes,
        planned_episodes_total=planned_total,
        shed=query.shed(),
        by_status=totals.by_status,
        by_cause=_sorted_counts(totals.by_cause),
        by_source={s: totals.by_source.get(s, 0) for s in _with_sources(totals.by_source)},
        by_route=query.by_route(),
        per_hour=query.per(3600),
        per_day=query.per(86400),
        outcomes=totals.outcomes,
        per_source={
            s: totals.per_source.get(s, Outcomes()) for s in _with_sources(totals.per_source)
        },
        duplicate_outcomes=totals.duplicates,
        time_to_recovery_histogram=query.histogram(),
        user_minutes_lost=totals.user_minutes_lost,
        episode_gap_s=episode_gap_s,
        episodes=episodes,
        episodes_total=episodes_total,
        spikes=find_spikes(scope, spike_settings or SpikeSettings()),
        comparison=comparison,
    )
