"""Where events are kept: ``Config.store`` parsed into a :class:`StoreTarget`.

``Config.store`` is one of:

* a file path (``gracefail.sqlite3``, ``/var/lib/app/gracefail.db``), as a string or an
  ``os.PathLike`` such as :class:`pathlib.Path` (a path object is always a file path);
* an SQLAlchemy-style SQLite URL: ``sqlite:///relative.db`` or ``sqlite:////absolute.db``;
* a PostgreSQL URL: ``postgresql://user:pass@host:5432/db`` (also ``postgres://`` and
  ``postgresql+psycopg://``).

This module only parses: it imports no recorder and no database driver, so the
report's readers and the recorders can both depend on it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from ..config import ConfigError

__all__ = ["Dialect", "StoreTarget", "parse_store"]

Dialect = Literal["sqlite", "postgresql"]

_ALLOWED = "expected a file path, sqlite:///relative.db, sqlite:////absolute.db or postgresql://..."


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


def parse_store(store: str | os.PathLike[str]) -> StoreTarget:
    """Parse ``Config.store``; :class:`gracefail.ConfigError` names what is allowed."""
    if isinstance(store, os.PathLike):
        # Never read a path object as a URL: Path("sqlite:///x.db") has already
        # collapsed its slashes, so it could only be misread.
        path = os.fspath(store)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"gracefail: store={store!r} is not valid; {_ALLOWED}")
        return StoreTarget("sqlite", os.fspath(Path(path).expanduser()))
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
