"""The report as a terminal table and as CSV, and the number formats the HTML page shares."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, Final, Literal

from .model import Comparison, Episode, MetricChange, PeriodRow, Report, iso

__all__ = [
    "baseline_span",
    "change_text",
    "metric_label",
    "percent",
    "render_csv",
    "render_table",
    "seconds",
    "spike_resolution",
]

_METRIC_LABELS: Final = {
    "failures": "Failures",
    "pages_shown": "Pages shown",
    "recovery_rate": "Recovery rate",
    "abandonment_rate": "Abandonment rate",
    "time_to_recovery_p50_s": "Time to recovery p50",
    "time_to_recovery_p90_s": "Time to recovery p90",
    "user_minutes_lost": "User-minutes lost",
}
_RATES: Final = frozenset(("recovery_rate", "abandonment_rate"))
_DURATIONS: Final = frozenset(("time_to_recovery_p50_s", "time_to_recovery_p90_s"))


def percent(value: float) -> str:
    """``0.5`` as ``50.0%``."""
    return f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    """A duration for people: ``12.1 s``, ``4.5 min``, ``-`` for none."""
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def spike_resolution(bucket_s: int) -> str:
    """A spike bucket's length in words: ``5 minutes``, ``hour``, ``day``."""
    if bucket_s == 86400:
        return "day"
    if bucket_s == 3600:
        return "hour"
    return f"{bucket_s // 60} minutes" if bucket_s >= 60 else f"{bucket_s} seconds"


def baseline_span(bucket_s: int, buckets: int) -> str:
    """How far back a spike baseline reaches, in words: ``2 hours``, ``1 day``."""
    total = bucket_s * buckets
    for size, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if total % size == 0:
            count = total // size
            return f"{count} {name}{'s' if count != 1 else ''}"
    return f"{total} seconds"


def metric_label(name: str) -> str:
    """A compared number's name for people."""
    return _METRIC_LABELS.get(name, name)


def _value(name: str, value: float | int | None) -> str:
    if value is None:
        return "-"
    if name in _RATES:
        return percent(float(value))
    if name in _DURATIONS:
        return seconds(float(value))
    if name == "user_minutes_lost":
        return f"{value:.1f}"
    return str(value)


def change_text(
    change: MetricChange, which: Literal["current", "previous", "change"] = "change"
) -> str:
    """One cell of a comparison: this window's value, the previous one's, or the change
    (``+6 (+600%)``; rates in percentage points; ``-`` when there is none)."""
    if which == "current":
        return _value(change.name, change.current)
    if which == "previous":
        return _value(change.name, change.previous)
    delta = change.change
    if delta is None:
        return "-"
    if change.name in _RATES:
        return f"{delta * 100:+.1f} pts"
    if change.name in _DURATIONS:
        text = f"{delta:+.1f} s"
    elif change.name == "user_minutes_lost":
        text = f"{delta:+.1f}"
    else:
        text = f"{delta:+d}" if isinstance(delta, int) else f"{delta:+g}"
    if change.ratio is not None:
        text += f" ({change.ratio * 100:+.0f}%)"
    return text


def _active_sources(report: Report) -> list[str]:
    """The sources with failures or page views: the per-source block shows only those."""
    return [
        name
        for name in report.per_source
        if report.by_source.get(name) or report.per_source[name].pages_shown
    ]


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "-"


def render_table(report: Report, width: int = 40) -> str:
    """The report as plain text for a terminal."""
    window = report.window.as_dict()
    out = [f"gracefail report  {window['since']} .. {window['until']}", f"store: {report.store}"]
    if report.route:
        out.append(f"route: {report.route}")
    out.append("")
    if report.empty:
        out.append("No failures and no page reports in this window.")
        if report.comparison is not None:
            out += _comparison_lines(report.comparison)
        return "\n".join(out) + "\n"
    views = report.outcomes
    ttr = views.time_to_recovery
    status = ", ".join(f"{k}: {v}" for k, v in report.by_status.items())
    rows = [
        ("Failures", f"{report.failures}  ({status}; probes {report.probes})"),
        ("Planned downtime", f"{report.planned} maintenance pages (not counted as failures)"),
        ("Shed under load", _shed_text(report)),
        ("By cause", _counts(report.by_cause)),
        ("By source", _counts(report.by_source)),
        ("Pages shown", str(views.pages_shown)),
        ("Recovered", f"{views.recovered}  ({percent(views.recovery_rate)})"),
        ("Gave up", f"{views.gave_up}  ({percent(views.gave_up_rate)})"),
        ("Abandoned", f"{views.abandoned}  ({percent(views.abandonment_rate)})"),
        ("Time to recovery", f"p50 {seconds(ttr.p50)}, p90 {seconds(ttr.p90)}"),
        ("User-minutes lost", f"{report.user_minutes_lost:.1f}"),
        ("Duplicate outcomes", str(report.duplicate_outcomes)),
        ("Outage episodes", str(report.episodes_total)),
    ]
    if report.planned_episodes_total:
        rows.append(("Planned episodes", f"{report.planned_episodes_total}  (not outages)"))
    out += [f"{name:<20}{value}" for name, value in rows]
    if report.comparison is not None:
        out += _comparison_lines(report.comparison)
    out += _episode_lines(report)
    out += _planned_lines(report)
    out += _spike_lines(report)
    active = _active_sources(report)
    if len(active) > 1:
        out += ["", f"{'Source':<12}{'failures':>10}{'shown':>8}{'recovered':>11}"
                f"{'abandoned':>11}{'gave up':>9}  time to recovery p50"]  # fmt: skip
        for name in active:
            o = report.per_source[name]
            out.append(
                f"{name:<12}{report.by_source.get(name, 0):>10}{o.pages_shown:>8}"
                f"{o.recovered:>11}{o.abandoned:>11}{o.gave_up:>9}  "
                f"{seconds(o.time_to_recovery.p50)}"
            )
    if report.by_route:
        out += ["", f"{'Route':<32}{'failures':>10}{'shown':>8}{'recovered':>11}"]
        for r in report.by_route[:15]:
            name = r.route if len(r.route) <= 31 else r.route[:30] + "~"
            out.append(f"{name:<32}{r.failures:>10}{r.pages_shown:>8}{r.recovered:>11}")
    hourly = len(report.per_hour) <= 48
    series: tuple[PeriodRow, ...] = report.per_hour if hourly else report.per_day
    if series:
        top = max(p.failures for p in series) or 1
        out += ["", f"Failures per {'hour' if hourly else 'day'}"]
        for point in series:
            bar = "#" * max(1, round(point.failures / top * width))
            out.append(f"{iso(point.start)[:16]:<18}{bar} {point.failures}")
    return "\n".join(out) + "\n"


def _comparison_lines(comparison: Comparison) -> list[str]:
    window = comparison.previous.window.as_dict()
    out = ["", f"Compared with the previous window ({window['since']} .. {window['until']})"]
    if comparison.note:
        out.append(comparison.note)
    out.append(f"{'':<24}{'this window':>14}{'previous':>14}  change")
    for change in comparison.changes:
        out.append(
            f"{metric_label(change.name):<24}{change_text(change, 'current'):>14}"
            f"{change_text(change, 'previous'):>14}  {change_text(change)}"
            + (f"  ({change.trend})" if change.trend in ("better", "worse") else "")
        )
    return out


def _episode_lines(report: Report, shown: int = 15) -> list[str]:
    if not report.episodes:
        return []
    gap = f"{report.episode_gap_s / 60:g}"
    out = [
        "",
        f"Outage episodes (newest first; a quiet gap of {gap} min ends one)",
        f"{'Started (UTC)':<18}{'lasted':>10}  {'source':<9}{'failures':>9}{'shown':>7}"
        f"{'recovered':>10}{'abandoned':>10}{'ttr p50':>10}{'lost min':>9}  top route",
    ]
    for e in report.episodes[:shown]:
        o = e.outcomes
        top = e.top_routes[0].route if e.top_routes else "-"
        out.append(
            f"{iso(e.start)[:16]:<18}{seconds(e.duration_s):>10}  {e.source:<9}{e.failures:>9}"
            f"{o.pages_shown:>7}{percent(o.recovery_rate):>10}{percent(o.abandonment_rate):>10}"
            f"{seconds(o.time_to_recovery.p50):>10}{e.user_minutes_lost:>9.1f}  {top}"
            + ("  (ongoing)" if e.ongoing else "")
        )
    hidden = report.episodes_total - min(shown, len(report.episodes))
    if hidden:
        out.append(f"... and {hidden} older (all of them: --format json)")
    return out


def _planned_lines(report: Report, shown: int = 15) -> list[str]:
    """The episodes of planned maintenance, marked as such: never among the outages."""
    if not report.planned_episodes:
        return []
    out = [
        "",
        "Planned maintenance episodes (planned, not outages; newest first)",
        f"{'Started (UTC)':<18}{'lasted':>10}  {'source':<9}{'pages':>9}  top route",
    ]
    for e in report.planned_episodes[:shown]:
        top = e.top_routes[0].route if e.top_routes else "-"
        out.append(
            f"{iso(e.start)[:16]:<18}{seconds(e.duration_s):>10}  {e.source:<9}{e.failures:>9}"
            f"  {top}  (planned)" + ("  (ongoing)" if e.ongoing else "")
        )
    hidden = report.planned_episodes_total - min(shown, len(report.planned_episodes))
    if hidden:
        out.append(f"... and {hidden} older (all of them: --format json)")
    return out


def _spike_lines(report: Report) -> list[str]:
    spikes = report.spikes
    if spikes is None or not spikes.flagged:
        return []
    unit = spike_resolution(spikes.bucket_s)
    span = baseline_span(spikes.bucket_s, spikes.baseline_buckets)
    out = [
        "",
        f"Spikes (buckets of {unit}, each against the median of the "
        f"{spikes.baseline_buckets} before it: {span})",
    ]
    for b in spikes.flagged:
        out.append(
            f"{iso(b.start)[:16]:<18}{b.failures:>6} failures  baseline {b.baseline:g}  "
            f"score {b.score:g}"
        )
    return out


def _shed_text(report: Report) -> str:
    """Requests shed with the busy page, and what became of their users."""
    shed = report.shed
    text = f"{shed.requests} busy pages (not counted as failures)"
    if not (shed.requests or shed.probes):
        return text
    reasons = ", ".join(f"{k}: {v}" for k, v in shed.by_reason.items())
    views = shed.outcomes
    return (
        f"{text}  ({reasons}; probes {shed.probes}); shown {views.pages_shown}, "
        f"recovered {views.recovered} ({percent(views.recovery_rate)}), "
        f"abandoned {views.abandoned} ({percent(views.abandonment_rate)}), "
        f"gave up {views.gave_up}"
    )


def render_csv(report: Report) -> str:
    """The report as one long CSV table: ``metric,key,value``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["metric", "key", "value"])
    window = report.window.as_dict()
    writer.writerow(["store", "", report.store])
    writer.writerows([["window", "since", window["since"]], ["window", "until", window["until"]]])
    if report.route:
        writer.writerow(["route", "", report.route])
    views = report.outcomes.as_dict()
    writer.writerow(["failures", "", report.failures])
    writer.writerow(["probes", "", report.probes])
    writer.writerow(["planned", "", report.planned])
    shed = report.shed.as_dict()
    for name in ("requests", "probes", "pages_shown", "recovered", "abandoned", "gave_up"):
        writer.writerow([f"shed_{name}", "", shed[name]])
    for reason, count in report.shed.by_reason.items():
        writer.writerow(["shed_by_reason", reason, count])
    for name in ("pages_shown", "recovered", "abandoned", "gave_up"):
        writer.writerow([name, "", views[name]])
    for name in ("recovery_rate", "abandonment_rate", "gave_up_rate"):
        writer.writerow([name, "", views[name]])
    writer.writerow(["duplicate_outcomes", "", report.duplicate_outcomes])
    for p, value in views["time_to_recovery_s"].items():
        writer.writerow(["time_to_recovery_s", p, "" if value is None else value])
    writer.writerow(["user_minutes_lost", "", report.user_minutes_lost])
    for metric, counts in (
        ("by_status", report.by_status),
        ("by_cause", report.by_cause),
        ("by_source", report.by_source),
    ):
        writer.writerows([metric, key, value] for key, value in counts.items())
    for r in report.by_route:
        writer.writerow(["by_route.failures", r.route, r.failures])
        writer.writerow(["by_route.pages_shown", r.route, r.pages_shown])
        writer.writerow(["by_route.recovered", r.route, r.recovered])
    writer.writerows(["per_hour", iso(p.start), p.failures] for p in report.per_hour)
    writer.writerows(["per_day", iso(p.start), p.failures] for p in report.per_day)
    for b in report.time_to_recovery_histogram:
        key = "inf" if b.upto_s is None else b.upto_s
        writer.writerow(["time_to_recovery_histogram", key, b.count])
    for source, outcomes in report.per_source.items():
        for name, value in outcomes.as_dict().items():
            if name == "time_to_recovery_s":
                for p, s in value.items():
                    writer.writerow([f"per_source.time_to_recovery_s.{p}", source,
                                     "" if s is None else s])  # fmt: skip
            else:
                writer.writerow([f"per_source.{name}", source, value])
    _episode_rows(writer, report)
    spikes = report.spikes
    if spikes is not None:
        for name, setting in spikes.settings().items():
            writer.writerow(["spike_detection", name, setting])
        for spike in spikes.flagged:
            start = iso(spike.start)
            writer.writerows(
                [
                    ["spike.failures", start, spike.failures],
                    ["spike.baseline", start, spike.baseline],
                    ["spike.score", start, spike.score],
                    ["spike.threshold", start, spike.threshold],
                ]
            )
    if report.comparison is not None:
        comparison = report.comparison.as_dict()
        writer.writerow(["comparison.against", "", comparison["against"]])
        for key, value in comparison["window"].items():
            writer.writerow(["comparison.window", key, value])
        if comparison["note"]:
            writer.writerow(["comparison.note", "", comparison["note"]])
        for name, values in comparison["metrics"].items():
            for key, value in values.items():
                writer.writerow([f"comparison.{key}", name, "" if value is None else value])
    return buffer.getvalue()


def _episode_rows(writer: Any, report: Report) -> None:
    """``episode.<field>,<start ISO>,value`` for each outage episode (key: its start), and
    ``planned_episode.<field>,...`` for each episode of planned maintenance."""
    writer.writerow(["episode_gap_min", "", round(report.episode_gap_s / 60, 3)])
    writer.writerow(["episodes_total", "", report.episodes_total])
    for episode in report.episodes:
        _one_episode(writer, "episode", episode)
    if report.planned_episodes_total:
        writer.writerow(["planned_episodes_total", "", report.planned_episodes_total])
    for episode in report.planned_episodes:
        _one_episode(writer, "planned_episode", episode)


def _one_episode(writer: Any, prefix: str, episode: Episode) -> None:
    data = episode.as_dict()
    start = data.pop("start")
    for name, value in data.items():
        if isinstance(value, dict):
            for key, item in value.items():
                writer.writerow([f"{prefix}.{name}.{key}", start, "" if item is None else item])
        elif isinstance(value, list):
            for row in value:
                writer.writerow([f"{prefix}.{name}", start, f"{row['route']} {row['failures']}"])
        elif isinstance(value, bool):
            writer.writerow([f"{prefix}.{name}", start, "true" if value else "false"])
        else:
            writer.writerow([f"{prefix}.{name}", start, value])
