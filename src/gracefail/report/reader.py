"""Read-only access to a store, SQLite or PostgreSQL, for the report's queries.

The report never creates, migrates nor writes a store: it opens what is there
(SQLite in ``mode=ro``, PostgreSQL in a read-only session) and says plainly
when there is nothing to read yet.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from ..config import ConfigError
from ..recorders.schema import FAILURES, PAGE_EVENTS
from ..recorders.target import StoreTarget, mask_credentials, parse_store
from .errors import EmptyStore, ReportError

__all__ = ["Reader", "Store", "describe_store", "open_store", "same_store"]

Store = str | os.PathLike[str]
"""A ``Config.store`` value: a file path (``str`` or path object) or a URL."""


class Reader(Protocol):
    """What the queries need from a database."""

    dialect: str
    """``sqlite`` or ``postgresql``: the two differ only in time buckets and placeholders."""
    store: str
    """The store, as the report names it: see :func:`describe_store`."""
    failure_columns: frozenset[str]
    """The columns of the failures table (a store written by an older gracefail has fewer)."""

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query with ``?`` placeholders."""


class _SQLiteReader:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, store: str):
        self.conn = conn
        self.store = store
        rows = conn.execute(f"PRAGMA table_info({FAILURES})").fetchall()
        self.failure_columns = frozenset(str(row[1]) for row in rows)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, tuple(params)).fetchall())


class _PostgresReader:
    dialect = "postgresql"

    def __init__(self, conn: Any, store: str):
        self.conn = conn
        self.store = store
        rows = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attnum > 0 AND NOT attisdropped",
            (FAILURES,),
        ).fetchall()
        self.failure_columns = frozenset(str(row[0]) for row in rows)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        # The queries hold no literal "?" or "%": the placeholder swap is exact.
        with self.conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return list(cur.fetchall())


def _target(store: Store) -> StoreTarget:
    try:
        return parse_store(store)
    except ConfigError as exc:
        raise ReportError(str(exc)) from None


def describe_store(store: Store) -> str:
    """How the report names ``store``: a SQLite file's absolute path, a URL without password."""
    target = _target(store)
    if target.dialect == "sqlite":
        return str(Path(target.location).resolve())
    return target.describe()


def same_store(one: Store, other: Store) -> bool:
    """Whether two ``Config.store`` values name the same store (False if either is invalid)."""
    try:
        first, second = _target(one), _target(other)
    except ReportError:
        return False
    if first.dialect != second.dialect:
        return False
    if first.dialect == "sqlite":
        return Path(first.location).resolve() == Path(second.location).resolve()
    return first.location == second.location


@contextmanager
def open_store(store: Store) -> Iterator[Reader]:
    """A read-only view of ``store`` (path or URL); :class:`EmptyStore` if it has no data."""
    target = _target(store)
    if target.dialect == "sqlite":
        with _open_sqlite(target) as reader:
            yield reader
    else:
        with _open_postgres(target) as reader:
            yield reader


@contextmanager
def _open_sqlite(target: StoreTarget) -> Iterator[Reader]:
    path = Path(target.location)
    if not path.is_file():
        raise EmptyStore(
            f"no gracefail store at {path} yet: events are written there once the app has "
            "served a failure (or pass --store / set GRACEFAIL_DB)"
        )
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReportError(f"cannot open {path}: {exc}") from None
    try:
        try:
            found = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
                    (FAILURES, PAGE_EVENTS),
                )
            }
        except sqlite3.DatabaseError as exc:
            raise ReportError(f"{path} is not a readable gracefail store: {exc}") from None
        if len(found) < 2:
            raise EmptyStore(f"{path} holds no gracefail events yet")
        yield _SQLiteReader(conn, str(path.resolve()))
    finally:
        conn.close()


@contextmanager
def _open_postgres(target: StoreTarget) -> Iterator[Reader]:
    try:
        # Here, not at the top: psycopg is optional, and SQLite users have no need of it.
        import psycopg
    except ImportError:
        raise ReportError(
            "a PostgreSQL store needs psycopg 3: install gracefail[postgres]"
        ) from None
    try:
        conn = psycopg.connect(target.location, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise ReportError(
            f"cannot connect to {target.describe()}: {mask_credentials(str(exc))}"
        ) from None
    try:
        row = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
            (FAILURES, PAGE_EVENTS),
        ).fetchone()
        if not row or not row[0]:
            raise EmptyStore(f"{target.describe()} holds no gracefail events yet")
        conn.read_only = True
        yield _PostgresReader(conn, target.describe())
    finally:
        conn.close()
