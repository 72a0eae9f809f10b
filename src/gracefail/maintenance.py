"""Planned maintenance: one switch in the store that every worker, host and the gateway read.

The state lives in the store (``Config.store``: SQLite or PostgreSQL), so every process
that shares the store shares the switch. Deploy scripts use the functions here, or the
commands built on them (``gracefail maintenance on|off|status``)::

    from gracefail import maintenance

    maintenance.switch_on("postgresql://gf@db/gf", duration=30 * 60,
                          message="Moving to the new database")
    ...  # deploy
    maintenance.switch_off("postgresql://gf@db/gf")

A planned end in the past switches maintenance off by itself: :func:`status` and
:class:`MaintenanceWatch` then answer off, whatever the row says.

The middleware never reads the store while it answers a request:
:class:`MaintenanceWatch` reads it on a background thread at most once per
``interval`` and the request path reads one attribute. If the store becomes
unreachable while maintenance is on, the last known state is kept for
``keep_last`` seconds, then the watch fails open (the app serves normally) and logs
that once: a broken store must not keep a healthy site closed.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import re
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .recorders.schema import MAINTENANCE, StoreError
from .recorders.sqlite import migrate_sqlite
from .recorders.target import StoreTarget, mask_credentials, parse_store

__all__ = [
    "MAX_MESSAGE",
    "Maintenance",
    "MaintenanceError",
    "MaintenanceWatch",
    "format_status",
    "parse_duration",
    "parse_end",
    "status",
    "switch_off",
    "switch_on",
]

log = logging.getLogger("gracefail")

MAX_MESSAGE: Final = 500
"""The longest message a maintenance page shows (characters)."""

_DURATION: Final = re.compile(r"(?:\d+[smhdw])+")
_DURATION_PART: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Seconds a read or a connection may take: a deploy script should fail fast, and the
# watch's thread should notice an unreachable store well inside keep_last.
_TIMEOUT: Final = 3.0

_COLUMNS: Final = "started, ends, message, set_by"


class MaintenanceError(Exception):
    """Bad input, or the store could not be read or changed (nothing was changed then)."""


@dataclass(frozen=True, slots=True)
class Maintenance:
    """Maintenance that is on: since ``started``, until ``ends`` (Unix seconds, UTC;
    None: until switched off), with the ``message`` users see and who set it."""

    started: float
    ends: float | None
    message: str
    set_by: str

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left until the planned end (never negative); None if no end is set."""
        if self.ends is None:
            return None
        return max(0.0, self.ends - (time.time() if now is None else now))

    def ended(self, now: float | None = None) -> bool:
        """Whether the planned end has passed (then maintenance is off)."""
        return self.ends is not None and (time.time() if now is None else now) >= self.ends

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """The state as JSON values (ISO times in UTC)."""
        return {
            "on": True,
            "started": _iso(self.started),
            "ends": None if self.ends is None else _iso(self.ends),
            "remaining_s": self.remaining(now),
            "message": self.message,
            "set_by": self.set_by,
        }


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_duration(text: str) -> float:
    """``30m``, ``2h``, ``90s``, ``1h30m``, ``1d`` as seconds (more than zero)."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise MaintenanceError(f"--for {text!r} is not a duration: use 30m, 2h, 90s, 1h30m or 1d")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(cleaned))
    if seconds <= 0:
        raise MaintenanceError(f"--for {text!r} must be longer than zero")
    return float(seconds)


def parse_end(text: str) -> float:
    """An ISO time (UTC if it has no offset) as Unix seconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise MaintenanceError(
            f"--until {text!r} is not a time: use an ISO time such as 2026-05-01T22:30:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _check_message(message: str) -> str:
    message = message.strip()
    if len(message) > MAX_MESSAGE:
        raise MaintenanceError(
            f"--message is {len(message)} characters long; at most {MAX_MESSAGE} are shown"
        )
    if any(not char.isprintable() and char not in "\n" for char in message):
        raise MaintenanceError("--message must not hold control characters")
    return message


# -- the store ------------------------------------------------------------------


def _row(values: tuple[Any, ...] | None) -> Maintenance | None:
    if values is None:
        return None
    started, ends, message, set_by = values
    return Maintenance(
        float(started), None if ends is None else float(ends), str(message), str(set_by)
    )


class _SQLite:
    """The switch in a SQLite file; a reader never creates the file."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    # Opened for each read (a fraction of a millisecond), so a file replaced or removed
    # under a running app is noticed instead of read through an old descriptor.
    keep = False

    def __init__(self, path: str):
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        if self.conn is not None:
            return self.conn
        if not create and not Path(self.path).exists():
            return None
        if create:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_TIMEOUT * 1000)}")
            if create:
                conn.execute("PRAGMA journal_mode = WAL")
                migrate_sqlite(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return conn

    def read(self) -> Maintenance | None:
        conn = self._connect(create=False)
        if conn is None:
            return None
        try:
            row = conn.execute(f"SELECT {_COLUMNS} FROM {MAINTENANCE} WHERE id = 1").fetchone()  # noqa: S608 - constants
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None  # a store from before maintenance existed: off
            raise
        return _row(row)

    def write(self, state: Maintenance | None, now: float) -> Maintenance | None:
        conn = self._connect(create=True)
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            previous = _row(
                conn.execute(f"SELECT {_COLUMNS} FROM {MAINTENANCE} WHERE id = 1").fetchone()  # noqa: S608
            )
            conn.execute(f"DELETE FROM {MAINTENANCE}")  # noqa: S608
            if state is not None:
                if previous is not None and not previous.ended(now):
                    state = Maintenance(previous.started, state.ends, state.message, state.set_by)
                conn.execute(
                    f"INSERT INTO {MAINTENANCE} (id, {_COLUMNS}) VALUES (1, ?, ?, ?, ?)",  # noqa: S608
                    (state.started, state.ends, state.message, state.set_by),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return state if state is not None else previous

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


class _Postgres:
    """The switch in PostgreSQL (psycopg 3, imported only when the store is PostgreSQL)."""

    keep = True

    def __init__(self, dsn: str):
        try:
            import psycopg
        except ImportError as exc:
            raise MaintenanceError(
                f"the store needs psycopg 3: install gracefail[postgres] ({exc})"
            ) from None
        self.psycopg = psycopg
        self.dsn = dsn
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error, OSError)
        self.conn: Any = None

    def _connect(self, create: bool) -> Any:
        if self.conn is None or self.conn.closed:
            self.conn = self.psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(1, round(_TIMEOUT)),
                application_name="gracefail",
            )
        if create:
            from .recorders.postgres import migrate_postgres

            migrate_postgres(self.conn, StoreTarget("postgresql", self.dsn).describe())
        return self.conn

    def read(self) -> Maintenance | None:
        conn = self._connect(create=False)
        try:
            row = conn.execute(f"SELECT {_COLUMNS} FROM {MAINTENANCE} WHERE id = 1").fetchone()  # noqa: S608
        except self.psycopg.errors.UndefinedTable:
            return None  # a store from before maintenance existed: off
        return _row(row)

    def write(self, state: Maintenance | None, now: float) -> Maintenance | None:
        conn = self._connect(create=True)
        with conn.transaction():
            previous = _row(
                conn.execute(
                    f"SELECT {_COLUMNS} FROM {MAINTENANCE} WHERE id = 1 FOR UPDATE"  # noqa: S608
                ).fetchone()
            )
            conn.execute(f"DELETE FROM {MAINTENANCE}")  # noqa: S608
            if state is not None:
                if previous is not None and not previous.ended(now):
                    state = Maintenance(previous.started, state.ends, state.message, state.set_by)
                conn.execute(
                    f"INSERT INTO {MAINTENANCE} (id, {_COLUMNS}) VALUES (1, %s, %s, %s, %s)",  # noqa: S608
                    (state.started, state.ends, state.message, state.set_by),
                )
        return state if state is not None else previous

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


_Store = _SQLite | _Postgres


def _open(store: str | os.PathLike[str]) -> _Store:
    try:
        target = parse_store(store)
    except ValueError as exc:
        raise MaintenanceError(str(exc)) from None
    return _SQLite(target.location) if target.dialect == "sqlite" else _Postgres(target.location)


def _where(store: str | os.PathLike[str]) -> str:
    try:
        return parse_store(store).describe()
    except ValueError:
        return mask_credentials(str(store))


@contextlib.contextmanager
def _using(store: str | os.PathLike[str], doing: str) -> Iterator[_Store]:
    opened = _open(store)
    caught: tuple[type[BaseException], ...] = (*opened.errors, StoreError)
    try:
        yield opened
    except caught as exc:
        detail = mask_credentials(str(exc).strip())[:200]
        unchanged = "" if doing == "read" else "; nothing changed"
        raise MaintenanceError(
            f"could not {doing} {_where(store)} ({type(exc).__name__}: {detail}){unchanged}"
        ) from exc
    finally:
        opened.close()


# -- the API deploy scripts use ---------------------------------------------------


def switch_on(
    store: str | os.PathLike[str],
    *,
    duration: float | None = None,
    ends: float | None = None,
    message: str = "",
    set_by: str | None = None,
    now: float | None = None,
) -> Maintenance:
    """Switch maintenance on for every process reading ``store``; returns the state stored.

    ``duration`` (seconds from now) or ``ends`` (Unix seconds), not both; neither: until
    :func:`switch_off`. Switching on while on changes the end, message and who, and keeps
    the start. Raises :class:`MaintenanceError` for bad input, or if the store cannot be
    reached (then nothing changed).
    """
    now = time.time() if now is None else now
    if duration is not None and ends is not None:
        raise MaintenanceError("--for and --until cannot be used together: give one of them")
    if duration is not None:
        if duration <= 0:
            raise MaintenanceError(f"--for must be longer than zero (got {duration:g} s)")
        ends = now + duration
    elif ends is not None and ends <= now:
        raise MaintenanceError(f"--until {_iso(ends)} is in the past (now {_iso(now)})")
    state = Maintenance(now, ends, _check_message(message), set_by or _who())
    with _using(store, "switch maintenance on in") as opened:
        stored = opened.write(state, now)
    assert stored is not None
    return stored


def switch_off(store: str | os.PathLike[str]) -> Maintenance | None:
    """Switch maintenance off; returns the state that was stored (None if there was none)."""
    with _using(store, "switch maintenance off in") as opened:
        return opened.write(None, time.time())


def status(store: str | os.PathLike[str], now: float | None = None) -> Maintenance | None:
    """The maintenance that is on, or None (off, or its planned end has passed)."""
    with _using(store, "read") as opened:
        state = opened.read()
    return None if state is None or state.ended(now) else state


def format_status(state: Maintenance | None, now: float | None = None) -> str:
    """What the commands print for ``state``: one line, or a few."""
    if state is None:
        return "maintenance: off\n"
    now = time.time() if now is None else now
    lines = [f"maintenance: on since {_iso(state.started)}, set by {state.set_by}"]
    remaining = state.remaining(now)
    if state.ends is None or remaining is None:
        lines.append("planned end: none (until `gracefail maintenance off`)")
    else:
        lines.append(f"planned end: {_iso(state.ends)} (in {_span(remaining)})")
    if state.message:
        lines.append(f"message: {state.message}")
    return "\n".join(lines) + "\n"


def _span(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


# -- what the middleware and the gateway read ------------------------------------


def _forked(ref: weakref.ref[MaintenanceWatch]) -> Callable[[], None]:
    def after_fork() -> None:
        watch = ref()
        if watch is not None:
            watch._after_fork()

    return after_fork


class MaintenanceWatch:
    """The store's maintenance switch as this process last read it.

    A daemon thread reads the store every ``interval`` seconds; :meth:`current` only
    reads an attribute and compares a clock, so a request never waits on the store.
    The thread starts on first use (that one request reads the store itself, once per
    process), and again in a process forked after it started (a thread does not
    survive ``fork()``). An unreachable store keeps the last known state for
    ``keep_last`` seconds, then the watch fails open (off) and logs that once.
    """

    def __init__(
        self, store: str | os.PathLike[str], *, interval: float = 1.0, keep_last: float = 60.0
    ):
        if interval <= 0 or keep_last < 0:
            raise ValueError("gracefail: MaintenanceWatch needs interval > 0 and keep_last >= 0")
        self.store = store
        self.where = _where(store)
        self.interval = interval
        self.keep_last = keep_last
        self._state: Maintenance | None = None
        # Until when (monotonic) the reading thread is known to be alive; past it, the
        # next current() call starts one. Zero: not started.
        self._fresh_until = 0.0
        self._last_read = time.monotonic()
        self._failed_open = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.reads = 0
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forked(weakref.ref(self)))

    def current(self) -> Maintenance | None:
        """The maintenance that is on, or None; never waits on the store."""
        if time.monotonic() > self._fresh_until:
            self._wake()
        state = self._state
        if state is None or (state.ends is not None and time.time() >= state.ends):
            return None
        return state

    def refresh(self) -> Maintenance | None:
        """Read the store now, in this thread (at start-up, so the first requests already
        see the state); the maintenance that is on, or None. Starts no thread."""
        self._read_once(None)
        state = self._state
        return None if state is None or state.ended() else state

    def _after_fork(self) -> None:
        # The reading thread did not survive fork(): the next request starts this
        # process's own. Until then the parent's last state stands.
        self._fresh_until = 0.0
        self._thread = None
        self._lock = threading.Lock()

    def _wake(self) -> None:
        if not self._lock.acquire(blocking=False):
            return
        try:
            thread = self._thread
            if thread is not None and thread.is_alive() and self._pid == os.getpid():
                self._fresh_until = time.monotonic() + 3 * self.interval
                return
            if self._stop.is_set():
                return
            self._pid = os.getpid()
            # The first request of a process (or of a forked worker) reads once itself:
            # the state it holds may be as old as the start-up read.
            self._read_once(None)
            self._fresh_until = time.monotonic() + 3 * self.interval
            self._thread = threading.Thread(
                target=self._run, name="gracefail-maintenance", daemon=True
            )
            self._thread.start()
        finally:
            self._lock.release()

    def _run(self) -> None:
        opened: _Store | None = None
        try:
            # _wake() has just read the store: the thread's first read is an interval later.
            while not self._stop.wait(self.interval):
                if opened is None:
                    with contextlib.suppress(MaintenanceError):
                        opened = _open(self.store)
                self._read_once(opened)
                self._fresh_until = time.monotonic() + 3 * self.interval
        finally:
            if opened is not None:
                opened.close()

    def _read_once(self, opened: _Store | None) -> None:
        own = opened is None
        try:
            if opened is None:
                opened = _open(self.store)
            try:
                state = opened.read()
            finally:
                if own or not opened.keep:
                    opened.close()
        except Exception as exc:
            if opened is not None and not own:
                opened.close()  # reconnect on the next read
            self._failed(exc)
            return
        self.reads += 1
        self._state = state
        self._last_read = time.monotonic()
        if self._failed_open:
            self._failed_open = False
            log.warning("gracefail: the maintenance state in %s can be read again", self.where)

    def _failed(self, exc: BaseException) -> None:
        if time.monotonic() - self._last_read <= self.keep_last or self._failed_open:
            return
        self._failed_open = True
        if self._state is not None:
            self._state = None
        log.warning(
            "gracefail: cannot read the maintenance state in %s for %.0f s (%s: %s); "
            "serving the app as if maintenance were off until it can be read",
            self.where,
            self.keep_last,
            type(exc).__name__,
            mask_credentials(str(exc).strip())[:200],
        )

    def close(self) -> None:
        """Stop the reading thread (at shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout=_TIMEOUT + 1)
