"""Prometheus: the scrape configs and alert rules load, the rules' unit tests pass, every alert has a runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy.conftest import DEPLOY, ROOT, tool
from tests.deploy.metric_names import known

PROMETHEUS = DEPLOY / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"
#: Things in an expression that look like names but are PromQL.
PROMQL_WORDS = {
    "sum", "max", "min", "count", "by", "without", "and", "or", "unless", "offset", "rate", "increase",
    "delta", "deriv", "histogram_quantile", "absent", "on", "ignoring", "group_left", "group_right",
    "time", "le", "bool",
}


def run(*command: str, cwd: Path = PROMETHEUS) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}{result.stderr}"
    return result.stdout


def rules() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules():
    out = run(*tool("promtool"), "check", "rules", *map(str, RULES))
    assert "SUCCESS" in out


def test_promtool_unit_tests_of_the_rules_pass():
    run(*tool("promtool"), "test", "rules", *map(str, RULE_TESTS))


def test_every_alert_has_a_unit_test():
    tested = set(re.findall(r"alertname:\s*(\w+)", "".join(p.read_text() for p in RULE_TESTS)))
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts - tested == set()


def test_the_scrape_configs_load(tmp_path):
    promtool = tool("promtool")
    run(*promtool, "check", "config", "prometheus.yml")
    # The compose config names the rules where the container mounts them.
    shutil.copytree(PROMETHEUS / "rules", tmp_path / "rules")
    text = (PROMETHEUS / "prometheus.compose.yml").read_text().replace("/etc/prometheus/rules/", "rules/")
    (tmp_path / "prometheus.yml").write_text(text)
    run(*promtool, "check", "config", "prometheus.yml", cwd=tmp_path)


def test_rules_use_only_metrics_the_services_serve():
    recorded = {r["record"] for r in rules() if "record" in r}
    unknown = set()
    for rule in rules():
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # label values are not names
        expr = re.sub(r"\[[^\]]*\]", "", expr)  # nor are range durations
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
            if name in PROMQL_WORDS or name in recorded or re.fullmatch(r"\d+[smhd]?", name):
                continue
            served = name.startswith(("hocba_", "faststream_", "rabbitmq_")) or name == "up"
            if served and name not in known():
                unknown.add(name)
    assert not unknown, f"rules use names no service serves: {sorted(unknown)}"


def test_every_alert_links_to_its_section_of_the_operations_guide():
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+\s+(.+)$", OPERATIONS.read_text(), flags=re.MULTILINE)
    }
    for rule in rules():
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            path, anchor = url.split("#")
            assert path == "docs/operations.md" and anchor in headings, f"{rule['alert']}: no section #{anchor}"
            assert rule["labels"]["severity"] in {"warning", "critical"}
