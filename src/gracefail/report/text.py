"""The report as a terminal table and as CSV, and the number formats the HTML page shares."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping

from .model import PeriodRow, Report, iso

__all__ = ["percent", "render_csv", "render_table", "seconds"]


def percent(value: float) -> str:
    """``0.5`` as ``50.0%``."""
    return f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    """A duration for people: ``12.1 s``, ``4.5 min``, ``-`` for none."""
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


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
        return "\n".join(out) + "\n"
    views = report.outcomes
    ttr = views.time_to_recovery
    status = ", ".join(f"{k}: {v}" for k, v in report.by_status.items())
    rows = [
        ("Failures", f"{report.failures}  ({status}; probes {report.probes})"),
        ("By cause", _counts(report.by_cause)),
        ("By source", _counts(report.by_source)),
        ("Pages shown", str(views.pages_shown)),
        ("Recovered", f"{views.recovered}  ({percent(views.recovery_rate)})"),
        ("Gave up", f"{views.gave_up}  ({percent(views.gave_up_rate)})"),
        ("Abandoned", f"{views.abandoned}  ({percent(views.abandonment_rate)})"),
        ("Time to recovery", f"p50 {seconds(ttr.p50)}, p90 {seconds(ttr.p90)}"),
        ("User-minutes lost", f"{report.user_minutes_lost:.1f}"),
        ("Duplicate outcomes", str(report.duplicate_outcomes)),
    ]
    out += [f"{name:<20}{value}" for name, value in rows]
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
    return buffer.getvalue()
