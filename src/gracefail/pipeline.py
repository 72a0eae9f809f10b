"""The bounded queue between requests and recorders, drained by one background thread.

A request only appends to a deque: it never waits on disk or network. When the
queue is full the event is dropped and counted. The thread starts lazily in the
process that records (so a gunicorn worker forked after start-up gets its own),
and the queue is flushed at interpreter exit.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import weakref
from collections.abc import Sequence
from typing import Final

from .events import Event
from .recorders.base import Recorder

__all__ = ["Pipeline"]

log = logging.getLogger("gracefail")

_BATCH: Final = 500
_IDLE_WAIT: Final = 0.2


class Pipeline:
    """Hands events to recorders off the request path."""

    def __init__(self, recorders: Sequence[Recorder], maxsize: int):
        self.recorders = list(recorders)
        self.maxsize = maxsize
        self.dropped = 0
        self.failed_batches = 0
        self._queue: collections.deque[Event] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._pid = -1
        self._closed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._broken: set[int] = set()
        atexit.register(_close_at_exit, weakref.ref(self))

    def put(self, event: Event) -> None:
        """Queue an event; never blocks. A full queue drops it and counts the drop."""
        if len(self._queue) >= self.maxsize or self._closed:
            self.dropped += 1
            return
        self._queue.append(event)
        if self._pid != os.getpid():
            self._start()
        if len(self._queue) >= _BATCH:
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # After a fork the parent's thread does not exist here: start our own.
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._idle = threading.Condition()
            self._thread = threading.Thread(
                target=self._run, name="gracefail-recorder", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(_IDLE_WAIT)
            self._wake.clear()
            self.drain()
            if self._closed and not self._queue:
                return

    def drain(self) -> None:
        """Hand everything queued so far to the recorders (on the calling thread)."""
        with self._idle:
            self._busy = True
        try:
            while self._queue:
                batch: list[Event] = []
                while self._queue and len(batch) < _BATCH:
                    batch.append(self._queue.popleft())
                self._deliver(batch)
        finally:
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _deliver(self, batch: list[Event]) -> None:
        for recorder in self.recorders:
            try:
                recorder.record(batch)
            except Exception:
                self.failed_batches += 1
                if id(recorder) not in self._broken:
                    self._broken.add(id(recorder))
                    log.exception("gracefail: recorder %r failed; its events are dropped", recorder)
            else:
                self._broken.discard(id(recorder))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event reached the recorders; True if it did in time."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            self.drain()
            return True
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self) -> None:
        """Flush, stop the thread and close the recorders (idempotent)."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout=5.0)
        self.drain()
        for recorder in self.recorders:
            close = getattr(recorder, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("gracefail: closing recorder %r failed", recorder)


def _close_at_exit(ref: weakref.ref[Pipeline]) -> None:
    pipeline = ref()
    if pipeline is not None:
        pipeline.close()
