"""Prometheus metrics (prometheus_client), on an injected or a per-instance registry.

Metrics:

* ``gracefail_failures_total{status,cause,route,method,source}``: failure replies to users
  (``source``: ``app``, ``gateway`` or ``worker``, where the reply was served from).
  Outages only: planned downtime is never in it.
* ``gracefail_maintenance_pages_total{route,method,source}``: maintenance pages (503,
  cause ``maintenance``) served to users during planned maintenance: planned downtime,
  apart from the failures so that outage alerts and error rates leave it out by
  themselves (``integrations/prometheus/alerts.yml`` mutes the outage alerts of a job
  while it serves them). The same bounded labels as the failures'.
* ``gracefail_shed_requests_total{reason,route,method,source}``: users' requests shed
  under load with the busy page (503, cause ``overload``; ``reason``: ``queue`` or
  ``concurrency``): not failures, and not in ``gracefail_failures_total``.
* ``gracefail_probes_total{status}``: failure replies to the page's own probes (a shed
  probe is one, with status 503).
* ``gracefail_page_events_total{event}``: beacons by kind (shown, retry, recovered, ...).
* ``gracefail_time_to_recovery_seconds``: histogram of the page's measured time to recovery.
* ``gracefail_events_dropped_total{reason}``: events lost before a recorder stored them
  (``queue_full``: the pipeline's queue; ``recorder_error``: a recorder failed a batch).

With ``Config.overload``, the engine hands its guard to the recorder
(:meth:`PrometheusRecorder.watch_overload`), and a collector reads
``OverloadGuard.stats()`` at each scrape (nothing per request):

* ``gracefail_overload_limit``: the in-flight limit now (absent without one);
* ``gracefail_overload_in_flight``: requests holding a slot now;
* ``gracefail_overload_min_rtt_seconds``, ``gracefail_overload_sample_rtt_seconds``: the
  adaptive controller's latencies (once measured);
* ``gracefail_overload_queue_seconds``: histogram of the queue time read from trusted
  proxies' stamps (``X-Request-Start``);
* ``gracefail_overload_shed_total{reason}``: requests shed since start, probes and beacons
  included (``reason``: ``queue``, ``concurrency``);
* ``gracefail_overload_stamps_ignored_total{why}``: stamps ignored (``untrusted``,
  ``future``, ``absurd``, ``invalid``).

Several engines on one registry add up (limits and slots summed, the lowest minRTT).
In multiprocess mode these are the serving process's own: each worker has its guard.

The default registry is a fresh ``CollectorRegistry`` per recorder, never the
global one, so building the app twice never raises "Duplicated timeseries".
Passing the same registry twice reuses the metrics already registered there.

Example::

    from prometheus_client import make_asgi_app
    from gracefail.recorders import PrometheusRecorder

    metrics = PrometheusRecorder()
    app.add_middleware(GracefailMiddleware, recorders=[metrics, SQLiteRecorder("gf.db")])
    app.mount("/metrics", make_asgi_app(metrics.exposition_registry()))

Multiprocess mode (gunicorn): set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
folder before the app (and prometheus_client) is imported, serve
``exposition_registry()`` (it collects every worker's files), and call
``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` in gunicorn's
``child_exit`` hook.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gracefail's Prometheus recorder needs prometheus_client: install gracefail[prometheus]"
    ) from exc

from ..events import CLIENT_KINDS, ClientEvent, Event, ServerEvent
from .labels import (
    DROP_REASONS,
    MAINTENANCE_CAUSE,
    OVERLOAD_CAUSE,
    SHED_REASONS,
    TIME_TO_RECOVERY_BUCKETS,
    UNKNOWN_ROUTE,
    label_method,
    label_shed_reason,
    label_source,
)

if TYPE_CHECKING:
    from ..overload import OverloadGuard, OverloadStats

__all__ = ["DEFAULT_BUCKETS", "PrometheusRecorder", "multiprocess_dir"]

PLANNED_CAUSE: Final = MAINTENANCE_CAUSE
"""The cause of the pages of planned maintenance (:mod:`gracefail.maintenance_page`)."""

DEFAULT_BUCKETS: Final = TIME_TO_RECOVERY_BUCKETS
"""The default buckets of ``gracefail_time_to_recovery_seconds`` (defined in ``labels``)."""


@dataclass(frozen=True, slots=True)
class _Metrics:
    failures: Counter
    maintenance_pages: Counter
    shed: Counter
    probes: Counter
    page_events: Counter
    time_to_recovery: Histogram
    dropped: Counter


# Metrics already registered per registry: an injected registry shared by two
# apps gets one set of metrics, not a "Duplicated timeseries" error.
_registered: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()
_registered_lock = threading.Lock()


def _metrics(registry: CollectorRegistry, buckets: Sequence[float]) -> _Metrics:
    with _registered_lock:
        found = _registered.get(registry)
        if found is not None:
            return found
        metrics = _Metrics(
            failures=Counter(
                "gracefail_failures",
                "Failure replies (502/504) gracefail served to users' requests.",
                ("status", "cause", "route", "method", "source"),
                registry=registry,
            ),
            maintenance_pages=Counter(
                "gracefail_maintenance_pages",
                "Maintenance pages (503) served to users' requests during planned maintenance.",
                ("route", "method", "source"),
                registry=registry,
            ),
            shed=Counter(
                "gracefail_shed_requests",
                "Users' requests shed under load with the busy page (503), by reason.",
                ("reason", "route", "method", "source"),
                registry=registry,
            ),
            probes=Counter(
                "gracefail_probes",
                "Failure replies to the recovery page's own probes (not new failures).",
                ("status",),
                registry=registry,
            ),
            page_events=Counter(
                "gracefail_page_events",
                "What recovery pages reported: shown, retry, recovered, gave_up, abandoned, ...",
                ("event",),
                registry=registry,
            ),
            time_to_recovery=Histogram(
                "gracefail_time_to_recovery_seconds",
                "Time from the page's navigation start to its recovery, measured by the page.",
                buckets=tuple(buckets),
                registry=registry,
            ),
            dropped=Counter(
                "gracefail_events_dropped",
                "Events lost before a recorder stored them (queue full or recorder error).",
                ("reason",),
                registry=registry,
            ),
        )
        for kind in sorted(CLIENT_KINDS):
            metrics.page_events.labels(kind)
        for reason in DROP_REASONS:
            metrics.dropped.labels(reason)
        _registered[registry] = metrics
        return metrics


def multiprocess_dir() -> str | None:
    """The multiprocess folder prometheus_client writes to, if that mode is on."""
    # prometheus_client still honours the old lower-case name.
    legacy = "prometheus_multiproc_dir"
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(legacy)


class PrometheusRecorder:
    """Counts failures and page outcomes as Prometheus metrics.

    Args:
        registry: where the metrics are registered; default a new
            ``CollectorRegistry`` for this recorder (never the global ``REGISTRY``).
        buckets: histogram buckets (seconds) for ``gracefail_time_to_recovery_seconds``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ):
        self.registry = registry if registry is not None else CollectorRegistry()
        self._metrics = _metrics(self.registry, buckets)

    def __repr__(self) -> str:
        return f"PrometheusRecorder(registry at {id(self.registry):#x})"

    def record(self, events: Sequence[Event]) -> None:
        """Count a batch."""
        metrics = self._metrics
        for event in events:
            if isinstance(event, ServerEvent):
                if event.probe:
                    metrics.probes.labels(str(event.status)).inc()
                elif event.cause == OVERLOAD_CAUSE:
                    metrics.shed.labels(
                        label_shed_reason(event.error_type),
                        event.route or UNKNOWN_ROUTE,
                        label_method(event.method),
                        label_source(event.source),
                    ).inc()
                elif event.cause == PLANNED_CAUSE:
                    metrics.maintenance_pages.labels(
                        event.route or UNKNOWN_ROUTE,
                        label_method(event.method),
                        label_source(event.source),
                    ).inc()
                else:
                    metrics.failures.labels(
                        str(event.status),
                        event.cause,
                        event.route or UNKNOWN_ROUTE,
                        label_method(event.method),
                        label_source(event.source),
                    ).inc()
            elif isinstance(event, ClientEvent):
                metrics.page_events.labels(event.kind).inc()
                if event.kind == "recovered":
                    metrics.time_to_recovery.observe(event.elapsed_ms / 1000.0)

    def record_dropped(self, count: int, reason: str) -> None:
        """Count events the pipeline lost (``reason``: queue_full or recorder_error)."""
        self._metrics.dropped.labels(reason).inc(count)

    def watch_overload(self, guard: OverloadGuard) -> None:
        """Export ``guard``'s gauges (see the module docs): read at each scrape. The engine
        calls it when ``Config.overload`` is set; a guard watched twice counts once."""
        with _registered_lock:
            collector = _overload_collectors.get(self.registry)
            if collector is None:
                collector = _overload_collectors[self.registry] = _OverloadCollector()
                self.registry.register(collector)
        collector.guards.add(guard)

    def exposition_registry(self) -> CollectorRegistry:
        """The registry to serve: this one, or in multiprocess mode one that reads every
        worker's files."""
        if multiprocess_dir() is None:
            return self.registry
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        return registry

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition to serve at ``/metrics``, and its content type."""
        return generate_latest(self.exposition_registry()), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Nothing to release (the registry outlives the recorder)."""


class _OverloadCollector:
    """The overload gauges of every guard watched on one registry, read at each scrape."""

    def __init__(self) -> None:
        self.guards: weakref.WeakSet[OverloadGuard] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        stats = [guard.stats() for guard in list(self.guards)]
        if not stats:
            return
        limits = [s.limit for s in stats if s.limit is not None]
        if limits:
            yield _gauge(
                "limit", "The in-flight limit now (adaptive: the controller's).", sum(limits)
            )
        yield _gauge(
            "in_flight", "Requests holding an in-flight slot now.", sum(s.in_flight for s in stats)
        )
        for name, what, values in (
            ("min_rtt_seconds", "The adaptive limit's minRTT (latency when nothing waits).",
             [s.min_rtt_ms for s in stats]),
            ("sample_rtt_seconds", "The adaptive limit's latency in its last window.",
             [s.sample_rtt_ms for s in stats]),
        ):  # fmt: skip
            known = [value for value in values if value is not None]
            if known:
                yield _gauge(name, what, min(known) / 1000.0)
        yield _queue_histogram(stats)
        shed = CounterMetricFamily(
            "gracefail_overload_shed",
            "Requests shed since start (probes and beacons included), by reason.",
            labels=("reason",),
        )
        for reason in SHED_REASONS:
            shed.add_metric((reason,), sum(s.shed[reason] for s in stats))
        yield shed
        ignored = CounterMetricFamily(
            "gracefail_overload_stamps_ignored",
            "Proxy stamps (X-Request-Start) ignored since start, by why.",
            labels=("why",),
        )
        for why in ("untrusted", "future", "absurd", "invalid"):
            ignored.add_metric((why,), sum(getattr(s, f"stamps_{why}") for s in stats))
        yield ignored


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"gracefail_overload_{name}", documentation, value=value)


def _queue_histogram(stats: Sequence[OverloadStats]) -> HistogramMetricFamily:
    merged: dict[float, int] = {}
    for one in stats:
        for bound, count in one.queue_histogram:
            merged[bound] = merged.get(bound, 0) + count
    buckets = [("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in merged.items()]
    return HistogramMetricFamily(
        "gracefail_overload_queue_seconds",
        "Time requests waited between the proxy's stamp and the app (trusted stamps).",
        buckets=buckets,
        sum_value=sum(one.queue_sum_s for one in stats),
    )


_overload_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _OverloadCollector] = (
    weakref.WeakKeyDictionary()
)
