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
from typing import Final, Literal
from urllib.parse import unquote

from ..config import ConfigError

__all__ = ["Dialect", "StoreTarget", "mask_credentials", "parse_store"]

Dialect = Literal["sqlite", "postgresql"]

_ALLOWED = "expected a file path, sqlite:///relative.db, sqlite:////absolute.db or postgresql://..."

# The password of a URL's user info (up to the last "@" of the host part, as urlsplit
# reads it: a password may hold an unencoded "@").
_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s]*):[^/?#\s]*@")
# A query parameter (``?password=...&``) or libpq keyword (``password='...'``) whose name
# says it holds a secret: sslpassword, passfile, client_secret, sslkey, api_token...
_SECRET_SETTING: Final = re.compile(
    r"""(?ix)
    (\b[\w.-]*(?:pass|pwd|secret|key|token)[\w.-]*) \s*=\s*
    (?: '(?:[^'\\]|\\.)*'? | "(?:[^"\\]|\\.)*"? | [^\s&;#'"]+ )
    """
)


def mask_credentials(text: str) -> str:
    """``text`` with every credential a DSN can carry replaced by ``***``.

    Masks a URL's password (``postgresql://gf:***@db/gf``) and the value of every query
    parameter or ``key=value`` setting named like a secret (``?password=***``,
    ``sslpassword=***``, ``password=*** host=db``). Works on a whole DSN or on a
    message that quotes one; where a DSN is shown, it is shown through this.
    """
    text = _USERINFO.sub(r"\1:***@", text)
    return _SECRET_SETTING.sub(r"\1=***", text)


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """A parsed ``Config.store``: a SQLite file path or a PostgreSQL connection URL."""

    dialect: Dialect
    location: str

    def describe(self) -> str:
        """The target without credentials, for messages (see :func:`mask_credentials`)."""
        if self.dialect == "sqlite":
            return self.location
        return mask_credentials(self.location)


def _shown(store: object) -> object:
    return mask_credentials(store) if isinstance(store, str) else store


def parse_store(store: str | os.PathLike[str]) -> StoreTarget:
    """Parse ``Config.store``; :class:`gracefail.ConfigError` names what is allowed."""
    if isinstance(store, os.PathLike):
        # Never read a path object as a URL: Path("sqlite:///x.db") has already
        # collapsed its slashes, so it could only be misread.
        path = os.fspath(store)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"gracefail: store={_shown(store)!r} is not valid; {_ALLOWED}")
        return StoreTarget("sqlite", os.fspath(Path(path).expanduser()))
    if not isinstance(store, str) or not store.strip():
        raise ConfigError(f"gracefail: store={_shown(store)!r} is not valid; {_ALLOWED}")
    scheme, sep, rest = store.partition("://")
    if not sep:
        return StoreTarget("sqlite", os.fspath(Path(store).expanduser()))
    base = scheme.lower().split("+", 1)[0]
    if base == "sqlite":
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs.db -> "/abs.db"
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise ConfigError(
                f"gracefail: store={_shown(store)!r} is not valid; {_ALLOWED} (an in-memory "
                "database would lose every event and the report could not read it)"
            )
        path = unquote(rest[1:].split("?", 1)[0])
        if not path:
            raise ConfigError(f"gracefail: store={_shown(store)!r} is not valid; {_ALLOWED}")
        return StoreTarget("sqlite", path)
    if base in ("postgresql", "postgres"):
        return StoreTarget("postgresql", "postgresql://" + rest)
    raise ConfigError(f"gracefail: store={_shown(store)!r} is not valid; {_ALLOWED}")
