"""Grafana: the provisioned term-end dashboard shows what the issue asks for, with metrics that exist."""

from __future__ import annotations

import json
import re

import yaml

from tests.deploy.conftest import DEPLOY
from tests.deploy.metric_names import known

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "hocba-term-end.json"
#: Recording rules of deploy/prometheus/rules, which the dashboard may use too.
RECORDED = {
    rule["record"]
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml")
    for group in yaml.safe_load(path.read_text())["groups"]
    for rule in group["rules"]
    if "record" in rule
}


def panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def test_the_dashboard_is_provisioned_from_the_folder_compose_mounts():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "hocba.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/hocba"
    compose = (DEPLOY / "compose.yaml").read_text()
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/hocba" in compose
    assert "./grafana/provisioning:/etc/grafana/provisioning" in compose
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"


def test_the_dashboard_covers_term_end():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "hocba-term-end"
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("per stage", "per worker", "backlog", "dead letters", "failing", "ministry", "oldest entry"):
        assert topic in titles, f"no panel about {topic}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_queries_prometheus_with_metrics_that_exist():
    unknown = set()
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = re.sub(r'"[^"]*"', '""', target["expr"])
            for name in re.findall(r"\b(?:hocba|faststream|rabbitmq)_[a-z0-9_]+|\bhocba:[a-z0-9_:]+", expr):
                if name not in known() and name not in RECORDED:
                    unknown.add(name)
    assert not unknown, f"the dashboard uses names no service serves: {sorted(unknown)}"


def test_panels_do_not_overlap():
    cells = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        assert g["x"] + g["w"] <= 24
