"""What the SQL recorders share: a per-process connection, backoff, drop-and-count.

A recorder runs on gracefail's background thread and must never make a request
wait or fail. So when its database is unreachable it does not retry in a loop:
it refuses batches for a jittered, growing while (the pipeline logs that once and
counts what was lost), then tries one connection again.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from ..events import Event
from .schema import StoreError, split_rows
from .target import mask_credentials

__all__ = ["Backoff", "ConnectedRecorder", "StoreUnavailable"]


class StoreUnavailable(StoreError):
    """A batch could not be stored; its events are dropped (the pipeline counts them)."""


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
        # Jittered, so app instances that lost the database together do not all
        # reconnect in the same instant when it returns.
        wait = self._delay * random.uniform(0.5, 1.0)
        self.next_attempt = time.monotonic() + wait
        return wait

    def succeeded(self) -> None:
        """The store works: the next failure starts from the first delay again."""
        self._delay = 0.0
        self.next_attempt = 0.0


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
        # A connection inherited through fork() is shared with the parent: using it
        # would interleave two processes on one socket, and closing it (even by
        # garbage collection) could end the parent's session. So it is only kept.
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
                    f"({type(exc).__name__}: {mask_credentials(str(exc).strip())[:200]}); "
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
