"""Overload protection: shed excess requests early, with the branded "busy" page.

When more users arrive than an app can serve, requests queue (in the listen backlog,
the event loop, a thread pool) until the proxy in front gives up: everyone waits and
most get the proxy's 504, including the users the app could have served. Shedding the
excess at once, with a 503 that explains and brings the user back later, keeps the app
serving at its capacity. Two signals decide, usable together; both are off until
``Config.overload`` is set.

**In-flight limit** (ASGI servers and threaded WSGI servers). Each request the app
starts takes a slot and gives it back when its response is done; a request that finds
every slot taken is shed with reason ``"concurrency"``. The limit is either fixed
(``max_concurrency=N``) or **adaptive** (``adaptive=True``): a gradient controller in
the spirit of Envoy's adaptive concurrency filter moves it, as follows.

* Every ``sample_window`` seconds the latencies of the requests completed in the window
  (seconds from admission to the response's start) are summarised as their
  ``sample_percentile`` (``sampleRTT``). A window without a completed request changes
  nothing.
* ``gradient = minRTT * (1 + buffer) / sampleRTT``, clamped to ``[0.5, 2.0]``: above 1
  the app answers about as fast as it can, below 1 requests wait inside it.
* ``new = gradient * limit + sqrt(gradient * limit)``: the square root is headroom for
  bursts, large enough to let the limit find more capacity, small enough that a queue
  of a few requests shows in the latency. The limit moves to
  ``limit + smoothing * (new - limit)`` and is clamped to ``[min_limit, max_concurrency]``
  (``max_concurrency`` unset: ``DEFAULT_MAX_LIMIT``). The integer part is enforced.
* The limit does not grow in a window whose peak in flight stayed under half the
  limit (the app was not using it: growing then only delays the reaction to a burst);
  it falls whenever latency says so.
* ``minRTT`` is the latency of the app when nothing waits. It is **measured** at start
  and then every ``min_rtt_interval`` seconds (give or take ``min_rtt_jitter``, so the
  workers of a fleet do not measure at the same moment): the limit drops to
  ``min_limit`` until ``min_rtt_samples`` requests admitted during the measurement have
  completed; their ``sample_percentile`` is the new ``minRTT``, and the limit returns to
  its value before the measurement (``initial_limit`` after the first). Between
  measurements ``minRTT`` only goes down (a window faster than the measurement shows
  the measurement was taken on a cold or busy process).

The costs: requests above ``min_limit`` are shed while a measurement runs (a few dozen
requests' time, once a minute by default), and latency that rises for another reason
than load (a slow database) lowers the limit too, down to ``min_limit`` at worst, which
is why the floor should be a concurrency the app always handles.

**Queue time** (any server behind a proxy, and the only signal that works for sync
workers, which take one request at a time from the backlog). When the proxy stamps the
request with the time it forwarded it (``X-Request-Start`` or ``X-Queue-Start``), a
request that already waited longer than ``max_queue_ms`` is shed with reason
``"queue"``: the proxy would time it out anyway, or the user would give up. Accepted
forms: ``t=<epoch seconds>`` with a fraction (nginx's ``t=${msec}``), epoch
milliseconds (Heroku), microseconds (New Relic's ``t=``) or nanoseconds, with or without
``t=``; the unit is told by the magnitude. A stamp is read only from a peer in
``Config.trusted_proxies`` (anyone else could make every request look old and have it
shed); a stamp more than ``stamp_skew_ms`` in the future, older than ``stamp_max_age``
seconds or unreadable is ignored and counted (a clock fault, not a queue).

**Who is shed first**: the page's own probes (``X-Gracefail-Probe: 1``) and beacons get
``background_share`` of the limit and of the queue budget, so they are turned away
before users' requests; paths under ``never_shed`` (health checks) are never shed, and
count in flight without being sampled.

**Retry-After** of a shed request is ``retry_after`` plus this client's own share of
``retry_spread`` seconds (a hash of its address): the shed do not come back together.

Thread safety: :class:`Limiter` takes no lock on its fast path. Its slots are the items
of a ``collections.deque``, whose ``append``, ``pop`` and ``len`` are atomic; a request
appends, then compares the length with the limit and pops again if it is over. So the
count of admitted requests never exceeds the limit, and a race only ever sheds one
request too many, never admits one too many. The controller's window update runs under
a non-blocking lock taken by whichever thread completes a request after the window
ended. Everything here is synchronous and never waits, so asyncio and trio use it as
threads do.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Final

from .config import ConfigError, _build, _fail, _paths
from .guard import _address, proxy_networks

__all__ = [
    "ADMITTED",
    "ADMITTED_UNSAMPLED",
    "DEFAULT_MAX_LIMIT",
    "EXEMPT",
    "QUEUE_BUCKETS",
    "SHED_CONCURRENCY",
    "SHED_QUEUE",
    "STAMP_HEADERS",
    "AdaptiveLimiter",
    "Admission",
    "Limiter",
    "Overload",
    "OverloadGuard",
    "OverloadStats",
    "check_overload",
    "next_limit",
    "parse_queue_stamp",
    "stamp_header",
]

DEFAULT_MAX_LIMIT: Final = 1000
"""The adaptive limit's ceiling when ``max_concurrency`` is not given (Envoy's default)."""

_DEFAULT_INITIAL_LIMIT: Final = 20
# The gradient's clamp (Envoy's): the limit at most halves, or doubles, per window.
_GRADIENT_MIN: Final = 0.5
_GRADIENT_MAX: Final = 2.0
# Latencies kept per window (the most recent): sorting them is the window's whole cost.
_WINDOW_SAMPLES: Final = 512
# Seconds by which a request's start (the adapter's clock) may seem to precede the
# measurement it belongs to (this module's clock): rounding, two clock readings.
_CLOCK_SLACK: Final = 0.001
# Peers whose trust is remembered per guard (they are the proxies; more means a flood).
_TRUST_CACHE: Final = 256
# A stamp longer than this is no stamp (float() of a huge string costs its length).
_MAX_STAMP: Final = 40

QUEUE_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""The bounds (seconds) of the queue-time histogram the recorders export."""
_QUEUE_BOUNDS_MS: Final = tuple(bound * 1000.0 for bound in QUEUE_BUCKETS)

STAMP_HEADERS: Final = ("x-request-start", "x-queue-start")
"""The request headers a proxy stamps its forwarding time in, in order of preference."""


def _whole(option: str, value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(option, value, f"expected a whole number of {what} from {low} to {high}")
    return value


def _number(option: str, value: object, low: float, high: float, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise _fail(option, value, f"expected {what} from {low:g} to {high:g}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Overload:
    """When to shed requests instead of letting them queue (see :mod:`gracefail.overload`).

    Give at least one signal: ``max_concurrency``, ``adaptive=True`` or ``max_queue_ms``.

    Attributes:
        max_concurrency: requests the app may serve at once; the fixed limit, or with
            ``adaptive`` the ceiling the controller never exceeds (unset:
            ``DEFAULT_MAX_LIMIT``). None: no in-flight limit.
        adaptive: let the gradient controller move the limit with the app's latency.
        max_queue_ms: shed a request that waited longer than this (milliseconds)
            between the proxy's stamp and the app (needs ``trusted_proxies``).
        never_shed: paths never shed, each with everything under it (health checks).
        min_limit: the adaptive limit's floor, and the concurrency minRTT is measured
            at: a concurrency the app always handles without queueing (1 for a
            CPU-bound single-threaded worker, more for I/O-bound apps).
        initial_limit: the adaptive limit after the first measurement (default
            ``min(20, ceiling)``).
        sample_window: seconds between two updates of the adaptive limit.
        sample_percentile: the share of a window's latencies at or below sampleRTT
            (0.5: the median), and of a measurement's at or below minRTT.
        buffer: latency above minRTT still taken as "nothing waits" (0.25: 25%).
        smoothing: the share of the controller's step taken each window (1: all of it).
        min_rtt_interval: seconds between two measurements of minRTT.
        min_rtt_samples: completed requests one measurement takes.
        min_rtt_jitter: each interval is shortened by a random share up to this.
        background_share: the share of the limit and of the queue budget the page's
            probes and beacons get (they are shed first).
        retry_after: the least ``Retry-After`` (seconds) a shed request gets.
        retry_spread: seconds over which the shed clients come back (each its own
            share, from its address).
        stamp_skew_ms: how far in the future a proxy's stamp may be (clock skew) before
            it is ignored; a stamp within it counts as no wait.
        stamp_max_age: seconds after which a stamp is taken as a clock fault, ignored
            and counted, not as a queue.
    """

    max_concurrency: int | None = None
    adaptive: bool = False
    max_queue_ms: float | None = None
    never_shed: Sequence[str] = ()
    min_limit: int = 2
    initial_limit: int | None = None
    sample_window: float = 0.1
    sample_percentile: float = 0.5
    buffer: float = 0.25
    smoothing: float = 1.0
    min_rtt_interval: float = 60.0
    min_rtt_samples: int = 20
    min_rtt_jitter: float = 0.15
    background_share: float = 0.5
    retry_after: int = 2
    retry_spread: int = 20
    stamp_skew_ms: float = 1000.0
    stamp_max_age: float = 300.0

    def __post_init__(self) -> None:
        if self.max_concurrency is not None:
            if self.max_concurrency == 0 and not isinstance(self.max_concurrency, bool):
                raise _fail(
                    "overload.max_concurrency",
                    0,
                    "0 would shed every request; expected at least 1, or None for no limit",
                )
            _whole("overload.max_concurrency", self.max_concurrency, 1, 1_000_000, "requests")
        if not isinstance(self.adaptive, bool):
            raise _fail("overload.adaptive", self.adaptive, "expected True or False")
        if self.max_queue_ms is not None:
            if self.max_queue_ms == 0 and not isinstance(self.max_queue_ms, bool):
                raise _fail(
                    "overload.max_queue_ms",
                    0,
                    "0 would shed every stamped request; expected milliseconds above 0, or None",
                )
            budget = _number("overload.max_queue_ms", self.max_queue_ms, 0, 600_000, "milliseconds")
            object.__setattr__(self, "max_queue_ms", budget)
        if self.max_concurrency is None and not self.adaptive and self.max_queue_ms is None:
            raise ConfigError(
                "gracefail: overload=Overload() would shed nothing; set max_concurrency, "
                "adaptive=True or max_queue_ms (or leave overload unset)"
            )
        object.__setattr__(self, "never_shed", _paths(self.never_shed, "overload.never_shed"))
        self._check_controller()
        _number("overload.background_share", self.background_share, 0.01, 1, "a share")
        _whole("overload.retry_after", self.retry_after, 0, 3600, "seconds")
        _whole("overload.retry_spread", self.retry_spread, 0, 3600, "seconds")
        _number("overload.stamp_skew_ms", self.stamp_skew_ms, 0, 600_000, "milliseconds")
        _number("overload.stamp_max_age", self.stamp_max_age, 1, 86_400, "seconds")
        if self.max_queue_ms is not None and self.stamp_max_age * 1000 <= self.max_queue_ms:
            raise _fail(
                "overload.stamp_max_age",
                self.stamp_max_age,
                f"a stamp older than it is ignored, so it must exceed overload.max_queue_ms "
                f"({self.max_queue_ms:g} ms) or no request is ever shed for its queue",
            )

    def _check_controller(self) -> None:
        ceiling = self.ceiling
        _whole("overload.min_limit", self.min_limit, 1, 1_000_000, "requests")
        if self.adaptive and self.min_limit > ceiling:
            raise _fail(
                "overload.min_limit",
                self.min_limit,
                f"the floor cannot be above the ceiling, overload.max_concurrency={ceiling}",
            )
        if self.initial_limit is None:
            object.__setattr__(
                self, "initial_limit", max(self.min_limit, min(_DEFAULT_INITIAL_LIMIT, ceiling))
            )
        elif self.adaptive:
            _whole(
                "overload.initial_limit", self.initial_limit, self.min_limit, ceiling, "requests"
            )
        else:
            _whole("overload.initial_limit", self.initial_limit, 1, 1_000_000, "requests")
        _number("overload.sample_window", self.sample_window, 0.001, 60, "seconds")
        _number("overload.sample_percentile", self.sample_percentile, 0.01, 1, "a share")
        _number("overload.buffer", self.buffer, 0, 10, "a share of minRTT")
        _number("overload.smoothing", self.smoothing, 0.01, 1, "a share")
        _number("overload.min_rtt_interval", self.min_rtt_interval, 1, 86_400, "seconds")
        _whole("overload.min_rtt_samples", self.min_rtt_samples, 1, 10_000, "requests")
        _number("overload.min_rtt_jitter", self.min_rtt_jitter, 0, 0.9, "a share")

    @property
    def ceiling(self) -> int:
        """The most requests in flight the limit ever allows (adaptive: its ceiling)."""
        if self.max_concurrency is not None:
            return self.max_concurrency
        return DEFAULT_MAX_LIMIT

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> Overload:
        """Build from a settings dict (Django's ``GRACEFAIL["overload"]``, Flask's config).

        Keys in either case; an unknown key raises :class:`~gracefail.config.ConfigError`
        suggesting the nearest valid one, as ``Config.from_mapping`` does.
        """
        overload: Overload = _build(cls, options, "overload.")
        return overload


def check_overload(overload: object, trusted_proxies: Sequence[str]) -> Overload | None:
    """``Config.overload`` checked with the options it depends on: an :class:`Overload`,
    a dict of its fields, or None. Raises :class:`~gracefail.config.ConfigError`."""
    if overload is None:
        return None
    if isinstance(overload, Mapping):
        overload = Overload.from_mapping(overload)
    if not isinstance(overload, Overload):
        raise _fail("overload", overload, "expected gracefail.Overload(...), a dict or None")
    if overload.max_queue_ms is not None and not trusted_proxies:
        raise _fail(
            "overload.max_queue_ms",
            overload.max_queue_ms,
            "the queue time is read from the proxy's X-Request-Start, which is trusted only "
            "from trusted_proxies; set trusted_proxies to your proxies' addresses",
        )
    return overload


# -- the controller -------------------------------------------------------------------------


def next_limit(
    limit: float, min_rtt: float, sample_rtt: float, buffer: float, *, app_limited: bool = False
) -> float:
    """One step of the gradient controller (before smoothing and clamping).

    ``gradient = clamp(min_rtt * (1 + buffer) / sample_rtt, 0.5, 2)``, then
    ``gradient * limit + sqrt(gradient * limit)``; a limit the app did not use
    (``app_limited``) is not grown.
    """
    if sample_rtt <= 0:
        gradient = _GRADIENT_MAX
    else:
        gradient = min(_GRADIENT_MAX, max(_GRADIENT_MIN, min_rtt * (1 + buffer) / sample_rtt))
    scaled = gradient * limit
    new = scaled + math.sqrt(scaled)
    if app_limited and new > limit:
        return limit
    return new


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


class Limiter:
    """A fixed in-flight limit: O(1), no lock (see the module's note on thread safety).

    ``try_acquire()`` takes a slot if one is free; every ``True`` must be followed by one
    ``release()`` when the response is done. ``background=True`` (probes, beacons) may
    only take a slot while fewer than ``background_limit`` are taken.
    """

    def __init__(self, limit: int | None, *, background_share: float = 0.5) -> None:
        self._slots: deque[None] = deque()
        self._share = background_share
        self.unmatched = 0  # release() without a slot taken (a caller's bug), counted
        self._peak = 0
        self.limit = 0
        self.background_limit = 0
        self._set(limit)

    def _set(self, limit: int | None) -> None:
        if limit is None:
            self.limit = self.background_limit = 1 << 62
            return
        self.limit = limit
        self.background_limit = max(1, int(limit * self._share))

    @property
    def in_flight(self) -> int:
        """Requests holding a slot now."""
        return len(self._slots)

    def try_acquire(self, background: bool = False) -> bool:
        """Take a slot if the limit allows one: True (then call release()), or False."""
        slots = self._slots
        slots.append(None)
        taken = len(slots)
        if taken > (self.background_limit if background else self.limit):
            slots.pop()
            return False
        if taken > self._peak:
            self._peak = taken
        return True

    def force_acquire(self) -> None:
        """Take a slot whatever the limit (a path that is never shed); release() it too."""
        self._slots.append(None)

    def release(self, latency_s: float | None = None) -> None:
        """Give a slot back; ``latency_s`` (ignored here) is the adaptive limiter's sample."""
        try:
            self._slots.pop()
        except IndexError:
            self.unmatched += 1


class AdaptiveLimiter(Limiter):
    """A :class:`Limiter` whose limit the gradient controller moves (see the module).

    ``clock`` is a monotonic clock in seconds (injected by tests, which then need no
    sleeps); ``rng`` draws the jitter of the measurement interval.
    """

    def __init__(
        self,
        policy: Overload,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(policy.min_limit, background_share=policy.background_share)
        self.policy = policy
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._lock = threading.Lock()
        self._samples: deque[float] = deque(maxlen=_WINDOW_SAMPLES)
        self._value = float(policy.min_limit)  # the controller's limit, before flooring
        self._restore = float(policy.initial_limit or policy.min_limit)
        self.min_rtt: float | None = None
        self.sample_rtt: float | None = None
        now = clock()
        self._window_ends = now + policy.sample_window
        self._next_measure = now
        # The first measurement starts now: the limit is min_limit until it ends.
        self.measuring = True
        self._measure_started = now
        self._measured: list[float] = []
        self.measurements = 0
        self.updates = 0

    def release(self, latency_s: float | None = None) -> None:
        """Give a slot back; ``latency_s``: seconds from admission to the response's
        start, None for a request that should not be sampled (failed, not the app's)."""
        try:
            self._slots.pop()
        except IndexError:
            self.unmatched += 1
            return
        if latency_s is None:
            return
        now = self._clock()
        if self.measuring:
            self._measure(now, latency_s)
            return
        self._samples.append(latency_s)
        if now >= self._window_ends:
            self._roll(now)

    def _measure(self, now: float, latency: float) -> None:
        with self._lock:
            if not self.measuring:
                self._samples.append(latency)
                return
            if now - latency < self._measure_started - _CLOCK_SLACK:
                return  # admitted before the measurement, under the higher limit
            self._measured.append(latency)
            if len(self._measured) < self.policy.min_rtt_samples:
                return
            self.min_rtt = _percentile(self._measured, self.policy.sample_percentile)
            self._measured = []
            self.measuring = False
            self.measurements += 1
            interval = self.policy.min_rtt_interval
            self._next_measure = now + interval * (
                1 - self.policy.min_rtt_jitter * self._rng.random()
            )
            self._window_ends = now + self.policy.sample_window
            self._samples.clear()
            self._peak = 0
            self._apply(self._restore)

    def _roll(self, now: float) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is updating this window
        try:
            if now < self._window_ends or self.measuring:
                return
            policy = self.policy
            samples, self._samples = self._samples, deque(maxlen=_WINDOW_SAMPLES)
            peak, self._peak = self._peak, 0
            self._window_ends = now + policy.sample_window
            if samples and self.min_rtt is not None:
                sample = _percentile(samples, policy.sample_percentile)
                self.sample_rtt = sample
                if sample < self.min_rtt:
                    self.min_rtt = sample
                stepped = next_limit(
                    self._value,
                    self.min_rtt,
                    sample,
                    policy.buffer,
                    app_limited=peak * 2 < self.limit,
                )
                self._apply(self._value + policy.smoothing * (stepped - self._value))
                self.updates += 1
            if now >= self._next_measure:
                self._restore = self._value
                self.measuring = True
                self._measure_started = now
                self._measured = []
                self._set(self.policy.min_limit)
        finally:
            self._lock.release()

    def _apply(self, value: float) -> None:
        policy = self.policy
        self._value = min(float(policy.ceiling), max(float(policy.min_limit), value))
        self._set(max(policy.min_limit, int(self._value)))


# -- the queue-time signal ------------------------------------------------------------------


def parse_queue_stamp(value: str) -> float | None:
    """The epoch time (seconds) in an ``X-Request-Start``/``X-Queue-Start`` value, or None.

    ``t=1700000000.123`` (nginx ``t=${msec}``), ``1700000000123`` (ms, Heroku),
    ``t=1700000000123456`` (us, New Relic), nanoseconds; ``t=`` optional; the unit is
    told by the magnitude. With several comma-separated stamps, the last (the nearest
    proxy's) is read.
    """
    if "," in value:
        value = value.rpartition(",")[2]
    text = value.strip()
    if text.startswith(("t=", "T=")):
        text = text[2:]
    if not 0 < len(text) <= _MAX_STAMP or not text[0].isdigit():
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    # NaN compares false with everything and infinity is above every bound: both None.
    if number < 1e11:
        return number
    if number < 1e14:
        return number / 1e3
    if number < 1e17:
        return number / 1e6
    if number < 1e20:
        return number / 1e9
    return None


def stamp_header(headers: Mapping[str, str]) -> str | None:
    """The proxy's stamp among lower-cased request headers: X-Request-Start, else
    X-Queue-Start."""
    stamp = headers.get("x-request-start")
    return stamp if stamp is not None else headers.get("x-queue-start")


def _peer_trusted(peer: str, trusted: tuple[str, ...]) -> bool:
    # The peer address as guard.client_address reads it, against the same networks.
    address = _address(peer)
    return address is not None and any(address in net for net in proxy_networks(trusted))


# -- the decision ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    """What :meth:`OverloadGuard.admit` decided. The four instances below are the only ones.

    ``admitted``: the request goes to the app (and :meth:`OverloadGuard.release` must
    follow); ``reason``: why it is shed (``"queue"``, ``"concurrency"``), else None;
    ``sampled``: its latency feeds the adaptive controller.
    """

    admitted: bool
    reason: str | None
    sampled: bool


ADMITTED: Final = Admission(True, None, True)
"""Admitted; its latency is a sample."""
ADMITTED_UNSAMPLED: Final = Admission(True, None, False)
"""Admitted, not sampled (a beacon: gracefail's own work, not the app's)."""
EXEMPT: Final = Admission(True, None, False)
"""A ``never_shed`` path: admitted whatever the load, counted in flight, not sampled."""
SHED_QUEUE: Final = Admission(False, "queue", False)
"""Shed: it waited longer than ``max_queue_ms`` before reaching the app."""
SHED_CONCURRENCY: Final = Admission(False, "concurrency", False)
"""Shed: every slot of the in-flight limit is taken."""


@dataclass(frozen=True, slots=True)
class OverloadStats:
    """The gauges and counters of one :class:`OverloadGuard`, read at one moment.

    ``limit``: the in-flight limit now (None: no in-flight limit); ``in_flight``:
    requests holding a slot; ``min_rtt_ms``/``sample_rtt_ms``: the adaptive
    controller's latencies (None until known); ``measuring``: a minRTT measurement is
    running; ``queue_ms``: the last trusted queue time; ``shed_*``: requests shed since
    start, by reason, and how many of them were probes or beacons; ``stamps_*``: stamps
    ignored since start, by why.
    """

    limit: int | None
    background_limit: int | None
    in_flight: int
    min_rtt_ms: float | None
    sample_rtt_ms: float | None
    measuring: bool
    queue_ms: float | None
    shed_queue: int
    shed_concurrency: int
    shed_background: int
    stamps_untrusted: int
    stamps_future: int
    stamps_absurd: int
    stamps_invalid: int
    counts: Mapping[str, int] = field(default_factory=dict)
    queue_buckets: tuple[int, ...] = ()
    queue_sum_s: float = 0.0

    @property
    def queue_histogram(self) -> list[tuple[float, int]]:
        """The trusted queue times since start as cumulative (bound in seconds, count)
        pairs over :data:`QUEUE_BUCKETS`, the last bound ``inf``: a Prometheus histogram."""
        total = 0
        pairs: list[tuple[float, int]] = []
        for bound, n in zip((*QUEUE_BUCKETS, math.inf), self.queue_buckets, strict=False):
            total += n
            pairs.append((bound, total))
        return pairs

    @property
    def queue_count(self) -> int:
        """Requests whose queue time was read from a trusted stamp, since start."""
        return sum(self.queue_buckets)

    @property
    def shed(self) -> dict[str, int]:
        """Shed requests by reason."""
        return {"queue": self.shed_queue, "concurrency": self.shed_concurrency}

    @property
    def stamps_ignored(self) -> int:
        """Stamps ignored for any reason."""
        return self.stamps_untrusted + self.stamps_future + self.stamps_absurd + self.stamps_invalid


class OverloadGuard:
    """One engine's overload protection: the limiter, the stamps, the counters.

    Args:
        policy: the :class:`Overload` options.
        trusted_proxies: ``Config.trusted_proxies``: the peers whose stamps are read.
        clock: monotonic seconds, for the adaptive controller (tests inject one).
        wall: epoch seconds, for the proxies' stamps (tests inject one).
        rng: the randomness of the measurement interval's jitter.

    Per request the adapter calls :meth:`admit` before the app, and :meth:`release`
    after the response (always safe: a no-op for a shed request).
    """

    def __init__(
        self,
        policy: Overload,
        trusted_proxies: Sequence[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.trusted = tuple(trusted_proxies)
        self._wall = wall
        self.limiter: Limiter
        if policy.adaptive:
            self.limiter = AdaptiveLimiter(policy, clock=clock, rng=rng)
        else:
            self.limiter = Limiter(policy.max_concurrency, background_share=policy.background_share)
        self.limited = policy.adaptive or policy.max_concurrency is not None
        self._stamped = policy.max_queue_ms is not None
        self._budget = policy.max_queue_ms or 0.0
        self._background_budget = self._budget * policy.background_share
        self._exact = frozenset(path.rstrip("/") or "/" for path in policy.never_shed)
        self._prefixes = tuple(path.rstrip("/") + "/" for path in policy.never_shed)
        self._skew_s = policy.stamp_skew_ms / 1000.0
        self._max_age = policy.stamp_max_age
        self._trusts: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._anonymous = count()
        self.queue_ms: float | None = None
        self._queue_buckets = [0] * (len(QUEUE_BUCKETS) + 1)
        self._queue_sum_ms = 0.0
        self.shed_queue = 0
        self.shed_concurrency = 0
        self.shed_background = 0
        self.stamps_untrusted = 0
        self.stamps_future = 0
        self.stamps_absurd = 0
        self.stamps_invalid = 0

    def admit_environ(self, environ: Mapping[str, Any], path: str, *, beacon: bool) -> Admission:
        """:meth:`admit` for a WSGI environ (or Django's ``request.META``)."""
        stamp = environ.get("HTTP_X_REQUEST_START")
        if stamp is None:
            stamp = environ.get("HTTP_X_QUEUE_START")
        return self.admit(
            path,
            probe=environ.get("HTTP_X_GRACEFAIL_PROBE") == "1",
            beacon=beacon,
            stamp=stamp,
            peer=environ.get("REMOTE_ADDR") or None,
        )

    def admit(
        self,
        path: str,
        *,
        probe: bool = False,
        beacon: bool = False,
        stamp: str | None = None,
        peer: str | None = None,
    ) -> Admission:
        """Admit the request or shed it; never waits.

        ``path``: the request's path; ``probe``: it carries ``X-Gracefail-Probe: 1``;
        ``beacon``: it is a POST to the beacon path; ``stamp``: the value of
        ``X-Request-Start`` (else ``X-Queue-Start``), if any (:func:`stamp_header`);
        ``peer``: the address the server saw (the stamp is read only from a trusted
        proxy). The method does not matter: a shed request never reached the app, so
        shedding a POST is as safe as a GET.
        """
        if path in self._exact or path.startswith(self._prefixes):
            self.limiter.force_acquire()
            return EXEMPT
        background = probe or beacon
        if stamp is not None and self._stamped:
            waited = self.waited_ms(stamp, peer)
            if waited is not None and waited > (
                self._background_budget if background else self._budget
            ):
                self._shed("queue", background)
                return SHED_QUEUE
        if self.limiter.try_acquire(background):
            return ADMITTED_UNSAMPLED if beacon else ADMITTED
        self._shed("concurrency", background)
        return SHED_CONCURRENCY

    def release(self, admission: Admission, latency_s: float | None = None) -> None:
        """The response to an admitted request is done (or failed): free its slot.

        ``latency_s``: seconds from admission to the response's start (None if the app
        raised or the client left before it; then it is not a sample).
        """
        if admission.admitted:
            self.limiter.release(latency_s if admission.sampled else None)

    def _shed(self, reason: str, background: bool) -> None:
        with self._lock:
            if reason == "queue":
                self.shed_queue += 1
            else:
                self.shed_concurrency += 1
            if background:
                self.shed_background += 1

    def waited_ms(self, stamp: str, peer: str | None) -> float | None:
        """How long the request waited since the proxy stamped it (ms), or None if the
        stamp is ignored (untrusted peer, unreadable, in the future, absurdly old: counted)."""
        trusted = self._trusts.get(peer) if peer is not None else False
        if trusted is None:
            assert peer is not None
            if len(self._trusts) >= _TRUST_CACHE:
                self._trusts.clear()  # peers are the proxies: a flood of others starts over
            trusted = self._trusts[peer] = _peer_trusted(peer, self.trusted)
        if not trusted:
            self._count("stamps_untrusted")
            return None
        at = parse_queue_stamp(stamp)
        if at is None:
            self._count("stamps_invalid")
            return None
        waited = self._wall() - at
        if waited < -self._skew_s:
            self._count("stamps_future")
            return None
        if waited > self._max_age:
            self._count("stamps_absurd")
            return None
        waited_ms = max(0.0, waited * 1000.0)
        self.queue_ms = waited_ms
        with self._lock:
            self._queue_buckets[bisect.bisect_left(_QUEUE_BOUNDS_MS, waited_ms)] += 1
            self._queue_sum_ms += waited_ms
        return waited_ms

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def retry_after(self, client: str | None) -> int:
        """Seconds a shed client is told to wait: ``retry_after`` plus its own share of
        ``retry_spread`` (a hash of its address, so it keeps it; clients without an
        address take turns)."""
        spread = self.policy.retry_spread
        if not spread:
            return self.policy.retry_after
        key = zlib.crc32(client.encode()) if client else next(self._anonymous)
        return self.policy.retry_after + key % spread

    def stats(self) -> OverloadStats:
        """The gauges and counters now (for the recorders and the metrics endpoints)."""
        limiter = self.limiter
        adaptive = limiter if isinstance(limiter, AdaptiveLimiter) else None

        def ms(value: float | None) -> float | None:
            return None if value is None else value * 1000.0

        return OverloadStats(
            limit=limiter.limit if self.limited else None,
            background_limit=limiter.background_limit if self.limited else None,
            in_flight=limiter.in_flight,
            min_rtt_ms=ms(adaptive.min_rtt) if adaptive else None,
            sample_rtt_ms=ms(adaptive.sample_rtt) if adaptive else None,
            measuring=adaptive.measuring if adaptive else False,
            queue_ms=self.queue_ms,
            shed_queue=self.shed_queue,
            shed_concurrency=self.shed_concurrency,
            shed_background=self.shed_background,
            stamps_untrusted=self.stamps_untrusted,
            stamps_future=self.stamps_future,
            stamps_absurd=self.stamps_absurd,
            stamps_invalid=self.stamps_invalid,
            counts={
                "unmatched_releases": limiter.unmatched,
                "measurements": adaptive.measurements if adaptive else 0,
                "updates": adaptive.updates if adaptive else 0,
            },
            queue_buckets=tuple(self._queue_buckets),
            queue_sum_s=self._queue_sum_ms / 1000.0,
        )
