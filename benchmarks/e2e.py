"""End-to-end on loopback: uvicorn (httptools + uvloop) and gunicorn, driven by wrk.

Each comparison starts two servers on free 127.0.0.1 ports (the bare app and the
same app with gracefail), then runs bounded wrk runs against them in ABBA order
(bare, gracefail, gracefail, bare, ...). Reported: requests/s, and the server's CPU
time per request (utime + stime from /proc/PID/stat of the server and its workers,
read before and after each run). Servers are stopped by PID.

    python -m benchmarks.e2e [--quick]

The servers serve :mod:`benchmarks.apps`'s apps (``asgi_server_app``, ``wsgi_server_app``),
the same the in-process rows call.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from benchmarks.apps import BROWSER
from benchmarks.harness import Goal, available, free_port, goals_table, log, quick_flag

# The servers import benchmarks.apps from the checkout's root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
BROWSER_HEADERS = {k: v for k, v in BROWSER.items() if k != "host"}


# -- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str  # uvicorn | gunicorn
    app: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    note: str = ""

    def command(self) -> list[str]:
        if self.kind == "uvicorn":
            extra = []
            if available("uvloop"):
                extra += ["--loop", "uvloop"]
            else:
                self.note = "uvloop missing: asyncio loop"
            if available("httptools"):
                extra += ["--http", "httptools"]
            else:
                self.note += " httptools missing: h11"
            return [
                PYTHON, "-m", "uvicorn", "benchmarks.apps:asgi_server_app", "--factory",
                "--app-dir", ROOT,
                "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                "--log-level", "warning", "--lifespan", "off", *extra,
            ]  # fmt: skip
        return [
            PYTHON, "-m", "gunicorn", "--chdir", ROOT, "-b", f"127.0.0.1:{self.port}",
            "-w", "1", "-k", "gthread", "--threads", "1", "--keep-alive", "30",
            "--graceful-timeout", "2", "--log-level", "warning",
            "benchmarks.apps:wsgi_server_app()",
        ]  # fmt: skip

    def start(self, tmp: str) -> None:
        self.port = free_port()
        self.log_path = os.path.join(tmp, f"{self.kind}-{self.app}-{self.port}.log")
        path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, GRACEFAIL_BENCH_APP=self.app, PYTHONPATH=path)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=log, env=env, cwd=ROOT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} {self.app} exited:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} {self.app} did not listen in 30 s:\n{self.tail()}")

    def tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                return log.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The server process and its descendants (gunicorn's workers)."""
        assert self.process is not None
        root = self.process.pid
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _stat(int(entry))
                if stat is not None:
                    parents[int(entry)] = int(stat[1])
        found, frontier = [root], [root]
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += children
            frontier = children
        return found

    def cpu_seconds(self) -> float:
        ticks = 0
        for pid in self.pids():
            stat = _stat(pid)
            if stat is not None:
                ticks += int(stat[11]) + int(stat[12])  # utime, stime
        return ticks / CLK_TCK

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            for pid in reversed(self.pids()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait(timeout=5)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1])."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


@contextlib.contextmanager
def servers(*specs: tuple[str, str]) -> Iterator[list[Server]]:
    started: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gracefail-bench-") as tmp:
        try:
            for kind, app in specs:
                server = Server(kind, app)
                started.append(server)
                server.start(tmp)
            yield started
        finally:
            for server in started:
                server.stop()


# -- wrk -----------------------------------------------------------------------------------


def wrk_path() -> str | None:
    return shutil.which("wrk") or ("/usr/bin/wrk" if os.path.exists("/usr/bin/wrk") else None)


@dataclass
class Run:
    rps: float
    requests: int
    cpu_us: float  # server CPU per request
    non_2xx: int
    errors: str


def wrk(server: Server, path: str, seconds: float, connections: int) -> Run:
    exe = wrk_path()
    assert exe is not None
    headers: list[str] = []
    for name, value in BROWSER_HEADERS.items():
        headers += ["-H", f"{name}: {value}"]
    before = server.cpu_seconds()
    done = subprocess.run(
        [
            exe,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "5s",
            *headers,
            f"http://127.0.0.1:{server.port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    after = server.cpu_seconds()
    out = done.stdout
    total = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not total or not rps:
        raise RuntimeError(f"could not read wrk's output:\n{out}\n{done.stderr}")
    requests = int(total.group(1))
    non = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return Run(
        rps=float(rps.group(1)),
        requests=requests,
        cpu_us=(after - before) / max(requests, 1) * 1e6,
        non_2xx=int(non.group(1)) if non else 0,
        errors=errors.group(0) if errors else "",
    )


def check(server: Server, path: str, status: int, content_type: str) -> int:
    """One request as a browser; the body's size. Raises if the answer is not as expected."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", headers=BROWSER_HEADERS
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            got, ctype, body = (
                response.status,
                response.headers.get("content-type", ""),
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        got, ctype, body = exc.code, exc.headers.get("content-type", ""), exc.read()
    if got != status or not ctype.startswith(content_type):
        raise RuntimeError(
            f"{server.kind} {server.app} {path}: expected {status} {content_type}, "
            f"got {got} {ctype}"
        )
    return len(body)


# -- the comparisons -----------------------------------------------------------------------


@dataclass
class Pair:
    title: str
    kind: str
    bare: tuple[str, str, int, str]  # app, path, status, content type
    graceful: tuple[str, str, int, str]
    goal: float  # requests/s ratio
    goal_text: str


PAIRS = [
    Pair(
        "end-to-end happy path, uvicorn (Starlette hello)", "uvicorn",
        ("starlette-bare", "/", 200, "text/plain"),
        ("starlette-gracefail", "/", 200, "text/plain"),
        0.97, "requests/s >= 0.97x bare",
    ),
    Pair(
        "end-to-end happy path, gunicorn (Flask hello)", "gunicorn",
        ("flask-bare", "/", 200, "text/html"),
        ("flask-gracefail", "/", 200, "text/html"),
        0.97, "requests/s >= 0.97x bare",
    ),
    Pair(
        "end-to-end error path, uvicorn (HTML page vs bare 502)", "uvicorn",
        ("starlette-bare", "/bad/html", 502, "text/html"),
        ("starlette-gracefail", "/fail", 502, "text/html"),
        0.9, "requests/s >= 0.9x bare 502",
    ),
]  # fmt: skip


@dataclass
class PairResult:
    pair: Pair
    bare: list[Run] = field(default_factory=list)
    graceful: list[Run] = field(default_factory=list)
    note: str = ""

    def median(self, runs: list[Run], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    @property
    def rps_ratio(self) -> float:
        return statistics.median(
            g.rps / b.rps for g, b in zip(self.graceful, self.bare, strict=True)
        )

    @property
    def cpu_added(self) -> float:
        return statistics.median(
            g.cpu_us - b.cpu_us for g, b in zip(self.graceful, self.bare, strict=True)
        )


def measure(pair: Pair, rounds: int, seconds: float, connections: int) -> PairResult:
    result = PairResult(pair)
    with servers((pair.kind, pair.bare[0]), (pair.kind, pair.graceful[0])) as (bare, graceful):
        result.note = bare.note.strip()
        sizes = []
        for server, (_, path, status, ctype) in ((bare, pair.bare), (graceful, pair.graceful)):
            sizes.append(check(server, path, status, ctype))
            wrk(server, path, 1.0, connections)  # warm-up
        result.note = "; ".join(
            filter(None, [result.note, f"response bodies {sizes[0]:,} and {sizes[1]:,} bytes"])
        )
        for index in range(rounds):
            order = [(bare, pair.bare, result.bare), (graceful, pair.graceful, result.graceful)]
            if index % 2:
                order.reverse()
            for server, (_, path, status, _ct), runs in order:
                run = wrk(server, path, seconds, connections)
                expected_non_2xx = status >= 400
                if (run.non_2xx > 0) != expected_non_2xx or run.errors:
                    raise RuntimeError(
                        f"{server.kind} {server.app} {path}: {run.non_2xx} non-2xx of "
                        f"{run.requests}; {run.errors}\n{server.tail()}"
                    )
                runs.append(run)
    return result


@dataclass
class E2EReport:
    results: list[PairResult]
    goals: list[Goal]
    markdown: str
    skipped: str = ""


def run(quick: bool = False, log: Callable[[str], None] = log) -> E2EReport:
    if wrk_path() is None:
        text = "wrk is not installed (make bench installs it as root): end-to-end rows skipped."
        goals = [Goal(p.title, "pending: no wrk", p.goal_text, None) for p in PAIRS]
        return E2EReport([], goals, text, skipped=text)
    rounds, seconds, connections = (2, 2.0, 16) if quick else (6, 5.0, 16)
    results = []
    for pair in PAIRS:
        began = time.perf_counter()
        results.append(measure(pair, rounds, seconds, connections))
        log(f"  e2e: {pair.title} ({time.perf_counter() - began:.0f} s)")
    goals = []
    for r in results:
        goals.append(
            Goal(
                r.pair.title,
                f"{r.rps_ratio:.3f}x ({r.median(r.graceful, 'rps'):,.0f} vs "
                f"{r.median(r.bare, 'rps'):,.0f} requests/s; server CPU "
                f"{r.cpu_added:+.1f} us/request)",
                r.pair.goal_text,
                r.rps_ratio >= r.pair.goal,
            )
        )
    lines = [
        f"wrk -t1 -c{connections} -d{seconds:g}s, {rounds} runs per server in ABBA order, "
        "browser request headers; one uvicorn process (httptools, uvloop) or one gunicorn "
        "gthread worker (1 thread); server CPU = utime + stime of the server and its workers.",
        "",
        "| comparison | server | requests/s (median) | server CPU us/request "
        "| ratio (requests/s) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        for label, runs in (("bare", r.bare), ("gracefail", r.graceful)):
            ratio = f"{r.rps_ratio:.3f}" if label == "gracefail" else "1.000"
            lines.append(
                f"| {r.pair.title} | {label} | {r.median(runs, 'rps'):,.0f} "
                f"| {r.median(runs, 'cpu_us'):.1f} | {ratio} |"
            )
    notes = [f"- {r.pair.title}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", *notes]
    return E2EReport(results, goals, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    report = run(quick_flag(__doc__, "shorter runs", argv), log=log)
    print(goals_table(report.goals))
    print()
    print(report.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
