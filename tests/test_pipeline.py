"""The queue between requests and recorders: never blocks, counts drops, survives fork()."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest

from gracefail.events import Event, ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders.sqlite import SQLiteRecorder


def event(n: int) -> ServerEvent:
    return ServerEvent(time.time(), f"e{n}", 502, "connection", "GET", "/r", "html")


class Gate:
    """A recorder that holds the background thread until it is opened."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.events: list[Event] = []

    def record(self, events: Sequence[Event]) -> None:
        self.open.wait(10)
        self.events.extend(events)

    def close(self) -> None:
        self.open.set()


class Flaky:
    """Fails while ``down`` is true; counts what it lost through record_dropped."""

    def __init__(self) -> None:
        self.down = True
        self.events: list[Event] = []
        self.dropped: list[tuple[int, str]] = []

    def record(self, events: Sequence[Event]) -> None:
        if self.down:
            raise ConnectionError("store is down")
        self.events.extend(events)

    def record_dropped(self, count: int, reason: str) -> None:
        self.dropped.append((count, reason))

    def close(self) -> None:
        pass


def test_put_never_blocks_and_counts_drops() -> None:
    gate = Gate()
    pipeline = Pipeline([gate], maxsize=100)
    pipeline.put(event(0))
    time.sleep(0.3)  # the thread is now stuck in the gate with one event
    for n in range(1, 1001):
        pipeline.put(event(n))  # would hang here if put waited for the recorder
    assert pipeline.dropped == 900
    gate.open.set()
    assert pipeline.flush(5)
    assert len(gate.events) == 101
    pipeline.close()


def test_thread_starts_lazily_and_close_flushes() -> None:
    gate = Gate()
    gate.open.set()
    pipeline = Pipeline([gate], maxsize=10)
    [lane] = pipeline._lanes
    assert lane.thread is None
    pipeline.put(event(1))
    assert lane.thread is not None
    assert lane.thread.is_alive()
    pipeline.close()
    assert [e.incident for e in gate.events] == ["e1"]  # type: ignore[union-attr]
    assert not lane.thread.is_alive()
    pipeline.put(event(2))
    assert pipeline.dropped == 1, "after close, events are dropped and counted"


def test_a_failing_recorder_is_logged_once_and_does_not_starve_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky, gate = Flaky(), Gate()
    gate.open.set()
    pipeline = Pipeline([flaky, gate], maxsize=1000)
    caplog.set_level(logging.INFO, logger="gracefail")
    for n in range(3):
        pipeline.put(event(n))
        pipeline.flush()
    assert pipeline.failed_events == 3
    assert len(gate.events) == 3
    flaky.down = False
    pipeline.put(event(3))
    pipeline.flush()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed; its events are dropped" in m for m in messages) == 1
    assert sum("recovered; 3 events were dropped meanwhile" in m for m in messages) == 1
    assert flaky.dropped == [(1, "recorder_error")] * 3
    pipeline.close()


def test_fork_child_starts_its_own_thread_and_not_the_parents_events(tmp_path: Path) -> None:
    store = tmp_path / "fork.db"
    gate = Gate()
    pipeline = Pipeline([SQLiteRecorder(store), gate], maxsize=1000)
    pipeline.put(event(0))
    time.sleep(0.3)  # the gate's thread is stuck in the gate...
    pipeline.put(event(1))  # ...so this one is still queued for it when we fork
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: exits without returning to pytest
        code = 1
        try:
            gate.open.set()
            fresh = all(lane.thread is None and not lane.queue for lane in pipeline._lanes)
            pipeline.put(event(100))
            started = all(lane.alive() for lane in pipeline._lanes)
            pipeline.flush()
            code = 0 if fresh and started else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    gate.open.set()
    pipeline.close()
    with sqlite3.connect(store) as conn:
        rows = sorted(r[0] for r in conn.execute("SELECT incident FROM gracefail_failures"))
    assert rows == ["e0", "e1", "e100"], "each event once: e0, e1 by the parent, e100 by the child"
    assert [e.incident for e in gate.events] == ["e0", "e1"]  # type: ignore[union-attr]


def test_close_does_not_hang_on_a_stuck_recorder(caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate()
    pipeline = Pipeline([gate], maxsize=100)
    pipeline.put(event(0))
    time.sleep(0.3)  # the thread is stuck in the gate, holding e0
    pipeline.put(event(1))
    start = time.monotonic()
    pipeline.close(timeout=0.2)
    assert time.monotonic() - start < 2
    assert pipeline.dropped == 2, "the batch in the recorder's hands counts, not only the queue"
    assert "still busy at shutdown; 2 events it had not stored are dropped" in caplog.text
    gate.open.set()


class Healthy:
    """A recorder that takes everything at once and says when it has ``expect`` events."""

    def __init__(self, expect: int) -> None:
        self.events: list[Event] = []
        self.expect = expect
        self.all_in = threading.Event()

    def record(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        if len(self.events) >= self.expect:
            self.all_in.set()

    def close(self) -> None:
        pass


def test_every_event_is_delivered_or_counted_when_a_recorder_hangs_at_shutdown() -> None:
    """Issue 12: 20 events, close(timeout=1): the slow recorder's in-flight batch was
    neither delivered nor counted."""
    slow, healthy = Gate(), Healthy(20)
    pipeline = Pipeline([slow, healthy], maxsize=1000)
    pipeline.put(event(0))
    time.sleep(0.3)  # the slow recorder now holds a batch of one and does not return
    for n in range(1, 20):
        pipeline.put(event(n))
    pipeline.close(timeout=1)
    slow_counts, healthy_counts = pipeline.counts()
    assert slow_counts.delivered == 0
    assert slow_counts.queued == slow_counts.in_flight == 0
    lost = slow_counts.dropped + slow_counts.failed + slow_counts.shutdown
    assert lost == 20, slow_counts
    assert healthy_counts.delivered == 20, healthy_counts
    assert len(healthy.events) == 20
    assert pipeline.dropped == 20
    slow.open.set()  # the slow recorder returns late: its batch is not counted twice
    assert slow_counts.recorder is slow
    time.sleep(0.3)
    assert pipeline.counts()[0].delivered == 0
    assert pipeline.dropped == 20


def test_a_hanging_recorder_does_not_starve_its_neighbour() -> None:
    """Issue 12: with a recorder blocking for 10 s, its neighbour got 50 of 300 events."""
    hanging, healthy = Gate(), Healthy(300)
    pipeline = Pipeline([hanging, healthy], maxsize=1000)
    for n in range(300):
        pipeline.put(event(n))
    try:
        assert healthy.all_in.wait(5), f"the healthy recorder got {len(healthy.events)} of 300"
        assert pipeline.flush(0.2) is False, "the hanging recorder has not taken its events"
    finally:
        hanging.open.set()
    assert pipeline.flush(5)
    assert [c.delivered for c in pipeline.counts()] == [300, 300]
    pipeline.close()


def test_a_full_queue_drops_for_the_slow_recorder_only() -> None:
    slow, healthy = Gate(), Healthy(50)
    pipeline = Pipeline([slow, healthy], maxsize=10)
    pipeline.put(event(0))
    time.sleep(0.3)  # the slow recorder holds e0
    for n in range(1, 50):
        pipeline.put(event(n))
        if n % 5 == 0:  # the healthy one keeps up meanwhile
            assert pipeline._lanes[1].wait_idle(time.monotonic() + 5)
    slow.open.set()
    assert pipeline.flush(5)
    slow_counts, healthy_counts = pipeline.counts()
    assert slow_counts.delivered + slow_counts.dropped == 50
    assert slow_counts.dropped == 39, slow_counts  # 1 held + 10 queued of 50
    assert healthy_counts.delivered == 50, healthy_counts
    assert pipeline.dropped == 39
    pipeline.close()


def test_losses_at_shutdown_reach_the_recorders_that_count_drops() -> None:
    hung, counter = Gate(), Flaky()
    counter.down = False
    pipeline = Pipeline([hung, counter], maxsize=1000)
    pipeline.put(event(0))
    time.sleep(0.3)  # the hung recorder holds e0
    for n in range(1, 5):
        pipeline.put(event(n))
    pipeline.close(timeout=0.5)
    hung.open.set()
    assert pipeline.counts()[0].shutdown == 5
    assert len(counter.events) == 5
    # A recorder that hung with events in hand lost them: a recorder error, counted once.
    assert counter.dropped == [(5, "recorder_error")]
