"""Analytics over the event store: how often upstreams failed, and what it cost users.

Everything is computed in SQL, with the same queries on SQLite and PostgreSQL
(only the time-bucket expression and the placeholder style differ). The result
is a plain dict (see :func:`build_report`), rendered as a terminal table, JSON,
CSV or one self-contained HTML page with inline SVG charts.

Definitions (UTC throughout):

* ``failures``: failure replies to users' requests; ``probes``: those to the
  page's own probes, which are never counted as failures.
* A *page view* is an incident with at least one beacon in the window;
  ``pages_shown`` counts those whose ``shown`` beacon arrived.
* Its *outcome* is its first ``recovered``, ``gave_up`` or ``abandoned`` beacon
  (in arrival order); any later one is counted in ``duplicate_outcomes``.
* ``time_to_recovery_s``: p50/p90 (linear interpolation) of the page's own
  ``elapsed_ms`` in its first ``recovered`` beacon.
* ``user_minutes_lost``: over page views, the page's time from ``shown`` (or its
  first beacon) to its outcome (or its last beacon, if none came).

Example::

    from gracefail.report import generate
    print(generate("gracefail.sqlite3", since="7d", fmt="table"))
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote

from .recorders.labels import UNKNOWN_ROUTE
from .recorders.store import FAILURES, PAGE_EVENTS, StoreTarget, parse_store

__all__ = [
    "FORMATS",
    "EmptyStore",
    "ReportError",
    "build_report",
    "generate",
    "open_store",
    "parse_since",
    "parse_until",
    "render",
]

Format = Literal["table", "json", "csv", "html"]
FORMATS: Final = ("table", "json", "csv", "html")
TOP_ROUTES: Final = 50
# Upper bounds (seconds) of the time-to-recovery distribution; the last bucket is open.
TTR_BUCKETS: Final = (5, 10, 30, 60, 120, 300, 600)
_RELATIVE: Final = re.compile(r"(\d+)\s*([mhdw])")
_UNITS: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class ReportError(Exception):
    """The report cannot be made (bad window, unreadable store); the message says why."""


class EmptyStore(ReportError):
    """The store holds nothing yet (no file, or no gracefail tables)."""


# -- reading a store --------------------------------------------------------------


class Reader(Protocol):
    """What the report needs from a database: run a query with ``?`` placeholders."""

    dialect: str

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""


class _SQLiteReader:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, tuple(params)).fetchall())


class _PostgresReader:
    dialect = "postgresql"

    def __init__(self, conn: Any):
        self.conn = conn

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        # The queries hold no literal "?" or "%": the placeholder swap is exact.
        with self.conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return list(cur.fetchall())


@contextmanager
def open_store(store: str) -> Iterator[Reader]:
    """A read-only view of ``store`` (path or URL); :class:`EmptyStore` if it has no data."""
    target = parse_store(store)
    if target.dialect == "sqlite":
        with _open_sqlite(target) as reader:
            yield reader
    else:
        with _open_postgres(target) as reader:
            yield reader


@contextmanager
def _open_sqlite(target: StoreTarget) -> Iterator[Reader]:
    path = Path(target.location)
    if not path.is_file():
        raise EmptyStore(
            f"no gracefail store at {path} yet: events are written there once the app has "
            "served a failure (or pass --store / set GRACEFAIL_DB)"
        )
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReportError(f"cannot open {path}: {exc}") from None
    try:
        try:
            found = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                    (FAILURES, PAGE_EVENTS),
                )
            }
        except sqlite3.DatabaseError as exc:
            raise ReportError(f"{path} is not a readable gracefail store: {exc}") from None
        if len(found) < 2:
            raise EmptyStore(f"{path} holds no gracefail events yet")
        yield _SQLiteReader(conn)
    finally:
        conn.close()


@contextmanager
def _open_postgres(target: StoreTarget) -> Iterator[Reader]:
    try:
        import psycopg
    except ImportError:
        raise ReportError(
            "a PostgreSQL store needs psycopg 3: install gracefail[postgres]"
        ) from None
    try:
        conn = psycopg.connect(target.location, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise ReportError(f"cannot connect to {target.describe()}: {exc}") from None
    try:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
            (FAILURES, PAGE_EVENTS),
        ).fetchone()
        if not row or not row[0]:
            raise EmptyStore(f"{target.describe()} holds no gracefail events yet")
        conn.read_only = True
        yield _PostgresReader(conn)
    finally:
        conn.close()


# -- the window ---------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _from_iso(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{option} {text!r} is not a time: use 24h, 7d, 30m, 2w or an ISO time "
            "such as 2024-05-01T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_until(text: str | None, now: datetime | None = None) -> datetime:
    """``--until``: an ISO time (UTC if no offset); default now."""
    if text is None or not text.strip():
        return (now or datetime.now(UTC)).astimezone(UTC)
    return _from_iso(text, "--until")


def parse_since(text: str | None, until: datetime) -> datetime:
    """``--since``: ``24h``, ``7d``, ``30m``, ``2w`` before ``until``, or an ISO time."""
    if text is None or not text.strip():
        return until - timedelta(hours=24)
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match:
        return until - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    return _from_iso(text, "--since")


# -- the queries --------------------------------------------------------------------


def _bucket(reader: Reader, seconds: int) -> str:
    if reader.dialect == "sqlite":
        return f"CAST(time / {seconds} AS INTEGER) * {seconds}"
    return f"FLOOR(time / {seconds}) * {seconds}"


_ROUTE = f"COALESCE(route, '{UNKNOWN_ROUTE}')"


def _pages_cte(route: str | None) -> tuple[str, list[object]]:
    route_filter = (
        f" AND incident IN (SELECT incident FROM {FAILURES} WHERE probe = 0 AND {_ROUTE} = ?)"
        if route is not None
        else ""
    )
    sql = f"""
WITH ev AS (
    SELECT id, time, incident, kind, elapsed_ms FROM {PAGE_EVENTS}
    WHERE time >= ? AND time < ?{route_filter}
),
ranked AS (
    SELECT incident, kind, elapsed_ms,
           ROW_NUMBER() OVER (PARTITION BY incident ORDER BY time, id) AS rn
    FROM ev WHERE kind IN ('recovered', 'gave_up', 'abandoned')
),
firsts AS (SELECT incident, kind, elapsed_ms FROM ranked WHERE rn = 1),
shown AS (
    SELECT incident, MIN(elapsed_ms) AS shown_ms FROM ev WHERE kind = 'shown' GROUP BY incident
),
views AS (
    SELECT incident, MIN(elapsed_ms) AS first_ms, MAX(elapsed_ms) AS last_ms
    FROM ev GROUP BY incident
),
routes AS (
    SELECT incident, MIN({_ROUTE}) AS route FROM {FAILURES}
    WHERE probe = 0 AND incident IN (SELECT incident FROM views) GROUP BY incident
)
"""
    return sql, [route] if route is not None else []


def _num(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _percentile(
    reader: Reader, cte: str, params: list[object], count: int, p: float
) -> float | None:
    if count == 0:
        return None
    position = p * (count - 1)
    low = math.floor(position)
    rows = reader.query(
        cte + "SELECT elapsed_ms FROM firsts WHERE kind = 'recovered' "
        "ORDER BY elapsed_ms LIMIT 2 OFFSET ?",
        [*params, low],
    )
    values = [_num(row[0]) for row in rows]
    if not values:
        return None
    high = values[1] if len(values) > 1 else values[0]
    return round((values[0] + (high - values[0]) * (position - low)) / 1000.0, 3)


def build_report(
    reader: Reader, since: datetime, until: datetime, route: str | None = None
) -> dict[str, Any]:
    """The report of events in ``[since, until)``, optionally for one route template."""
    if since >= until:
        raise ReportError(f"--since ({_iso(since)}) must be before --until ({_iso(until)})")
    window = [since.timestamp(), until.timestamp()]
    where = "time >= ? AND time < ?" + (f" AND {_ROUTE} = ?" if route is not None else "")
    fparams: list[object] = [*window, *([route] if route is not None else [])]

    failures = probes = 0
    by_status: dict[str, int] = {"502": 0, "504": 0}
    by_cause: dict[str, int] = {}
    for probe, status, cause, count in reader.query(
        f"SELECT probe, status, cause, COUNT(*) FROM {FAILURES} WHERE {where} "
        "GROUP BY probe, status, cause ORDER BY 4 DESC, cause",
        fparams,
    ):
        if probe:
            probes += int(count)
            continue
        failures += int(count)
        by_status[str(status)] = by_status.get(str(status), 0) + int(count)
        by_cause[str(cause)] = by_cause.get(str(cause), 0) + int(count)

    def per(seconds: int, key: str) -> list[dict[str, Any]]:
        rows = reader.query(
            f"SELECT {_bucket(reader, seconds)} AS bucket, COUNT(*) FROM {FAILURES} "
            f"WHERE {where} AND probe = 0 GROUP BY 1 ORDER BY 1",
            fparams,
        )
        return [
            {key: _iso(datetime.fromtimestamp(int(b), UTC)), "failures": int(n)} for b, n in rows
        ]

    cte, route_params = _pages_cte(route)
    pparams: list[object] = [*window, *route_params]
    (row,) = reader.query(
        cte
        + """SELECT
    (SELECT COUNT(*) FROM shown),
    (SELECT COUNT(*) FROM firsts WHERE kind = 'recovered'),
    (SELECT COUNT(*) FROM firsts WHERE kind = 'abandoned'),
    (SELECT COUNT(*) FROM firsts WHERE kind = 'gave_up'),
    (SELECT COUNT(*) FROM ranked WHERE rn > 1),
    (SELECT SUM(CASE WHEN COALESCE(o.elapsed_ms, v.last_ms) > COALESCE(s.shown_ms, v.first_ms)
                     THEN COALESCE(o.elapsed_ms, v.last_ms) - COALESCE(s.shown_ms, v.first_ms)
                     ELSE 0 END)
     FROM views v LEFT JOIN shown s ON s.incident = v.incident
                  LEFT JOIN firsts o ON o.incident = v.incident)""",
        pparams,
    )
    shown, recovered, abandoned, gave_up, duplicates = (int(v or 0) for v in row[:5])
    lost_ms = _num(row[5])

    route_rows = reader.query(
        cte
        + f"""SELECT route, SUM(failures), SUM(shown), SUM(recovered) FROM (
    SELECT {_ROUTE} AS route, 1 AS failures, 0 AS shown, 0 AS recovered
    FROM {FAILURES} WHERE {where} AND probe = 0
    UNION ALL
    SELECT COALESCE(r.route, '{UNKNOWN_ROUTE}'), 0, 1, 0
    FROM shown s LEFT JOIN routes r ON r.incident = s.incident
    UNION ALL
    SELECT COALESCE(r.route, '{UNKNOWN_ROUTE}'), 0, 0, 1
    FROM firsts o LEFT JOIN routes r ON r.incident = o.incident WHERE o.kind = 'recovered'
) AS t GROUP BY route ORDER BY 2 DESC, 3 DESC, route LIMIT {TOP_ROUTES}""",
        [*pparams, *fparams],
    )

    bucket_case = " ".join(
        f"WHEN elapsed_ms <= {limit * 1000} THEN {i}" for i, limit in enumerate(TTR_BUCKETS)
    )
    ttr_counts = dict.fromkeys(range(len(TTR_BUCKETS) + 1), 0)
    for bucket, count in reader.query(
        cte + f"SELECT CASE {bucket_case} ELSE {len(TTR_BUCKETS)} END AS bucket, COUNT(*) "
        "FROM firsts WHERE kind = 'recovered' GROUP BY 1",
        pparams,
    ):
        ttr_counts[int(bucket)] = int(count)

    def rate(count: int) -> float:
        return round(count / shown, 4) if shown else 0.0

    return {
        "window": {"since": _iso(since), "until": _iso(until)},
        "route": route,
        "failures": failures,
        "probes": probes,
        "by_status": by_status,
        "by_cause": by_cause,
        "by_route": [
            {
                "route": str(r),
                "failures": int(f or 0),
                "pages_shown": int(s or 0),
                "recovered": int(v or 0),
            }
            for r, f, s, v in route_rows
        ],
        "per_hour": per(3600, "hour"),
        "per_day": per(86400, "day"),
        "pages_shown": shown,
        "recovered": recovered,
        "abandoned": abandoned,
        "gave_up": gave_up,
        "recovery_rate": rate(recovered),
        "abandonment_rate": rate(abandoned),
        "gave_up_rate": rate(gave_up),
        "duplicate_outcomes": duplicates,
        "time_to_recovery_s": {
            "p50": _percentile(reader, cte, pparams, recovered, 0.5),
            "p90": _percentile(reader, cte, pparams, recovered, 0.9),
        },
        "time_to_recovery_histogram": [
            {
                "upto_s": TTR_BUCKETS[i] if i < len(TTR_BUCKETS) else None,
                "count": ttr_counts[i],
            }
            for i in range(len(TTR_BUCKETS) + 1)
        ],
        "user_minutes_lost": round(lost_ms / 60000.0, 2),
    }


# -- rendering ------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _bucket_label(upto: int | None, previous: int | None) -> str:
    def short(s: int) -> str:
        return f"{s // 60}m" if s >= 60 else f"{s}s"

    if upto is None:
        return f">{short(previous or 0)}"
    return f"<={short(upto)}" if previous is None else f"{short(previous)}-{short(upto)}"


def render_table(report: Mapping[str, Any], width: int = 40) -> str:
    """The report as plain text for a terminal."""
    w = report["window"]
    out = [f"gracefail report  {w['since']} .. {w['until']}"]
    if report.get("route"):
        out.append(f"route: {report['route']}")
    out.append("")
    if not report["failures"] and not report["pages_shown"] and not report["probes"]:
        out.append("No failures and no page reports in this window.")
        return "\n".join(out) + "\n"
    status = ", ".join(f"{k}: {v}" for k, v in report["by_status"].items())
    ttr = report["time_to_recovery_s"]
    rows = [
        ("Failures", f"{report['failures']}  ({status}; probes {report['probes']})"),
        ("By cause", ", ".join(f"{k} {v}" for k, v in report["by_cause"].items()) or "-"),
        ("Pages shown", str(report["pages_shown"])),
        ("Recovered", f"{report['recovered']}  ({_pct(report['recovery_rate'])})"),
        ("Gave up", f"{report['gave_up']}  ({_pct(report['gave_up_rate'])})"),
        ("Abandoned", f"{report['abandoned']}  ({_pct(report['abandonment_rate'])})"),
        ("Time to recovery", f"p50 {_seconds(ttr['p50'])}, p90 {_seconds(ttr['p90'])}"),
        ("User-minutes lost", f"{report['user_minutes_lost']:.1f}"),
        ("Duplicate outcomes", str(report["duplicate_outcomes"])),
    ]
    out += [f"{name:<20}{value}" for name, value in rows]
    if report["by_route"]:
        out += ["", f"{'Route':<32}{'failures':>10}{'shown':>8}{'recovered':>11}"]
        for r in report["by_route"][:15]:
            name = r["route"] if len(r["route"]) <= 31 else r["route"][:30] + "~"
            out.append(f"{name:<32}{r['failures']:>10}{r['pages_shown']:>8}{r['recovered']:>11}")
    series = report["per_hour"] if len(report["per_hour"]) <= 48 else report["per_day"]
    if series:
        key = "hour" if series is report["per_hour"] else "day"
        top = max(p["failures"] for p in series) or 1
        out += ["", f"Failures per {key}"]
        for point in series:
            bar = "#" * max(1, round(point["failures"] / top * width))
            out.append(f"{point[key][:16]:<18}{bar} {point['failures']}")
    return "\n".join(out) + "\n"


def render_csv(report: Mapping[str, Any]) -> str:
    """The report as one long CSV table: ``metric,key,value``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["metric", "key", "value"])
    w = report["window"]
    writer.writerows([["window", "since", w["since"]], ["window", "until", w["until"]]])
    for name in ("failures", "probes", "pages_shown", "recovered", "abandoned", "gave_up"):
        writer.writerow([name, "", report[name]])
    for name in ("recovery_rate", "abandonment_rate", "gave_up_rate"):
        writer.writerow([name, "", report[name]])
    writer.writerow(["duplicate_outcomes", "", report["duplicate_outcomes"]])
    for p, value in report["time_to_recovery_s"].items():
        writer.writerow(["time_to_recovery_s", p, "" if value is None else value])
    writer.writerow(["user_minutes_lost", "", report["user_minutes_lost"]])
    for key, value in report["by_status"].items():
        writer.writerow(["by_status", key, value])
    for key, value in report["by_cause"].items():
        writer.writerow(["by_cause", key, value])
    for r in report["by_route"]:
        for name in ("failures", "pages_shown", "recovered"):
            writer.writerow([f"by_route.{name}", r["route"], r[name]])
    for point in report["per_hour"]:
        writer.writerow(["per_hour", point["hour"], point["failures"]])
    for point in report["per_day"]:
        writer.writerow(["per_day", point["day"], point["failures"]])
    for bucket in report["time_to_recovery_histogram"]:
        upto = bucket["upto_s"]
        key = "inf" if upto is None else upto
        writer.writerow(["time_to_recovery_histogram", key, bucket["count"]])
    return buffer.getvalue()


# -- HTML -------------------------------------------------------------------------------

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


def _timeline(report: Mapping[str, Any]) -> tuple[str, list[tuple[str, int]]]:
    """Failures over time, zero-filled: hourly up to 3 days, else daily."""
    since = _from_iso(report["window"]["since"], "since")
    until = _from_iso(report["window"]["until"], "until")
    hourly = until - since <= timedelta(days=3)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    key = "hour" if hourly else "day"
    counts = {p[key]: p["failures"] for p in report["per_hour" if hourly else "per_day"]}
    start = since.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        start = start.replace(hour=0)
    points: list[tuple[str, int]] = []
    moment = start
    while moment < until and len(points) < 1000:
        label = _iso(moment)
        points.append((label, counts.get(label, 0)))
        moment += step
    return key, points


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


def _routes_svg(routes: Sequence[Mapping[str, Any]]) -> str:
    rows = list(routes[:10])
    if not rows:
        return '<p class="empty">No failures in this window.</p>'
    width, row_h, left = 960, 28, 300
    height = row_h * len(rows) + 10
    peak = max(r["failures"] for r in rows) or 1
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Top routes">']
    for i, r in enumerate(rows):
        y = 5 + i * row_h
        w = r["failures"] / peak * (width - left - 90)
        shown = r["pages_shown"] or 0
        rec = (r["recovered"] / shown * w) if shown else 0.0
        name = r["route"] if len(r["route"]) <= 44 else r["route"][:43] + "~"
        parts.append(
            f'<text x="{left - 8}" y="{y + 18}" text-anchor="end">{_esc(name)}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row_h - 10}" '
            f'fill="var(--bar)"><title>{_esc(r["route"])}: {r["failures"]} failures, '
            f"{shown} pages shown, {r['recovered']} recovered</title></rect>"
            f'<rect x="{left}" y="{y + row_h - 8}" width="{min(rec, w):.1f}" height="3" '
            'fill="var(--ok)"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 18}">{r["failures"]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Mapping[str, Any], title: str = "gracefail report") -> str:
    """One self-contained HTML page (inline CSS and SVG, no script, no external request)."""
    w = report["window"]
    ttr = report["time_to_recovery_s"]
    tiles = [
        (report["failures"], "failures served"),
        (report["pages_shown"], "pages shown"),
        (_pct(report["recovery_rate"]), "recovered by themselves"),
        (_pct(report["abandonment_rate"]), "abandoned"),
        (_pct(report["gave_up_rate"]), "gave up"),
        (_seconds(ttr["p50"]), "time to recovery, median"),
        (_seconds(ttr["p90"]), "time to recovery, p90"),
        (f"{report['user_minutes_lost']:.1f}", "user-minutes lost"),
    ]
    key, points = _timeline(report)

    def time_label(iso: str) -> str:
        return iso[11:16] if key == "hour" else iso[5:10]

    previous: list[int | None] = [None]
    ttr_points: list[tuple[str, int]] = []
    for bucket in report["time_to_recovery_histogram"]:
        ttr_points.append((_bucket_label(bucket["upto_s"], previous[0]), bucket["count"]))
        previous[0] = bucket["upto_s"]
    route_rows = "".join(
        f"<tr><td>{_esc(r['route'])}</td><td class=n>{r['failures']}</td>"
        f"<td class=n>{r['pages_shown']}</td><td class=n>{r['recovered']}</td></tr>"
        for r in report["by_route"]
    )
    route_rows = route_rows or '<tr><td colspan=4 class="empty">No failures.</td></tr>'
    tiles_html = "".join(
        f'<div class="tile"><b>{_esc(v)}</b><span>{_esc(t)}</span></div>' for v, t in tiles
    )
    causes = ", ".join(f"{_esc(k)} {v}" for k, v in report["by_cause"].items()) or "none"
    statuses = ", ".join(f"{_esc(k)}: {v}" for k, v in report["by_status"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{_esc(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_esc(title)}</h1>
<p class="sub">{_esc(w["since"])} to {_esc(w["until"])} (UTC)
{f" &middot; route {_esc(report['route'])}" if report.get("route") else ""}
&middot; {statuses} &middot; probes {report["probes"]} &middot; causes: {causes}</p>
<section class="tiles">{tiles_html}</section>
<h2>Failures per {key}</h2>
<div class="card">{_bars_svg(points, time_label, f"Failures per {key}")}</div>
<h2>Time to recovery</h2>
<div class="card">{_bars_svg(ttr_points, str, "Time to recovery distribution", "var(--ok)")}
<p class="note">Recovered page views by how long the page took to bring the user back.</p></div>
<h2>Top routes</h2>
<div class="card">{_routes_svg(report["by_route"])}
<p class="note">Bars: failures served. Green line: the share of pages shown that recovered.</p>
</div>
<h2>By route</h2>
<table><thead><tr><th>Route</th><th class=n>Failures</th><th class=n>Pages shown</th>
<th class=n>Recovered</th></tr></thead><tbody>{route_rows}</tbody></table>
<footer>Recovered, abandoned and gave-up rates are over pages shown; duplicate outcomes:
{report["duplicate_outcomes"]}. Made by gracefail report.</footer>
</main></body></html>
"""


def render(report: Mapping[str, Any], fmt: str) -> str:
    """The report in one of :data:`FORMATS`."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    if fmt == "table":
        return render_table(report)
    raise ReportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def generate(
    store: str,
    *,
    since: str | None = None,
    until: str | None = None,
    route: str | None = None,
    fmt: str = "table",
    now: datetime | None = None,
) -> str:
    """Read ``store`` and render its report: what the CLI and the framework commands run."""
    end = parse_until(until, now)
    start = parse_since(since, end)
    with open_store(store) as reader:
        report = build_report(reader, start, end, route)
    return render(report, fmt)
