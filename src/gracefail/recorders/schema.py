"""The tables SQLite and PostgreSQL share, their numbered migrations, and events as rows.

Both databases get the same two tables, created and upgraded by numbered
migrations recorded in ``gracefail_schema``, so the report runs the same
queries on either. A migration, once released, is never edited: a store
created by an older gracefail is upgraded in place by the steps it lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..events import ClientEvent, Event, ServerEvent
from .target import Dialect

__all__ = [
    "FAILURES",
    "FAILURE_COLUMNS",
    "MAINTENANCE",
    "MIGRATIONS",
    "PAGE_COLUMNS",
    "PAGE_EVENTS",
    "PAGE_EVENT_KEY",
    "SCHEMA_TABLE",
    "SCHEMA_TABLE_DDL",
    "SCHEMA_VERSION",
    "Migration",
    "StoreError",
    "pending",
    "split_rows",
]

FAILURES: Final = "gracefail_failures"
PAGE_EVENTS: Final = "gracefail_page_events"
PAGE_EVENT_KEY: Final = "gracefail_page_events_key"
"""The unique index on (incident, kind, attempt): one copy of each page event."""
SCHEMA_TABLE: Final = "gracefail_schema"
MAINTENANCE: Final = "gracefail_maintenance"
"""Planned maintenance (:mod:`gracefail.maintenance`): at most one row, id 1, while it is on."""

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
    "source",
)
"""The columns :func:`split_rows` fills for a failure, in its order."""

PAGE_COLUMNS: Final = ("time", "incident", "kind", "attempt", "elapsed_ms", "locale", "status")
"""The columns :func:`split_rows` fills for a page event, in its order.

A page event's ``incident`` is its page view's key (:func:`gracefail.tokens.page_view`):
the failure's incident, followed by ``:`` and a server-random suffix when the incident
is a client's ``X-Request-ID``.
"""


class StoreError(Exception):
    """The store cannot be used as it is (for example a schema newer than this gracefail)."""


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

# Rows written before sources existed were all served by the middleware, hence the
# default. Both databases add such a column without rewriting the table (SQLite
# edits only the schema; PostgreSQL 11+ keeps a constant default in the catalog),
# so upgrading a large store is instant.
_SOURCE: Final = (f"ALTER TABLE {FAILURES} ADD COLUMN source TEXT NOT NULL DEFAULT 'app'",)

# One outcome per page view, whichever worker or host a beacon reaches: the store keeps
# the first copy of an (incident, kind, attempt) and ignores the others (INSERT ... ON
# CONFLICT DO NOTHING). Copies stored before the key existed are removed first (the
# oldest row stays), or the index could not be built. The key's leading columns serve
# the report's lookups by incident, so the older index on (incident, kind) goes.
_UNIQUE_PAGE_EVENT: Final = (
    f"CREATE UNIQUE INDEX {PAGE_EVENT_KEY} ON {PAGE_EVENTS} (incident, kind, attempt)",
    "DROP INDEX gracefail_page_events_incident",
)
# S608: SQL from module constants only.
_DEDUPLICATE_SQLITE: Final = (
    f"DELETE FROM {PAGE_EVENTS} WHERE id NOT IN "  # noqa: S608
    f"(SELECT MIN(id) FROM {PAGE_EVENTS} GROUP BY incident, kind, attempt)",
)
_DEDUPLICATE_POSTGRESQL: Final = (
    f"DELETE FROM {PAGE_EVENTS} later USING {PAGE_EVENTS} earlier "  # noqa: S608
    "WHERE later.incident = earlier.incident AND later.kind = earlier.kind "
    "AND later.attempt = earlier.attempt AND later.id > earlier.id",
)


def _maintenance(real: str) -> tuple[str, ...]:
    # One row or none: every worker and host reads the same switch. Times are Unix
    # seconds (UTC); ``ends`` NULL means until switched off.
    return (
        f"""CREATE TABLE {MAINTENANCE} (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            started {real} NOT NULL,
            ends {real},
            message TEXT NOT NULL,
            set_by TEXT NOT NULL
        )""",
    )


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "failures and page events",
        _tables("INTEGER PRIMARY KEY", "REAL", "INTEGER"),
        _tables("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION", "BIGINT"),
    ),
    Migration(2, "indexes for the report", _INDEXES, _INDEXES),
    Migration(3, "failures: source (app, gateway, worker)", _SOURCE, _SOURCE),
    Migration(
        4,
        "page events: one per (incident, kind, attempt)",
        _DEDUPLICATE_SQLITE + _UNIQUE_PAGE_EVENT,
        _DEDUPLICATE_POSTGRESQL + _UNIQUE_PAGE_EVENT,
    ),
    Migration(5, "planned maintenance", _maintenance("REAL"), _maintenance("DOUBLE PRECISION")),
)
"""Every step of the schema, oldest first; only ever appended to."""

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
                    _text(event.source),
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
