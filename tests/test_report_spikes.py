"""Spikes against a robust baseline: a synthetic spike is flagged, steady growth is not,
the demo's flapping upstream is flagged only while it is new; and the same idea as
Prometheus recording rules passes ``promtool test rules``.

Events go in through the real SQLite recorder; the report reads the real store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gracefail.demo import upstream as demo_upstream
from gracefail.events import ClientEvent, Event, ServerEvent
from gracefail.recorders.sqlite import SQLiteRecorder
from gracefail.report import SpikeSettings, generate, load_report
from gracefail.report.spikes import score_series
from tests.conftest import ROOT, require

START = datetime(2024, 5, 1, tzinfo=UTC)
RULES = ROOT / "integrations" / "prometheus"
# Hour-to-hour noise around a level (a fixed pattern, so the tests are repeatable).
NOISE = (0, 2, -1, 3, -2, 1, -3, 2, 0, -1, 3, -2)


def failures_per_bucket(counts: list[int], bucket_s: int, start: datetime = START) -> list[Event]:
    """``counts[i]`` failures spread evenly over bucket ``i`` after ``start``."""
    events: list[Event] = []
    for index, count in enumerate(counts):
        for n in range(count):
            at = start.timestamp() + index * bucket_s + (n + 0.5) * bucket_s / count
            events.append(ServerEvent(at, f"b{index}-{n}", 502, "connection", "GET", "/a", "html"))
    return events


def store_of(tmp_path: Path, events: list[Event]) -> str:
    recorder = SQLiteRecorder(tmp_path / "events.sqlite3")
    recorder.record(events)
    recorder.close()
    return str(tmp_path / "events.sqlite3")


def window(start: datetime, hours: float) -> dict[str, str]:
    until = start + timedelta(hours=hours)
    return {"since": start.isoformat(), "until": until.isoformat()}


def test_a_synthetic_spike_is_flagged(tmp_path: Path) -> None:
    hours = [10 + NOISE[i % len(NOISE)] for i in range(96)]
    hours[70] = 60
    store = store_of(tmp_path, failures_per_bucket(hours, 3600))
    report = json.loads(generate(store, fmt="json", **window(START + timedelta(days=1), 72)))
    assert report["spike_detection"] == {
        "bucket_s": 3600, "baseline_buckets": 24, "min_score": 3.5, "min_failures": 5,
    }  # fmt: skip
    [spike] = report["spikes"]
    assert spike["start"] == "2024-05-03T22:00:00Z"
    assert spike["failures"] == 60
    assert 9 <= spike["baseline"] <= 11
    assert spike["score"] > 10
    assert spike["threshold"] < 30
    # The next hours are judged against a baseline the spike did not inflate.
    later = load_report(store, **window(START + timedelta(days=1), 72)).spikes
    assert later is not None
    assert [b.baseline for b in later.series[47:50]] == [10.0, 10.0, 10.0]

    table = generate(store, **window(START + timedelta(days=1), 72))
    assert "2024-05-03T22:00      60 failures  baseline 10  score" in table
    page = generate(store, fmt="html", **window(START + timedelta(days=1), 72))
    assert page.count('fill="var(--bad)"><title>') == 1
    assert "05-03: 60 (spike)" in page or "22:00: 60 (spike)" in page
    assert "1 spike flagged." in page


@pytest.mark.parametrize(
    "growth",
    [
        pytest.param(lambda i: 5 + i * 45 // 71, id="linear-5-to-50"),
        pytest.param(lambda i: round(5 * 1.033**i), id="compound-3.3pc-an-hour"),
        pytest.param(lambda i: 20 + (i // 12) * 3, id="small-steps"),
    ],
)
def test_steady_growth_is_not_flagged(tmp_path: Path, growth: Any) -> None:
    hours = [max(0, growth(i) + NOISE[i % len(NOISE)]) for i in range(96)]
    store = store_of(tmp_path, failures_per_bucket(hours, 3600))
    report = load_report(store, **window(START + timedelta(days=1), 72))
    assert report.spikes is not None
    assert report.spikes.flagged == ()
    assert max(b.score for b in report.spikes.series) < 3.5


def test_windows_under_a_day_use_5_minute_buckets(tmp_path: Path) -> None:
    buckets = [3 + NOISE[i % len(NOISE)] // 2 for i in range(120)]
    buckets[100] = 40
    store = store_of(tmp_path, failures_per_bucket(buckets, 300))
    report = json.loads(generate(store, fmt="json", **window(START + timedelta(hours=2), 8)))
    assert report["spike_detection"]["bucket_s"] == 300
    assert [s["start"] for s in report["spikes"]] == ["2024-05-01T08:20:00Z"]
    page = generate(store, fmt="html", **window(START + timedelta(hours=2), 8))
    assert "<h2>Failures per 5 minutes</h2>" in page
    assert "the median of the 24 buckets before it (2 hours; the dashed line)" in page


def test_the_baseline_reaches_back_before_the_window(tmp_path: Path) -> None:
    """A burst in the window's first hour is judged against the day before it."""
    hours = [30] * 24 + [40]
    store = store_of(tmp_path, failures_per_bucket(hours, 3600))
    report = load_report(store, **window(START + timedelta(hours=24), 24))
    assert report.spikes is not None
    first = report.spikes.series[0]
    assert (first.start, first.failures, first.baseline) == (START + timedelta(hours=24), 40, 30)
    assert not first.spike, "30 -> 40 is 1.8 deviations of a count of 30"


@pytest.mark.parametrize(
    ("trail", "value", "spike"),
    [
        pytest.param([0] * 24, 4, False, id="quiet-service-4-stray-failures"),
        pytest.param([0] * 24, 5, True, id="quiet-service-5-failures"),
        pytest.param([100] * 24, 130, False, id="busy-130-within-sqrt-noise"),
        pytest.param([100] * 24, 136, True, id="busy-136-is-3.6-deviations"),
        pytest.param([10] * 23 + [500], 60, True, id="an-earlier-spike-does-not-hide-the-next"),
        pytest.param([0, 50] * 12, 60, False, id="flapping-half-the-time"),
    ],
)
def test_scores(trail: list[int], value: int, spike: bool) -> None:
    [(failures, _baseline, _score, threshold, flagged)] = score_series(
        [*trail, value], len(trail), SpikeSettings()
    )
    assert (failures, flagged) == (value, spike)
    assert (value >= threshold) == spike


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 3 buckets"):
        SpikeSettings(baseline_buckets=2)


# -- the demo's flapping upstream -----------------------------------------------------------


def demo_history(start: datetime, hours: float, every_s: float = 2.0) -> list[Event]:
    """What the demo shop stores while ``gracefail.demo.upstream.FlappingUpstream`` (its
    own schedule: up 18 s, down 6 s, slow 6 s, every 30 s) runs for ``hours``: one page
    load every ``every_s`` seconds; a load while the upstream is down is a 502, while it is
    slow a 504 (the shop waits 2 s); each failure's page is shown and recovers once the
    upstream is up again (plus the page's first probe, 2 to 3 s)."""
    clock = [0.0]
    fake_time = types.SimpleNamespace(monotonic=lambda: demo_upstream.START + clock[0])
    original = demo_upstream.time
    demo_upstream.time = fake_time  # type: ignore[assignment]
    try:
        flapping = demo_upstream.FlappingUpstream()
        events: list[Event] = []
        steps = int(hours * 3600 / every_s)
        for n in range(steps):
            clock[0] = n * every_s
            state = flapping.state()
            if state == "up":
                continue
            at = start.timestamp() + clock[0] + (2.0 if state == "slow" else 0.01)
            incident = f"d{n}"
            status, cause = (504, "timeout") if state == "slow" else (502, "upstream_status")
            events.append(ServerEvent(at, incident, status, cause, "GET", "/", "html",
                                      upstream="inventory", app_ms=0.0))  # fmt: skip
            # The upstream is up again at the next multiple of the period's up phase.
            phase = clock[0] % flapping.period
            back = flapping.period - phase + 2.5
            events.append(ClientEvent(at + 0.3, incident, "shown", 0, 200, "en"))
            events.append(ClientEvent(at + back + 0.5, incident, "recovered", 1,
                                      int(back * 1000), "en"))  # fmt: skip
        return events
    finally:
        demo_upstream.time = original


def test_the_demo_flapping_upstream_is_a_spike_only_while_it_is_new(tmp_path: Path) -> None:
    store = store_of(tmp_path, demo_history(START, hours=5))
    early = json.loads(generate(store, fmt="json", **window(START - timedelta(hours=1), 4)))
    assert early["spike_detection"]["bucket_s"] == 300
    flagged = [s["start"] for s in early["spikes"]]
    # Against an empty history, the first hour of flapping is flagged (12 buckets), until
    # flapping fills half of the 24 trailing buckets and becomes the baseline.
    assert flagged == [
        (START + timedelta(minutes=5 * i)).isoformat().replace("+00:00", "Z") for i in range(12)
    ]
    assert all(s["baseline"] == 0 for s in early["spikes"])
    # One episode: its quiet spells (18 s) are far shorter than the 5-minute gap.
    assert early["episodes_total"] == 1
    [episode] = early["episodes"]
    assert episode["by_status"]["504"] > 0
    assert episode["by_status"]["502"] > 0
    # Still going at the window's end: its last pages' reports come after it.
    assert episode["ongoing"] is True
    assert episode["recovery_rate"] > 0.99

    steady = json.loads(generate(store, fmt="json", **window(START + timedelta(hours=2), 3)))
    assert steady["spikes"] == [], "once flapping is the norm, it is not a spike"


# -- the same idea in Prometheus ------------------------------------------------------------


def test_spike_recording_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool", "apt-get install prometheus")
    assert promtool is not None
    for args in (["check", "rules", "spikes.yml"], ["test", "rules", "spikes_test.yml"]):
        result = subprocess.run(
            [promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_spike_rules_read_only_exported_metrics() -> None:
    yaml = pytest.importorskip("yaml")
    from tests.recorders.test_metrics_integrations import exported, label_names, metric_names

    series, labels = exported()
    functions = {"quantile_over_time", "sqrt"}  # PromQL words the shared extractor lacks
    rules = [r for g in yaml.safe_load((RULES / "spikes.yml").read_text())["groups"]
             for r in g["rules"]]  # fmt: skip
    recorded = {r["record"] for r in rules if "record" in r}
    assert all(name.startswith("job:gracefail_failures:") for name in recorded)
    for rule in rules:
        used = metric_names(rule["expr"]) - functions
        assert used, rule
        assert used <= series | recorded, f"{rule} reads {sorted(used - series - recorded)}"
        assert label_names(rule["expr"]) <= labels
    [alert] = [r for r in rules if "alert" in r]
    assert alert["alert"] == "GracefailFailureSpike"
    assert {"summary", "description"} <= set(alert["annotations"])
