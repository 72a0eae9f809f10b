"""What `gracefail serve` sustains on loopback, driven by wrk as a proxy would drive it.

One `gracefail serve` process (uvicorn; uvloop and httptools when installed) with a
SQLite store in a temporary folder, asked like nginx's ``error_page`` asks it: the
original request's headers plus ``X-Code`` and ``X-Original-URI``. Three mixes, each
run ``rounds`` times: browser navigations (the HTML page), JSON clients
(problem+json) and the page's own probes. Reported: median requests/s, the server's
CPU per request, and whether every failure served reached the store or was counted
as dropped (the queue never blocks a request).

Side by side with the navigations, alternating run by run: nginx (one worker process)
serving the same page exported with ``gracefail export``, from disk, as its
``error_page`` for a 502 (``gzip_static``; ``brotli_static`` when ngx_brotli's module is
installed), driven by wrk the same way; and the bytes of one answer from each.

    python -m benchmarks.gateway [--quick]
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
from pathlib import Path

from benchmarks.apps import BROWSER
from benchmarks.e2e import CLK_TCK, Wire, _stat, on_the_wire, wrk_path
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
    """CPU seconds of ``pid`` and its descendants (nginx's workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)] = int(stat[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    total = 0
    for each in found:
        stat = _stat(each)
        if stat is not None:
            total += int(stat[11]) + int(stat[12])
    return total / CLK_TCK


NGINX_BROTLI = "/usr/lib/nginx/modules/ngx_http_brotli_static_module.so"


def nginx_path() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


@contextlib.contextmanager
def nginx_static(tmp: str) -> Iterator[tuple[int, subprocess.Popen[bytes], str]]:
    """nginx answering every request with the exported 502 page, as its error_page."""
    from gracefail import Config
    from gracefail.export import export_pages

    exe = nginx_path()
    assert exe is not None
    pages = os.path.join(tmp, "pages")
    export_pages(Config(secret=SECRET, recorders=[]), Path(pages))
    port = free_port()
    brotli = os.path.exists(NGINX_BROTLI)
    root = "user root;\n" if os.geteuid() == 0 else ""
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            (f"load_module {NGINX_BROTLI};\n" if brotli else "")
            + f"{root}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/nginx-error.log;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n"
            f" proxy_temp_path {tmp}/proxy;\n fastcgi_temp_path {tmp}/fcgi;\n"
            f" uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
            f" server {{\n  listen 127.0.0.1:{port};\n"
            "  location / { return 502; }\n"
            "  error_page 502 /_gracefail_static/502.html;\n"
            "  location ^~ /_gracefail_static/ {\n   internal;\n"
            f"   alias {pages}/;\n   include {pages}/csp.conf;\n"
            "   gzip_static on;\n   gzip_proxied any;\n   gzip_vary on;\n"
            + ("   brotli_static on;\n" if brotli else "")
            + "  }\n }\n}\n"
        )
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                with open(os.path.join(tmp, "nginx-error.log"), "rb") as f:
                    raise RuntimeError(f"nginx exited:\n{f.read()[-2000:]!r}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not listen in 30 s") from None
                time.sleep(0.05)
        yield port, proc, "gzip_static, brotli_static" if brotli else "gzip_static"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)


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
    static_runs: list[Row] = []
    navigation = next(iter(MIXES))
    wires: dict[str, Wire] = {}
    static_note = "nginx not installed: no side-by-side row"
    with tempfile.TemporaryDirectory(prefix="gracefail-gateway-bench-") as tmp:
        with contextlib.ExitStack() as stack:
            port, proc, store = stack.enter_context(serving(tmp))
            static = stack.enter_context(nginx_static(tmp)) if nginx_path() else None
            wires["gracefail serve"] = on_the_wire(port, "/", MIXES[navigation])
            if static is not None:
                static_note = static[2]
                wires["nginx, exported page"] = on_the_wire(static[0], "/shop/cart?step=2", NAV)
            total = 0
            for mix, headers in MIXES.items():
                runs = []
                for index in range(rounds):
                    targets = [("serve", port, proc.pid, headers)]
                    if static is not None and mix == navigation:
                        targets.append(("nginx", static[0], static[1].pid, NAV))
                        if index % 2:
                            targets.reverse()
                    for name, target, pid, sent in targets:
                        before = cpu_seconds(pid)
                        requests, wrong, rps = wrk(target, sent, seconds, connections)
                        cpu = (cpu_seconds(pid) - before) / max(requests, 1) * 1e6
                        if name == "nginx":
                            static_runs.append(Row("nginx", rps, cpu, requests, wrong))
                            continue
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
    if static_runs:
        static_rps = statistics.median(r.rps for r in static_runs)
        static_cpu = statistics.median(r.cpu_us for r in static_runs)
        served = wires["gracefail serve"]
        disk = wires["nginx, exported page"]
        goals.append(
            Goal(
                "gracefail serve vs nginx serving the exported page (navigations)",
                f"{nav.rps:,.0f} vs {static_rps:,.0f} requests/s ({nav.rps / static_rps:.2f}x); "
                f"CPU {nav.cpu_us:.0f} vs {static_cpu:.0f} us/request; bytes per answer "
                f"{served.total:,} ({served.coding}) vs {disk.total:,} ({disk.coding})",
                "reported side by side (one process each)",
                None,
            )
        )
        lines += [
            "",
            "Side by side, navigations, runs alternating: nginx (1 worker process) answering "
            "with the page `gracefail export` wrote, from disk, as its error_page for a 502 "
            f"({static_note}); the same wrk and the browser's headers.",
            "",
            "| server | requests/s (median) | CPU us/request | Content-Encoding | bytes per "
            "answer | body bytes |",
            "|---|---:|---:|---|---:|---:|",
            f"| gracefail serve | {nav.rps:,.0f} | {nav.cpu_us:.0f} | {served.coding} "
            f"| {served.total:,} | {served.body:,} |",
            f"| nginx, exported page | {static_rps:,.0f} | {static_cpu:.0f} | {disk.coding} "
            f"| {disk.total:,} | {disk.body:,} |",
        ]
    else:
        lines += ["", f"Side by side with nginx: skipped ({static_note})."]
    return GatewayReport(goals, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    report = run(quick_flag(__doc__, "shorter runs", argv), log=log)
    print(goals_table(report.goals))
    print()
    print(report.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
