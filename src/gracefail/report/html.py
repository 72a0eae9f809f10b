"""The report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Final

from .model import HistogramBin, Report, RouteRow, iso
from .text import percent, seconds

__all__ = ["render_html"]

_CSS: Final = """
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bar:#2563eb;--ok:#16a34a;--bad:#dc2626}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif;color:var(--fg);background:#f9fafb}main{max-width:1040px;margin:0 auto;
padding:24px}h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
p.sub{color:var(--muted);margin:0 0 20px}.tiles{display:grid;gap:12px;
grid-template-columns:repeat(auto-fit,minmax(150px,1fr))}.tile{background:#fff;
border:1px solid var(--line);border-radius:8px;padding:12px 14px}.tile b{display:block;
font-size:24px}.tile span{color:var(--muted);font-size:13px}.card{background:#fff;
border:1px solid var(--line);border-radius:8px;padding:14px}svg{display:block;width:100%;
height:auto}svg text{font:11px system-ui,sans-serif;fill:var(--muted)}table{border-collapse:
collapse;width:100%;background:#fff}th,td{text-align:left;padding:6px 10px;border-bottom:1px
solid var(--line)}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.empty{color:var(--muted);padding:12px}.note{color:var(--muted);font-size:13px;margin:6px 0 0}
footer{color:var(--muted);font-size:12px;margin-top:28px}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _timeline(report: Report) -> tuple[str, list[tuple[str, int]]]:
    """Failures over time, zero-filled: hourly up to 3 days, else daily."""
    since, until = report.window.since, report.window.until
    hourly = until - since <= timedelta(days=3)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    counts = {p.start: p.failures for p in (report.per_hour if hourly else report.per_day)}
    moment = since.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        moment = moment.replace(hour=0)
    points: list[tuple[str, int]] = []
    while moment < until and len(points) < 1000:
        points.append((iso(moment), counts.get(moment, 0)))
        moment += step
    return ("hour" if hourly else "day"), points


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


def _bars_svg(
    points: Sequence[tuple[str, int]],
    label: Callable[[str], str],
    title: str,
    colour: str = "var(--bar)",
) -> str:
    width, height, left, bottom, top = 960, 220, 40, 28, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((v for _, v in points), default=0) or 1
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
        parts.append(
            f'<rect x="{x + slot * 0.1:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{max(slot * 0.8, 1):.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{_esc(label(name))}: {value}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{_esc(label(name))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _routes_svg(routes: Sequence[RouteRow]) -> str:
    rows = list(routes[:10])
    if not rows:
        return '<p class="empty">No failures in this window.</p>'
    width, row_h, left = 960, 28, 300
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


def render_html(report: Report, title: str = "gracefail report") -> str:
    """One self-contained HTML page (inline CSS and SVG, no script, no external request)."""
    window = report.window.as_dict()
    views = report.outcomes
    ttr = views.time_to_recovery
    tiles = [
        (report.failures, "failures served"),
        (views.pages_shown, "pages shown"),
        (percent(views.recovery_rate), "recovered by themselves"),
        (percent(views.abandonment_rate), "abandoned"),
        (percent(views.gave_up_rate), "gave up"),
        (seconds(ttr.p50), "time to recovery, median"),
        (seconds(ttr.p90), "time to recovery, p90"),
        (f"{report.user_minutes_lost:.1f}", "user-minutes lost"),
    ]
    key, points = _timeline(report)

    def time_label(moment: str) -> str:
        return moment[11:16] if key == "hour" else moment[5:10]

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
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{_esc(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_esc(title)}</h1>
<p class="sub">store: {_esc(report.store)}<br>
{_esc(window["since"])} to {_esc(window["until"])} (UTC){route}
&middot; {statuses} &middot; probes {report.probes} &middot; causes: {causes}</p>
<section class="tiles">{tiles_html}</section>
<h2>Failures per {key}</h2>
<div class="card">{_bars_svg(points, time_label, f"Failures per {key}")}</div>
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
</main></body></html>
"""
