"""Analytics over the event store: how often upstreams failed, and what it cost users.

:func:`load_report` reads a store into a :class:`Report`; :func:`render` turns
that into a terminal table, JSON, CSV or one self-contained HTML page with
inline SVG charts; :func:`generate` does both, as ``gracefail report`` does.

Definitions (UTC throughout):

* ``failures``: failure replies to users' requests; ``probes``: those to the
  page's own probes, which are never counted as failures.
* ``planned``: maintenance pages served to users' requests during planned downtime
  (cause ``maintenance``, :mod:`gracefail.maintenance`): reported beside the outages,
  never counted among failures, routes, outage episodes or spikes. Its runs are
  ``planned_episodes`` (grouped by the same gap, each marked ``planned``).
* A *page view* is an incident with at least one beacon in the window;
  ``pages_shown`` counts those whose ``shown`` beacon arrived. Its route and
  its source are those of the failure that served it.
* Its *outcome* is its first ``recovered``, ``gave_up`` or ``abandoned`` beacon
  (in arrival order); any later one is counted in ``duplicate_outcomes``.
* ``time_to_recovery_s``: p50/p90 (linear interpolation) of the page's own
  ``elapsed_ms`` in its first ``recovered`` beacon.
* ``user_minutes_lost``: over page views, the page's time from ``shown`` (or its
  first beacon) to its outcome (or its last beacon, if none came).
* Route templates are compared with a leading slash (``prices/`` is ``/prices/``).
* An *episode* is a run of failures with no quiet gap longer than ``episode_gap``
  minutes (default 5); a *spike* is a bucket whose failures stand far above the
  median of the buckets before it (:mod:`.spikes`); ``compare="previous"`` puts the
  same length of time just before the window beside it.

The modules: ``reader`` opens a store read-only, ``window`` parses ``--since``
and ``--until``, ``queries`` runs the SQL (with ``sql``, ``episodes`` and
``spikes``) into the dataclasses of ``model``, ``compare`` picks the other window,
``text`` and ``html`` render, ``options`` is what the three report commands share,
``web`` what the Django admin view and the Flask blueprint share.

Example::

    from gracefail.report import generate, load_report

    print(generate("gracefail.sqlite3", since="7d", fmt="table"))
    report = load_report("gracefail.sqlite3", since="7d")
    print(report.outcomes.recovery_rate, report.by_source["gateway"])
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from .compare import COMPARES, check_compare
from .episodes import parse_gap
from .errors import EmptyStore, ReportError
from .html import render_html
from .model import (
    SOURCES,
    Comparison,
    Episode,
    HistogramBin,
    MetricChange,
    Outcomes,
    PeriodRow,
    PeriodSummary,
    Report,
    RouteCount,
    RouteRow,
    SpikeBucket,
    Spikes,
    TimeToRecovery,
    Window,
)
from .queries import build_report
from .reader import Store, open_store
from .spikes import SpikeSettings
from .text import render_csv, render_table
from .window import parse_since, parse_until, parse_window

__all__ = [
    "COMPARES",
    "FORMATS",
    "SOURCES",
    "Comparison",
    "EmptyStore",
    "Episode",
    "HistogramBin",
    "MetricChange",
    "Outcomes",
    "PeriodRow",
    "PeriodSummary",
    "Report",
    "ReportError",
    "RouteCount",
    "RouteRow",
    "SpikeBucket",
    "SpikeSettings",
    "Spikes",
    "TimeToRecovery",
    "Window",
    "build_report",
    "generate",
    "load_report",
    "open_store",
    "parse_since",
    "parse_until",
    "parse_window",
    "render",
]

FORMATS: Final = ("table", "json", "csv", "html")
"""What :func:`render` can write."""


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def render(report: Report, fmt: str) -> str:
    """``report`` in one of :data:`FORMATS`."""
    _check_format(fmt)
    if fmt == "json":
        return report.to_json() + "\n"
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    return render_table(report)


def load_report(
    store: Store,
    *,
    since: str | None = None,
    until: str | None = None,
    route: str | None = None,
    compare: str | None = None,
    episode_gap: str | float | None = None,
    now: datetime | None = None,
    spike_settings: SpikeSettings | None = None,
) -> Report:
    """Read ``store`` (a path or URL, as ``Config.store``) over the window the options give.

    ``compare``: ``"previous"`` adds the comparison with the window just before;
    ``episode_gap``: the quiet minutes that end an outage episode (default 5).
    """
    window = parse_window(since, until, now)
    against = check_compare(compare)
    gap = parse_gap(episode_gap)
    with open_store(store) as reader:
        return build_report(
            reader, window, route, episode_gap_s=gap, compare=against,
            spike_settings=spike_settings,
        )  # fmt: skip


def generate(
    store: Store,
    *,
    since: str | None = None,
    until: str | None = None,
    route: str | None = None,
    fmt: str = "table",
    compare: str | None = None,
    episode_gap: str | float | None = None,
    now: datetime | None = None,
) -> str:
    """Read ``store`` and render its report in ``fmt``: what ``gracefail report`` prints."""
    _check_format(fmt)  # before reading the store
    check_compare(compare)
    parse_gap(episode_gap)
    report = load_report(
        store, since=since, until=until, route=route, compare=compare,
        episode_gap=episode_gap, now=now,
    )  # fmt: skip
    return render(report, fmt)
