"""Stores as older gracefail releases left them, written out as raw SQL.

Frozen on purpose: they do not read ``MIGRATIONS``, so an edit to an old
migration cannot make a test's "old store" quietly match the new code.
"""

from __future__ import annotations

from typing import Final

SCHEMA_TABLE: Final = (
    "CREATE TABLE gracefail_schema (version INTEGER PRIMARY KEY, summary TEXT NOT NULL, "
    "applied_at DOUBLE PRECISION NOT NULL)"
)

_INDEXES: Final = (
    "CREATE INDEX gracefail_failures_time ON gracefail_failures (time)",
    "CREATE INDEX gracefail_failures_incident ON gracefail_failures (incident)",
    "CREATE INDEX gracefail_page_events_time ON gracefail_page_events (time)",
    "CREATE INDEX gracefail_page_events_incident ON gracefail_page_events (incident, kind)",
)

_VERSIONS: Final = (
    "INSERT INTO gracefail_schema VALUES (1, 'failures and page events', 0)",
    "INSERT INTO gracefail_schema VALUES (2, 'indexes for the report', 0)",
)

_ROWS: Final = (
    "INSERT INTO gracefail_failures (time, incident, status, cause, method, route, client, "
    "probe, upstream, error_type, app_ms) VALUES "
    "(1714557600, 'old-1', 504, 'timeout', 'GET', '/items/{item_id}', 'html', 0, 'inventory', "
    "'TimeoutError', 30000), "
    "(1714557660, 'old-2', 502, 'connection', 'POST', NULL, 'json', 1, NULL, NULL, NULL)",
    "INSERT INTO gracefail_page_events (time, incident, kind, attempt, elapsed_ms, locale, "
    "status) VALUES (1714557601, 'old-1', 'shown', 0, 120, 'en', 504)",
)

SQLITE_V2: Final = (
    SCHEMA_TABLE,
    """CREATE TABLE gracefail_failures (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        incident TEXT NOT NULL,
        status INTEGER NOT NULL,
        cause TEXT NOT NULL,
        method TEXT NOT NULL,
        route TEXT,
        client TEXT NOT NULL,
        probe INTEGER NOT NULL DEFAULT 0,
        upstream TEXT,
        error_type TEXT,
        app_ms REAL
    )""",
    """CREATE TABLE gracefail_page_events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        incident TEXT NOT NULL,
        kind TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        elapsed_ms INTEGER NOT NULL,
        locale TEXT NOT NULL,
        status INTEGER NOT NULL
    )""",
    *_INDEXES,
    *_VERSIONS,
    *_ROWS,
)
"""A SQLite store of schema version 2 (before ``source``), holding two failures and a beacon."""

POSTGRESQL_V2: Final = (
    SCHEMA_TABLE,
    """CREATE TABLE gracefail_failures (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        incident TEXT NOT NULL,
        status INTEGER NOT NULL,
        cause TEXT NOT NULL,
        method TEXT NOT NULL,
        route TEXT,
        client TEXT NOT NULL,
        probe INTEGER NOT NULL DEFAULT 0,
        upstream TEXT,
        error_type TEXT,
        app_ms DOUBLE PRECISION
    )""",
    """CREATE TABLE gracefail_page_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        incident TEXT NOT NULL,
        kind TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        elapsed_ms BIGINT NOT NULL,
        locale TEXT NOT NULL,
        status INTEGER NOT NULL
    )""",
    *_INDEXES,
    *_VERSIONS,
    *_ROWS,
)
"""The same store on PostgreSQL."""

OLD_FAILURES: Final = {"old-1", "old-2"}
"""The incidents of the failures those stores hold."""
