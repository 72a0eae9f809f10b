"""What `gracefail serve` sustains on loopback, driven by wrk as a proxy would drive it.

One `gracefail serve` process (uvicorn; uvloop and httptools when installed) with a
SQLite store in a temporary folder, asked like nginx's ``error_page`` asks it: the
original request's headers plus ``X-Code`` and ``X-Original-URI``. Three mixes, each
run ``rounds`` times: browser navigations (the HTML page), JSON clients
(problem+json) and the page's own probes. Reported: median requests/s, the server's
CPU per request, and whether every failure served reached the store or was counted
as dropped (the queue never blocks a request).

    python -m benchmarks.gateway [--quick]
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from benchmarks.apps import BROWSER
from benchmarks.e2e import CLK_TCK, _stat, wrk_path
from benchmarks.harness import Goal, free_port, goals_table, log, quick_flag

SECRET = "benchmark-secret-shared-with-the-app"
NAV = {k: v for k, v in BROWSER.items() if k != "host"}
PROXY = {"X-Code": "502", "X-Original-URI": "/shop/cart?step=2"}
MIXES: dict[str, dict[str, str]] = {
    "navigation (HTML page)": {**NAV, **PROXY},
    "JSON client (problem+json)": {"Accept": "application/json", **PROXY},
    "page's probes": {**NAV, **PROXY, "X-Gracefail-Probe": "1"},
}


@dataclass
class Row:
    mix: str
    rps: float
    cpu_us: float
    requests: int
    non_502: int


@contextlib.contextmanager
def serving(tmp: str) -> Iterator[tuple[int, subprocess.Popen[bytes], str]]:
    port = free_port()
    store = os.path.join(tmp, "events.sqlite3")
    log_path = os.path.join(tmp, "serve.log")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gracefail", "serve", "--port", str(port), "--store", store,
             "--secret", SECRET, "--route", "/shop/"],
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                with open(log_path, "rb") as f:
                    raise RuntimeError(f"gracefail serve exited:\n{f.read()[-2000:]!r}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("gracefail serve did not listen in 30 s") from None
                time.sleep(0.1)
        yield port, proc, store
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)  # uvicorn's shutdown flushes the store
            proc.wait(timeout=20)


def cpu_seconds(pid: int) -> float:
    stat = _stat(pid)
    return 0.0 if stat is None else (int(stat[11]) + int(stat[12])) / CLK_TCK


def wrk(
    port: int, headers: dict[str, str], seconds: float, connections: int
) -> tuple[int, int, float]:
    exe = wrk_path()
    assert exe is not None
    args = [exe, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*args, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True,
        timeout=seconds + 30,
    )  # fmt: skip
    out = done.stdout
    requests = int(out.split(" requests in", 1)[0].split()[-1])
    rps = float(out.split("Requests/sec:", 1)[1].split()[0])
    non = out.split("Non-2xx or 3xx responses:", 1)
    # Every answer is a 502 here: wrk counts them all as non-2xx.
    non_2xx = int(non[1].split()[0]) if len(non) > 1 else 0
    return requests, requests - non_2xx, rps


@dataclass
class GatewayReport:
    goals: list[Goal]
    markdown: str


def run(quick: bool = False, log: Callable[[str], None] = log) -> GatewayReport:
    if wrk_path() is None:
        text = "wrk is not installed (make bench installs it as root): gateway rows skipped."
        return GatewayReport([Goal("gracefail serve", "pending: no wrk", "-", None)], text)
    rounds, seconds, connections = (2, 2.0, 16) if quick else (5, 5.0, 16)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gracefail-gateway-bench-") as tmp:
        with serving(tmp) as (port, proc, store):
            total = 0
            for mix, headers in MIXES.items():
                runs = []
                for _ in range(rounds):
                    before = cpu_seconds(proc.pid)
                    requests, wrong, rps = wrk(port, headers, seconds, connections)
                    cpu = (cpu_seconds(proc.pid) - before) / max(requests, 1) * 1e6
                    runs.append(Row(mix, rps, cpu, requests, wrong))
                    total += requests
                rows.append(
                    Row(
                        mix,
                        statistics.median(r.rps for r in runs),
                        statistics.median(r.cpu_us for r in runs),
                        sum(r.requests for r in runs),
                        sum(r.non_502 for r in runs),
                    )
                )
                log(f"  gateway: {mix}: {rows[-1].rps:,.0f} requests/s")
        # After the server stopped (and flushed): what reached the store.
        with contextlib.closing(sqlite3.connect(store)) as db:
            stored = db.execute("SELECT count(*) FROM gracefail_failures").fetchone()[0]
    nav = rows[0]
    goals = [
        Goal(
            "gracefail serve: navigations",
            f"{nav.rps:,.0f} requests/s ({nav.cpu_us:.0f} us CPU/request)",
            "reported (one process; the app's error path for comparison is in End to end)",
            None,
        )
    ]
    lines = [
        f"One `gracefail serve` (uvicorn) with a SQLite store; wrk -t1 -c{connections} "
        f"-d{seconds:g}s, {rounds} runs per mix; headers as nginx's error_page sends them "
        "(X-Code: 502, X-Original-URI).",
        "",
        "| mix | requests/s (median) | server CPU us/request | requests | not 502 |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {r.mix} | {r.rps:,.0f} | {r.cpu_us:.0f} | {r.requests:,} | {r.non_502} |"
            for r in rows
        ],
        "",
        f"Failures in the store after shutdown: {stored:,}; answers wrk counted: {total:,} "
        "(requests in flight when a wrk run stopped are served and stored but not counted "
        "by wrk; a full queue would drop and count events rather than make a request wait).",
    ]
    return GatewayReport(goals, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    report = run(quick_flag(__doc__, "shorter runs", argv), log=log)
    print(goals_table(report.goals))
    print()
    print(report.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
