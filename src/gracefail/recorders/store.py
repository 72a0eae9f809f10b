"""Where events are kept: ``Config.store`` parsing and the schema SQLite and PostgreSQL share.

``Config.store`` is one of:

* a file path (``gracefail.sqlite3``, ``/var/lib/app/gracefail.db``);
* an SQLAlchemy-style SQLite URL: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``;
* a PostgreSQL URL: ``postgresql://user:pass@host:5432/db`` (also ``postgres://`` and
  ``postgresql+psycopg://``).

Both databases get the same two tables, created and upgraded by numbered
migrations recorded in ``gracefail_schema``, so the report runs the same
queries on either.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from ..config import ConfigError
from ..events import ClientEvent, Event, ServerEvent

if TYPE_CHECKING:
    from .base import Recorder

__all__ = [
    "FAILURE_COLUMNS",
    "MIGRATIONS",
    "PAGE_COLUMNS",
    "SCHEMA_VERSION",
    "Backoff",
    "Migration",
    "StoreError",
    "StoreTarget",
    "StoreUnavailable",
    "parse_store",
    "split_rows",
    "store_recorder",
]

Dialect = Literal["sqlite", "postgresql"]

FAILURES: Final = "gracefail_failures"
PAGE_EVENTS: Final = "gracefail_page_events"
SCHEMA_TABLE: Final = "gracefail_schema"

FAILURE_COLUMNS: Final = (
    "time",
    "incident",
    "status",
    "cause",
    "method",
    "route",
    "client",
    "probe",
    "upstream",
    "error_type",
    "app_ms",
)
PAGE_COLUMNS: Final = ("time", "incident", "kind", "attempt", "elapsed_ms", "locale", "status")

_ALLOWED = "expected a file path, sqlite:///relative.db, sqlite:////absolute.db or postgresql://..."


class StoreError(Exception):
    """The store cannot be used as it is (for example a schema newer than this gracefail)."""


class StoreUnavailable(StoreError):
    """A batch could not be stored; its events are dropped (the pipeline counts them)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step of the schema, with its statements for each database."""

    version: int
    summary: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements of this step for ``dialect``."""
        return self.sqlite if dialect == "sqlite" else self.postgresql


def _tables(id_column: str, real: str, big: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE {FAILURES} (
            id {id_column},
            time {real} NOT NULL,
            incident TEXT NOT NULL,
            status INTEGER NOT NULL,
            cause TEXT NOT NULL,
            method TEXT NOT NULL,
            route TEXT,
            client TEXT NOT NULL,
            probe INTEGER NOT NULL DEFAULT 0,
            upstream TEXT,
            error_type TEXT,
            app_ms {real}
        )""",
        f"""CREATE TABLE {PAGE_EVENTS} (
            id {id_column},
            time {real} NOT NULL,
            incident TEXT NOT NULL,
            kind TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            elapsed_ms {big} NOT NULL,
            locale TEXT NOT NULL,
            status INTEGER NOT NULL
        )""",
    )


_INDEXES: Final = (
    f"CREATE INDEX gracefail_failures_time ON {FAILURES} (time)",
    f"CREATE INDEX gracefail_failures_incident ON {FAILURES} (incident)",
    f"CREATE INDEX gracefail_page_events_time ON {PAGE_EVENTS} (time)",
    f"CREATE INDEX gracefail_page_events_incident ON {PAGE_EVENTS} (incident, kind)",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "failures and page events",
        _tables("INTEGER PRIMARY KEY", "REAL", "INTEGER"),
        _tables("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION", "BIGINT"),
    ),
    Migration(2, "indexes for the report", _INDEXES, _INDEXES),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

SCHEMA_TABLE_DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
    "(version INTEGER PRIMARY KEY, summary TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


def pending(current: int, where: str) -> tuple[Migration, ...]:
    """The migrations to apply to a store at ``current``; StoreError if it is newer than us."""
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"gracefail: the store {where} has schema version {current}, newer than this "
            f"gracefail understands ({SCHEMA_VERSION}); upgrade gracefail"
        )
    return tuple(m for m in MIGRATIONS if m.version > current)


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; nothing legitimate has one.
    return None if value is None else value.replace("\x00", "")


def split_rows(
    events: Sequence[Event],
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """A batch as (failure rows, page event rows), in the column orders above."""
    failures: list[tuple[object, ...]] = []
    pages: list[tuple[object, ...]] = []
    for event in events:
        if isinstance(event, ServerEvent):
            failures.append(
                (
                    event.time,
                    _text(event.incident),
                    event.status,
                    _text(event.cause),
                    _text(event.method),
                    _text(event.route),
                    _text(event.reply_format),
                    1 if event.probe else 0,
                    _text(event.upstream),
                    _text(event.error_type),
                    event.app_ms,
                )
            )
        elif isinstance(event, ClientEvent):
            pages.append(
                (
                    event.time,
                    _text(event.incident),
                    _text(event.kind),
                    event.attempt,
                    event.elapsed_ms,
                    _text(event.locale),
                    event.status,
                )
            )
    return failures, pages


class Backoff:
    """Capped exponential backoff with jitter between attempts to reach a store."""

    def __init__(self, first: float = 0.5, cap: float = 30.0):
        self.first = first
        self.cap = cap
        self._delay = 0.0
        self.next_attempt = 0.0

    def ready(self) -> bool:
        """Whether it is time to try the store again."""
        return time.monotonic() >= self.next_attempt

    def failed(self) -> float:
        """Note a failure; returns the seconds until the next attempt."""
        self._delay = min(self.cap, self._delay * 2 if self._delay else self.first)
        wait = self._delay * random.uniform(0.5, 1.0)
        self.next_attempt = time.monotonic() + wait
        return wait

    def succeeded(self) -> None:
        """The store works: the next failure starts from the first delay again."""
        self._delay = 0.0
        self.next_attempt = 0.0


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """A parsed ``Config.store``: a SQLite file path or a PostgreSQL connection URL."""

    dialect: Dialect
    location: str

    def describe(self) -> str:
        """The target without a password, for messages."""
        if self.dialect == "sqlite":
            return self.location
        if "://" not in self.location:
            return re.sub(r"password\s*=\s*\S+", "password=***", self.location)
        parts = urlsplit(self.location)
        if parts.password is None:
            return self.location
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()


def parse_store(store: str) -> StoreTarget:
    """Parse ``Config.store``; :class:`gracefail.ConfigError` names what is allowed."""
    if not isinstance(store, str) or not store.strip():
        raise ConfigError(f"gracefail: store={store!r} is not valid; {_ALLOWED}")
    scheme, sep, rest = store.partition("://")
    if not sep:
        return StoreTarget("sqlite", os.fspath(Path(store).expanduser()))
    base = scheme.lower().split("+", 1)[0]
    if base == "sqlite":
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs.db -> "/abs.db"
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise ConfigError(
                f"gracefail: store={store!r} is not valid; {_ALLOWED} (an in-memory "
                "database would lose every event and the report could not read it)"
            )
        path = unquote(rest[1:].split("?", 1)[0])
        if not path:
            raise ConfigError(f"gracefail: store={store!r} is not valid; {_ALLOWED}")
        return StoreTarget("sqlite", path)
    if base in ("postgresql", "postgres"):
        return StoreTarget("postgresql", "postgresql://" + rest)
    raise ConfigError(f"gracefail: store={store!r} is not valid; {_ALLOWED}")


def store_recorder(store: str) -> Recorder:
    """The recorder that writes to ``Config.store`` (it connects lazily, on first use)."""
    target = parse_store(store)
    if target.dialect == "sqlite":
        from .sqlite import SQLiteRecorder

        return SQLiteRecorder(target.location)
    try:
        from .postgres import PostgresRecorder
    except ImportError as exc:
        raise ConfigError(
            f"gracefail: store={target.describe()!r} needs psycopg 3: "
            f"install gracefail[postgres] ({exc})"
        ) from None
    return PostgresRecorder(target.location)


Conn = TypeVar("Conn")


class ConnectedRecorder(Generic[Conn]):
    """What the SQL recorders share: one connection per process (one inherited through
    fork() is kept aside, never used nor closed), one batch written at a time, and a
    backoff after a failure during which batches are refused (the pipeline counts them).

    Subclasses set ``where`` and ``errors`` and implement ``_open``, ``_usable``,
    ``_write`` and ``_close``.
    """

    where: str
    errors: tuple[type[BaseException], ...] = ()

    def __init__(self, retry_first: float, retry_cap: float) -> None:
        self._backoff = Backoff(retry_first, retry_cap)
        self._conn: Conn | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._inherited: list[Conn] = []

    def _open(self) -> Conn:
        raise NotImplementedError

    def _usable(self, conn: Conn) -> bool:
        return True

    def _write(
        self, conn: Conn, failures: list[tuple[object, ...]], pages: list[tuple[object, ...]]
    ) -> None:
        raise NotImplementedError

    def _close(self, conn: Conn) -> None:
        raise NotImplementedError

    def _connect(self) -> Conn:
        if self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)
            self._conn, self._pid = None, os.getpid()
            self._backoff.succeeded()
        if self._conn is None or not self._usable(self._conn):
            self._conn = self._open()
        return self._conn

    def record(self, events: Sequence[Event]) -> None:
        """Write a batch in one transaction; raises StoreUnavailable if it was dropped."""
        failures, pages = split_rows(events)
        if not failures and not pages:
            return
        with self._lock:
            if not self._backoff.ready() and self._pid == os.getpid():
                raise StoreUnavailable(f"gracefail: {self.where} is unavailable; retrying later")
            caught: tuple[type[BaseException], ...] = (*self.errors, StoreError)
            try:
                self._write(self._connect(), failures, pages)
            except caught as exc:
                self._drop_connection()
                wait = self._backoff.failed()
                raise StoreUnavailable(
                    f"gracefail: could not write to {self.where} "
                    f"({type(exc).__name__}: {str(exc).strip()[:200]}); "
                    f"next attempt in {wait:.1f} s"
                ) from exc
            self._backoff.succeeded()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*self.errors):
                self._close(conn)

    def close(self) -> None:
        """Close this process's connection."""
        with self._lock:
            if self._pid == os.getpid():
                self._drop_connection()
