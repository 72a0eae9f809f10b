"""The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

:func:`render_html` makes the whole page; :func:`render_fragment` and :data:`REPORT_CSS`
are the same report for embedding in another page (the Django admin view): every
style rule is scoped under ``.gfr``, so the host page's own styles are untouched.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

from .model import Comparison, Episode, HistogramBin, MetricChange, Report, RouteRow, iso
from .text import (
    baseline_span,
    change_text,
    metric_label,
    percent,
    seconds,
    spike_resolution,
)

__all__ = ["REPORT_CSS", "SOURCE_COLOURS", "render_fragment", "render_html"]

SOURCE_COLOURS: Final = {
    "app": "#2563eb",
    "gateway": "#d97706",
    "worker": "#7c3aed",
}
"""The timeline's colour for each source (anything else is grey)."""
_OTHER_COLOUR: Final = "#6b7280"

REPORT_CSS: Final = """
.gfr{--fg:#1f2937;--muted:#4b5563;--line:#e5e7eb;--bar:#2563eb;--ok:#15803d;--bad:#dc2626;
color:var(--fg);background:#f9fafb;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;max-width:1080px;margin:0 auto;padding:24px;box-sizing:border-box}
.gfr *{box-sizing:border-box}.gfr h1{font-size:22px;margin:0 0 4px;color:var(--fg)}
.gfr h2{font-size:16px;margin:28px 0 8px;color:var(--fg);background:none;padding:0;
text-transform:none;letter-spacing:0}.gfr p.sub{color:var(--muted);margin:0 0 20px}
.gfr .tiles{display:grid;gap:12px;grid-template-columns:repeat(auto-fit,minmax(150px,1fr))}
.gfr .tile{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.gfr .tile b{display:block;font-size:24px}.gfr .tile span{color:var(--muted);font-size:13px}
.gfr .card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px}
.gfr svg{display:block;width:100%;height:auto}.gfr svg text{font:11px system-ui,sans-serif;
fill:var(--muted)}.gfr table{border-collapse:collapse;width:100%;background:#fff;
font-size:14px}.gfr th,.gfr td{text-align:left;padding:6px 10px;border-bottom:1px solid
var(--line);color:var(--fg);background:#fff;vertical-align:top}.gfr th{font-weight:600}
.gfr td.n,.gfr th.n{text-align:right;font-variant-numeric:tabular-nums}
.gfr table.small{font-size:13px}.gfr td.src{white-space:nowrap}
.gfr table.small td,.gfr table.small th{padding:5px 8px}
.gfr .empty{color:var(--muted);padding:12px}.gfr .note{color:var(--muted);font-size:13px;
margin:6px 0 0}.gfr .better{color:var(--ok);font-weight:600}.gfr .worse{color:var(--bad);
font-weight:600}.gfr .notice{background:#fffbeb;border:1px solid #f59e0b;border-radius:8px;
padding:10px 14px;margin:12px 0}.gfr .tag{display:inline-block;font-size:11px;padding:0 6px;
border-radius:9px;background:#fee2e2;color:#991b1b;margin-left:4px}.gfr .legend{display:flex;
flex-wrap:wrap;gap:14px;margin:8px 0 0;font-size:13px;color:var(--muted)}.gfr .sw{display:
inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:5px}
.gfr .sw-app{background:#2563eb}.gfr .sw-gateway{background:#d97706}.gfr .sw-worker{
background:#7c3aed}.gfr .sw-mixed{background:linear-gradient(#2563eb 50%,#d97706 50%)}
.gfr .sw-planned{background:repeating-linear-gradient(45deg,#6b7280 0 2px,#e5e7eb 2px 5px)}
.gfr .tag.planned{background:#e5e7eb;color:#374151}
.gfr .sw-spike{background:#dc2626}.gfr .sw-base{background:none;border-top:2px dashed #111827;
height:0;width:16px;vertical-align:3px}.gfr form.controls{display:flex;flex-wrap:wrap;gap:8px
14px;align-items:end;margin:0 0 18px;background:#fff;border:1px solid var(--line);
border-radius:8px;padding:12px 14px}.gfr form.controls label{display:flex;flex-direction:
column;font-size:13px;color:var(--muted);gap:3px}.gfr form.controls input,.gfr form.controls
select{font:inherit;padding:4px 6px;border:1px solid #9ca3af;border-radius:4px;color:var(--fg);
background:#fff}.gfr form.controls button{font:inherit;padding:5px 14px;border-radius:4px;
border:1px solid #1d4ed8;background:#2563eb;color:#fff;cursor:pointer}.gfr .presets a{
margin-right:10px;color:#1d4ed8}.gfr .error{background:#fef2f2;border:1px solid #dc2626;
color:#991b1b;border-radius:8px;padding:10px 14px;margin:0 0 14px}.gfr footer{
color:var(--muted);font-size:12px;margin-top:28px}
"""
_PAGE_CSS: Final = "body{margin:0;background:#f9fafb}"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _colour(source: str) -> str:
    return SOURCE_COLOURS.get(source, _OTHER_COLOUR)


def _daily(report: Report) -> list[tuple[str, int]]:
    """Failures per day, zero-filled over the window."""
    since, until = report.window.since, report.window.until
    counts = {p.start: p.failures for p in report.per_day}
    moment = since.replace(hour=0, minute=0, second=0, microsecond=0)
    points: list[tuple[str, int]] = []
    while moment < until and len(points) < 1000:
        points.append((iso(moment), counts.get(moment, 0)))
        moment += timedelta(days=1)
    return points


class _Series:
    """The failures-over-time chart's bars: the spike detector's buckets when there are
    few enough to draw, else days (a day is marked when it holds a spike)."""

    def __init__(self, report: Report):
        spikes = report.spikes
        self.baseline: list[float] | None = None
        if spikes is not None and 0 < len(spikes.series) <= 400:
            self.unit = spike_resolution(spikes.bucket_s)
            self.points = [(iso(b.start), b.failures) for b in spikes.series]
            self.marked = {iso(b.start) for b in spikes.flagged}
            self.baseline = [b.baseline for b in spikes.series]
            self.short = spikes.bucket_s < 86400
        else:
            self.unit = "day"
            self.points = _daily(report)
            days = {iso(b.start)[:10] for b in spikes.flagged} if spikes is not None else set()
            self.marked = {name for name, _ in self.points if name[:10] in days}
            self.short = False

    def label(self, moment: str) -> str:
        return moment[11:16] if self.short else moment[5:10]


def _bin_labels(bins: Sequence[HistogramBin]) -> list[tuple[str, int]]:
    def short(s: int) -> str:
        return f"{s // 60}m" if s >= 60 else f"{s}s"

    points: list[tuple[str, int]] = []
    previous: int | None = None
    for b in bins:
        if b.upto_s is None:
            label = f">{short(previous or 0)}"
        elif previous is None:
            label = f"<={short(b.upto_s)}"
        else:
            label = f"{short(previous)}-{short(b.upto_s)}"
        points.append((label, b.count))
        previous = b.upto_s
    return points


_WIDTH: Final = 960
_LEFT: Final = 40


def _bars_svg(
    points: Sequence[tuple[str, int]],
    label: Callable[[str], str],
    title: str,
    colour: str = "var(--bar)",
    marked: frozenset[str] | set[str] = frozenset(),
    baseline: Sequence[float] | None = None,
) -> str:
    width, height, left, bottom, top = _WIDTH, 220, _LEFT, 28, 14
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max([v for _, v in points] + list(baseline or []) + [0]) or 1
    peak = math.ceil(peak)
    n = max(len(points), 1)
    slot = plot_w / n
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" '
        'stroke="#d1d5db"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    every = max(1, math.ceil(n / 12))
    for i, (name, value) in enumerate(points):
        h = value / peak * plot_h
        x = left + i * slot
        spike = name in marked
        fill = "var(--bad)" if spike else colour
        tip = f"{label(name)}: {value}" + (" (spike)" if spike else "")
        parts.append(
            f'<rect x="{x + slot * 0.1:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{max(slot * 0.8, 1):.1f}" height="{h:.1f}" fill="{fill}">'
            f"<title>{_esc(tip)}</title></rect>"
        )
        if spike:
            # A small triangle above the bar, so a spike shows even when the bar is short.
            cx, cy = x + slot / 2, top + plot_h - h - 3
            marker = f"M{cx - 4:.1f} {cy - 6:.1f}L{cx + 4:.1f} {cy - 6:.1f}L{cx:.1f} {cy:.1f}Z"
            parts.append(f'<path d="{marker}" fill="var(--bad)"/>')
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{_esc(label(name))}</text>"
            )
    if baseline:
        line = " ".join(
            f"{left + (i + 0.5) * slot:.1f},{top + plot_h - value / peak * plot_h:.1f}"
            for i, value in enumerate(baseline)
        )
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="#111827" stroke-width="1.5" '
            'stroke-dasharray="4 3"><title>baseline: median of the buckets before</title>'
            "</polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _episode_tip(episode: Episode) -> str:
    sources = ", ".join(f"{k} {v}" for k, v in episode.by_source.items())
    if episode.planned:
        return (
            f"planned maintenance (not an outage), {iso(episode.start)} for "
            f"{seconds(episode.duration_s)}: {episode.failures} maintenance pages ({sources})"
        )
    return (
        f"{iso(episode.start)} for {seconds(episode.duration_s)}: {episode.failures} failures "
        f"({sources}), {episode.outcomes.pages_shown} pages shown, "
        f"{percent(episode.outcomes.recovery_rate)} recovered, "
        f"{episode.user_minutes_lost:.1f} user-minutes lost"
    )


def _timeline_svg(report: Report) -> str:
    """One bar per episode over the window, coloured by source (stacked when mixed)."""
    since, until = report.window.since, report.window.until
    span = (until - since).total_seconds() or 1.0
    width, left, top, bar_h, height = _WIDTH, _LEFT, 8, 30, 66
    plot_w = width - left - 10

    def x(moment: datetime) -> float:
        return left + max(0.0, min(1.0, (moment - since).total_seconds() / span)) * plot_w

    label = "Outage episodes over the window, coloured by source"
    if report.planned_episodes:
        label += "; planned maintenance hatched grey"
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{label}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{bar_h}" fill="#f3f4f6"/>',
    ]
    if report.planned_episodes:
        # Planned maintenance behind the outages, hatched: downtime, but not an outage.
        parts.append(
            '<defs><pattern id="gfr-planned" width="6" height="6" '
            'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            '<rect width="6" height="6" fill="#e5e7eb"/>'
            '<rect width="2" height="6" fill="#6b7280"/></pattern></defs>'
        )
    for episode in report.planned_episodes:
        start = x(episode.start)
        bar_w = max(x(episode.end) - start, 3.0)
        parts.append(
            f'<rect x="{start:.1f}" y="{top}" width="{bar_w:.1f}" height="{bar_h}" '
            'fill="url(#gfr-planned)" data-planned="true">'
            f"<title>{_esc(_episode_tip(episode))}</title></rect>"
        )
    for episode in report.episodes:
        start = x(episode.start)
        bar_w = max(x(episode.end) - start, 3.0)
        total = sum(episode.by_source.values()) or 1
        y = float(top)
        tip = _esc(_episode_tip(episode))
        for source, count in episode.by_source.items():
            h = bar_h * count / total
            parts.append(
                f'<rect x="{start:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{_colour(source)}"><title>{tip}</title></rect>'
            )
            y += h
    short = span <= 3 * 86400
    for i in range(7):
        moment = since + timedelta(seconds=span * i / 6)
        text = iso(moment)
        label = text[11:16] if short else text[5:10]
        anchor = "start" if i == 0 else "end" if i == 6 else "middle"
        parts.append(
            f'<line x1="{x(moment):.1f}" y1="{top + bar_h}" x2="{x(moment):.1f}" '
            f'y2="{top + bar_h + 5}" stroke="#9ca3af"/>'
            f'<text x="{x(moment):.1f}" y="{height - 8}" text-anchor="{anchor}">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _routes_svg(routes: Sequence[RouteRow]) -> str:
    rows = list(routes[:10])
    if not rows:
        return '<p class="empty">No failures in this window.</p>'
    width, row_h, left = _WIDTH, 28, 300
    height = row_h * len(rows) + 10
    peak = max(r.failures for r in rows) or 1
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Top routes">']
    for i, r in enumerate(rows):
        y = 5 + i * row_h
        w = r.failures / peak * (width - left - 90)
        rec = (r.recovered / r.pages_shown * w) if r.pages_shown else 0.0
        name = r.route if len(r.route) <= 44 else r.route[:43] + "~"
        parts.append(
            f'<text x="{left - 8}" y="{y + 18}" text-anchor="end">{_esc(name)}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row_h - 10}" '
            f'fill="var(--bar)"><title>{_esc(r.route)}: {r.failures} failures, '
            f"{r.pages_shown} pages shown, {r.recovered} recovered</title></rect>"
            f'<rect x="{left}" y="{y + row_h - 8}" width="{min(rec, w):.1f}" height="3" '
            'fill="var(--ok)"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 18}">{r.failures}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _sources_table(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{_esc(name)}</td><td class=n>{report.by_source.get(name, 0)}</td>"
        f"<td class=n>{o.pages_shown}</td><td class=n>{percent(o.recovery_rate)}</td>"
        f"<td class=n>{percent(o.abandonment_rate)}</td><td class=n>{percent(o.gave_up_rate)}</td>"
        f"<td class=n>{seconds(o.time_to_recovery.p50)}</td>"
        f"<td class=n>{seconds(o.time_to_recovery.p90)}</td></tr>"
        for name, o in report.per_source.items()
    )
    return (
        "<table><thead><tr><th>Source</th><th class=n>Failures</th><th class=n>Pages shown</th>"
        "<th class=n>Recovered</th><th class=n>Abandoned</th><th class=n>Gave up</th>"
        "<th class=n>Recovery p50</th><th class=n>Recovery p90</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _planned_table(report: Report) -> str:
    """The episodes of planned maintenance, each marked planned: not outages."""
    if not report.planned_episodes:
        return ""
    rows = []
    for e in report.planned_episodes:
        routes = "<br>".join(f"{_esc(r.route)} ({r.failures})" for r in e.top_routes)
        ongoing = '<span class="tag">ongoing</span>' if e.ongoing else ""
        rows.append(
            f"<tr><td>{_esc(iso(e.start)[:16].replace('T', ' '))}"
            f'<span class="tag planned">planned</span>{ongoing}</td>'
            f"<td class=n>{_esc(seconds(e.duration_s))}</td>"
            f'<td class=src><span class="sw sw-planned"></span>{_esc(e.source)}</td>'
            f"<td class=n>{e.failures}</td><td>{routes}</td></tr>"
        )
    more = ""
    if report.planned_episodes_total > len(report.planned_episodes):
        more = (
            f'<p class="note">The {len(report.planned_episodes)} newest of '
            f"{report.planned_episodes_total} planned episodes.</p>"
        )
    return (
        "<h2>Planned maintenance episodes</h2>"
        '<table class="small"><thead><tr><th>Started (UTC)</th><th class=n>Lasted</th>'
        "<th>Source</th><th class=n>Maintenance pages</th><th>Top routes</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
        '<p class="note">Planned downtime: runs of maintenance pages, grouped by the same '
        "gap; not counted as outages, failures or user-minutes lost.</p>"
    )


def _episodes_table(report: Report) -> str:
    if not report.episodes:
        return '<p class="empty">No failures, so no outage episodes, in this window.</p>'
    rows = []
    for e in report.episodes:
        o = e.outcomes
        statuses = ", ".join(f"{k}: {v}" for k, v in e.by_status.items() if v)
        causes = ", ".join(f"{_esc(k)} {v}" for k, v in e.by_cause.items())
        routes = "<br>".join(f"{_esc(r.route)} ({r.failures})" for r in e.top_routes)
        ongoing = '<span class="tag">ongoing</span>' if e.ongoing else ""
        rows.append(
            f"<tr><td>{_esc(iso(e.start)[:16].replace('T', ' '))}{ongoing}</td>"
            f"<td class=n>{_esc(seconds(e.duration_s))}</td>"
            f'<td class=src><span class="sw sw-{_esc(e.source)}"></span>{_esc(e.source)}</td>'
            f"<td class=n>{e.failures}</td><td>{_esc(statuses)}<br>{causes}</td>"
            f"<td class=n>{o.pages_shown}</td><td class=n>{percent(o.recovery_rate)}</td>"
            f"<td class=n>{percent(o.abandonment_rate)}</td>"
            f"<td class=n>{_esc(seconds(o.time_to_recovery.p50))} / "
            f"{_esc(seconds(o.time_to_recovery.p90))}</td>"
            f"<td class=n>{e.user_minutes_lost:.1f}</td><td>{routes}</td></tr>"
        )
    more = ""
    if report.episodes_total > len(report.episodes):
        more = (
            f'<p class="note">The {len(report.episodes)} newest of {report.episodes_total} '
            "episodes; narrow the window to see the others.</p>"
        )
    return (
        '<table class="small"><thead><tr><th>Started (UTC)</th><th class=n>Lasted</th>'
        "<th>Source</th><th class=n>Failures</th><th>Statuses, causes</th>"
        "<th class=n>Pages shown</th><th class=n>Recovered</th><th class=n>Abandoned</th>"
        "<th class=n>Recovery p50 / p90</th><th class=n>User-min lost</th><th>Top routes</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
    )


def _change_cell(change: MetricChange) -> str:
    css = f' class="n {change.trend}"' if change.trend in ("better", "worse") else " class=n"
    return f"<td{css}>{_esc(change_text(change))}</td>"


def _comparison_html(comparison: Comparison) -> str:
    window = comparison.previous.window.as_dict()
    note = f'<p class="notice">{_esc(comparison.note)}</p>' if comparison.note else ""
    rows = "".join(
        f"<tr><td>{_esc(metric_label(c.name))}</td>"
        f"<td class=n>{_esc(change_text(c, 'current'))}</td>"
        f"<td class=n>{_esc(change_text(c, 'previous'))}</td>{_change_cell(c)}</tr>"
        for c in comparison.changes
    )
    return (
        f"<h2>Compared with the previous window</h2>{note}"
        f'<p class="note">Previous window: {_esc(window["since"])} to {_esc(window["until"])} '
        "(UTC), the same length just before this one.</p>"
        "<table><thead><tr><th>Measure</th><th class=n>This window</th>"
        "<th class=n>Previous window</th><th class=n>Change</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _spikes_note(report: Report) -> str:
    spikes = report.spikes
    if spikes is None:
        return ""
    unit = spike_resolution(spikes.bucket_s)
    flagged = spikes.flagged
    found = (
        f"{len(flagged)} spike{'s' if len(flagged) != 1 else ''} flagged" if flagged else "No spike"
    )
    span = baseline_span(spikes.bucket_s, spikes.baseline_buckets)
    return (
        f'<p class="note">{found}. A bucket ({unit}) is a spike when it has at least '
        f"{spikes.min_failures} failures and stands {spikes.min_score:g} robust deviations "
        f"above the baseline: the median of the {spikes.baseline_buckets} buckets before it "
        f"({span}; the dashed line).</p>"
        '<p class="legend"><span><span class="sw sw-spike"></span>spike</span>'
        '<span><span class="sw sw-base"></span>baseline</span></p>'
    )


def render_fragment(report: Report, title: str = "gracefail report", controls: str = "") -> str:
    """The report as a ``<div class="gfr">`` for another page (style it with REPORT_CSS).

    ``controls`` is HTML put under the title (the window form of the admin view and the
    Flask blueprint); it is inserted as given.
    """
    window = report.window.as_dict()
    views = report.outcomes
    ttr = views.time_to_recovery
    tiles = [
        (report.failures, "failures served"),
        (report.episodes_total, "outage episodes"),
        (views.pages_shown, "pages shown"),
        (percent(views.recovery_rate), "recovered by themselves"),
        (percent(views.abandonment_rate), "abandoned"),
        (percent(views.gave_up_rate), "gave up"),
        (seconds(ttr.p50), "time to recovery, median"),
        (seconds(ttr.p90), "time to recovery, p90"),
        (f"{report.user_minutes_lost:.1f}", "user-minutes lost"),
    ]
    if report.planned_episodes_total:
        tiles.insert(2, (report.planned_episodes_total, "planned maintenance episodes"))
    series = _Series(report)
    route_rows = "".join(
        f"<tr><td>{_esc(r.route)}</td><td class=n>{r.failures}</td>"
        f"<td class=n>{r.pages_shown}</td><td class=n>{r.recovered}</td></tr>"
        for r in report.by_route
    )
    route_rows = route_rows or '<tr><td colspan=4 class="empty">No failures.</td></tr>'
    tiles_html = "".join(
        f'<div class="tile"><b>{_esc(v)}</b><span>{_esc(t)}</span></div>' for v, t in tiles
    )
    causes = ", ".join(f"{_esc(k)} {v}" for k, v in report.by_cause.items()) or "none"
    statuses = ", ".join(f"{_esc(k)}: {v}" for k, v in report.by_status.items())
    route = f" &middot; route {_esc(report.route)}" if report.route else ""
    ttr_chart = _bars_svg(
        _bin_labels(report.time_to_recovery_histogram),
        str,
        "Time to recovery distribution",
        "var(--ok)",
    )
    over_time = _bars_svg(
        series.points,
        series.label,
        f"Failures per {series.unit}",
        marked=series.marked,
        baseline=series.baseline,
    )
    timeline = _timeline_svg(report) if report.episodes or report.planned_episodes else ""
    planned_legend = (
        '\n<span><span class="sw sw-planned"></span>planned maintenance (not an outage)</span>'
        if report.planned_episodes
        else ""
    )
    gap = f"{report.episode_gap_s / 60:g}"
    comparison = _comparison_html(report.comparison) if report.comparison else ""
    return f"""<div class="gfr">
<h1>{_esc(title)}</h1>
<p class="sub">store: {_esc(report.store)}<br>
{_esc(window["since"])} to {_esc(window["until"])} (UTC){route}
&middot; {statuses} &middot; probes {report.probes} &middot; causes: {causes}
&middot; planned downtime: {report.planned} maintenance pages (not counted as failures)
&middot; shed under load: {_shed_html(report)}</p>
{controls}<section class="tiles">{tiles_html}</section>
{comparison}
<h2>Failures per {series.unit}</h2>
<div class="card">{over_time}{_spikes_note(report)}</div>
<h2>Outage episodes</h2>
<div class="card">{timeline}
<p class="legend"><span><span class="sw sw-app"></span>app</span>
<span><span class="sw sw-gateway"></span>gateway</span>
<span><span class="sw sw-worker"></span>worker</span>
<span><span class="sw sw-mixed"></span>several sources (stacked by share)</span>{planned_legend}</p>
<p class="note">An episode is a run of failures with no quiet gap longer than {gap} minutes;
its page views are those its failures served. Newest first.</p></div>
{_episodes_table(report)}
{_planned_table(report)}
<h2>Time to recovery</h2>
<div class="card">{ttr_chart}
<p class="note">Recovered page views by how long the page took to bring the user back.</p></div>
<h2>Top routes</h2>
<div class="card">{_routes_svg(report.by_route)}
<p class="note">Bars: failures served. Green line: the share of pages shown that recovered.</p>
</div>
<h2>By route</h2>
<table><thead><tr><th>Route</th><th class=n>Failures</th><th class=n>Pages shown</th>
<th class=n>Recovered</th></tr></thead><tbody>{route_rows}</tbody></table>
<h2>By source</h2>
{_sources_table(report)}
<p class="note">Where the failure page came from: the app's middleware, <code>gracefail serve</code>
behind the proxy (gateway), or the browser's service worker. A page view counts under the
source of the failure that served it.</p>
<footer>Recovered, abandoned and gave-up rates are over pages shown; duplicate outcomes:
{report.duplicate_outcomes}. Made by gracefail report.</footer>
</div>"""


def page(body: str, title: str) -> str:
    """A whole self-contained document around ``body`` (a :func:`render_fragment`)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{_esc(title)}</title><style>{_PAGE_CSS}{REPORT_CSS}</style></head>
<body>{body}</body></html>
"""


def render_html(report: Report, title: str = "gracefail report", controls: str = "") -> str:
    """One self-contained HTML page (inline CSS and SVG, no script, no external request)."""
    return page(render_fragment(report, title, controls), title)


def _shed_html(report: Report) -> str:
    """Requests shed with the busy page, and what became of their users (escaped)."""
    shed = report.shed
    text = f"{shed.requests} busy pages (not counted as failures)"
    if shed.requests or shed.probes:
        reasons = ", ".join(f"{k} {v}" for k, v in shed.by_reason.items())
        views = shed.outcomes
        text += (
            f" ({reasons}; probes {shed.probes}); their pages: shown {views.pages_shown}, "
            f"recovered {views.recovered} ({percent(views.recovery_rate)}), abandoned "
            f"{views.abandoned} ({percent(views.abandonment_rate)}), gave up {views.gave_up}"
        )
    return _esc(text)
