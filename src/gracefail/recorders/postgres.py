"""PostgreSQL store (psycopg 3) for many app instances: the same schema and report as SQLite.

Each batch is one transaction: failures are COPYed in; page events go through one
``INSERT ... ON CONFLICT DO NOTHING``, so a beacon another instance stored already is
skipped (the unique key on incident, kind and attempt). When the server is
unreachable the batch is dropped (the pipeline logs it once and counts it) and
the recorder waits, with capped exponential backoff, before connecting again.
Schema migrations run under a transaction-scoped advisory lock, so instances
starting together do not race.

Example::

    Config(store="postgresql://gracefail:secret@db.internal:5432/metrics")
    # or explicitly, with other recorders beside it:
    Config(recorders=[PostgresRecorder("postgresql://..."), PrometheusRecorder()])
"""

from __future__ import annotations

import time
from typing import Any, Final

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gracefail's PostgreSQL store needs psycopg 3: install gracefail[postgres]"
    ) from exc

from .connected import ConnectedRecorder
from .schema import (
    FAILURE_COLUMNS,
    FAILURES,
    PAGE_COLUMNS,
    PAGE_EVENTS,
    SCHEMA_TABLE,
    SCHEMA_TABLE_DDL,
    pending,
)
from .target import StoreTarget

__all__ = ["PostgresRecorder", "migrate_postgres"]

# Any fixed 64-bit number: the advisory lock that serialises migrations.
_MIGRATION_LOCK: Final = 0x67726163656661

_COPY_FAILURES: Final = f"COPY {FAILURES} ({', '.join(FAILURE_COLUMNS)}) FROM STDIN"
# The batch's page events as arrays, unnested in key order: two instances inserting the
# same keys then take the unique index's locks in the same order and cannot deadlock, and
# of two copies in one batch the earlier one is kept.
_INSERT_PAGES: Final = (
    f"INSERT INTO {PAGE_EVENTS} ({', '.join(PAGE_COLUMNS)}) "
    f"SELECT {', '.join(PAGE_COLUMNS)} FROM unnest("
    "%s::double precision[], %s::text[], %s::text[], %s::integer[], %s::bigint[], "
    f"%s::text[], %s::integer[]) AS batch ({', '.join(PAGE_COLUMNS)}) "
    "ORDER BY incident, kind, attempt, time ON CONFLICT DO NOTHING"
)


def migrate_postgres(conn: psycopg.Connection[Any], where: str) -> None:
    """Bring the schema up to date; concurrent callers wait on an advisory lock."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(SCHEMA_TABLE_DDL)
        row = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_TABLE}").fetchone()
        current = int(row[0]) if row else 0
        for migration in pending(current, where):
            for statement in migration.statements("postgresql"):
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {SCHEMA_TABLE} (version, summary, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.summary, time.time()),
            )


class PostgresRecorder(ConnectedRecorder["psycopg.Connection[Any]"]):
    """Stores events in PostgreSQL.

    Args:
        dsn: a ``postgresql://`` URL or a libpq connection string.
        connect_timeout: seconds to wait for a connection.
        retry_first, retry_cap: backoff (seconds) between reconnection attempts;
            meanwhile batches are dropped (and counted by the pipeline).
    """

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 5.0,
        retry_first: float = 0.5,
        retry_cap: float = 30.0,
    ):
        super().__init__(retry_first, retry_cap)
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._where = StoreTarget("postgresql", dsn).describe()
        self.where = f"PostgreSQL {self._where}"

    def __repr__(self) -> str:
        return f"PostgresRecorder({self._where!r})"

    errors = (psycopg.Error,)

    def _usable(self, conn: psycopg.Connection[Any]) -> bool:
        return not conn.closed

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(1, round(self.connect_timeout)),
            application_name="gracefail",
        )
        try:
            migrate_postgres(conn, self._where)
        except BaseException:
            conn.close()
            raise
        return conn

    def _write(
        self,
        conn: psycopg.Connection[Any],
        failures: list[tuple[object, ...]],
        pages: list[tuple[object, ...]],
    ) -> None:
        with conn.transaction(), conn.cursor() as cur:
            if failures:
                with cur.copy(_COPY_FAILURES) as copy:
                    for row in failures:
                        copy.write_row(row)
            if pages:
                cur.execute(_INSERT_PAGES, [list(column) for column in zip(*pages, strict=True)])

    def _close(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()
