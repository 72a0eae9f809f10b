"""Overload: goodput and latency past capacity, with and without shedding (issue 17).

One server process behind a real nginx (``proxy_read_timeout 2s``, and
``proxy_set_header X-Request-Start "t=${msec}"``), on loopback:

* **uvicorn**, one worker, a raw ASGI app whose handler runs ``BURN_MS`` of CPU in the
  thread pool (``anyio.to_thread.run_sync``, as Starlette/FastAPI run a ``def``
  endpoint): concurrency inside the process, so the in-flight limit has something to
  limit. Shedding: ``Overload(adaptive=True, ...)`` (the gradient controller).
* **gunicorn**, one sync worker, a WSGI app burning the same CPU: one request at a time
  from the listen backlog, where the in-flight count cannot see the queue. Shedding:
  ``Overload(max_queue_ms=...)`` on nginx's stamp, trusted from ``127.0.0.1``.

Both apps are wrapped in gracefail's middleware in both halves ("without" has no
``overload``), so the difference is the shedding alone.

The load is **open loop**: requests are sent at a constant arrival rate whatever the
server answers (a new connection per request, as distinct users), at 0.5x, 1x, 2x and
4x the capacity measured first (a closed loop of 8 connections through nginx). Each load
step gets a freshly started server and nginx, so the backlog a step leaves behind does
not spill into the next. A request's latency counts from its scheduled send time
(no coordinated omission). Reported per step: goodput (200s answered while the load
ran, per second: the backlog a step leaves behind is not counted), p50/p99 of all the
200s, and the share of requests that got gracefail's 503 page, nginx's 504 (or 502), or
nothing (client timeout, reset).

    python -m benchmarks.overload [--quick] [--only without|with] [--plot FILE] [--docs]

"With" needs ``Config.overload`` (phase 2 of issue 17 wires it into the adapters); until
then run ``--only without``. ``--plot`` writes goodput and p99 against offered load
(matplotlib); ``--docs`` writes the tables and the plot into docs/overload.md (between
its ``overload-benchmark`` markers) and docs/overload-benchmark.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import process_family

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
NGINX = "/usr/sbin/nginx"
SECRET = "overload-benchmark-secret-not-for-production"
ENV_KEY = "GRACEFAIL_OVERLOAD_BENCH"
DOC = ROOT / "docs" / "overload.md"
DOC_PLOT = ROOT / "docs" / "overload-benchmark.png"
MARK_START = "<!-- overload-benchmark:start -->"
MARK_END = "<!-- overload-benchmark:end -->"

BURN_MS = 5.0  # CPU each request costs the app
PROXY_TIMEOUT_S = 2  # nginx proxy_read_timeout (and connect/send)
CLIENT_TIMEOUT_S = PROXY_TIMEOUT_S + 3.0  # past it a request counts as "no answer"
LOADS = (0.5, 1.0, 2.0, 4.0)
QUICK_LOADS = (2.0,)  # the goal's load
STEP_S, QUICK_STEP_S = 6.0, 1.5  # the load's duration at each step
THREADS = 40  # anyio's default thread pool (what a Starlette def endpoint runs in)

# The shedding each server gets in the "with" half. uvicorn: the adaptive limit, its
# floor 1 (one CPU-bound process: minRTT is measured with one request in flight), its
# ceiling the thread pool (admitting more only queues in the pool), and a queue-time
# backstop for the wait before admission (event loop, GIL) that no in-flight count sees;
# a budget near the loop's own lag (10 ms) shed every request at 4x in a trial run.
# gunicorn sync: the queue time alone, 2 requests' worth of CPU.
SHEDDING: dict[str, dict[str, Any]] = {
    "uvicorn": {"adaptive": True, "min_limit": 1, "max_concurrency": THREADS, "max_queue_ms": 250},
    "gunicorn": {"max_queue_ms": 2 * BURN_MS},
}
NAVIGATION = (
    b"GET /work HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n"
    b"Sec-Fetch-Mode: navigate\r\nUser-Agent: overload-bench\r\nConnection: close\r\n\r\n"
)


# -- the apps (run inside the servers) ---------------------------------------------------------


def burn(ms: float = BURN_MS) -> None:
    """Spend ``ms`` of this thread's CPU time (not wall time: a thread that waits for the
    GIL is not burning)."""
    end = time.thread_time() + ms / 1000.0
    while time.thread_time() < end:
        pass


def _options() -> dict[str, Any]:
    """The middleware's options for this server: a fixed secret, no recorder, and the
    ``overload`` of the "with" half."""
    spec = json.loads(os.environ.get(ENV_KEY, "{}"))
    options: dict[str, Any] = {"secret": SECRET, "recorders": []}
    if spec.get("overload") is not None:
        require_overload_field()
        from gracefail.overload import Overload

        options["overload"] = Overload(**spec["overload"])
        options["trusted_proxies"] = ["127.0.0.1"]
    return options


def asgi_app() -> Any:
    """For ``uvicorn --factory``: the CPU-burning ASGI app inside gracefail."""
    import anyio.to_thread

    from gracefail.asgi import GracefailMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await anyio.to_thread.run_sync(burn)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok\n"})

    return GracefailMiddleware(app, **_options())


def wsgi_app() -> Any:
    """For gunicorn (``benchmarks.overload:wsgi_app()``): the same over WSGI."""
    from gracefail.wsgi import GracefailMiddleware

    def app(environ: Any, start_response: Any) -> list[bytes]:
        burn()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]

    return GracefailMiddleware(app, **_options())


def require_overload_field() -> None:
    """Fail, saying why, while ``gracefail.Config`` cannot take ``overload`` yet."""
    from gracefail import Config

    if "overload" not in {f.name for f in dataclasses.fields(Config)}:
        raise SystemExit(
            "benchmarks.overload: gracefail.Config has no 'overload' field yet, so the "
            "'with shedding' half cannot run: the adapters are wired to gracefail.overload "
            "in phase 2 of issue 17. Run `python -m benchmarks.overload --only without` "
            "meanwhile."
        )


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, logfile: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} in 30 s")


def _stop(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM by PID, then SIGKILL the process and its children (gunicorn's worker)."""
    if proc.poll() is not None:
        return
    family = process_family(proc.pid)
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        for pid in reversed(family):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)
    for pid in family[1:]:  # a worker whose master exited first
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _server_command(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [PYTHON, "-m", "uvicorn", "benchmarks.overload:asgi_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                "--log-level", "warning", "--lifespan", "off", "--backlog", "4096",
                "--timeout-graceful-shutdown", "1"]  # fmt: skip
    return [PYTHON, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "sync",
            "--backlog", "4096", "--timeout", "60", "--graceful-timeout", "1",
            "--log-level", "warning", "benchmarks.overload:wsgi_app()"]  # fmt: skip


def nginx_conf(tmp: Path, listen: int, upstream: int) -> Path:
    """nginx in front of ``upstream``: short timeouts, the queue stamp, no retries."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\nworker_rlimit_nofile 20000;\n"
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-error.log crit;\n"
        "events { worker_connections 16384; }\n"
        "http {\n access_log off;\n"
        f" client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n"
        f" fastcgi_temp_path {tmp}/fcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n"
        f" scgi_temp_path {tmp}/scgi;\n"
        " server {\n"
        f"  listen 127.0.0.1:{listen} backlog=4096;\n"
        "  location / {\n"
        f"   proxy_pass http://127.0.0.1:{upstream};\n"
        f"   proxy_connect_timeout {PROXY_TIMEOUT_S}s;\n"
        f"   proxy_send_timeout {PROXY_TIMEOUT_S}s;\n"
        f"   proxy_read_timeout {PROXY_TIMEOUT_S}s;\n"
        "   proxy_next_upstream off;\n"
        '   proxy_set_header X-Request-Start "t=${msec}";\n'
        "   proxy_set_header X-Forwarded-For $remote_addr;\n"
        "  }\n }\n}\n"
    )
    return conf


@contextlib.contextmanager
def stack(kind: str, overload: dict[str, Any] | None) -> Iterator[int]:
    """The server (``kind``) with gracefail (``overload`` or none) behind a fresh nginx;
    yields nginx's port. Both are stopped by PID."""
    with tempfile.TemporaryDirectory(prefix="gracefail-overload-") as folder:
        tmp = Path(folder)
        app_port, proxy_port = free_port(), free_port()
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, ENV_KEY: json.dumps({"overload": overload}), "PYTHONPATH": path}
        app_log = tmp / f"{kind}.log"
        with open(app_log, "wb") as out:
            server = subprocess.Popen(
                _server_command(kind, app_port), cwd=ROOT, env=env, stdout=out, stderr=out
            )
        proxy: subprocess.Popen[bytes] | None = None
        try:
            _wait_listening(app_port, server, kind, app_log)
            conf = nginx_conf(tmp, proxy_port, app_port)
            proxy_log = tmp / "nginx.out"
            with open(proxy_log, "wb") as out:
                proxy = subprocess.Popen([NGINX, "-c", str(conf)], stdout=out, stderr=out)
            _wait_listening(proxy_port, proxy, "nginx", proxy_log)
            yield proxy_port
        finally:
            if proxy is not None:
                _stop(proxy)
            _stop(server)


# -- the load ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request: when it was due, how long it took from then, what came back."""

    due: float  # seconds after the step's start
    latency: float
    kind: str  # ok | page | proxy_504 | proxy_502 | other | no_answer
    lag: float = 0.0  # how late the generator sent it


def _classify(data: bytes) -> str:
    if not data.startswith(b"HTTP/1."):
        return "no_answer"
    status = data[9:12]
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    if status == b"200":
        return "ok"
    if status == b"503" and b"x-gracefail-incident" in head:
        return "page"
    if status == b"504":
        return "proxy_504"
    if status == b"502":
        return "proxy_502"
    return "other"


async def _request(port: int, due: float, start: float, request: bytes = NAVIGATION) -> Outcome:
    loop = asyncio.get_running_loop()
    lag = loop.time() - due
    writer = None
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            data = await reader.read(-1)
        kind = _classify(data)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        kind = "no_answer"
    finally:
        if writer is not None:
            writer.close()
    return Outcome(due - start, loop.time() - due, kind, lag)


async def open_loop(port: int, rate: float, seconds: float) -> list[Outcome]:
    """Send ``rate`` requests per second for ``seconds``, each on its own schedule,
    whatever the answers; then wait for every answer (at most CLIENT_TIMEOUT_S)."""
    loop = asyncio.get_running_loop()
    total = round(rate * seconds)
    start = loop.time() + 0.05
    tasks = []
    for index in range(total):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_request(port, due, start)))
    return list(await asyncio.gather(*tasks))


async def closed_loop(port: int, connections: int, seconds: float) -> tuple[list[Outcome], float]:
    """``connections`` clients each sending its next request when the last is answered."""
    loop = asyncio.get_running_loop()
    outcomes: list[Outcome] = []
    start = loop.time()
    stop_at = start + seconds

    async def client() -> None:
        while loop.time() < stop_at:
            outcomes.append(await _request(port, loop.time(), start))

    await asyncio.gather(*(client() for _ in range(connections)))
    return outcomes, loop.time() - start


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


@dataclass
class Capacity:
    kind: str
    rate: float  # 200s per second, closed loop through nginx
    p50_ms: float  # unloaded: one request at a time
    p99_ms: float


@dataclass
class Step:
    kind: str
    shedding: bool
    load: float  # times capacity
    rate: float  # offered requests per second
    seconds: float
    counts: Counter[str]
    ok_in_window: int  # 200s answered before the last request was sent
    ok_latencies: list[float] = field(repr=False)
    page_latencies: list[float] = field(repr=False)
    lag_p99_ms: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def goodput(self) -> float:
        """200s answered while the load ran, per second: the backlog a step leaves is
        not counted (the server would serve it while the next users queue)."""
        return self.ok_in_window / self.seconds

    def share(self, *kinds: str) -> float:
        return sum(self.counts[k] for k in kinds) / self.total if self.total else 0.0

    def ms(self, values: list[float], share: float) -> float | None:
        value = percentile(values, share)
        return None if value is None else value * 1000.0


def measure_capacity(kind: str, seconds: float) -> Capacity:
    with stack(kind, None) as port:
        asyncio.run(closed_loop(port, 2, 0.5))  # warm up: imports, first page render
        single, _ = asyncio.run(closed_loop(port, 1, seconds))
        busy, elapsed = asyncio.run(closed_loop(port, 8, seconds))
    ok = [o.latency for o in single if o.kind == "ok"]
    rate = sum(o.kind == "ok" for o in busy) / elapsed
    if not ok or not rate:
        seen = Counter(o.kind for o in single + busy)
        raise RuntimeError(f"{kind} answered no 200 while its capacity was measured: {seen}")
    return Capacity(kind, rate, _ms(percentile(ok, 0.5)), _ms(percentile(ok, 0.99)))


def _ms(value: float | None) -> float:
    return float("nan") if value is None else value * 1000.0


def run_step(kind: str, shedding: bool, load: float, capacity: Capacity, seconds: float) -> Step:
    rate = load * capacity.rate
    with stack(kind, SHEDDING[kind] if shedding else None) as port:
        asyncio.run(closed_loop(port, 2, 0.3))  # warm up
        outcomes = asyncio.run(open_loop(port, rate, seconds))
    return Step(
        kind=kind,
        shedding=shedding,
        load=load,
        rate=rate,
        seconds=seconds,
        counts=Counter(o.kind for o in outcomes),
        ok_in_window=sum(o.kind == "ok" and o.due + o.latency <= seconds for o in outcomes),
        ok_latencies=[o.latency for o in outcomes if o.kind == "ok"],
        page_latencies=[o.latency for o in outcomes if o.kind == "page"],
        lag_p99_ms=_ms(percentile([o.lag for o in outcomes], 0.99)),
    )


# -- the report --------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None or value != value else f"{value:,.{digits}f}"


def capacity_table(capacities: Iterable[Capacity]) -> str:
    lines = [
        "| server | capacity (200/s, 8 clients) | unloaded p50 ms | unloaded p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for c in capacities:
        lines.append(f"| {c.kind} | {c.rate:,.0f} | {c.p50_ms:.1f} | {c.p99_ms:.1f} |")
    return "\n".join(lines)


def steps_table(steps: Iterable[Step], capacities: dict[str, Capacity]) -> str:
    lines = [
        "| server | shedding | load | offered/s | goodput/s (% of capacity) | p50 ms | p99 ms "
        "| 200 | 503 page | proxy 504 | other | no answer | generator lag p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        cap = capacities[s.kind].rate
        lines.append(
            f"| {s.kind} | {_shedding_name(s)} | {s.load:g}x | {s.rate:,.0f} "
            f"| {s.goodput:,.0f} ({100 * s.goodput / cap:.0f}%) "
            f"| {_fmt(s.ms(s.ok_latencies, 0.5), 1)} | {_fmt(s.ms(s.ok_latencies, 0.99), 1)} "
            f"| {100 * s.share('ok'):.0f}% | {100 * s.share('page'):.0f}% "
            f"| {100 * s.share('proxy_504'):.0f}% | {100 * s.share('proxy_502', 'other'):.0f}% "
            f"| {100 * s.share('no_answer'):.0f}% | {s.lag_p99_ms:.1f} |"
        )
    return "\n".join(lines)


def _shedding_name(step: Step) -> str:
    if not step.shedding:
        return "off"
    options = SHEDDING[step.kind]
    parts = ["adaptive limit"] if options.get("adaptive") else []
    if options.get("max_concurrency") and not options.get("adaptive"):
        parts.append(f"limit {options['max_concurrency']}")
    if options.get("max_queue_ms"):
        parts.append(f"queue > {options['max_queue_ms']:g} ms")
    return " + ".join(parts)


def goals(steps: list[Step], capacities: dict[str, Capacity]) -> list[str]:
    """The issue's goal at 2x capacity, per server: with shedding goodput >= 90% of
    capacity and admitted p99 <= 3x the unloaded p99; without, for contrast."""
    lines = ["| server | shedding | goodput at 2x | p99 at 2x | goal | met? |",
             "|---|---|---:|---:|---|---|"]  # fmt: skip
    for s in steps:
        if s.load != 2.0:
            continue
        cap = capacities[s.kind]
        p99 = s.ms(s.ok_latencies, 0.99)
        good = s.goodput >= 0.9 * cap.rate
        fast = p99 is not None and p99 <= 3 * cap.p99_ms
        goal = f">= {0.9 * cap.rate:,.0f}/s and <= {3 * cap.p99_ms:.0f} ms"
        verdict = ("met" if good and fast else "**not met**") if s.shedding else "(contrast)"
        lines.append(
            f"| {s.kind} | {_shedding_name(s)} | {s.goodput:,.0f}/s | {_fmt(p99, 1)} ms "
            f"| {goal} | {verdict} |"
        )
    return lines


def goal_rows(steps: list[Step], capacities: dict[str, Capacity]) -> list[Any]:
    """The goal table's rows of docs/performance.md (``benchmarks.run_all``): per server,
    shedding at 2x capacity, with the same run's "without" beside it."""
    from benchmarks.harness import Goal

    rows: list[Any] = []
    for s in steps:
        if s.load != 2.0 or not s.shedding:
            continue
        cap = capacities[s.kind]
        p99 = s.ms(s.ok_latencies, 0.99)
        off = next(
            (o for o in steps if o.kind == s.kind and o.load == 2.0 and not o.shedding), None
        )
        contrast = (
            f"; without: {off.goodput:,.0f}/s, p99 {_fmt(off.ms(off.ok_latencies, 0.99), 1)} ms, "
            f"{off.share('proxy_504', 'proxy_502'):.0%} proxy 5xx"
            if off is not None
            else ""
        )
        rows.append(
            Goal(
                f"overload at 2x capacity, {s.kind} ({_shedding_name(s)})",
                f"goodput {s.goodput:,.0f}/s ({s.goodput / cap.rate:.0%} of {cap.rate:,.0f}/s), "
                f"p99 {_fmt(p99, 1)} ms (unloaded {cap.p99_ms:.1f} ms), "
                f"{s.share('page'):.0%} busy page{contrast}",
                "goodput >= 90% of capacity and p99 <= 3x unloaded p99",
                s.goodput >= 0.9 * cap.rate and p99 is not None and p99 <= 3 * cap.p99_ms,
            )
        )
    return rows


def plot(steps: list[Step], capacities: dict[str, Capacity], out: Path) -> bool:
    """Goodput and admitted p99 against offered load, with and without; False if
    matplotlib is missing (``pip install -e .[bench]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("overload: matplotlib is not installed (pip install -e '.[bench]'); no plot")
        return False
    kinds = sorted({s.kind for s in steps}, key=lambda k: ("uvicorn", "gunicorn").index(k))
    figure, axes = plt.subplots(2, len(kinds), figsize=(5.5 * len(kinds), 7), squeeze=False)
    for column, kind in enumerate(kinds):
        cap = capacities[kind]
        top, bottom = axes[0][column], axes[1][column]
        for shedding, style in ((False, "o--"), (True, "s-")):
            rows = sorted((s for s in steps if s.kind == kind and s.shedding == shedding),
                          key=lambda s: s.load)  # fmt: skip
            if not rows:
                continue
            label = f"with: {_shedding_name(rows[0])}" if shedding else "without shedding"
            loads = [s.load for s in rows]
            top.plot(loads, [100 * s.goodput / cap.rate for s in rows], style, label=label)
            bottom.plot(loads, [s.ms(s.ok_latencies, 0.99) or float("nan") for s in rows],
                        style, label=label)  # fmt: skip
        top.axhline(90, color="grey", linewidth=0.8, linestyle=":")
        top.set_title(f"{kind}: goodput (capacity {cap.rate:,.0f}/s)")
        top.set_ylabel("% of capacity")
        top.set_ylim(0, 110)
        bottom.axhline(3 * cap.p99_ms, color="grey", linewidth=0.8, linestyle=":")
        bottom.axhline(PROXY_TIMEOUT_S * 1000, color="red", linewidth=0.8, linestyle=":")
        bottom.set_yscale("log")
        bottom.set_title(f"{kind}: p99 of the 200s (unloaded p99 {cap.p99_ms:.0f} ms)")
        bottom.set_ylabel("ms")
        for axis in (top, bottom):
            axis.set_xlabel("offered load (x capacity)")
            axis.set_xticks(LOADS)
            axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return True


def report(steps: list[Step], capacities: dict[str, Capacity]) -> str:
    return "\n\n".join(
        [
            capacity_table(capacities.values()),
            steps_table(steps, capacities),
            "\n".join(goals(steps, capacities)),
        ]
    )


def write_docs(text: str, plotted: bool) -> None:
    """Replace the section between the markers of docs/overload.md."""
    doc = DOC.read_text()
    if MARK_START not in doc or MARK_END not in doc:
        raise SystemExit(f"{DOC} has no {MARK_START} ... {MARK_END} section")
    head, rest = doc.split(MARK_START, 1)
    tail = rest.split(MARK_END, 1)[1]
    figure = f"\n\n![goodput and p99 against offered load]({DOC_PLOT.name})" if plotted else ""
    stamp = time.strftime("%Y-%m-%d")
    body = (
        f"\nMeasured {stamp} with `python -m benchmarks.overload` ({BURN_MS:g} ms of CPU per "
        f"request, nginx `proxy_read_timeout {PROXY_TIMEOUT_S}s`, {os.cpu_count()} CPUs shared "
        f"by the servers, nginx and the load generator).\n\n{text}{figure}\n"
    )
    DOC.write_text(head + MARK_START + body + MARK_END + tail)


# -- main --------------------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(
    quick: bool, halves: tuple[bool, ...], kinds: tuple[str, ...], progress: Callable[[str], None]
) -> tuple[list[Step], dict[str, Capacity]]:
    seconds = QUICK_STEP_S if quick else STEP_S
    loads = QUICK_LOADS if quick else LOADS
    capacities: dict[str, Capacity] = {}
    steps: list[Step] = []
    for kind in kinds:
        capacities[kind] = capacity = measure_capacity(kind, 1.5 if quick else 3.0)
        progress(f"overload: {kind} capacity {capacity.rate:,.0f}/s, unloaded p99 "
                 f"{capacity.p99_ms:.1f} ms")  # fmt: skip
        for shedding in halves:
            for load in loads:
                step = run_step(kind, shedding, load, capacity, seconds)
                progress(
                    f"overload: {kind} {_shedding_name(step)} {load:g}x: goodput "
                    f"{step.goodput:,.0f}/s, p99 {_fmt(step.ms(step.ok_latencies, 0.99), 1)} ms, "
                    f"{dict(step.counts)}"
                )
                steps.append(step)
    return steps, capacities


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1.5 s at 2x capacity only")
    parser.add_argument("--only", choices=("without", "with"), default=None,
                        help="run one half only (default: both)")  # fmt: skip
    parser.add_argument("--server", choices=("uvicorn", "gunicorn"), default=None,
                        help="one server only (default: both)")  # fmt: skip
    parser.add_argument("--plot", type=Path, default=None, help="write the plot (PNG) here")
    parser.add_argument("--docs", action="store_true",
                        help="write the tables and plot into docs/overload.md")  # fmt: skip
    args = parser.parse_args(argv)
    halves = {None: (False, True), "without": (False,), "with": (True,)}[args.only]
    if True in halves:
        require_overload_field()
    if not os.access(NGINX, os.X_OK):
        raise SystemExit(f"benchmarks.overload needs nginx at {NGINX} (apt-get install nginx)")
    _raise_fd_limit()
    kinds = (args.server,) if args.server else ("uvicorn", "gunicorn")
    began = time.monotonic()
    steps, capacities = run(args.quick, halves, kinds, log)
    text = report(steps, capacities)
    print(text)
    plotted = False
    if args.plot is not None or args.docs:
        plotted = plot(steps, capacities, args.plot or DOC_PLOT)
    if args.docs:
        write_docs(text, plotted)
    log(f"overload: done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
