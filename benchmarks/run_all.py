"""Run every benchmark and write docs/performance.md (and docs/performance-herd.png).

    python -m benchmarks.run_all [--quick] [--out docs/performance.md]

``make bench`` runs this. The method is in benchmarks/README.md; the numbers are only
as quiet as the machine: the load average before and after is written down with them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

from benchmarks import e2e, gateway, herd, inprocess
from benchmarks import load as outage_load
from benchmarks import overload as overload_bench
from benchmarks.harness import Goal, goals_table, group_table, log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DISTRIBUTIONS = [
    "gracefail", "starlette", "fastapi", "Flask", "Werkzeug", "Django", "uvicorn", "gunicorn",
    "uvloop", "httptools", "Jinja2", "brotli", "numpy", "matplotlib",
]  # fmt: skip
INGEST_TIMEOUT = 300


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def command_output(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def wrk_version() -> str:
    exe = e2e.wrk_path()
    if exe is None:
        return "not installed"
    first = command_output([exe, "-v"]).splitlines()[:1]
    debian = command_output(["dpkg-query", "-W", "-f", "${Version}", "wrk"])
    return " ".join(
        filter(None, [first[0] if first else "", f"(Debian {debian})" if debian else ""])
    )


def nginx_version() -> str:
    exe = gateway.nginx_path()
    if exe is None:
        return "not installed"
    found = command_output([exe, "-v"]).removeprefix("nginx version: ")
    brotli = os.path.exists(gateway.NGINX_BROTLI)
    return found + (" with ngx_brotli's static module" if brotli else "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def environment_table(started: str, load_before: str, load_after: str, elapsed: float) -> str:
    rows = [
        ("date", started),
        ("python", platform.python_version() + f" ({platform.python_implementation()})"),
        *((name, version(name)) for name in DISTRIBUTIONS),
        ("wrk", wrk_version()),
        ("nginx", nginx_version()),
        ("machine", f"{os.cpu_count()} CPUs (nproc), {cpu_model()}, {memory()} memory"),
        ("kernel", platform.release()),
        ("load average (1/5/15 min) before", load_before),
        ("load average after", load_after),
        ("time taken", f"{elapsed / 60:.1f} min"),
    ]
    lines = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def herd_goals(report: herd.HerdReport) -> list[Goal]:
    now = [o for o in report.outcomes if o.schedule.startswith("gracefail now")]
    rec = [o for o in report.outcomes if o.schedule.startswith("gracefail recommended")]
    rec_text = herd._policy_text(report.recommended)

    def row(name: str, goal: str, fmt: object, key: str) -> Goal:
        def cells(outcomes: list[herd.Outcome]) -> str:
            return " / ".join(fmt(o) for o in outcomes if (o.load is not None or key != "load"))  # type: ignore[operator]

        met = all(o.met[key] is not False for o in now)
        return Goal(
            name,
            f"defaults: {cells(now)}; recommended ({rec_text}): {cells(rec)}",
            goal,
            met,
        )

    return [
        row("retry herd, busiest second (30 s / 2 min / 10 min outage)", "<= 5% of clients",
            lambda o: f"{o.herd:.1%}", "herd"),
        row("retry load after the first minute (2 min / 10 min)", "<= 2 probes/client/min",
            lambda o: herd._num(o.load, ".2f"), "load"),
        row("recovery lag, median (30 s / 2 min / 10 min)", "<= 20 s",
            lambda o: herd._num(o.lag_p50, ".0f", " s"), "p50"),
        row("recovery lag, p90 (30 s / 2 min / 10 min)", "<= 45 s",
            lambda o: herd._num(o.lag_p90, ".0f", " s"), "p90"),
    ]  # fmt: skip


def ingest_section() -> str:
    log("ingest: python -m benchmarks.ingest")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.ingest"],
            capture_output=True,
            text=True,
            timeout=INGEST_TIMEOUT,
            check=False,
            cwd=ROOT,
        )
        text = done.stdout.strip() or done.stderr.strip()[-2000:]
        if done.returncode:
            text += f"\n(exit status {done.returncode})"
    except subprocess.TimeoutExpired:
        text = f"(did not finish in {INGEST_TIMEOUT} s)"
    return "\n".join(
        ["## Beacon and event ingest", "", "`python -m benchmarks.ingest`, as printed:", "", "```",
         text, "```"]
    )  # fmt: skip


def order(goals: list[Goal]) -> list[Goal]:
    """The issue's order: happy path, error path, end to end, start-up, gracefail serve,
    recording, beacons, weight."""
    first = [
        "happy path, Starlette", "happy path, 1,000", "happy path, plain WSGI",
        "happy path, Flask", "happy path, Django", "error path, HTML page (Starlette)",
        "error path, problem+json", "error path, text/plain", "end-to-end happy path, uvicorn",
        "end-to-end happy path, gunicorn", "end-to-end error path", "start-up",
        "gracefail serve", "recording", "beacon", "page weight", "retry", "recovery",
        "overload",
    ]  # fmt: skip

    def rank(goal: Goal) -> int:
        return next((i for i, p in enumerate(first) if goal.row.startswith(p)), len(first))

    return sorted(goals, key=rank)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    parser.add_argument("--no-ingest", action="store_true", help="skip benchmarks.ingest")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    plot_path = os.path.join(out_dir, "performance-herd.png")

    log("in-process benchmarks")
    local = inprocess.run(args.quick, log=log)
    log("end-to-end benchmarks")
    remote = e2e.run(args.quick, log=log)
    log("gateway (gracefail serve)")
    backend = gateway.run(args.quick, log=log)
    log("load during an outage")
    pg = os.environ.get("GRACEFAIL_BENCH_PG")
    loaded = outage_load.markdown(outage_load.run_all(args.quick, pg, log=log))
    log("herd simulation")
    crowd = herd.run(plot_path, log=log)
    # Overload (issue 17): about 2.5 min in full; --quick runs the 2x step only (20 s).
    log("overload: shedding behind nginx, with and without")
    shed_steps, shed_capacities = overload_bench.run(
        args.quick, (False, True), ("uvicorn", "gunicorn"), log
    )
    shed_goals = overload_bench.goal_rows(shed_steps, shed_capacities)
    shed_text = overload_bench.report(shed_steps, shed_capacities)
    ingest = "" if args.no_ingest else ingest_section()

    goals = order(local.goals + remote.goals + backend.goals + herd_goals(crowd) + shed_goals)
    elapsed = time.perf_counter() - began
    quick = " (quick run: fewer rounds, not for publishing)" if args.quick else ""
    parts = [
        "# Performance",
        "",
        f"Written by `make bench` (`python -m benchmarks.run_all`){quick}; do not edit by hand. "
        "How the numbers are taken: [benchmarks/README.md](../benchmarks/README.md). Added time "
        "is the median of differences paired within a round, so it can be compared across "
        "rows; the ratio depends on how much the bare app itself does.",
        "",
        "## Machine and versions",
        "",
        environment_table(started, load_before, load(), elapsed),
        "",
        "## Goals",
        "",
        goals_table(goals),
        "",
        "Where the time of the rows not met goes, from profiles and call counts: "
        "[benchmarks/README.md](../benchmarks/README.md#where-the-time-goes-profiles); "
        "overload: [overload.md](overload.md#where-the-goal-stands-and-why).",
        "",
        "## In process",
        "",
        "No sockets: the drivers call the ASGI app, the WSGI app and Django's WSGIHandler "
        "directly. gracefail has a fixed secret and no recorder (events go into its queue; a "
        "background thread drains them); its log lines are formatted but not written.",
        "",
        *[group_table(g) + "\n" for g in local.groups],
        "## End to end",
        "",
        remote.markdown,
        "",
        "## Gateway: `gracefail serve`",
        "",
        backend.markdown,
        "",
        "## Load during an outage",
        "",
        "`python -m benchmarks.load`: every request fails upstream; served = stored + counted "
        "lost, exactly (PostgreSQL rows when `GRACEFAIL_BENCH_PG` names a database).",
        "",
        loaded,
        "",
        "## Retry herd",
        "",
        crowd.markdown,
        "",
        "## Overload: shedding past capacity",
        "",
        "`python -m benchmarks.overload` (one uvicorn and one gunicorn sync worker behind "
        "nginx, open-loop load; [overload.md](overload.md) has the plot and how to read it):",
        "",
        shed_text,
        "",
    ]
    if ingest:
        parts += [ingest, ""]
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    log(f"wrote {os.path.relpath(args.out, ROOT)} and {os.path.relpath(plot_path, ROOT)} "
        f"in {elapsed / 60:.1f} min")  # fmt: skip
    print(goals_table(goals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
