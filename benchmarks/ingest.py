"""Beacon and event ingest: events/s into SQLite and PostgreSQL, queue-put cost, flood RSS.

Prints numbers; it asserts nothing (timings belong here, never in tests).

    .venv/bin/python -m benchmarks.ingest                 # SQLite, put cost, flood
    .venv/bin/python -m benchmarks.ingest --pg            # also a throw-away PostgreSQL
    .venv/bin/python -m benchmarks.ingest --pg-dsn postgresql://...   # an existing one

``--pg`` runs initdb/pg_ctl from /usr/lib/postgresql/*/bin in a temp dir (as
root, under the ``postgres`` or ``nobody`` user) and stops it by PID.
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.harness import free_port
from gracefail import Config
from gracefail.core import Engine, RequestView
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders.sqlite import SQLiteRecorder

SECRET = "benchmark-secret-0123456789abcdef"
BATCH = 500  # what the pipeline hands a recorder at most


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def mixed_events(count: int) -> list[Event]:
    """Two page events per failure, as a real outage produces at least."""
    now = time.time()
    events: list[Event] = []
    for n in range(count):
        if n % 3 == 0:
            events.append(
                ServerEvent(now, f"i{n}", 502, "connection", "GET", "/items/{id}", "html")
            )
        else:
            kind = "shown" if n % 3 == 1 else "recovered"
            events.append(ClientEvent(now, f"i{n - n % 3}", kind, 1, 12_000, "en"))
    return events


def ingest_rate(recorder: object, count: int) -> float:
    events = mixed_events(count)
    record = recorder.record  # type: ignore[attr-defined]
    record(events[:BATCH])  # connect and migrate outside the timing
    start = time.perf_counter()
    for i in range(BATCH, len(events), BATCH):
        record(events[i : i + BATCH])
    return (len(events) - BATCH) / (time.perf_counter() - start)


def pipeline_rate(recorder: object, count: int) -> float:
    """End to end: put every event, then wait until the recorder has stored them all."""
    events = mixed_events(count)
    pipeline = Pipeline([recorder], maxsize=count + 1)  # type: ignore[list-item]
    pipeline.put(events[0])
    pipeline.flush()
    start = time.perf_counter()
    for event in events[1:]:
        pipeline.put(event)
    pipeline.flush(120)
    elapsed = time.perf_counter() - start
    if pipeline.dropped or pipeline.failed_events:
        raise SystemExit(f"the benchmark lost events: {pipeline.dropped}, {pipeline.failed_events}")
    pipeline.close()
    return (count - 1) / elapsed


def put_cost() -> dict[str, float]:
    """Nanoseconds per put: into a queue with room, into a full one, and with the event built."""

    class Stalled:
        def record(self, events: object) -> None:
            time.sleep(3600)

        def close(self) -> None:
            pass

    n = 1_000_000
    event = ServerEvent(time.time(), "i", 502, "connection", "GET", "/r", "html")
    roomy = Pipeline([Stalled()], maxsize=n * 3)
    roomy.put(event)
    time.sleep(0.3)  # the thread is now parked in the recorder: puts only append
    put = roomy.put
    start = time.perf_counter_ns()
    for _ in range(n):
        put(event)
    room_ns = (time.perf_counter_ns() - start) / n
    start = time.perf_counter_ns()
    now = time.time
    for _ in range(n):
        put(ServerEvent(now(), "i", 502, "connection", "GET", "/r", "html", probe=False))
    built_ns = (time.perf_counter_ns() - start) / n
    full = Pipeline([Stalled()], maxsize=1)
    full.put(event)
    time.sleep(0.3)
    full.put(event)
    start = time.perf_counter_ns()
    for _ in range(n):
        full.put(event)
    full_ns = (time.perf_counter_ns() - start) / n
    roomy.close(timeout=0.1)  # the stalled thread is a daemon: it ends with the process
    full.close(timeout=0.1)
    return {"put_ns": room_ns, "event_and_put_ns": built_ns, "put_when_full_ns": full_ns}


def flood(store: Path, lock_store: bool, count: int = 100_000) -> dict[str, object]:
    """``count`` valid beacons from 20,000 clients through Engine.accept_beacon."""
    gracefail = Engine(Config(secret=SECRET, store=str(store)))
    locker = None
    if lock_store:
        SQLiteRecorder(store).record(mixed_events(3))
        locker = sqlite3.connect(store, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # the recorder waits busy_timeout, then drops
    headers = {"host": "shop.test", "origin": "http://shop.test", "content-type": "text/plain"}
    gc.collect()
    samples = [(0, rss_kib())]
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    for n in range(count):
        token = gracefail.signer.sign(f"flood-{n}", 502)
        body = json.dumps(
            {"token": token, "kind": "shown", "attempt": 0, "elapsed_ms": 80, "locale": "en"}
        ).encode()
        view = RequestView(
            "POST", "/_gracefail/beacon", headers=headers, client_addr=f"c{n % 20000}"
        )
        status = gracefail.accept_beacon(view, body).status
        statuses[status] = statuses.get(status, 0) + 1
        if (n + 1) % 20_000 == 0:
            samples.append((n + 1, rss_kib()))
    elapsed = time.perf_counter() - start
    if locker is not None:
        locker.execute("ROLLBACK")
        locker.close()
    gracefail.flush(30)
    result = {
        "store": "locked" if lock_store else "healthy",
        "beacons_per_s": round(count / elapsed),
        "statuses": statuses,
        "queue_dropped": gracefail.pipeline.dropped,
        "store_dropped": gracefail.pipeline.failed_events,
        "rss_kib": samples,
        "rss_growth_kib": samples[-1][1] - samples[1][1],
        "guard_sizes": gracefail.guard.sizes(),
    }
    gracefail.close()
    return result


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not found:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = Path(found[0]).parent
    base = Path(tempfile.mkdtemp(prefix="gracefail-bench-pg-"))
    os.chmod(base, 0o755)  # noqa: S103 - the server's user must reach its data dir
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _has_user("postgres") else "nobody"
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    port = free_port()
    data = base / "data"
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust",
         "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base}"
    subprocess.run(
        [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
         "-o", options, "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://bench@127.0.0.1:{port}/postgres"
    finally:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGINT)
        for _ in range(400):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--pg", action="store_true", help="start a throw-away PostgreSQL")
    parser.add_argument("--pg-dsn", default=None, help="use this PostgreSQL instead")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, events per run: {args.events}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sqlite_rate = ingest_rate(SQLiteRecorder(folder / "a.db"), args.events)
        print(f"SQLite   recorder.record, batches of {BATCH}: {sqlite_rate:>10,.0f} events/s")
        sqlite_e2e = pipeline_rate(SQLiteRecorder(folder / "b.db"), args.events)
        print(f"SQLite   put -> thread -> stored (end to end): {sqlite_e2e:>10,.0f} events/s")

        if args.pg or args.pg_dsn:
            from gracefail.recorders.postgres import PostgresRecorder

            with (
                contextmanager(lambda: (yield args.pg_dsn))()
                if args.pg_dsn
                else throwaway_postgres() as dsn
            ):
                pg_rate = ingest_rate(PostgresRecorder(dsn), args.events)
                print(f"Postgres recorder.record, batches of {BATCH}: {pg_rate:>10,.0f} events/s")
                pg_e2e = pipeline_rate(PostgresRecorder(dsn), args.events)
                print(f"Postgres put -> thread -> stored (end to end): {pg_e2e:>10,.0f} events/s")

        costs = put_cost()
        print(
            "queue put: {put_ns:.0f} ns; building the ServerEvent and putting it: "
            "{event_and_put_ns:.0f} ns; put into a full queue (drop): {put_when_full_ns:.0f} ns"
            .format(**costs)
        )  # fmt: skip

        for locked in (False, True):
            result = flood(folder / f"flood-{locked}.db", lock_store=locked)
            print(f"flood of 100,000 beacons, {result['store']} store:")
            for key, value in result.items():
                if key != "store":
                    print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
