"""The Grafana dashboard and Prometheus alerts name only metrics gracefail exports, and parse."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gracefail.events import CLIENT_KINDS, ClientEvent, Event, ServerEvent
from gracefail.recorders import PrometheusRecorder
from tests.conftest import ROOT

GRAFANA = ROOT / "integrations" / "grafana" / "gracefail.json"
ALERTS = ROOT / "integrations" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "integrations" / "prometheus" / "alerts_test.yml"

PROMQL_WORDS = frozenset(
    """sum avg min max count topk bottomk quantile stddev stdvar group count_values
    rate irate increase delta idelta deriv histogram_quantile clamp_min clamp_max clamp abs
    ceil floor round sqrt exp ln log2 log10 time vector scalar absent absent_over_time
    sum_over_time avg_over_time max_over_time min_over_time label_replace label_join
    label_values by without on ignoring group_left group_right and or unless bool offset
    humanize humanizePercentage humanizeDuration""".split()  # noqa: SIM905 - a word list reads better
)


def exported() -> tuple[set[str], set[str]]:
    """Series and label names a PrometheusRecorder exposes once it has seen each event kind."""
    recorder = PrometheusRecorder()
    events: list[Event] = [ServerEvent(time.time(), "i", 502, "timeout", "GET", "/r", "html")]
    events.append(ServerEvent(time.time(), "p", 502, "timeout", "GET", "/r", "html", probe=True))
    events.append(ServerEvent(time.time(), "m", 503, "maintenance", "GET", "/r", "html"))
    events += [ClientEvent(time.time(), "i", kind, 1, 1000, "en") for kind in CLIENT_KINDS]
    recorder.record(events)
    recorder.record_dropped(1, "queue_full")
    text = generate_latest(recorder.registry).decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    # job and instance are added by Prometheus when it scrapes.
    return {s.name for s in samples}, {k for s in samples for k in s.labels} | {"job", "instance"}


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    names = set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"", text))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    names |= set(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", text))
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions, strings removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"(label_values\(\s*\w+\s*),\s*\w+\s*\)", r"\1)", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    tokens = set(re.findall(r"(?<![\w$.])[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {t for t in tokens if t not in PROMQL_WORDS and not t.isdigit()}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        queries.append(query["query"] if isinstance(query, dict) else query)
    queries += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return queries


def test_dashboard_reads_only_exported_metrics() -> None:
    dashboard = json.loads(GRAFANA.read_text())
    series, labels = exported()
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 10
    used: set[str] = set()
    for query in queries:
        names = metric_names(query)
        assert names, f"no metric in {query!r}"
        assert names <= series, f"{query!r} reads {sorted(names - series)}, not exported"
        assert label_names(query) <= labels, f"{query!r} uses labels gracefail does not export"
        used |= names
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in used}
    assert families >= {
        "gracefail_failures", "gracefail_page_events",
        "gracefail_time_to_recovery_seconds", "gracefail_events_dropped",
        "gracefail_maintenance_pages",
    }  # fmt: skip


def test_dashboard_structure() -> None:
    dashboard = json.loads(GRAFANA.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["title"]


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.9, sum by (le, route) (rate(a_b_bucket{x="y z"}[5m]))) > 1'
    assert metric_names(expr) == {"a_b_bucket"}
    assert label_names(expr) == {"le", "route", "x"}
    assert metric_names("label_values(m_total, route)") == {"m_total"}
    assert label_names("label_values(m_total, route)") == {"route"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules: list[dict[str, Any]] = []
    for group in document["groups"]:
        assert isinstance(group["name"], str)
        assert group["rules"]
        rules += group["rules"]
    return rules


def test_alert_rules_schema_and_metrics() -> None:
    series, labels = exported()
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) >= 4
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert re.fullmatch(r"Gracefail[A-Z][A-Za-z]+", rule["alert"])
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= series, f"{rule['alert']} reads {sorted(used - series)}"
        assert label_names(rule["expr"]) <= labels, rule["alert"]


def test_alert_rules_with_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus); schema check ran instead")
    folder = ALERTS.parent
    for args in (["check", "rules", ALERTS.name], ["test", "rules", ALERTS_TEST.name]):
        result = subprocess.run(
            [promtool, *args], cwd=folder, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_paths_exist() -> None:
    assert isinstance(GRAFANA, Path)
    assert GRAFANA.is_file()
    assert ALERTS_TEST.is_file()
