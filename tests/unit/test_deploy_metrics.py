"""Every metric the Grafana dashboards and the Prometheus alert rules query exists in
shared/metrics.py, with the labels they select on; the dashboards use the provisioned
datasource; the provisioning points where docker-compose.yml mounts the dashboards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# Series Prometheus makes itself for every target (not exported by the services).
SCRAPE_SERIES = {"up": set()}
TARGET_LABELS = {"job", "instance"}

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
             "inf", "nan", "atan2"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")


def registry() -> dict[str, set[str]]:
    """Sample name -> label names, for every metric of shared/metrics.py (a counter's samples
    end in _total, a histogram's in _bucket, _sum and _count)."""
    samples: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        labels = set(value._labelnames)
        for family in value.describe():
            if family.type == "counter":
                samples[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                for suffix in ("_bucket", "_sum", "_count"):
                    samples[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
            else:
                samples[family.name] = labels
    return samples


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched on) for every series an expression reads."""
    found: list[tuple[str, set[str]]] = []
    # Matchers first, before the string literals they contain are blanked.
    for name, matchers in _SELECTOR.findall(expr):
        labels = set(_MATCHER.findall(matchers))
        if not name:
            raise AssertionError(f"{expr!r}: a selector without a metric name; name the metric")
        found.append((name, labels))
    bare = _STRINGS.sub('""', expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # ranges, subqueries, Grafana's $__rate_interval
    bare = _GROUPING.sub(" ", bare)
    bare = re.sub(r"\boffset\s+\S+", " ", bare)
    named = {name for name, _ in found}
    for name in _IDENT.findall(bare):
        if name.lower() not in _KEYWORDS and name not in named:
            found.append((name, set()))
            named.add(name)
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(path: Path) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of a dashboard."""
    board = json.loads(path.read_text())
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"{path.name}: panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"{path.name}: variable {variable['name']!r} should be label_values(<selector>, <label>)"
            yield f"{path.name}: variable {variable['name']!r}", match.group(1)


def alert_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"]


def _problems(queries: Iterator[tuple[str, str]]) -> tuple[list[str], set[str]]:
    known = registry()
    problems: list[str] = []
    used: set[str] = set()
    for where, expr in queries:
        for name, labels in selectors(expr):
            used.add(name)
            if name in SCRAPE_SERIES:
                allowed = TARGET_LABELS
            elif name in known:
                allowed = known[name] | TARGET_LABELS
            else:
                problems.append(f"{where}: {name!r} is not a metric of shared/metrics.py")
                continue
            if labels - allowed:
                problems.append(f"{where}: {name} has no label {sorted(labels - allowed)}; it has {sorted(allowed)}")
    return problems, used


def test_the_extractor_finds_metric_names_and_labels_in_promql() -> None:
    expr = ('histogram_quantile(0.99, sum by (service, le) (rate(aftersales_handler_seconds_bucket'
            '{service=~"$service", x="a{b}"}[$__rate_interval]))) / on (job) group_left up '
            'unless absent(aftersales_timer_backlog offset 5m) > bool 2')
    assert selectors(expr) == [
        ("aftersales_handler_seconds_bucket", {"service", "x"}), ("up", set()), ("aftersales_timer_backlog", set()),
    ]
    assert selectors("max by (kind) (aftersales_followups_open)") == [("aftersales_followups_open", set())]


def test_the_registry_names_samples_as_prometheus_exposes_them() -> None:
    known = registry()
    assert known["aftersales_events_consumed_total"] == {"service", "topic", "event_type", "outcome"}
    assert {"aftersales_handler_seconds_bucket", "aftersales_handler_seconds_count"} <= set(known)
    assert "le" in known["aftersales_handler_seconds_bucket"]
    assert known["aftersales_warranty_return_visit_rate"] == set()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_metric_a_dashboard_queries_exists_in_shared_metrics(path: Path) -> None:
    problems, used = _problems(dashboard_queries(path))
    assert not problems, "\n".join(problems)
    assert used, f"{path.name} queries nothing"


def test_every_metric_an_alert_rule_queries_exists_in_shared_metrics() -> None:
    problems, used = _problems(alert_queries())
    assert not problems, "\n".join(problems)
    assert {"aftersales_consumer_lag", "aftersales_dead_letters_total", "aftersales_outbox_backlog",
            "aftersales_timer_backlog", "up", "aftersales_warranty_return_visit_rate", "aftersales_satisfaction_rate",
            "aftersales_parts_shipment_accuracy", "aftersales_complaints_open", "aftersales_quality_alerts_open"} <= used


def test_the_dashboards_show_the_department_kpis_and_each_services_technical_panels() -> None:
    used_by = {path.name: _problems(dashboard_queries(path))[1] for path in DASHBOARDS}
    everything = set().union(*used_by.values())
    kpis = {"aftersales_warranty_return_visit_rate", "aftersales_satisfaction_rate", "aftersales_parts_shipment_accuracy",
            "aftersales_complaints_open", "aftersales_complaint_sla_compliance", "aftersales_quality_alerts_open",
            "aftersales_followups_open", "aftersales_followups_overdue", "aftersales_customer_files_incomplete"}
    technical = {"aftersales_events_consumed_total", "aftersales_events_published_total",
                 "aftersales_handler_seconds_bucket", "aftersales_consumer_lag", "aftersales_dead_letters_total",
                 "aftersales_outbox_backlog", "aftersales_timer_backlog", "aftersales_http_requests_total",
                 "aftersales_http_request_seconds_bucket"}
    assert kpis <= everything, f"no panel for {sorted(kpis - everything)}"
    assert technical <= everything, f"no panel for {sorted(technical - everything)}"
    # Each business gauge is read from the job that owns it: the other processes export it unset.
    for path in DASHBOARDS:
        for where, expr in dashboard_queries(path):
            for name, labels in selectors(expr):
                if name in kpis:
                    assert "job" in labels, f"{where}: read {name} from its owner's job, e.g. {{job=\"followup\"}}"


def test_the_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {ds["uid"] for ds in provisioned["datasources"] if ds["type"] == "prometheus"}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        refs = {json.dumps(p["datasource"], sort_keys=True) for p in _panels(board["panels"]) if "datasource" in p}
        refs |= {json.dumps(t["datasource"], sort_keys=True) for p in _panels(board["panels"]) for t in p.get("targets", [])}
        for ref in map(json.loads, refs):
            assert ref == {"type": "prometheus", "uid": ref["uid"]} and ref["uid"] in uids, f"{path.name}: {ref}"
        ids = [p["id"] for p in _panels(board["panels"])]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
    assert len({json.loads(p.read_text())["uid"] for p in DASHBOARDS}) == len(DASHBOARDS), "dashboard uids repeat"


def test_grafana_loads_the_dashboards_from_where_compose_mounts_them() -> None:
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/aftersales.yml").read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
