"""End-to-end on loopback: uvicorn (httptools + uvloop) and gunicorn, driven by wrk;
and the time a fresh server process takes to its first answer.

Each comparison starts two servers on free 127.0.0.1 ports (the bare app and the
same app with gracefail), then runs bounded wrk runs against them in ABBA blocks
(bare, gracefail, gracefail, bare), three blocks. Reported: requests/s, the ratio of
each block with the load average when it began (so noise can be told from cost), and
the server's CPU time per request (utime + stime from /proc/PID/stat of the server and
its workers, read before and after each run). The error path also reports the bytes
one failure puts on the wire, encoded as the browser's Accept-Encoding allows and not.

Start-up: a fresh server process, bare or with gracefail, is spawned again and again;
the time from the spawn to its first 200 on ``/`` is paired with the bare app's of the
same round. A fresh interpreter times ``Renderer()``, ``Engine()`` and the first
failure's reply, each the first in its process.

Servers are stopped by PID.

    python -m benchmarks.e2e [--quick]

The servers serve :mod:`benchmarks.apps`'s apps (``asgi_server_app``, ``wsgi_server_app``),
the same the in-process rows call.
"""

from __future__ import annotations

import contextlib
import http.client
import json
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
        self.spawn(tmp)
        assert self.process is not None
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

    def spawn(self, tmp: str) -> None:
        """Start the process on a free port; do not wait for it."""
        self.port = free_port()
        self.log_path = os.path.join(tmp, f"{self.kind}-{self.app}-{self.port}.log")
        path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, GRACEFAIL_BENCH_APP=self.app, PYTHONPATH=path)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=log, env=env, cwd=ROOT
            )

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
    wire: bool = False  # also report the bytes of one answer


PAIRS = [
    Pair(
        "end-to-end happy path, uvicorn (Starlette hello)", "uvicorn",
        ("starlette-bare", "/", 200, "text/plain"),
        ("starlette-gracefail", "/", 200, "text/plain"),
        0.98, "requests/s >= 0.98x bare",
    ),
    Pair(
        "end-to-end happy path, gunicorn (Flask hello)", "gunicorn",
        ("flask-bare", "/", 200, "text/html"),
        ("flask-gracefail", "/", 200, "text/html"),
        0.98, "requests/s >= 0.98x bare",
    ),
    Pair(
        "end-to-end error path, uvicorn (HTML page vs bare 502)", "uvicorn",
        ("starlette-bare", "/bad/html", 502, "text/html"),
        ("starlette-gracefail", "/fail", 502, "text/html"),
        0.8, "requests/s >= 0.8x bare 502", wire=True,
    ),
]  # fmt: skip


@dataclass
class Block:
    """One ABBA block: its requests/s ratio and the 1-minute load average when it began."""

    ratio: float
    load: float


@dataclass
class Wire:
    """Bytes of one answer on the wire (status line, headers, body) and of its body."""

    total: int
    body: int
    coding: str


@dataclass
class PairResult:
    pair: Pair
    bare: list[Run] = field(default_factory=list)
    graceful: list[Run] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    wire: dict[str, Wire] = field(default_factory=dict)
    note: str = ""

    def median(self, runs: list[Run], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    @property
    def rps_ratio(self) -> float:
        return statistics.median(block.ratio for block in self.blocks)

    @property
    def spread(self) -> str:
        ratios = [block.ratio for block in self.blocks]
        values = ", ".join(f"{ratio:.3f}" for ratio in ratios)
        loads = ", ".join(f"{block.load:.2f}" for block in self.blocks)
        return f"{min(ratios):.3f}-{max(ratios):.3f} ({values}; load {loads})"

    @property
    def cpu_added(self) -> float:
        return statistics.median(
            g.cpu_us - b.cpu_us for g, b in zip(self.graceful, self.bare, strict=True)
        )


def on_the_wire(port: int, path: str, headers: dict[str, str]) -> Wire:
    """One request with ``headers``; the size of the whole answer as it came."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name != "host"]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-encoding:\s*(\S+)", head)
    return Wire(len(data), len(body), found.group(1).decode() if found else "none")


def measure(pair: Pair, blocks: int, seconds: float, connections: int) -> PairResult:
    result = PairResult(pair)
    with servers((pair.kind, pair.bare[0]), (pair.kind, pair.graceful[0])) as (bare, graceful):
        result.note = bare.note.strip()
        sizes = []
        for server, (_, path, status, ctype) in ((bare, pair.bare), (graceful, pair.graceful)):
            sizes.append(check(server, path, status, ctype))
            wrk(server, path, 1.0, connections)  # warm-up
        if pair.wire:
            result.wire = {
                "bare": on_the_wire(bare.port, pair.bare[1], BROWSER_HEADERS),
                "gracefail": on_the_wire(graceful.port, pair.graceful[1], BROWSER_HEADERS),
                "gracefail, unencoded": on_the_wire(
                    graceful.port,
                    pair.graceful[1],
                    {**BROWSER_HEADERS, "accept-encoding": "identity"},
                ),
            }
        result.note = "; ".join(
            filter(None, [result.note, f"response bodies {sizes[0]:,} and {sizes[1]:,} bytes"])
        )
        for _ in range(blocks):
            load = os.getloadavg()[0]
            got: dict[str, list[Run]] = {"bare": [], "gracefail": []}
            order = [
                (bare, pair.bare, "bare"),
                (graceful, pair.graceful, "gracefail"),
                (graceful, pair.graceful, "gracefail"),
                (bare, pair.bare, "bare"),
            ]
            for server, (_, path, status, _ct), name in order:
                run = wrk(server, path, seconds, connections)
                expected_non_2xx = status >= 400
                if (run.non_2xx > 0) != expected_non_2xx or run.errors:
                    raise RuntimeError(
                        f"{server.kind} {server.app} {path}: {run.non_2xx} non-2xx of "
                        f"{run.requests}; {run.errors}\n{server.tail()}"
                    )
                got[name].append(run)
            result.bare += got["bare"]
            result.graceful += got["gracefail"]
            ratio = sum(r.rps for r in got["gracefail"]) / sum(r.rps for r in got["bare"])
            result.blocks.append(Block(ratio, load))
    return result


# -- start-up ------------------------------------------------------------------------------


STARTS = [
    ("Starlette under uvicorn", "uvicorn", "starlette-bare", "starlette-gracefail"),
    ("Flask under gunicorn", "gunicorn", "flask-bare", "flask-gracefail"),
]
# A fresh interpreter: import, then each step the first of its kind in the process.
FIRSTS = """
import json, time
began = time.perf_counter()
from gracefail import Config
from gracefail.classify import Failure
from gracefail.core import Engine, RequestView
from gracefail.render import Renderer
imported = time.perf_counter()
Renderer(Config(secret="s" * 32, recorders=[]))
rendered = time.perf_counter()
engine = Engine(Config(secret="s" * 32, recorders=[]))
built = time.perf_counter()
headers = json.loads(HEADERS)
engine.respond(Failure(502, "connection"), RequestView("GET", "/a", "", headers))
first = time.perf_counter()
engine.respond(Failure(502, "connection"), RequestView("GET", "/b", "", headers))
second = time.perf_counter()
print(json.dumps({
    "import gracefail": imported - began, "Renderer()": rendered - imported,
    "Engine()": built - rendered, "first failure": first - built,
    "second failure": second - first,
}))
"""


def first_response(kind: str, app: str, tmp: str, timeout: float = 60.0) -> float:
    """Seconds from spawning a fresh server to its first 200 on ``/``."""
    server = Server(kind, app)
    began = time.perf_counter()
    server.spawn(tmp)
    try:
        deadline = began + timeout
        while time.perf_counter() < deadline:
            assert server.process is not None
            if server.process.poll() is not None:
                raise RuntimeError(f"{kind} {app} exited:\n{server.tail()}")
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
            try:
                connection.request("GET", "/", headers=BROWSER_HEADERS)
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    return time.perf_counter() - began
            except OSError:
                time.sleep(0.002)
            finally:
                connection.close()
        raise RuntimeError(f"{kind} {app}: no 200 in {timeout:g} s:\n{server.tail()}")
    finally:
        server.stop()


@dataclass
class StartUp:
    title: str
    bare: list[float]
    graceful: list[float]

    @property
    def added(self) -> float:
        return statistics.median(g - b for g, b in zip(self.graceful, self.bare, strict=True))


@dataclass
class StartUpReport:
    starts: list[StartUp]
    firsts: dict[str, float]  # step -> median seconds
    goals: list[Goal]
    markdown: str


def first_steps(runs: int) -> dict[str, float]:
    """Median seconds of each step of :data:`FIRSTS`, each run in a fresh interpreter."""
    code = f"HEADERS = {json.dumps(json.dumps(BROWSER_HEADERS))}\n{FIRSTS}"
    found: dict[str, list[float]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [PYTHON, "-c", code], capture_output=True, text=True, check=True, timeout=120, cwd=ROOT
        )
        for step, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
            found.setdefault(step, []).append(seconds)
    return {step: statistics.median(values) for step, values in found.items()}


def start_up(quick: bool = False, log: Callable[[str], None] = log) -> StartUpReport:
    rounds = 3 if quick else 7
    starts = []
    with tempfile.TemporaryDirectory(prefix="gracefail-bench-start-") as tmp:
        for title, kind, bare_app, graceful_app in STARTS:
            result = StartUp(title, [], [])
            for index in range(rounds):
                order = [(bare_app, result.bare), (graceful_app, result.graceful)]
                if index % 2:
                    order.reverse()
                for app, times in order:
                    times.append(first_response(kind, app, tmp))
            starts.append(result)
            log(f"  start-up: {title}: {result.added * 1000:+.0f} ms")
    firsts = first_steps(rounds)
    ms = {step: seconds * 1000 for step, seconds in firsts.items()}
    measured = "; ".join(
        f"{s.title} {s.added * 1000:+,.0f} ms ({statistics.median(s.graceful) * 1000:,.0f} vs "
        f"{statistics.median(s.bare) * 1000:,.0f} ms)"
        for s in starts
    )
    goals = [
        Goal(
            "start-up: Renderer() (first in a process)",
            f"{ms['Renderer()']:.1f} ms; Engine() {ms['Engine()']:,.0f} ms; the first failure's "
            f"reply {ms['first failure']:,.0f} ms, the second "
            f"{ms['second failure'] * 1000:,.0f} us",
            "page variants rendered at first use: Renderer() <= 5 ms",
            ms["Renderer()"] <= 5.0,
        ),
        Goal(
            "start-up: time to the first response of a fresh process",
            measured,
            "added <= 50 ms over the bare app (paired starts)",
            all(s.added <= 0.050 for s in starts),
        ),
    ]
    lines = [
        f"Each start spawns a fresh server process (as in the comparisons above: one uvicorn "
        f"process; gunicorn with one gthread worker) and times it from the spawn to its first "
        f"200 on `/` (a browser's request, retried every 2 ms while the connection is "
        f"refused); bare and gracefail alternate, {rounds} starts each. Added: the median of "
        "the differences of the same round.",
        "",
        "| app | bare, median ms | gracefail, median ms | added ms (median of pairs) "
        "| all, bare / gracefail (ms) |",
        "|---|---:|---:|---:|---|",
    ]
    for s in starts:
        values = ", ".join(
            f"{b * 1000:.0f}/{g * 1000:.0f}" for b, g in zip(s.bare, s.graceful, strict=True)
        )
        lines.append(
            f"| {s.title} | {statistics.median(s.bare) * 1000:,.0f} "
            f"| {statistics.median(s.graceful) * 1000:,.0f} | {s.added * 1000:+,.0f} | {values} |"
        )
    lines += [
        "",
        f"Each step the first in a fresh interpreter (median of {rounds}): "
        + "; ".join(
            f"{step} {value * 1000:,.0f} us" if value < 1 else f"{step} {value:,.1f} ms"
            for step, value in ms.items()
        )
        + ". Under Starlette the middleware stack, and with it `Engine()`, is built at the "
        "first request; Flask's extension builds it when the app is created.",
    ]
    return StartUpReport(starts, firsts, goals, "\n".join(lines))


@dataclass
class E2EReport:
    results: list[PairResult]
    goals: list[Goal]
    markdown: str
    skipped: str = ""


def _wire_text(wire: dict[str, Wire]) -> str:
    bare, encoded, plain = wire["bare"], wire["gracefail"], wire["gracefail, unencoded"]
    return (
        f"bytes per failure {encoded.total:,} ({encoded.coding}; {plain.total:,} unencoded) "
        f"vs bare 502 {bare.total:,}"
    )


def run(quick: bool = False, log: Callable[[str], None] = log) -> E2EReport:
    starting = start_up(quick, log)
    if wrk_path() is None:
        text = "wrk is not installed (make bench installs it as root): end-to-end rows skipped."
        goals = [Goal(p.title, "pending: no wrk", p.goal_text, None) for p in PAIRS]
        return E2EReport(
            [], goals + starting.goals, text + "\n\n" + starting.markdown, skipped=text
        )
    blocks, seconds, connections = (1, 2.0, 16) if quick else (3, 5.0, 16)
    results = []
    for pair in PAIRS:
        began = time.perf_counter()
        results.append(measure(pair, blocks, seconds, connections))
        log(f"  e2e: {pair.title} ({time.perf_counter() - began:.0f} s)")
    goals = []
    for r in results:
        extra = f"; {_wire_text(r.wire)}" if r.wire else ""
        goals.append(
            Goal(
                r.pair.title,
                f"{r.rps_ratio:.3f}x, runs {r.spread} ({r.median(r.graceful, 'rps'):,.0f} vs "
                f"{r.median(r.bare, 'rps'):,.0f} requests/s; server CPU "
                f"{r.cpu_added:+.1f} us/request){extra}",
                r.pair.goal_text,
                r.rps_ratio >= r.pair.goal,
            )
        )
    lines = [
        f"wrk -t1 -c{connections} -d{seconds:g}s; {blocks} run{'s' * (blocks != 1)} per "
        "comparison, each an ABBA "
        "block (bare, gracefail, gracefail, bare) whose ratio is gracefail's requests/s over "
        "bare's; the ratio reported is their median, with each run's and the 1-minute load "
        "average when it began. Browser request headers (Accept-Encoding: gzip, deflate, br); "
        "one uvicorn process (httptools, uvloop) or one gunicorn gthread worker (1 thread); "
        "server CPU = utime + stime of the server and its workers.",
        "",
        "| comparison | server | requests/s (median) | server CPU us/request "
        "| ratio (requests/s), runs (load) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        for label, runs in (("bare", r.bare), ("gracefail", r.graceful)):
            ratio = f"{r.rps_ratio:.3f}: {r.spread}" if label == "gracefail" else "1.000"
            lines.append(
                f"| {r.pair.title} | {label} | {r.median(runs, 'rps'):,.0f} "
                f"| {r.median(runs, 'cpu_us'):.1f} | {ratio} |"
            )
    for r in results:
        if r.wire:
            lines += [
                "",
                f"{r.pair.title}, one answer on the wire (status line, headers and body):",
                "",
                "| answer | Content-Encoding | bytes | body bytes |",
                "|---|---|---:|---:|",
                *[
                    f"| {name} | {w.coding} | {w.total:,} | {w.body:,} |"
                    for name, w in r.wire.items()
                ],
            ]
    notes = [f"- {r.pair.title}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", *notes]
    lines += ["", "### Start-up", "", starting.markdown]
    return E2EReport(results, goals + starting.goals, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    report = run(quick_flag(__doc__, "shorter runs", argv), log=log)
    print(goals_table(report.goals))
    print()
    print(report.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
