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


# -- issue 12: limits per page view, outcomes before shown, chosen request ids ------------


def served_token(gracefail: Engine, request_id: str | None = None) -> str:
    """The token of a failure page served to a request (with ``X-Request-ID``, if given)."""
    from gracefail.classify import Failure

    headers = {"accept": "text/html"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    reply = gracefail.respond(
        Failure(502, "connection"), RequestView("GET", "/shop", headers=headers)
    )
    page = reply.body.decode()
    start = page.index('"token":"') + len('"token":"')
    return page[start : page.index('"', start)]


def client_events(recorder: ListRecorder) -> list[ClientEvent]:
    return [e for e in recorder.events if isinstance(e, ClientEvent)]


def beacon(token: str, kind: str, attempt: int = 0, elapsed_ms: int = 10) -> bytes:
    data = {"token": token, "kind": kind, "attempt": attempt, "elapsed_ms": elapsed_ms,
            "locale": "en"}  # fmt: skip
    return json.dumps(data).encode()


def test_a_chosen_request_id_cannot_spend_another_page_views_budget() -> None:
    """Issue 12: the attacker asks for a page with the victim's X-Request-ID, gets a valid
    token for the same incident and sends 64 events: the victim's beacons then got 429."""
    gracefail, recorder = app()
    victim = served_token(gracefail, "req-42")
    attacker = served_token(gracefail, "req-42")
    statuses = [post(gracefail, beacon(attacker, "retry", n), f"10.6.6.{n}")[0] for n in range(99)]
    assert 429 in statuses, "the attacker's own page view is spent"
    assert post(gracefail, beacon(victim, "shown"), "10.0.0.7")[0] == 204
    assert post(gracefail, beacon(victim, "recovered", 1, 900), "10.0.0.7")[0] == 204
    gracefail.flush()
    mine = [e for e in client_events(recorder) if e.kind != "retry"]
    assert [e.kind for e in mine] == ["shown", "recovered"]
    assert mine[0].incident.startswith("req-42:")
    gracefail.close()


def test_each_page_view_has_its_own_rate_limit_with_retry_after() -> None:
    gracefail, recorder = app()
    gracefail.guard = BeaconGuard(page_rate=1.0, page_burst=3, rate=1000.0, burst=1000)
    looping, quiet = served_token(gracefail), served_token(gracefail)
    results = [post(gracefail, beacon(looping, "retry", n), "10.0.0.1") for n in range(5)]
    assert [status for status, _ in results] == [204, 204, 204, 429, 429]
    assert results[3][1]["retry-after"] == "1", "the page sends it again a second later"
    assert post(gracefail, beacon(quiet, "shown"), "10.0.0.1")[0] == 204, "another page"
    assert gracefail.guard.page_limited == 2
    gracefail.flush()
    assert len(client_events(recorder)) == 4
    gracefail.close()


def test_the_bound_per_page_view_has_no_retry_after() -> None:
    """A page past its bound of events gets nothing by sending again: no Retry-After."""
    gracefail, _ = app()
    gracefail.guard = BeaconGuard(per_incident=1)
    token = served_token(gracefail)
    assert post(gracefail, beacon(token, "shown"))[0] == 204
    status, headers = post(gracefail, beacon(token, "retry", 1))
    assert status == 429
    assert "retry-after" not in headers
    gracefail.close()


@pytest.mark.parametrize("outcome", ["recovered", "gave_up", "abandoned"])
def test_an_outcome_before_its_shown_is_refused(outcome: str) -> None:
    gracefail, recorder = app()
    token = served_token(gracefail)
    assert post(gracefail, beacon(token, "shown", 0, 800))[0] == 204
    status, _ = post(gracefail, beacon(token, outcome, 1, 799))
    assert status == 400
    assert post(gracefail, beacon(token, outcome, 1, 800))[0] == 204
    gracefail.flush()
    assert [(e.kind, e.elapsed_ms) for e in client_events(recorder)] == [
        ("shown", 800), (outcome, 800),
    ]  # fmt: skip
    assert gracefail.guard.before_shown == 1
    gracefail.close()


def test_an_outcome_whose_shown_this_process_never_saw_is_accepted() -> None:
    """Another worker may have taken the shown: the report orders them instead."""
    guard = BeaconGuard()
    now = time.time()
    assert guard.admit(ClientEvent(now, "k", "recovered", 1, 5, "en")) is Verdict.ACCEPT
    assert guard.admit(ClientEvent(now, "k", "shown", 0, 100, "en")) is Verdict.ACCEPT


def test_durations_are_cut_to_the_token_age_on_the_way_in() -> None:
    gracefail, recorder = app()
    token = served_token(gracefail)
    week = 7 * 86_400_000
    assert post(gracefail, beacon(token, "shown", 0, week))[0] == 204
    assert post(gracefail, beacon(token, "recovered", 1, week))[0] == 204
    gracefail.flush()
    events = client_events(recorder)
    assert len(events) == 2
    assert all(e.elapsed_ms <= 20_000 for e in events)
    gracefail.close()
