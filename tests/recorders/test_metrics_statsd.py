"""StatsD and DogStatsD lines, received on a real UDP socket on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.pipeline import Pipeline
from gracefail.recorders import StatsdRecorder


@pytest.fixture
def agent() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def receive(sock: socket.socket) -> list[bytes]:
    """Every datagram that arrives until the socket is quiet for 0.2 s."""
    packets = [sock.recv(65535)]
    sock.settimeout(0.2)
    try:
        while True:
            packets.append(sock.recv(65535))
    except TimeoutError:
        pass
    return packets


def batch() -> list[Event]:
    now = time.time()
    return [
        ServerEvent(now, "a", 502, "connection", "GET", "/items/{item_id}", "html"),
        ServerEvent(now, "b", 502, "connection", "GET", "/items/{item_id}", "html"),
        ServerEvent(now, "c", 504, "timeout", "POST", None, "json", source="gateway"),
        ServerEvent(now, "d", 502, "connection", "GET", "/x", "text", probe=True),
        ClientEvent(now, "a", "shown", 0, 100, "en"),
        ClientEvent(now, "a", "recovered", 2, 12_345, "en"),
    ]


def test_dogstatsd_tags(agent: socket.socket) -> None:
    port = agent.getsockname()[1]
    recorder = StatsdRecorder("127.0.0.1", port, dogstatsd=True, tags={"env": "test"})
    recorder.record(batch())
    lines = sorted(b"\n".join(receive(agent)).decode().split("\n"))
    recorder.close()
    assert lines == sorted([
        "gracefail.failures:2|c|#status:502,cause:connection,method:GET,"
        "route:/items/{item_id},source:app,env:test",
        "gracefail.failures:1|c|#status:504,cause:timeout,method:POST,route:unknown,"
        "source:gateway,env:test",
        "gracefail.probes:1|c|#status:502,env:test",
        "gracefail.page_events:1|c|#event:shown,env:test",
        "gracefail.page_events:1|c|#event:recovered,env:test",
        "gracefail.time_to_recovery:12345|ms|#env:test",
    ])  # fmt: skip


def test_plain_statsd_paths_and_dropped_counter(agent: socket.socket) -> None:
    port = agent.getsockname()[1]
    recorder = StatsdRecorder("127.0.0.1", port)
    pipeline = Pipeline([recorder], maxsize=6)
    for event in [*batch(), *batch()[:2]]:  # the last two do not fit in the queue
        pipeline.put(event)
    pipeline.close()
    lines = sorted(b"\n".join(receive(agent)).decode().split("\n"))
    assert lines == sorted([
        "gracefail.failures.502.connection.GET.items_item_id.app:2|c",
        "gracefail.failures.504.timeout.POST.unknown.gateway:1|c",
        "gracefail.probes.502:1|c",
        "gracefail.page_events.shown:1|c",
        "gracefail.page_events.recovered:1|c",
        "gracefail.time_to_recovery:12345|ms",
        "gracefail.events_dropped.queue_full:2|c",
    ])  # fmt: skip


def test_datagrams_stay_under_max_packet(agent: socket.socket) -> None:
    port = agent.getsockname()[1]
    recorder = StatsdRecorder("127.0.0.1", port, dogstatsd=True, max_packet=200)
    now = time.time()
    recorder.record(
        [ServerEvent(now, str(n), 502, "connection", "GET", f"/r{n}", "html") for n in range(40)]
    )
    packets = receive(agent)
    recorder.close()
    assert len(packets) > 5
    assert all(len(p) <= 200 for p in packets)
    lines = b"\n".join(packets).decode().split("\n")
    assert len(lines) == 40
    assert all(line.startswith("gracefail.failures:1|c|#") for line in lines)


def test_hostile_label_values_cannot_break_the_protocol(agent: socket.socket) -> None:
    port = agent.getsockname()[1]
    recorder = StatsdRecorder("127.0.0.1", port, dogstatsd=True)
    recorder.record([ServerEvent(time.time(), "a", 502, "x|y", "GET", "/a,b #c\nd:1|c", "html")])
    [line] = b"".join(receive(agent)).decode().split("\n")
    recorder.close()
    assert line == (
        "gracefail.failures:1|c|#status:502,cause:x_y,method:GET,route:/a_b__c_d:1_c,source:app"
    )
