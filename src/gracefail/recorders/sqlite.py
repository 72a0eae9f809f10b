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

import functools
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .connected import ConnectedRecorder
from .schema import (
    FAILURE_COLUMNS,
    FAILURES,
    PAGE_COLUMNS,
    PAGE_EVENTS,
    SCHEMA_TABLE,
    SCHEMA_TABLE_DDL,
    SCHEMA_VERSION,
    StoreError,
    pending,
)

__all__ = ["SQLiteRecorder", "migrate_sqlite"]

# Rows go in as multi-row INSERTs: one statement (one sqlite3_step, one release
# of the GIL) per chunk instead of one per row, so a busy request thread cannot
# starve the writer between rows. Chunks are powers of two up to 256 rows, so
# each table needs at most 9 prepared statements (12 columns x 256 rows stays far
# below SQLite's limit of 32766 bound variables).
_MAX_CHUNK: Final = 256


@functools.lru_cache(maxsize=32)
def _insert(table: str, columns: tuple[str, ...], rows: int, skip_copies: bool) -> str:
    row = "(" + ", ".join("?" * len(columns)) + ")"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * rows)
    # Not INSERT OR IGNORE, which would also drop a row that breaks NOT NULL: only a copy
    # of a stored row (the unique key) is skipped.
    return sql + " ON CONFLICT DO NOTHING" if skip_copies else sql


def _insert_rows(
    conn: sqlite3.Connection,
    table: str,
    columns: tuple[str, ...],
    rows: list[tuple[object, ...]],
    skip_copies: bool = False,
) -> None:
    start = 0
    while start < len(rows):
        size = min(_MAX_CHUNK, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        sql = _insert(table, columns, size, skip_copies)
        conn.execute(sql, [v for row in chunk for v in row])
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


class SQLiteRecorder(ConnectedRecorder[sqlite3.Connection]):
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
        super().__init__(retry_first, retry_cap)
        self.path = os.fspath(path)
        self.where = self.path
        self.busy_timeout = busy_timeout
        self.pragmas = dict(pragmas or {})

    def __repr__(self) -> str:
        return f"SQLiteRecorder({self.path!r})"

    errors = (sqlite3.Error, OSError)

    def _open(self) -> sqlite3.Connection:
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

    def _write(
        self,
        conn: sqlite3.Connection,
        failures: list[tuple[object, ...]],
        pages: list[tuple[object, ...]],
    ) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if failures:
                _insert_rows(conn, FAILURES, FAILURE_COLUMNS, failures)
            if pages:
                # A page event another worker (or an earlier batch) stored is skipped.
                _insert_rows(conn, PAGE_EVENTS, PAGE_COLUMNS, pages, skip_copies=True)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _close(self, conn: sqlite3.Connection) -> None:
        conn.close()
