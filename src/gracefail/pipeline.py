"""The bounded queue between requests and recorders, drained by one background thread.

A request only appends to a deque: it never waits on disk or network. When the
queue is full the event is dropped and counted. The thread starts lazily in the
process that records (so a gunicorn worker forked after start-up gets its own),
and the queue is flushed at interpreter exit.

A recorder that fails is logged once, with the error, until it works again
(then once more, with how many events it lost); its lost events are counted in
``failed_events``. Both kinds of loss are handed to recorders that count them
(``record_dropped``, see :class:`~gracefail.recorders.base.CountsDrops`).
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
from .recorders.base import CountsDrops, Recorder

__all__ = ["Pipeline"]

log = logging.getLogger("gracefail")

_BATCH: Final = 500
_IDLE_WAIT: Final = 0.2

# Live pipelines, so a forked child can forget its parent's queue and locks.
_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()


class Pipeline:
    """Hands events to recorders off the request path."""

    def __init__(self, recorders: Sequence[Recorder], maxsize: int):
        self.recorders = list(recorders)
        self.maxsize = maxsize
        self.dropped = 0
        self.failed_events = 0
        self._forwarded = (0, 0)
        self._drop_counters = [r for r in self.recorders if isinstance(r, CountsDrops)]
        self._queue: collections.deque[Event] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._pid = -1
        self._started = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._broken: dict[int, int] = {}
        _pipelines.add(self)
        atexit.register(_close_at_exit, weakref.ref(self))

    def put(self, event: Event) -> None:
        """Queue an event; never blocks. A full queue drops it and counts the drop."""
        queue = self._queue
        size = len(queue)
        if size >= self.maxsize or self._closed:
            self.dropped += 1
            return
        queue.append(event)
        if not self._started:
            self._start()
        elif size == _BATCH - 1:
            # A full batch is waiting: wake the thread now rather than at its next tick.
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._started:
                return
            # Lazily, in the process that records: a forked worker (see _after_fork)
            # comes here again and starts its own thread.
            self._pid = os.getpid()
            self._wake = threading.Event()
            self._idle = threading.Condition()
            self._thread = threading.Thread(
                target=self._run, name="gracefail-recorder", daemon=True
            )
            self._thread.start()
            self._started = True

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
            self._forward_drops()
        finally:
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _deliver(self, batch: list[Event]) -> None:
        for recorder in self.recorders:
            try:
                recorder.record(batch)
            except Exception:
                self.failed_events += len(batch)
                lost = self._broken.get(id(recorder))
                if lost is None:
                    log.exception(
                        "gracefail: recorder %r failed; its events are dropped and counted "
                        "until it recovers",
                        recorder,
                    )
                    lost = 0
                self._broken[id(recorder)] = lost + len(batch)
            else:
                lost = self._broken.pop(id(recorder), None)
                if lost is not None:
                    log.warning(
                        "gracefail: recorder %r recovered; %d events were dropped meanwhile",
                        recorder,
                        lost,
                    )

    def _forward_drops(self) -> None:
        """Hand the losses since the last call to the recorders that count them."""
        queue_full = self.dropped - self._forwarded[0]
        failed = self.failed_events - self._forwarded[1]
        if not (queue_full or failed) or not self._drop_counters:
            return
        self._forwarded = (self.dropped, self.failed_events)
        for recorder in self._drop_counters:
            for count, reason in ((queue_full, "queue_full"), (failed, "recorder_error")):
                if count:
                    try:
                        recorder.record_dropped(count, reason)
                    except Exception:
                        log.debug("gracefail: %r could not count dropped events", recorder)

    def _after_fork(self) -> None:
        # The parent delivers what it queued; this process starts empty, with
        # fresh locks (one may have been held by the parent's thread at fork time).
        self._queue = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._start_lock = threading.Lock()
        self._busy = False
        self._thread = None
        self._started = False
        self._forwarded = (self.dropped, self.failed_events)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event reached the recorders; True if it did in time."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            self.drain()
            return True
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush, stop the thread and close the recorders (idempotent).

        Waits at most ``timeout`` seconds for the queue to drain and as long again
        for the thread to stop; a recorder that hangs longer loses what is queued.
        """
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout)
            if thread.is_alive():
                # A recorder hangs: do not hang shutdown with it (the thread is a daemon).
                left = len(self._queue)
                self._queue.clear()
                self.dropped += left
                log.warning(
                    "gracefail: a recorder is still busy at shutdown; %d queued events dropped",
                    left,
                )
                return
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


def _after_fork_in_child() -> None:
    for pipeline in list(_pipelines):
        pipeline._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
