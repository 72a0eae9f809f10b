"""How the benchmarks measure and report: drivers, paired rounds, medians, tables.

Nothing here knows gracefail or any app: :mod:`benchmarks.apps` builds the apps,
:mod:`benchmarks.inprocess` and :mod:`benchmarks.e2e` are the scenarios.

* Drivers call an app the way a server would, without a server: :class:`AsgiDriver`
  (``await app(scope, receive, send)``) and :func:`wsgi_runner` / :func:`wsgi_call`
  (PEP 3333: iterate the body, then ``close()``). A :data:`Runner` runs ``n`` requests and
  returns the elapsed ns.
* :func:`compare` sizes each variant's batch, runs rounds in a rotated order and pairs
  each variant's round with the baseline's of the same round; :class:`Stat` holds the
  medians.
* :func:`goals_table` and :func:`group_table` write the Markdown of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import io
import logging
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Runner = Callable[[int], int]  # runs n requests, returns the elapsed ns
Reply = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body


# -- results ---------------------------------------------------------------------------


@dataclass
class Stat:
    """One variant of one comparison."""

    name: str
    ns: float  # median ns per request
    added: float  # median of (variant - baseline) in the same round, ns per request
    ratio: float  # median of variant / baseline in the same round
    q1: float = 0.0  # interquartile range of the paired differences
    q3: float = 0.0


@dataclass
class Goal:
    """One row of the summary table."""

    row: str
    measured: str
    goal: str
    met: bool | None  # None: pending (the module under test is missing) or informational


@dataclass
class Group:
    """One comparison's detail table."""

    title: str
    baseline: str
    stats: list[Stat]
    unit: str = "request"
    note: str = ""


@dataclass
class Results:
    goals: list[Goal] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


# -- timing and pairing ------------------------------------------------------------------


@dataclass
class Settings:
    rounds: int = 25
    batch_seconds: float = 0.06


def _batch_size(run: Runner, seconds: float) -> int:
    n = 16
    while True:
        elapsed = run(n)
        if elapsed >= 20_000_000 or n >= 1 << 22:
            return max(1, int(n * seconds * 1e9 / max(elapsed, 1)))
        n *= 4


def compare(variants: dict[str, Runner], settings: Settings, *, per: int = 1) -> list[Stat]:
    """Median ns per request of each variant, paired against the first (the baseline).

    Each variant's batch is sized to take about ``settings.batch_seconds``. ``per``
    divides every figure (for example by the number of chunks of a stream).
    """
    names = list(variants)
    baseline = names[0]
    for run in variants.values():  # warm-up: caches, lazily built middleware stacks
        run(64)
    sizes = {name: _batch_size(variants[name], settings.batch_seconds) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(settings.rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            times[name].append(variants[name](sizes[name]) / sizes[name] / per)
    stats = []
    for name in names:
        diffs = [v - b for v, b in zip(times[name], times[baseline], strict=True)]
        ratios = [v / b for v, b in zip(times[name], times[baseline], strict=True)]
        q = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
        stats.append(
            Stat(
                name,
                statistics.median(times[name]),
                statistics.median(diffs),
                statistics.median(ratios),
                q[0],
                q[2],
            )
        )
    return stats


def stat(stats: list[Stat], name: str) -> Stat:
    return next(s for s in stats if s.name == name)


def empty_loop(n: int) -> int:
    """The baseline of rows that time a call rather than a request: the loop alone."""
    start = time.perf_counter_ns()
    for _ in range(n):
        pass
    return time.perf_counter_ns() - start


def fmt_ns(ns: float) -> str:
    return f"{ns:+,.0f} ns" if abs(ns) < 10_000 else f"{ns / 1000:+,.1f} us"


def expect(got: Reply, status: int, what: str) -> None:
    if got[0] != status:
        raise RuntimeError(f"{what}: expected status {status}, got {got[0]}: {got[2][:200]!r}")


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def log(text: str) -> None:
    """Progress goes to stderr; stdout is the report."""
    print(text, file=sys.stderr, flush=True)


def quick_flag(doc: str | None, help: str, argv: list[str] | None) -> bool:
    """A benchmark's command line: ``--quick`` (what it shortens is ``help``) and no more."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=help)
    return bool(parser.parse_args(argv).quick)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- logging: format every record, write none ---------------------------------------------


class FormatOnly(logging.Handler):
    """What a production handler costs minus the I/O: each record is formatted, then dropped."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def quiet_gracefail_logger() -> None:
    logger = logging.getLogger("gracefail")
    if not any(isinstance(h, FormatOnly) for h in logger.handlers):
        handler = FormatOnly()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


# -- ASGI ------------------------------------------------------------------------------


def asgi_scope(path: str, headers: dict[str, str], method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class AsgiDriver:
    """Calls an ASGI app like a server would, minus the sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def runner(
        self,
        app: Any,
        scope: dict[str, Any],
        bodies: list[bytes] | None = None,
        scopes: list[dict[str, Any]] | None = None,
    ) -> Runner:
        """Batches of requests; ``bodies`` and ``scopes`` (if given) are cycled through,
        continuing where the previous batch stopped."""
        never = self.loop.create_future()
        bodies = bodies or [b""]
        scopes = scopes or [scope]
        offset = [0]

        async def discard(message: Any) -> None:
            pass

        async def batch(n: int) -> int:
            first = offset[0]
            start = time.perf_counter_ns()
            for i in range(first, first + n):
                # A fresh receive per request: the body once, then wait (a live connection).
                # Written out here rather than built by a helper: this loop is timed.
                body = bodies[i % len(bodies)]
                sent = False

                async def receive(body: bytes = body) -> dict[str, Any]:
                    nonlocal sent
                    if sent:
                        await never
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}

                await app(dict(scopes[i % len(scopes)]), receive, discard)
            elapsed = time.perf_counter_ns() - start
            offset[0] = first + n
            return elapsed

        return lambda n: self.loop.run_until_complete(batch(n))

    def call(
        self,
        app: Any,
        scope: dict[str, Any],
        body: bytes = b"",
        watch: Callable[[Any], None] | None = None,
    ) -> Reply:
        """One request, untimed; ``watch`` sees every message the app sends, as it sends it."""
        messages: list[Any] = []
        sent = False
        never = self.loop.create_future()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await never
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            if watch is not None:
                watch(message)
            messages.append(message)

        self.loop.run_until_complete(app(dict(scope), receive, send))
        start = messages[0]
        headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        payload = b"".join(m.get("body", b"") for m in messages[1:])
        return start["status"], headers, payload


# -- WSGI ------------------------------------------------------------------------------


class _Discard(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def wsgi_environ(path: str, headers: dict[str, str], method: str = "GET") -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": _Discard(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def wsgi_runner(app: Any, environ: dict[str, Any]) -> Runner:
    def write(data: bytes) -> None:
        pass

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return write

    def batch(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            result = app(environ.copy(), start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return time.perf_counter_ns() - start

    return batch


def wsgi_call(app: Any, environ: dict[str, Any]) -> Reply:
    seen: list[Any] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen[:] = [status, headers]
        return lambda data: None

    result: Iterable[bytes] = app(environ.copy(), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(seen[0][:3]), {k.lower(): v for k, v in seen[1]}, body


# -- output ----------------------------------------------------------------------------


def goals_table(goals: list[Goal]) -> str:
    lines = ["| row | measured | goal | met? |", "|---|---|---|---|"]
    for g in goals:
        met = (
            "pending"
            if g.met is None and g.measured.startswith("pending")
            else ("—" if g.met is None else ("met" if g.met else "**not met**"))
        )
        lines.append(f"| {g.row} | {g.measured} | {g.goal} | {met} |")
    return "\n".join(lines)


def group_table(group: Group) -> str:
    unit = group.unit
    lines = [
        f"**{group.title}**",
        "",
        f"| variant | ns/{unit} | added ns/{unit} vs {group.baseline} (IQR) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for s in group.stats:
        if s.name == group.baseline:
            lines.append(f"| {s.name} | {s.ns:,.0f} | — | 1.000 |")
        else:
            lines.append(
                f"| {s.name} | {s.ns:,.0f} | {s.added:+,.0f} ({s.q1:+,.0f} to {s.q3:+,.0f}) "
                f"| {s.ratio:.3f} |"
            )
    if group.note:
        lines += ["", group.note]
    return "\n".join(lines)


def calls_per_request(run: Runner, n: int = 50) -> float:
    """Python function calls (Python and C) one request makes, counted with
    ``sys.setprofile`` over ``n`` requests: unlike a timing, exact and free of noise, so a
    few extra calls on a path show even where nanoseconds drown in the machine's jitter."""
    run(5)  # caches filled, lazy work done
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        run(n)
    finally:
        sys.setprofile(None)
    return count / n


def process_family(root: int) -> list[int]:
    """``root`` and every process descended from it (from /proc), root first."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                text = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(text[text.rindex(")") + 2 :].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        found += frontier
    return found
