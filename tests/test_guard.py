"""Beacon hardening: rate limit, bound per incident, duplicates, bounded memory."""

from __future__ import annotations

import json
import time

import pytest

from gracefail import Config
from gracefail.core import Engine, RequestView
from gracefail.events import ClientEvent
from gracefail.guard import BeaconGuard, Verdict
from tests.apps.common import ListRecorder

SECRET = "test-secret-0123456789abcdef"
FORGED = json.dumps(
    {"token": "1~a~502~AAAAAAAAAAAAAAAAAAAAAA", "kind": "shown", "attempt": 0, "elapsed_ms": 1,
     "locale": "en"}
).encode()  # fmt: skip


def app() -> tuple[Engine, ListRecorder]:
    recorder = ListRecorder()
    return Engine(Config(secret=SECRET, recorders=[recorder])), recorder


def post(
    gracefail: Engine, body: bytes, client: str | None = "10.0.0.1"
) -> tuple[int, dict[str, str]]:
    view = RequestView(
        method="POST", path="/_gracefail/beacon", client_addr=client,
        headers={"host": "shop.test", "origin": "http://shop.test", "content-type": "text/plain"},
    )  # fmt: skip
    reply = gracefail.accept_beacon(view, body)
    return reply.status, dict(reply.headers)


def body(gracefail: Engine, incident: str, kind: str = "retry", attempt: int = 1) -> bytes:
    token = gracefail.signer.sign(incident, 502)
    data = {"token": token, "kind": kind, "attempt": attempt, "elapsed_ms": 10, "locale": "en"}
    return json.dumps(data).encode()


def test_duplicates_are_answered_but_recorded_once() -> None:
    gracefail, recorder = app()
    for _ in range(3):
        assert post(gracefail, body(gracefail, "inc-1", "shown", 0))[0] == 204
    assert post(gracefail, body(gracefail, "inc-1", "retry", 1))[0] == 204
    assert post(gracefail, body(gracefail, "inc-1", "retry", 2))[0] == 204
    gracefail.flush()
    assert [(e.kind, e.attempt) for e in recorder.events] == [  # type: ignore[union-attr]
        ("shown", 0), ("retry", 1), ("retry", 2),
    ]  # fmt: skip
    assert gracefail.guard.duplicates == 2
    gracefail.close()


def test_events_per_incident_are_bounded() -> None:
    gracefail, recorder = app()
    gracefail.guard = BeaconGuard(per_incident=5)
    statuses = [post(gracefail, body(gracefail, "loop", "retry", n))[0] for n in range(8)]
    assert statuses == [204] * 5 + [429] * 3
    assert post(gracefail, body(gracefail, "other", "shown", 0))[0] == 204
    gracefail.flush()
    assert len(recorder.events) == 6
    gracefail.close()


def test_rate_limit_per_client_answers_429_with_retry_after() -> None:
    gracefail, recorder = app()
    gracefail.guard = BeaconGuard(rate=1.0, burst=3)
    results = [post(gracefail, body(gracefail, f"i{n}"), "10.0.0.9") for n in range(5)]
    assert [s for s, _ in results] == [204, 204, 204, 429, 429]
    assert results[3][1]["retry-after"] == "1"
    assert post(gracefail, body(gracefail, "x"), "10.0.0.10")[0] == 204, "another client"
    assert post(gracefail, body(gracefail, "y"), None)[0] == 204, "unknown peers: no limit"
    # Refused beacons (bad token) spend the budget too: a flood costs no HMAC work.
    gracefail.guard = BeaconGuard(rate=1.0, burst=2)
    assert post(gracefail, b'{"token": "forged"}', "10.0.0.11")[0] == 400
    assert post(gracefail, b'{"token": "forged"}', "10.0.0.11")[0] == 400
    assert post(gracefail, body(gracefail, "z"), "10.0.0.11")[0] == 429
    gracefail.flush()
    assert len(recorder.events) == 5
    gracefail.close()


def test_bucket_refills_over_time() -> None:
    guard = BeaconGuard(rate=2.0, burst=2)
    assert guard.allow("c", now=100.0) == 0.0
    assert guard.allow("c", now=100.0) == 0.0
    assert guard.allow("c", now=100.0) == pytest.approx(0.5)
    assert guard.allow("c", now=100.6) == 0.0
    assert guard.rate_limited == 1


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        pytest.param(b"not json", 400, id="not-json"),
        pytest.param(b"[1, 2]", 400, id="not-object"),
        pytest.param(b'{"token": "x", "kind": "shown"}', 400, id="missing-keys"),
        pytest.param(b"x" * 5000, 413, id="too-large"),
        pytest.param(FORGED, 403, id="forged-token"),
    ],
)
def test_hostile_bodies_store_nothing(payload: bytes, status: int) -> None:
    gracefail, recorder = app()
    assert post(gracefail, payload)[0] == status
    gracefail.flush()
    assert recorder.events == []
    gracefail.close()


def test_memory_stays_bounded_under_a_flood() -> None:
    guard = BeaconGuard(max_clients=1000, max_incidents=500, per_incident=8)
    now = time.time()
    for n in range(20_000):
        guard.allow(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
        event = ClientEvent(now, f"incident-{n}", "retry", n % 10, 5, "en")
        guard.admit(event)
    clients, incidents = guard.sizes()
    assert clients == 1000
    assert incidents == 500


def test_recent_incidents_are_kept_when_old_ones_are_forgotten() -> None:
    guard = BeaconGuard(max_incidents=2)
    now = time.time()
    a = ClientEvent(now, "a", "shown", 0, 1, "en")
    assert guard.admit(a) is Verdict.ACCEPT
    guard.admit(ClientEvent(now, "b", "shown", 0, 1, "en"))
    assert guard.admit(a) is Verdict.DUPLICATE  # touching "a" makes "b" the oldest
    guard.admit(ClientEvent(now, "c", "shown", 0, 1, "en"))
    assert guard.admit(a) is Verdict.DUPLICATE
    assert guard.admit(ClientEvent(now, "b", "shown", 0, 1, "en")) is Verdict.ACCEPT


def test_two_apps_do_not_share_limits() -> None:
    one, _ = app()
    two, _ = app()
    one.guard = BeaconGuard(rate=0.001, burst=1)
    two.guard = BeaconGuard(rate=0.001, burst=1)
    assert post(one, body(one, "a"))[0] == 204
    assert post(one, body(one, "b"))[0] == 429
    assert post(two, body(two, "a"))[0] == 204
    assert one.guard is not two.guard
    one.close()
    two.close()


def test_default_guard_is_per_instance() -> None:
    one, _ = app()
    two, _ = app()
    assert one.guard is not two.guard
    one.close()
    two.close()
