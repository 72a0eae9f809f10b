"""OpenTelemetry metrics (the API only; the app configures the SDK and its exporter).

Instruments (the same as the Prometheus recorder's; an OTel-to-Prometheus
exporter turns them into the same metric names):

* ``gracefail.failures`` counter: failure replies to users, with
  ``http.response.status_code``, ``http.route``, ``http.request.method``,
  ``error.type`` (gracefail's cause: timeout, connection, protocol, ...) and
  ``gracefail.source`` (``app``, ``gateway`` or ``worker``). Outages only.
* ``gracefail.maintenance_pages`` counter: maintenance pages (503) served to users during
  planned maintenance, with ``http.route``, ``http.request.method`` and
  ``gracefail.source``: planned downtime, never among the failures (so an alert or an
  error rate on ``gracefail.failures`` leaves it out by itself).
* ``gracefail.shed_requests`` counter: users' requests shed under load with the busy page
  (503, cause ``overload``), with ``gracefail.shed_reason`` (``queue``, ``concurrency``),
  ``http.route``, ``http.request.method`` and ``gracefail.source``: not failures.
* ``gracefail.probes`` counter: failure replies to the page's own probes.
* ``gracefail.page_events`` counter, attribute ``gracefail.event``.
* ``gracefail.time_to_recovery`` histogram (unit ``s``).
* ``gracefail.events_dropped`` counter, attribute ``gracefail.reason``
  (``queue_full`` or ``recorder_error``).

With ``Config.overload``, the engine hands its guard to the recorder
(:meth:`OpenTelemetryRecorder.watch_overload`): observable gauges whose callbacks read
``OverloadGuard.stats()`` at each collection (nothing per request):
``gracefail.overload.limit`` and ``gracefail.overload.in_flight`` (``{request}``),
``gracefail.overload.min_rtt`` and ``gracefail.overload.queue_time`` (the last trusted
queue time; both ``s``), and the observable counter ``gracefail.overload.shed`` with
``gracefail.shed_reason``.

Example::

    from gracefail.recorders import OpenTelemetryRecorder
    app.add_middleware(GracefailMiddleware, recorders=[OpenTelemetryRecorder()])
    # or OpenTelemetryRecorder(meter_provider=provider) for a provider of your own
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence

try:
    from opentelemetry import metrics
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gracefail's OpenTelemetry recorder needs opentelemetry-api: install gracefail[otel]"
    ) from exc

from typing import TYPE_CHECKING, Final

from .._version import __version__
from ..events import ClientEvent, Event, ServerEvent
from .labels import (
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

__all__ = ["OpenTelemetryRecorder"]

PLANNED_CAUSE: Final = MAINTENANCE_CAUSE
"""The cause of the pages of planned maintenance (:mod:`gracefail.maintenance_page`)."""


class OpenTelemetryRecorder:
    """Records failures and page outcomes through the OpenTelemetry metrics API.

    Args:
        meter_provider: the provider to get gracefail's meter from; default the
            global one (``opentelemetry.metrics.get_meter_provider()``).
        buckets: explicit histogram boundaries (seconds), passed as advice.
    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        *,
        buckets: Sequence[float] = TIME_TO_RECOVERY_BUCKETS,
    ):
        meter = metrics.get_meter("gracefail", __version__, meter_provider=meter_provider)
        self._meter = meter
        self._guards: weakref.WeakSet[OverloadGuard] = weakref.WeakSet()
        self._observing = False
        self.failures = meter.create_counter(
            "gracefail.failures", "{failure}", "Failure replies (502/504) served to users."
        )
        self.maintenance_pages = meter.create_counter(
            "gracefail.maintenance_pages",
            "{page}",
            "Maintenance pages (503) served to users during planned maintenance.",
        )
        self.shed = meter.create_counter(
            "gracefail.shed_requests",
            "{request}",
            "Users' requests shed under load with the busy page (503).",
        )
        self.probes = meter.create_counter(
            "gracefail.probes", "{failure}", "Failure replies to the recovery page's own probes."
        )
        self.page_events = meter.create_counter(
            "gracefail.page_events", "{event}", "What recovery pages reported through beacons."
        )
        try:
            self.time_to_recovery = meter.create_histogram(
                "gracefail.time_to_recovery",
                "s",
                "Time from the page's navigation start to its recovery, measured by the page.",
                explicit_bucket_boundaries_advisory=list(buckets),
            )
        except TypeError:  # opentelemetry-api before 1.23 takes no advice
            self.time_to_recovery = meter.create_histogram(
                "gracefail.time_to_recovery",
                "s",
                "Time from the page's navigation start to its recovery, measured by the page.",
            )
        self.dropped = meter.create_counter(
            "gracefail.events_dropped", "{event}", "Events lost before a recorder stored them."
        )

    def record(self, events: Sequence[Event]) -> None:
        """Add a batch to the instruments."""
        for event in events:
            if isinstance(event, ServerEvent):
                if event.probe:
                    self.probes.add(1, {"http.response.status_code": event.status})
                    continue
                if event.cause == OVERLOAD_CAUSE:
                    self.shed.add(
                        1,
                        {
                            "gracefail.shed_reason": label_shed_reason(event.error_type),
                            "http.route": event.route or UNKNOWN_ROUTE,
                            "http.request.method": label_method(event.method),
                            "gracefail.source": label_source(event.source),
                        },
                    )
                    continue
                if event.cause == PLANNED_CAUSE:
                    self.maintenance_pages.add(
                        1,
                        {
                            "http.route": event.route or UNKNOWN_ROUTE,
                            "http.request.method": label_method(event.method),
                            "gracefail.source": label_source(event.source),
                        },
                    )
                    continue
                self.failures.add(
                    1,
                    {
                        "http.response.status_code": event.status,
                        "http.route": event.route or UNKNOWN_ROUTE,
                        "http.request.method": label_method(event.method),
                        "error.type": event.cause,
                        "gracefail.source": label_source(event.source),
                    },
                )
            elif isinstance(event, ClientEvent):
                self.page_events.add(1, {"gracefail.event": event.kind})
                if event.kind == "recovered":
                    self.time_to_recovery.record(event.elapsed_ms / 1000.0)

    def record_dropped(self, count: int, reason: str) -> None:
        """Count events the pipeline lost (``reason``: queue_full or recorder_error)."""
        self.dropped.add(count, {"gracefail.reason": reason})

    def watch_overload(self, guard: OverloadGuard) -> None:
        """Observe ``guard``'s gauges (see the module docs), read at each collection. The
        engine calls it when ``Config.overload`` is set; several guards add up."""
        self._guards.add(guard)
        if self._observing:
            return
        self._observing = True
        meter = self._meter
        meter.create_observable_gauge(
            "gracefail.overload.limit",
            [self._observe(lambda s: s.limit, sum)],
            "{request}",
            "The in-flight limit now (adaptive: the controller's).",
        )
        meter.create_observable_gauge(
            "gracefail.overload.in_flight",
            [self._observe(lambda s: s.in_flight, sum)],
            "{request}",
            "Requests holding an in-flight slot now.",
        )
        meter.create_observable_gauge(
            "gracefail.overload.min_rtt",
            [self._observe(lambda s: _seconds(s.min_rtt_ms), min)],
            "s",
            "The adaptive limit's minRTT (latency when nothing waits).",
        )
        meter.create_observable_gauge(
            "gracefail.overload.queue_time",
            [self._observe(lambda s: _seconds(s.queue_ms), max)],
            "s",
            "The last queue time read from a trusted proxy's stamp (X-Request-Start).",
        )
        meter.create_observable_counter(
            "gracefail.overload.shed",
            [self._shed_callback],
            "{request}",
            "Requests shed since start (probes and beacons included), by reason.",
        )

    def _stats(self) -> list[OverloadStats]:
        return [guard.stats() for guard in list(self._guards)]

    def _observe(
        self,
        read: Callable[[OverloadStats], float | None],
        combine: Callable[[Iterable[float]], float],
    ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def callback(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            values = [value for value in map(read, self._stats()) if value is not None]
            return [metrics.Observation(combine(values))] if values else []

        return callback

    def _shed_callback(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        stats = self._stats()
        if not stats:
            return []
        return [
            metrics.Observation(
                sum(s.shed[reason] for s in stats), {"gracefail.shed_reason": reason}
            )
            for reason in SHED_REASONS
        ]

    def close(self) -> None:
        """Nothing to release (the meter provider belongs to the app)."""


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0
