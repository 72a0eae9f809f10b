"""The bounded queues between requests and recorders, each drained by its own thread.

A request only appends an event to one deque per recorder: it never waits on disk
or network. Each recorder has its own queue and background thread, so one that
hangs (a database that stopped answering, an exporter stuck on a socket) delays
only its own events; the others keep receiving theirs. When a recorder's queue is
full the event is dropped for that recorder and counted. The threads start lazily
in the process that records (so a gunicorn worker forked after start-up gets its
own), and the queues are flushed at interpreter exit.

Every event put ends, for each recorder, in exactly one of: delivered, dropped
because its queue was full (or the pipeline closed), failed (the recorder raised
on its batch), or lost at shutdown (still queued or in the recorder's hands when
``close`` gave up waiting). :meth:`Pipeline.counts` gives these per recorder.

A recorder that fails is logged once, with the error, until it works again
(then once more, with how many events it lost). Losses are handed to recorders
that count them (``record_dropped``, see :class:`~gracefail.recorders.base.CountsDrops`)
with the reason ``queue_full``, or ``recorder_error`` (a recorder raised on a batch, or
hung at shutdown with events in hand).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .events import Event
from .recorders.base import CountsDrops, Recorder

__all__ = ["Pipeline", "RecorderCounts"]

log = logging.getLogger("gracefail")

_BATCH: Final = 500
_IDLE_WAIT: Final = 0.2
_REASONS: Final = ("queue_full", "recorder_error")

# Live pipelines, so a forked child can forget its parent's queues and locks.
_pipelines: weakref.WeakSet[Pipeline] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class RecorderCounts:
    """What became of the events put, for one recorder.

    ``queued`` and ``in_flight`` are on their way; every other event put is in exactly
    one of the rest. (A forked child carries on from its parent's counts; what the
    parent had queued is the parent's to deliver.)
    """

    recorder: Recorder
    delivered: int
    dropped: int
    failed: int
    shutdown: int
    queued: int
    in_flight: int


class _Lane:
    """One recorder's queue, thread and counts."""

    def __init__(self, pipeline: Pipeline, recorder: Recorder):
        self.pipeline = pipeline
        self.recorder = recorder
        self.counter: CountsDrops | None = recorder if isinstance(recorder, CountsDrops) else None
        self.queue: collections.deque[Event] = collections.deque()
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self.shutdown = 0
        self.in_flight = 0
        # Pipeline-wide losses already handed to this recorder's record_dropped.
        self.forwarded = (0, 0)
        self.broken: int | None = None
        self.abandoned = False
        self._fresh_state()

    def _fresh_state(self) -> None:
        # Locks and thread state; after fork() the child gets new ones (the parent's
        # thread may have held one at fork time).
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.idle = threading.Condition()
        self.busy = False
        self.started = False
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def after_fork(self) -> None:
        # The parent delivers what it queued; this process starts empty.
        self.queue = collections.deque()
        self.in_flight = 0
        self.abandoned = False
        self._fresh_state()

    def count_drop(self) -> None:
        with self.lock:
            self.dropped += 1

    def start(self) -> None:
        with self.lock:
            if self.started:
                return
            # Lazily, in the process that records: a forked worker (see after_fork)
            # comes here again and starts its own thread.
            self.pid = os.getpid()
            self.thread = threading.Thread(
                target=self._run, name=f"gracefail-recorder-{type(self.recorder).__name__}",
                daemon=True,
            )  # fmt: skip
            self.thread.start()
            self.started = True

    def alive(self) -> bool:
        thread = self.thread
        return thread is not None and thread.is_alive() and self.pid == os.getpid()

    def _run(self) -> None:
        while True:
            self.wake.wait(_IDLE_WAIT)
            self.wake.clear()
            self.drain()
            if self.abandoned or (self.pipeline.closed and not self.queue):
                return

    def drain(self) -> None:
        """Hand everything queued so far to the recorder (on the calling thread)."""
        with self.idle:
            self.busy = True
        try:
            while True:
                with self.lock:
                    if self.abandoned or not self.queue:
                        break
                    queue = self.queue
                    batch = [queue.popleft() for _ in range(min(_BATCH, len(queue)))]
                    self.in_flight = len(batch)
                self._deliver(batch)
            if self.counter is not None and not self.abandoned:
                self._forward_drops(self.counter)
        finally:
            with self.idle:
                self.busy = False
                self.idle.notify_all()

    def _deliver(self, batch: list[Event]) -> None:
        recorder = self.recorder
        try:
            recorder.record(batch)
        except Exception:
            with self.lock:
                if self.abandoned:
                    return  # counted as lost at shutdown already
                self.in_flight = 0
                self.failed += len(batch)
            if self.broken is None:
                log.exception(
                    "gracefail: recorder %r failed; its events are dropped and counted "
                    "until it recovers",
                    recorder,
                )
                self.broken = 0
            self.broken += len(batch)
            return
        with self.lock:
            if self.abandoned:
                return  # counted as lost at shutdown already
            self.in_flight = 0
            self.delivered += len(batch)
        if self.broken is not None:
            log.warning(
                "gracefail: recorder %r recovered; %d events were dropped meanwhile",
                recorder,
                self.broken,
            )
            self.broken = None

    def _forward_drops(self, counter: CountsDrops) -> None:
        """Hand the pipeline's losses since the last call to this recorder's counter."""
        totals = self.pipeline.loss_totals()
        new = [now - before for now, before in zip(totals, self.forwarded, strict=True)]
        if not any(new):
            return
        self.forwarded = totals
        for count, reason in zip(new, _REASONS, strict=True):
            if count:
                try:
                    counter.record_dropped(count, reason)
                except Exception:
                    log.debug("gracefail: %r could not count dropped events", self.recorder)

    def wait_idle(self, deadline: float) -> bool:
        self.wake.set()
        with self.idle:
            return self.idle.wait_for(
                lambda: self.abandoned or (not self.queue and not self.busy),
                max(0.0, deadline - time.monotonic()),
            )

    def abandon(self) -> int:
        """Give up on a recorder that hangs: what it still holds is lost; returns how much."""
        with self.lock:
            lost = len(self.queue) + self.in_flight
            self.queue.clear()
            self.in_flight = 0
            self.shutdown += lost
            self.abandoned = True
        self.wake.set()
        return lost

    def snapshot(self) -> RecorderCounts:
        with self.lock:
            return RecorderCounts(
                recorder=self.recorder,
                delivered=self.delivered,
                dropped=self.dropped,
                failed=self.failed,
                shutdown=self.shutdown,
                queued=len(self.queue),
                in_flight=self.in_flight,
            )


class Pipeline:
    """Hands events to recorders off the request path, one queue and thread per recorder.

    ``maxsize`` bounds each recorder's queue. ``dropped`` and ``failed_events`` add up
    the recorders' losses (an event lost by two recorders counts twice); ``counts()``
    has them per recorder.
    """

    def __init__(self, recorders: Sequence[Recorder], maxsize: int):
        self.recorders = list(recorders)
        self.maxsize = maxsize
        self.closed = False
        self._lanes = [_Lane(self, recorder) for recorder in self.recorders]
        _pipelines.add(self)
        atexit.register(_close_at_exit, weakref.ref(self))

    def put(self, event: Event) -> None:
        """Queue an event for every recorder; never blocks. A full queue drops it and
        counts the drop (for that recorder only)."""
        if self.closed:
            for lane in self._lanes:
                lane.count_drop()
            return
        maxsize = self.maxsize
        for lane in self._lanes:
            queue = lane.queue
            size = len(queue)
            if size >= maxsize:
                lane.count_drop()
                continue
            queue.append(event)
            if not lane.started:
                lane.start()
            elif size == _BATCH - 1:
                # A full batch is waiting: wake the thread now rather than at its next tick.
                lane.wake.set()

    @property
    def dropped(self) -> int:
        """Events dropped for a recorder: its queue was full, the pipeline was closed,
        or it still held them when ``close`` stopped waiting."""
        return sum(lane.dropped + lane.shutdown for lane in self._lanes)

    @property
    def failed_events(self) -> int:
        """Events lost because a recorder raised on their batch."""
        return sum(lane.failed for lane in self._lanes)

    def counts(self) -> list[RecorderCounts]:
        """What became of the events put, per recorder (in the order given)."""
        return [lane.snapshot() for lane in self._lanes]

    def loss_totals(self) -> tuple[int, int]:
        """The losses over every recorder as ``record_dropped`` reports them:
        (queue_full, recorder_error); a recorder hung at shutdown is a recorder error."""
        lanes = self._lanes
        return (
            sum(lane.dropped for lane in lanes),
            sum(lane.failed + lane.shutdown for lane in lanes),
        )

    def drain(self) -> None:
        """Hand everything queued so far to the recorders (on the calling thread)."""
        for lane in self._lanes:
            lane.drain()

    def _after_fork(self) -> None:
        totals = self.loss_totals()
        for lane in self._lanes:
            lane.after_fork()
            lane.forwarded = totals

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event reached its recorder; True if all did in time.

        The recorders drain in parallel: one that hangs does not hold up the others,
        and the wait is ``timeout`` in all.
        """
        deadline = time.monotonic() + timeout
        done = True
        for lane in self._lanes:
            if lane.alive():
                lane.wake.set()
        for lane in self._lanes:
            if lane.alive():
                done = lane.wait_idle(deadline) and done
            elif not lane.abandoned:
                lane.drain()
        return done

    def close(self, timeout: float = 5.0) -> None:
        """Flush, stop the threads and close the recorders (idempotent).

        Waits at most ``timeout`` seconds in all for the recorders to take what is
        queued. A recorder still busy then is left to its (daemon) thread: the events
        it holds or has queued are counted as lost at shutdown (``shutdown`` in
        :meth:`counts`, and in ``dropped``), and it is not closed, since closing
        could wait on the call that hangs.
        """
        if self.closed:
            return
        self.closed = True  # from now on, put() drops and counts
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        stuck: list[_Lane] = []
        for lane in self._lanes:
            thread = lane.thread
            if lane.alive() and thread is not None:
                lane.wake.set()
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    stuck.append(lane)
        for lane in stuck:
            lost = lane.abandon()
            log.warning(
                "gracefail: recorder %r is still busy at shutdown; %d events it had "
                "not stored are dropped",
                lane.recorder,
                lost,
            )
        for lane in self._lanes:
            if lane.abandoned:
                continue
            lane.drain()  # what a racing put() queued, and the last losses to count
            close = getattr(lane.recorder, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("gracefail: closing recorder %r failed", lane.recorder)


def _close_at_exit(ref: weakref.ref[Pipeline]) -> None:
    pipeline = ref()
    if pipeline is not None:
        pipeline.close()


def _after_fork_in_child() -> None:
    for pipeline in list(_pipelines):
        pipeline._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
