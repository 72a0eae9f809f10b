"""The embedded default store: one SQLite file, safe for several worker processes.

The file is in WAL mode (readers never block the writer), every batch is one
``BEGIN IMMEDIATE`` transaction of multi-row INSERT statements, and ``busy_timeout``
lets the gunicorn workers sharing the file wait their turn instead of failing.
The connection is opened lazily on gracefail's background thread, so a process
forked after start-up opens its own.

Example::

    from gracefail.recorders import SQLiteRecorder
    app.add_middleware(GracefailMiddleware, recorders=[SQLiteRecorder("/var/lib/app/gf.db")])
    # the same as the default: Config(store="/var/lib/app/gf.db")
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from ..events import Event
from .store import (
    FAILURE_COLUMNS,
    FAILURES,
    PAGE_COLUMNS,
    PAGE_EVENTS,
    SCHEMA_TABLE,
    SCHEMA_TABLE_DDL,
    SCHEMA_VERSION,
    Backoff,
    StoreError,
    StoreUnavailable,
    pending,
    split_rows,
)

__all__ = ["SQLiteRecorder", "migrate_sqlite"]

# Rows go in as multi-row INSERTs: one statement (one sqlite3_step, one release
# of the GIL) per chunk instead of one per row, so a busy request thread cannot
# starve the writer between rows. Chunks are powers of two up to 256 rows, so
# each table needs at most 9 prepared statements (11 columns x 256 rows stays far
# below SQLite's limit of 32766 bound variables).
_MAX_CHUNK: Final = 256


@functools.lru_cache(maxsize=32)
def _insert(table: str, columns: tuple[str, ...], rows: int) -> str:
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * rows)


def _insert_rows(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[object, ...]]
) -> None:
    start = 0
    while start < len(rows):
        size = min(_MAX_CHUNK, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        conn.execute(_insert(table, columns, size), [v for row in chunk for v in row])
        start += size


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA_TABLE,)
    ).fetchone()
    if row is None:
        return 0
    version = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}").fetchone()[0]
    return int(version)


def migrate_sqlite(conn: sqlite3.Connection, where: str) -> int:
    """Bring the schema up to date in one write transaction; returns the version.

    Several processes may start at once: the first takes the write lock and
    migrates, the others wait (``busy_timeout``) and then find nothing to do.
    """
    if _schema_version(conn) == SCHEMA_VERSION:
        return SCHEMA_VERSION
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_TABLE_DDL)
        current = _schema_version(conn)
        for migration in pending(current, where):
            for statement in migration.statements("sqlite"):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version, summary, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.summary, time.time()),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


class SQLiteRecorder:
    """Stores events in a SQLite file (WAL, batched, schema migrated on first use).

    Args:
        path: the database file; created with its folder if missing.
        busy_timeout: seconds to wait for another process's write lock.
        pragmas: extra ``PRAGMA name = value`` applied to each new connection
            (for example ``{"synchronous": "FULL"}``).
        retry_first, retry_cap: backoff (seconds) before reopening the file after
            a failure; meanwhile batches are dropped (and counted by the pipeline).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        pragmas: Mapping[str, str | int] | None = None,
        retry_first: float = 0.5,
        retry_cap: float = 10.0,
    ):
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self.pragmas = dict(pragmas or {})
        self._backoff = Backoff(retry_first, retry_cap)
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # Connections inherited through fork(): never used nor closed in the child.
        self._inherited: list[sqlite3.Connection] = []

    def __repr__(self) -> str:
        return f"SQLiteRecorder({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
            self._backoff.succeeded()
        if self._conn is not None:
            return self._conn
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            for name, value in self.pragmas.items():
                if not name.isidentifier() or not str(value).replace("_", "").isalnum():
                    raise StoreError(f"gracefail: bad SQLite pragma {name}={value!r}")
                conn.execute(f"PRAGMA {name} = {value}")
            migrate_sqlite(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment of exclusive access, and SQLite answers
        # "locked" at once instead of using busy_timeout: retry for a while.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            if str(mode).lower() != "wal":
                raise StoreError(f"gracefail: {self.path} cannot use WAL (journal mode {mode})")
            return

    def record(self, events: Sequence[Event]) -> None:
        """Insert a batch in one transaction; raises StoreUnavailable if it was dropped."""
        failures, pages = split_rows(events)
        if not failures and not pages:
            return
        with self._lock:
            if not self._backoff.ready() and self._pid == os.getpid():
                raise StoreUnavailable(f"gracefail: {self.path} is unavailable; retrying later")
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if failures:
                        _insert_rows(conn, FAILURES, FAILURE_COLUMNS, failures)
                    if pages:
                        _insert_rows(conn, PAGE_EVENTS, PAGE_COLUMNS, pages)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError, StoreError) as exc:
                self._drop_connection()
                wait = self._backoff.failed()
                raise StoreUnavailable(
                    f"gracefail: could not write to {self.path} ({exc}); next attempt in "
                    f"{wait:.1f} s"
                ) from exc
            self._backoff.succeeded()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._pid == os.getpid():
                self._drop_connection()
