"""Load during an outage: every request fails upstream, every failure must be accounted.

A real server (uvicorn with the ASGI middleware, or gunicorn with several workers and
the WSGI middleware) serves an app whose every request raises ``UpstreamError(502)``,
with the store on SQLite or PostgreSQL. A client keeps ``connections`` requests in
flight for ``seconds``. Then the server is stopped (SIGTERM: the recorders flush) and
each process writes what its pipeline did with the events. Checked:

* every answer is a 502 (no 500, no other status);
* served = stored + counted as lost, exactly (the queue never makes a request wait:
  a full queue drops and counts);
* the servers' resident memory, before and after the load.

    python -m benchmarks.load [--quick] [--store sqlite|postgresql://...]

``tests/recorders/test_load.py`` runs a few seconds of it in ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import process_family

ROOT = Path(__file__).resolve().parent.parent
SECRET = "load-test-secret-not-for-production"
NAV = {"accept": "text/html", "sec-fetch-mode": "navigate"}


# -- the servers' side ---------------------------------------------------------------------


def _dump_counts(engine: Any) -> None:
    """Write this process's pipeline counts (after closing the pipeline: all final)."""
    folder = os.environ.get("GRACEFAIL_LOAD_COUNTS")
    if not folder:
        return
    engine.close()
    rows = [
        {"delivered": c.delivered, "dropped": c.dropped, "failed": c.failed,
         "shutdown": c.shutdown, "queued": c.queued, "in_flight": c.in_flight}
        for c in engine.pipeline.counts()
    ]  # fmt: skip
    Path(folder, f"{os.getpid()}.json").write_text(json.dumps(rows))


def asgi_app() -> Any:
    """For uvicorn --factory: a raw ASGI app that always fails upstream, with gracefail."""
    from gracefail import UpstreamError
    from gracefail.asgi import GracefailMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raise UpstreamError(502, upstream="inventory")

    middleware = GracefailMiddleware(app, secret=SECRET, store=os.environ["GRACEFAIL_DB"])

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        # uvicorn re-raises SIGTERM after its shutdown (no atexit): the counts are written
        # once gracefail has closed its pipeline at lifespan shutdown.
        async def sending(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                _dump_counts(middleware.engine)
            await send(message)

        await middleware(scope, receive, sending if scope["type"] == "lifespan" else send)

    return outer


_wsgi: Any = None
_wsgi_lock = threading.Lock()


def wsgi_app(environ: Any, start_response: Any) -> Any:
    """For gunicorn: the same app over WSGI; each worker builds its own middleware, once
    (gthread's threads race for the first request)."""
    global _wsgi
    with _wsgi_lock:
        if _wsgi is None:
            _wsgi = _build_wsgi()
    return _wsgi(environ, start_response)


def _build_wsgi() -> Any:
    from gracefail import UpstreamError
    from gracefail.wsgi import GracefailMiddleware

    def app(environ: Any, start_response: Any) -> Any:
        raise UpstreamError(502, upstream="inventory")

    middleware = GracefailMiddleware(app, secret=SECRET, store=os.environ["GRACEFAIL_DB"])
    atexit.register(_dump_counts, middleware.engine)  # gunicorn's workers exit normally
    return middleware


# -- the harness -----------------------------------------------------------------------------


@dataclass
class LoadResult:
    server: str
    store: str
    seconds: float
    statuses: collections.Counter[int]
    errors: int
    stored: int
    lost: int  # dropped + failed + lost at shutdown, over the processes
    unaccounted_in_flight: int  # queued or in flight when a process exited (must be 0)
    rss_before_mb: float
    rss_after_mb: float
    counts: list[dict[str, int]] = field(default_factory=list)

    @property
    def served(self) -> int:
        return sum(self.statuses.values())

    def line(self) -> str:
        return (
            f"| {self.server} | {self.store} | {self.served:,} | {self.served / self.seconds:,.0f} "
            f"| {dict(sorted(self.statuses.items()))} | {self.errors} | {self.stored:,} "
            f"| {self.lost:,} | {self.rss_before_mb:.0f} -> {self.rss_after_mb:.0f} |"
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@contextlib.contextmanager
def _server(kind: str, workers: int, env: dict[str, str], tmp: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    if kind == "uvicorn":
        args = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.load:asgi_app",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
                "--no-access-log"]  # fmt: skip
    else:
        args = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers),
                "-k", "gthread", "--threads", "4", "--log-level", "error",
                "benchmarks.load:wsgi_app"]  # fmt: skip
    log = tmp / f"{kind}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not listen in 30 s")
            time.sleep(0.1)
        yield port, proc.pid
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid in reversed(process_family(proc.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=5)


async def _drive(
    port: int, seconds: float, connections: int
) -> tuple[collections.Counter[int], int]:
    import httpx

    statuses: collections.Counter[int] = collections.Counter()
    errors = 0
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=30) as client:  # fmt: skip

        async def worker(index: int) -> None:
            nonlocal errors
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                try:
                    response = await client.get(f"/items/{index}-{n}", headers=NAV)
                except httpx.HTTPError:
                    errors += 1
                    continue
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker(i) for i in range(connections)))
    return statuses, errors


def _stored(store: str) -> int:
    """Failures in the store (0 before its first migration)."""
    query = "SELECT count(*) FROM gracefail_failures"
    if store.startswith("postgresql"):
        import psycopg

        with psycopg.connect(store) as db:
            try:
                row = db.execute(query).fetchone()
            except psycopg.errors.UndefinedTable:
                return 0
    else:
        if not os.path.exists(store):
            return 0
        with contextlib.closing(sqlite3.connect(store)) as db:
            try:
                row = db.execute(query).fetchone()
            except sqlite3.OperationalError:
                return 0
    return int(row[0]) if row else 0


def run_load(
    kind: str, store: str, *, seconds: float = 3.0, connections: int = 20, workers: int = 4
) -> LoadResult:
    """One load run against a fresh store (``store``: a SQLite path or a PostgreSQL DSN)."""
    already = _stored(store)  # a PostgreSQL database may hold earlier runs
    with tempfile.TemporaryDirectory(prefix="gracefail-load-") as folder:
        tmp = Path(folder)
        counts_dir = tmp / "counts"
        counts_dir.mkdir()
        env = {"GRACEFAIL_DB": store, "GRACEFAIL_LOAD_COUNTS": str(counts_dir),
               "GRACEFAIL_RECORD_IN_TESTS": "1"}  # fmt: skip
        with _server(kind, workers, env, tmp) as (port, pid):
            warm, warm_errors = asyncio.run(_drive(port, 0.5, 4))
            before = _rss_mb(process_family(pid))
            statuses, errors = asyncio.run(_drive(port, seconds, connections))
            statuses += warm  # the warm-up's failures are served and stored like the rest
            errors += warm_errors
            after = _rss_mb(process_family(pid))
        counts = [row for f in counts_dir.glob("*.json") for row in json.loads(f.read_text())]
    lost = sum(c["dropped"] + c["failed"] + c["shutdown"] for c in counts)
    return LoadResult(
        server=f"{kind}" + (f" -w {workers}" if kind == "gunicorn" else ""),
        store="postgresql" if store.startswith("postgresql") else "sqlite",
        seconds=seconds,
        statuses=statuses,
        errors=errors,
        stored=_stored(store) - already,
        lost=lost,
        unaccounted_in_flight=sum(c["queued"] + c["in_flight"] for c in counts),
        rss_before_mb=before,
        rss_after_mb=after,
        counts=counts,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL DSN to test as well")
    args = parser.parse_args(argv)
    print(markdown(run_all(args.quick, args.postgres)))
    return 0


def run_all(
    quick: bool, postgres: str | None, log: Callable[[str], None] = print
) -> list[LoadResult]:
    seconds, connections = (5.0, 50) if quick else (30.0, 200)
    results = []
    with tempfile.TemporaryDirectory(prefix="gracefail-load-stores-") as stores:
        for kind in ("uvicorn", "gunicorn"):
            for store in [str(Path(stores, f"{kind}.sqlite3"))] + ([postgres] if postgres else []):
                result = run_load(kind, store, seconds=seconds, connections=connections)
                log(f"  load: {result.server} {result.store}: {result.served:,} served")
                results.append(result)
    return results


def markdown(results: list[LoadResult]) -> str:
    lines = [
        "| server | store | served | per s | statuses | client errors | stored | counted lost "
        "| server RSS MB before -> after |",
        "|---|---|---:|---:|---|---:|---:|---:|---|",
        *[r.line() for r in results],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
