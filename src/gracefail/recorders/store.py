"""The store's recorder: ``Config.store`` in, a SQLite or PostgreSQL recorder out.

The parts live where they can be used without this factory::

    target.py     StoreTarget, parse_store          (what Config.store names)
    schema.py     tables, MIGRATIONS, split_rows    (what both databases hold)
    connected.py  ConnectedRecorder, Backoff        (connection, backoff, drop-and-count)
    sqlite.py     SQLiteRecorder                    (imports schema, connected)
    postgres.py   PostgresRecorder                  (imports schema, connected, target)
    store.py      store_recorder                    (imports all of them; none imports it)

The names those modules define that older code imports from here are still
importable from here.
"""

from __future__ import annotations

import os

from ..config import ConfigError
from .base import Recorder
from .connected import Backoff, StoreUnavailable
from .schema import (
    FAILURE_COLUMNS,
    FAILURES,
    MIGRATIONS,
    PAGE_COLUMNS,
    PAGE_EVENTS,
    SCHEMA_VERSION,
    Migration,
    StoreError,
    split_rows,
)
from .sqlite import SQLiteRecorder
from .target import StoreTarget, parse_store

__all__ = [
    "FAILURES",
    "FAILURE_COLUMNS",
    "MIGRATIONS",
    "PAGE_COLUMNS",
    "PAGE_EVENTS",
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


def store_recorder(store: str | os.PathLike[str]) -> Recorder:
    """The recorder that writes to ``store`` (it connects lazily, on first use).

    ``store`` is anything :func:`~gracefail.recorders.target.parse_store` accepts:
    a file path (``str`` or ``pathlib.Path``), ``sqlite:///...`` or ``postgresql://...``.
    """
    target = parse_store(store)
    if target.dialect == "sqlite":
        return SQLiteRecorder(target.location)
    try:
        # Here, not at the top: psycopg is an optional dependency, and a SQLite
        # user must be able to import this module without it.
        from .postgres import PostgresRecorder
    except ImportError as exc:
        raise ConfigError(
            f"gracefail: store={target.describe()!r} needs psycopg 3: "
            f"install gracefail[postgres] ({exc})"
        ) from None
    return PostgresRecorder(target.location)
