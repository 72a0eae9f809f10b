"""Spikes: buckets whose failures stand out from the buckets just before them.

Each bucket (5 minutes for windows under a day, an hour up to 90 days, a day
beyond) is compared with a baseline taken from the ``baseline_buckets`` before it
(24: two hours of 5-minute buckets, a day of hours), reaching back before the
window when needed:

* the baseline is the trailing buckets' **median** and their spread the **MAD**
  (median absolute deviation) times 1.4826, so a spike does not inflate the
  baseline it is judged against, and one busy bucket among the trailing ones
  moves neither;
* the spread is at least the square root of the baseline (a count's own noise)
  and at least 1, so a quiet service (MAD 0) does not turn every stray failure
  into a spike;
* a bucket is a spike when its score, ``(failures - median) / spread``, is at
  least ``min_score`` (3.5) and it has at least ``min_failures`` failures (5).

Failures that only grow slowly raise the median with them and are never flagged;
a step up stays flagged until it fills half the trailing buckets, and from then
on it is the new normal. Buckets are whole clock periods, so the first one may
begin before ``--since``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ..recorders.schema import FAILURES
from .model import SpikeBucket, Spikes, Window
from .sql import Scope, bucket

__all__ = ["MAD_SCALE", "SpikeSettings", "bucket_seconds", "find_spikes", "score_series"]

MAD_SCALE: Final = 1.4826
"""MAD times this estimates the standard deviation of normally distributed counts."""
_DAY: Final = 86400


@dataclass(frozen=True, slots=True)
class SpikeSettings:
    """The spike detector's knobs (see the module docs)."""

    baseline_buckets: int = 24
    min_score: float = 3.5
    min_failures: int = 5

    def __post_init__(self) -> None:
        if self.baseline_buckets < 3:
            raise ValueError(
                f"baseline_buckets={self.baseline_buckets!r}: a median needs at least 3 buckets"
            )
        if self.min_score <= 0 or self.min_failures < 1:
            raise ValueError("min_score must be above 0 and min_failures at least 1")


def bucket_seconds(window: Window) -> int:
    """5 minutes for windows under a day, an hour up to 90 days, else a day."""
    if window.seconds < _DAY:
        return 300
    if window.seconds <= 90 * _DAY:
        return 3600
    return _DAY


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle, odd = divmod(len(ordered), 2)
    return float(ordered[middle]) if odd else (ordered[middle - 1] + ordered[middle]) / 2.0


def score_series(
    counts: Sequence[int], first: int, settings: SpikeSettings
) -> list[tuple[int, float, float, int, bool]]:
    """Score ``counts[first:]`` against their trailing buckets.

    ``counts`` is the whole series, the ``first`` buckets being the history before the
    window. Returns, per scored bucket: (failures, baseline, score, threshold, spike).
    """
    scored = []
    for index in range(first, len(counts)):
        trail = counts[max(0, index - settings.baseline_buckets) : index]
        baseline = _median(trail) if trail else 0.0
        spread = _median([abs(n - baseline) for n in trail]) * MAD_SCALE if trail else 0.0
        scale = max(spread, math.sqrt(baseline), 1.0)
        failures = counts[index]
        score = (failures - baseline) / scale
        spike = score >= settings.min_score and failures >= settings.min_failures
        # The fewest failures that would have been a spike (a count is whole).
        threshold = max(
            math.ceil(baseline + settings.min_score * scale - 1e-9), settings.min_failures
        )
        scored.append((failures, round(baseline, 3), round(score, 2), threshold, spike))
    return scored


def find_spikes(scope: Scope, settings: SpikeSettings) -> Spikes:
    """The window's failures per bucket, each scored against the buckets before it."""
    window = scope.window
    size = bucket_seconds(window)
    first_start = int(window.since.timestamp()) // size * size
    history_start = first_start - settings.baseline_buckets * size
    until = window.until.timestamp()
    sql = f"""SELECT {bucket(scope.reader, size)} AS bucket, COUNT(*) FROM {FAILURES}
WHERE {scope.where} AND probe = 0 GROUP BY 1"""
    rows = scope.reader.query(sql, (float(history_start), until, *scope.route_params))
    found = {int(start): int(count) for start, count in rows}
    starts = list(range(history_start, math.ceil(until / size) * size, size))
    starts = [s for s in starts if s < until]
    counts = [found.get(start, 0) for start in starts]
    series = tuple(
        SpikeBucket(datetime.fromtimestamp(start, UTC), *values)
        for start, values in zip(
            starts[settings.baseline_buckets :],
            score_series(counts, settings.baseline_buckets, settings),
            strict=True,
        )
    )
    return Spikes(
        bucket_s=size,
        baseline_buckets=settings.baseline_buckets,
        min_score=settings.min_score,
        min_failures=settings.min_failures,
        series=series,
    )
