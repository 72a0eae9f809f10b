"""Overload protection's decisions (gracefail.overload), on an injected clock.

No sleeps and no timing thresholds: the adaptive controller reads time only from the
clock these tests move by hand, and the threaded test checks counts, not durations.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Iterator

import pytest

from gracefail.config import ConfigError
from gracefail.overload import (
    ADMITTED,
    ADMITTED_UNSAMPLED,
    EXEMPT,
    SHED_CONCURRENCY,
    SHED_QUEUE,
    AdaptiveLimiter,
    Admission,
    Limiter,
    Overload,
    OverloadGuard,
    check_overload,
    next_limit,
    parse_queue_stamp,
    stamp_header,
)

NOW = 1_700_000_000.0  # the wall clock's "now" in these tests (epoch seconds)
PROXY = "10.0.0.2"
TRUSTED = ("10.0.0.0/24",)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def guard(policy: Overload, clock: Clock | None = None) -> OverloadGuard:
    return OverloadGuard(
        policy, TRUSTED, clock=clock or Clock(), wall=lambda: NOW, rng=random.Random(0)
    )


def ms_ago(ms: float) -> str:
    """An nginx-style stamp (``t=${msec}``) of ``ms`` milliseconds before NOW."""
    return f"t={NOW - ms / 1000:.3f}"


# -- the in-flight limit ------------------------------------------------------------------------


def test_over_the_limit_is_shed_and_a_freed_slot_admits_again() -> None:
    overload = guard(Overload(max_concurrency=2))
    first, second = overload.admit("/a"), overload.admit("/b")
    assert first is ADMITTED
    assert second is ADMITTED
    assert overload.admit("/c") is SHED_CONCURRENCY
    assert overload.stats().shed == {"queue": 0, "concurrency": 1}
    overload.release(first, 0.01)
    assert overload.admit("/c") is ADMITTED
    assert overload.stats().in_flight == 2


def test_releasing_a_shed_request_changes_nothing() -> None:
    overload = guard(Overload(max_concurrency=1))
    held = overload.admit("/")
    shed = overload.admit("/")
    assert shed is SHED_CONCURRENCY
    overload.release(shed, 0.01)  # adapters may release whatever admit() returned
    assert overload.stats().in_flight == 1
    overload.release(held)
    assert overload.stats().in_flight == 0
    assert overload.stats().counts["unmatched_releases"] == 0


def test_a_release_without_a_slot_is_counted_not_raised() -> None:
    limiter = Limiter(3)
    limiter.release(0.01)
    assert limiter.in_flight == 0
    assert limiter.unmatched == 1


def test_never_shed_paths_pass_over_the_limit_and_their_prefixes_only() -> None:
    overload = guard(Overload(max_concurrency=1, never_shed=["/healthz", "/status/"]))
    assert overload.admit("/checkout") is ADMITTED
    assert overload.admit("/checkout") is SHED_CONCURRENCY
    for path in ("/healthz", "/healthz/db", "/status", "/status/deep/er"):
        assert overload.admit(path) is EXEMPT, path
    # A neighbour that merely starts with the same letters is not a health check.
    assert overload.admit("/healthzz") is SHED_CONCURRENCY
    assert overload.admit("/statuses") is SHED_CONCURRENCY
    # Exempt requests count in flight (they hold the server too) and are released.
    assert overload.stats().in_flight == 5
    for _ in range(4):
        overload.release(EXEMPT)
    assert overload.stats().in_flight == 1


def test_never_shed_wins_over_an_old_stamp() -> None:
    overload = guard(Overload(max_queue_ms=100, never_shed="/healthz"))
    assert overload.admit("/healthz", stamp=ms_ago(5000), peer=PROXY) is EXEMPT


def test_probes_and_beacons_are_shed_before_navigations() -> None:
    overload = guard(Overload(max_concurrency=4, background_share=0.5))
    assert overload.admit("/", probe=True) is ADMITTED
    assert overload.admit("/_gracefail/beacon", beacon=True) is ADMITTED_UNSAMPLED
    # Two slots of four taken: the background share (2) is spent, users' requests pass.
    assert overload.admit("/", probe=True) is SHED_CONCURRENCY
    assert overload.admit("/_gracefail/beacon", beacon=True) is SHED_CONCURRENCY
    assert overload.admit("/") is ADMITTED
    assert overload.admit("/") is ADMITTED
    assert overload.admit("/") is SHED_CONCURRENCY
    stats = overload.stats()
    assert (stats.limit, stats.background_limit) == (4, 2)
    assert stats.shed_concurrency == 3
    assert stats.shed_background == 2


def test_a_small_limit_still_leaves_probes_one_slot() -> None:
    overload = guard(Overload(max_concurrency=1, background_share=0.1))
    assert overload.admit("/", probe=True) is ADMITTED


def test_without_an_in_flight_limit_only_the_queue_sheds() -> None:
    overload = guard(Overload(max_queue_ms=500))
    admitted = [overload.admit("/") for _ in range(1000)]
    assert set(admitted) == {ADMITTED}
    stats = overload.stats()
    assert stats.limit is None
    assert stats.in_flight == 1000


def test_threads_racing_never_exceed_the_limit_and_leave_nothing_in_flight() -> None:
    limit, threads, rounds = 3, 8, 10000
    limiter = Limiter(limit)
    holders = 0
    most = 0
    admitted = [0] * threads
    witness = threading.Lock()
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        nonlocal holders, most
        start.wait()
        for _ in range(rounds):
            if not limiter.try_acquire():
                continue
            with witness:
                holders += 1
                most = max(most, holders)
            admitted[index] += 1
            with witness:
                holders -= 1
            limiter.release(0.001)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows
    try:
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert 1 <= most <= limit
    assert limiter.in_flight == 0
    assert limiter.unmatched == 0
    assert sum(admitted) > 0


def test_threads_racing_through_the_guard_keep_in_flight_exact() -> None:
    clock = Clock()
    overload = guard(Overload(adaptive=True, min_limit=2, max_concurrency=8), clock)
    threads, rounds = 6, 2000
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        for n in range(rounds):
            admission = overload.admit("/", probe=n % 5 == 0)
            clock.now += 0.0001  # each thread moves the shared clock: windows roll mid-race
            overload.release(admission, 0.002)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    stats = overload.stats()
    assert stats.in_flight == 0
    assert stats.counts["unmatched_releases"] == 0
    assert stats.limit is not None
    assert 2 <= stats.limit <= 8


# -- the queue time -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("t=1700000000.123", 1_700_000_000.123),  # nginx t=${msec}
        ("1700000000123", 1_700_000_000.123),  # Heroku: ms
        ("t=1700000000123", 1_700_000_000.123),
        ("t=1700000000123456", 1_700_000_000.123456),  # New Relic: us
        ("t=1700000000123456789", 1_700_000_000.123456789),  # ns
        ("T=1700000000", 1_700_000_000.0),
        (" t=1700000000.5 ", 1_700_000_000.5),
        ("t=1, t=1700000000.25", 1_700_000_000.25),  # the nearest proxy's: the last
    ],
)
def test_stamps_in_every_unit_are_read(value: str, expected: float) -> None:
    assert parse_queue_stamp(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value", ["", "t=", "t=abc", "t=-5", "t=nan", "t=inf", "1e400", "t=" + "9" * 60, "t=1e25"]
)
def test_unreadable_stamps_are_none(value: str) -> None:
    assert parse_queue_stamp(value) is None


def test_stamp_header_prefers_x_request_start() -> None:
    assert stamp_header({"x-queue-start": "t=2", "x-request-start": "t=1"}) == "t=1"
    assert stamp_header({"x-queue-start": "t=2"}) == "t=2"
    assert stamp_header({}) is None


def test_a_request_that_waited_longer_than_the_budget_is_shed() -> None:
    overload = guard(Overload(max_queue_ms=200))
    assert overload.admit("/", stamp=ms_ago(150), peer=PROXY) is ADMITTED
    assert overload.admit("/", stamp=ms_ago(250), peer=PROXY) is SHED_QUEUE
    # Heroku's milliseconds and New Relic's microseconds tell the same wait.
    heroku = str(round((NOW - 0.3) * 1000))
    assert overload.admit("/", stamp=heroku, peer=PROXY) is SHED_QUEUE
    new_relic = f"t={round((NOW - 0.1) * 1_000_000)}"
    assert overload.admit("/", stamp=new_relic, peer=PROXY) is ADMITTED
    stats = overload.stats()
    assert stats.shed == {"queue": 2, "concurrency": 0}
    assert stats.queue_ms == pytest.approx(100, abs=1)
    assert stats.in_flight == 2


def test_probes_get_a_smaller_queue_budget() -> None:
    overload = guard(Overload(max_queue_ms=200, background_share=0.5))
    assert overload.admit("/", stamp=ms_ago(150), peer=PROXY) is ADMITTED
    assert overload.admit("/", probe=True, stamp=ms_ago(150), peer=PROXY) is SHED_QUEUE
    assert overload.admit("/", probe=True, stamp=ms_ago(50), peer=PROXY) is ADMITTED
    assert overload.stats().shed_background == 1


@pytest.mark.parametrize("peer", ["203.0.113.9", None, "not-an-address", "10.0.1.2"])
def test_a_stamp_from_an_untrusted_peer_is_ignored_and_counted(peer: str | None) -> None:
    overload = guard(Overload(max_queue_ms=100))
    # A client could forge an old stamp to have others' requests look late: not read.
    assert overload.admit("/", stamp=ms_ago(60_000), peer=peer) is ADMITTED
    stats = overload.stats()
    assert stats.stamps_untrusted == 1
    assert stats.shed_queue == 0
    assert stats.queue_ms is None


def test_with_no_trusted_proxies_no_stamp_is_read() -> None:
    overload = OverloadGuard(Overload(max_queue_ms=100), (), wall=lambda: NOW)
    assert overload.admit("/", stamp=ms_ago(5000), peer="127.0.0.1") is ADMITTED
    assert overload.stats().stamps_untrusted == 1


def test_an_ipv4_mapped_or_ported_proxy_address_is_trusted() -> None:
    overload = guard(Overload(max_queue_ms=100))
    assert overload.admit("/", stamp=ms_ago(500), peer="::ffff:10.0.0.2") is SHED_QUEUE
    assert overload.admit("/", stamp=ms_ago(500), peer="10.0.0.2:5151") is SHED_QUEUE


def test_future_absurd_and_unreadable_stamps_are_ignored_and_counted() -> None:
    overload = guard(Overload(max_queue_ms=100, stamp_skew_ms=500, stamp_max_age=60))
    # Within the skew: a proxy's clock slightly ahead; no wait, admitted, not counted.
    assert overload.admit("/", stamp=ms_ago(-300), peer=PROXY) is ADMITTED
    assert overload.stats().queue_ms == 0.0
    assert overload.admit("/", stamp=ms_ago(-5000), peer=PROXY) is ADMITTED  # future
    assert overload.admit("/", stamp=ms_ago(61_000), peer=PROXY) is ADMITTED  # absurd
    assert overload.admit("/", stamp="t=1", peer=PROXY) is ADMITTED  # 1970: absurd
    assert overload.admit("/", stamp="t=yesterday", peer=PROXY) is ADMITTED  # unreadable
    stats = overload.stats()
    assert (stats.stamps_future, stats.stamps_absurd, stats.stamps_invalid) == (1, 2, 1)
    assert stats.stamps_ignored == 4
    assert stats.shed_queue == 0


def test_queue_and_concurrency_together_queue_is_checked_first() -> None:
    overload = guard(Overload(max_concurrency=1, max_queue_ms=100))
    assert overload.admit("/", stamp=ms_ago(10), peer=PROXY) is ADMITTED
    assert overload.admit("/", stamp=ms_ago(500), peer=PROXY) is SHED_QUEUE
    assert overload.admit("/", stamp=ms_ago(10), peer=PROXY) is SHED_CONCURRENCY
    assert overload.stats().shed == {"queue": 1, "concurrency": 1}


# -- Retry-After --------------------------------------------------------------------------------


def test_retry_after_is_spread_over_the_window_and_kept_per_client() -> None:
    overload = guard(Overload(max_concurrency=1, retry_after=3, retry_spread=10))
    waits = {
        client: overload.retry_after(client) for client in (f"198.51.100.{i}" for i in range(200))
    }
    assert all(3 <= wait < 13 for wait in waits.values())
    assert len(set(waits.values())) == 10  # every second of the window is used
    assert all(overload.retry_after(client) == wait for client, wait in waits.items())
    anonymous = {overload.retry_after(None) for _ in range(10)}
    assert anonymous == set(range(3, 13))
    assert guard(Overload(max_concurrency=1, retry_spread=0)).retry_after("x") == 2


# -- the adaptive controller ---------------------------------------------------------------------


def test_next_limit_follows_the_gradient_and_its_clamp() -> None:
    # Latency at minRTT: gradient 1.25, plus sqrt headroom.
    assert next_limit(16, 0.01, 0.01, 0.25) == pytest.approx(20 + 20**0.5)
    # Latency 10x minRTT: the gradient is clamped at 0.5, the limit about halves.
    assert next_limit(16, 0.01, 0.1, 0.25) == pytest.approx(8 + 8**0.5)
    # Much faster than minRTT: clamped at 2.
    assert next_limit(16, 0.01, 0.001, 0.25) == pytest.approx(32 + 32**0.5)
    # Unused limit: not grown, but still lowered.
    assert next_limit(16, 0.01, 0.01, 0.25, app_limited=True) == 16
    assert next_limit(16, 0.01, 0.1, 0.25, app_limited=True) < 16


def drive(limiter: AdaptiveLimiter, clock: Clock, latency: float, windows: int) -> Iterator[int]:
    """Run ``windows`` sample windows: fill every slot, let the window pass, complete them
    all with ``latency``. Yields the limit after each window."""
    for _ in range(windows):
        taken = 0
        while limiter.try_acquire():
            taken += 1
        clock.now += limiter.policy.sample_window
        for _ in range(taken):
            limiter.release(latency)
        yield limiter.limit


def measured(policy: Overload, latency: float = 0.01) -> tuple[AdaptiveLimiter, Clock]:
    """An adaptive limiter past its first minRTT measurement (at ``latency``)."""
    clock = Clock()
    limiter = AdaptiveLimiter(policy, clock=clock, rng=random.Random(0))
    while limiter.measuring:
        assert limiter.try_acquire()
        clock.now += latency
        limiter.release(latency)
    assert limiter.min_rtt == pytest.approx(latency)
    return limiter, clock


def test_the_first_measurement_holds_the_floor_then_starts_at_the_initial_limit() -> None:
    policy = Overload(adaptive=True, min_limit=2, initial_limit=10, min_rtt_samples=5)
    clock = Clock()
    limiter = AdaptiveLimiter(policy, clock=clock)
    assert limiter.measuring
    assert limiter.limit == 2
    for _ in range(4):
        assert limiter.try_acquire()
        clock.now += 0.02
        limiter.release(0.02)
    assert limiter.measuring
    assert limiter.limit == 2
    assert limiter.try_acquire()
    clock.now += 0.02
    limiter.release(0.02)
    assert not limiter.measuring
    assert limiter.limit == 10
    assert limiter.min_rtt == 0.02


def test_samples_of_requests_admitted_before_a_measurement_are_not_counted() -> None:
    policy = Overload(
        adaptive=True, min_limit=1, min_rtt_samples=3, min_rtt_interval=10, min_rtt_jitter=0
    )
    limiter, clock = measured(policy)
    clock.now += 10  # the next measurement is due when this window closes
    assert limiter.try_acquire()
    limiter.release(0.01)
    assert limiter.measuring
    assert limiter.limit == 1
    # A request that started 5 s ago, under the old limit, ends now: not a minRTT sample.
    limiter.force_acquire()
    limiter.release(5.0)
    assert limiter.measuring
    for _ in range(3):
        assert limiter.try_acquire()
        clock.now += 0.03
        limiter.release(0.03)
    assert not limiter.measuring
    assert limiter.min_rtt == 0.03


def test_rising_latency_brings_the_limit_down_to_the_floor_and_never_below() -> None:
    policy = Overload(adaptive=True, min_limit=3, max_concurrency=200)
    limiter, clock = measured(policy)
    grown = list(drive(limiter, clock, 0.01, 20))
    assert grown[-1] == 200  # latency at minRTT: it grew to the ceiling
    assert grown == sorted(grown)
    falling = list(drive(limiter, clock, 0.2, 20))
    assert falling == sorted(falling, reverse=True)
    assert falling[-1] == 3
    assert min(falling) == 3
    assert limiter.min_rtt == pytest.approx(0.01)


def test_falling_latency_brings_the_limit_back_up() -> None:
    policy = Overload(adaptive=True, min_limit=2, max_concurrency=100)
    limiter, clock = measured(policy)
    low = list(drive(limiter, clock, 0.5, 10))[-1]
    assert low == 2
    recovered = list(drive(limiter, clock, 0.01, 30))
    assert recovered == sorted(recovered)
    assert recovered[-1] == 100


def test_a_serial_server_settles_at_a_small_limit() -> None:
    """Latency proportional to the requests in flight (one CPU, 5 ms each): the limit
    settles where the latency is about minRTT * (1 + buffer), plus its headroom: 2 or 3
    requests in flight, whatever it started from."""
    policy = Overload(adaptive=True, min_limit=1, max_concurrency=500, initial_limit=100)
    limiter, clock = measured(policy, 0.005)
    history = []
    for _ in range(40):
        taken = 0
        while limiter.try_acquire():
            taken += 1
        clock.now += policy.sample_window
        for _ in range(taken):
            limiter.release(0.005 * taken)
        history.append(limiter.limit)
    assert history[0] < 100
    # The float limit climbs while 2 are in flight and halves-ish as soon as 3 are.
    assert set(history[-20:]) == {2, 3}


def test_an_unused_limit_does_not_grow() -> None:
    policy = Overload(adaptive=True, min_limit=2, max_concurrency=1000, initial_limit=40)
    limiter, clock = measured(policy)
    for _ in range(20):
        assert limiter.try_acquire()  # one request at a time: far under half the limit
        clock.now += policy.sample_window
        limiter.release(0.01)
    assert limiter.limit == 40


def test_minrtt_is_measured_again_at_the_floor_and_the_limit_restored() -> None:
    policy = Overload(
        adaptive=True,
        min_limit=2,
        max_concurrency=50,
        min_rtt_interval=30,
        min_rtt_jitter=0,
        min_rtt_samples=4,
    )
    limiter, clock = measured(policy)
    assert list(drive(limiter, clock, 0.01, 15))[-1] == 50
    measurements = limiter.measurements
    clock.now += 30
    list(drive(limiter, clock, 0.01, 1))
    assert limiter.measuring
    assert limiter.limit == 2
    for _ in range(4):
        assert limiter.try_acquire()
        clock.now += 0.004
        limiter.release(0.004)
    assert not limiter.measuring
    assert limiter.measurements == measurements + 1
    assert limiter.min_rtt == 0.004
    assert limiter.limit == 50


def test_minrtt_only_goes_down_between_measurements() -> None:
    policy = Overload(adaptive=True, min_limit=1, max_concurrency=50)
    limiter, clock = measured(policy, 0.05)  # measured on a cold process
    list(drive(limiter, clock, 0.02, 3))
    assert limiter.min_rtt == 0.02
    list(drive(limiter, clock, 0.04, 3))
    assert limiter.min_rtt == 0.02


def test_smoothing_takes_part_of_the_step() -> None:
    sharp, sharp_clock = measured(Overload(adaptive=True, initial_limit=64, max_concurrency=64))
    soft, soft_clock = measured(
        Overload(adaptive=True, initial_limit=64, max_concurrency=64, smoothing=0.25)
    )
    (sharp_limit,) = drive(sharp, sharp_clock, 1.0, 1)
    (soft_limit,) = drive(soft, soft_clock, 1.0, 1)
    assert sharp_limit == int(32 + 32**0.5)
    assert soft_limit == int(64 + 0.25 * (32 + 32**0.5 - 64))


def test_beacons_and_exempt_paths_are_not_samples() -> None:
    clock = Clock()
    policy = Overload(adaptive=True, min_limit=1, min_rtt_samples=2, never_shed=["/healthz"])
    overload = guard(policy, clock)
    limiter = overload.limiter
    assert isinstance(limiter, AdaptiveLimiter)
    beacon = overload.admit("/_gracefail/beacon", beacon=True)
    assert beacon is ADMITTED_UNSAMPLED
    overload.release(beacon, 0.0001)
    health = overload.admit("/healthz")
    overload.release(health, 0.0001)
    assert limiter.measuring
    assert limiter.min_rtt is None
    for _ in range(2):
        admission = overload.admit("/")
        clock.now += 0.03
        overload.release(admission, 0.03)
    assert limiter.min_rtt == 0.03
    stats = overload.stats()
    assert stats.min_rtt_ms == pytest.approx(30)
    assert stats.measuring is False
    assert stats.limit == policy.initial_limit


# -- the options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({"max_concurrency": 0}, "overload.max_concurrency", "would shed every request"),
        ({"max_concurrency": -3}, "overload.max_concurrency", "from 1"),
        ({"max_concurrency": True}, "overload.max_concurrency", "whole number"),
        ({"max_concurrency": 2.5}, "overload.max_concurrency", "whole number"),
        ({"max_queue_ms": 0}, "overload.max_queue_ms", "would shed every stamped request"),
        ({"max_queue_ms": -1}, "overload.max_queue_ms", "milliseconds"),
        ({"max_queue_ms": float("nan")}, "overload.max_queue_ms", "milliseconds"),
        ({"adaptive": "yes"}, "overload.adaptive", "True or False"),
        ({"adaptive": True, "never_shed": ["healthz"]}, "overload.never_shed", "start with '/'"),
        ({"adaptive": True, "min_limit": 0}, "overload.min_limit", "from 1"),
        (
            {"adaptive": True, "max_concurrency": 4, "min_limit": 8},
            "overload.min_limit",
            "above the ceiling",
        ),
        (
            {"adaptive": True, "max_concurrency": 10, "initial_limit": 11},
            "overload.initial_limit",
            "from 2 to 10",
        ),
        ({"adaptive": True, "sample_window": 0}, "overload.sample_window", "seconds"),
        ({"adaptive": True, "sample_percentile": 1.5}, "overload.sample_percentile", "share"),
        ({"adaptive": True, "buffer": -0.1}, "overload.buffer", "minRTT"),
        ({"adaptive": True, "smoothing": 0}, "overload.smoothing", "share"),
        ({"adaptive": True, "min_rtt_interval": 0.5}, "overload.min_rtt_interval", "seconds"),
        ({"adaptive": True, "min_rtt_samples": 0}, "overload.min_rtt_samples", "requests"),
        ({"adaptive": True, "min_rtt_jitter": 1}, "overload.min_rtt_jitter", "share"),
        ({"adaptive": True, "background_share": 0}, "overload.background_share", "share"),
        ({"adaptive": True, "retry_after": -1}, "overload.retry_after", "seconds"),
        ({"adaptive": True, "retry_spread": 1.5}, "overload.retry_spread", "seconds"),
        ({"max_queue_ms": 100, "stamp_skew_ms": -1}, "overload.stamp_skew_ms", "millisec"),
        ({"max_queue_ms": 5000, "stamp_max_age": 2}, "overload.stamp_max_age", "max_queue_ms"),
    ],
)
def test_bad_options_fail_naming_the_option(
    options: dict[str, object], option: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Overload(**options)  # type: ignore[arg-type]
    message = str(info.value)
    assert f"{option}=" in message
    assert words in message


def test_an_overload_without_a_signal_fails() -> None:
    with pytest.raises(ConfigError, match="would shed nothing"):
        Overload()


def test_from_mapping_reads_settings_and_names_unknown_keys() -> None:
    overload = Overload.from_mapping(
        {"ADAPTIVE": True, "max_queue_ms": 800, "never_shed": "/healthz, /ready"}
    )
    assert overload.adaptive
    assert overload.max_queue_ms == 800.0
    assert overload.never_shed == ("/healthz", "/ready")
    assert overload.initial_limit == 20
    assert overload.ceiling == 1000
    with pytest.raises(ConfigError, match=r"overload\.max_concurency.*overload\.max_concurrency"):
        Overload.from_mapping({"max_concurency": 5})
    with pytest.raises(ConfigError, match="must be a dict"):
        Overload.from_mapping(["adaptive"])  # type: ignore[arg-type]


def test_initial_limit_defaults_within_a_small_ceiling() -> None:
    assert Overload(adaptive=True, max_concurrency=8).initial_limit == 8
    assert Overload(max_concurrency=8).initial_limit == 8


def test_check_overload_wants_trusted_proxies_for_the_queue_signal() -> None:
    assert check_overload(None, ()) is None
    assert check_overload({"max_concurrency": 5}, ()) == Overload(max_concurrency=5)
    with pytest.raises(ConfigError, match=r"overload\.max_queue_ms=.*trusted_proxies"):
        check_overload(Overload(max_queue_ms=500), ())
    assert check_overload(Overload(max_queue_ms=500), ("127.0.0.1/32",)) is not None
    with pytest.raises(ConfigError, match="overload=5"):
        check_overload(5, ())


def test_admissions_are_the_four_singletons() -> None:
    assert {a.reason for a in (SHED_QUEUE, SHED_CONCURRENCY)} == {"queue", "concurrency"}
    assert all(a.admitted for a in (ADMITTED, ADMITTED_UNSAMPLED, EXEMPT))
    assert isinstance(ADMITTED, Admission)
