"""deploy/compose.yaml: valid for Compose, and shaped as the issue asks (validated offline, no engine needed)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from hocba.broker import IDENTITIES
from tests.deploy.conftest import DEPLOY, tool

COMPOSE = DEPLOY / "compose.yaml"
HOCBA = ("identity", "grades", "signing", "archive", "sync")
#: Each broker user's password (deploy/.env), as the compose file names it.
BROKER_PASSWORDS = {name: f"HOCBA_BROKER_PASSWORD_{name.upper()}" for name in IDENTITIES}
#: Compose requires these (no default: they are passwords); validation uses stand-ins.
ENV = {
    "RABBITMQ_PASSWORD": "validation-only",
    "GRAFANA_ADMIN_PASSWORD": "validation-only",
    **{variable: f"validation-only-{name}" for name, variable in BROKER_PASSWORDS.items()},
}


def compose_command() -> list[str]:
    """`docker compose` when the plugin answers, else Debian's docker-compose."""
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            return ["docker", "compose"]
    except FileNotFoundError:
        pass
    return tool("docker-compose")


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as Compose resolves it (anchors merged, variables filled in)."""
    command = compose_command()
    env = {**os.environ, **ENV}
    checked = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stderr
    out = subprocess.run([*command, "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env, check=True)
    return yaml.safe_load(out.stdout)


def test_compose_refuses_to_start_without_the_passwords():
    command = compose_command()
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "RABBITMQ_PASSWORD" in result.stderr


@pytest.mark.parametrize("variable", BROKER_PASSWORDS.values())
def test_compose_refuses_to_start_without_each_broker_users_password(variable):
    command = compose_command()
    env = {**{k: v for k, v in os.environ.items() if k not in ENV}, **ENV}
    del env[variable]
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and f"set {variable} in deploy/.env" in result.stderr


def test_each_service_logs_in_as_its_own_broker_user_over_tls(resolved):
    for name in HOCBA:
        url = resolved["services"][name]["environment"]["AMQP_URL"]
        assert url == (
            f"amqps://hocba-{name}:validation-only-{name}@rabbitmq:5671/?cafile=/run/hocba/rabbitmq-ca.pem"
        ), name
        mounts = " ".join(map(str, resolved["services"][name]["volumes"]))
        assert "/run/hocba/rabbitmq-ca.pem" in mounts, name
    operator = resolved["services"]["operator"]
    assert operator["environment"]["AMQP_URL"].startswith("amqps://hocba-operator:validation-only-operator@")
    assert operator["profiles"] == ["tools"]


def test_rabbitmq_listens_with_tls_only_and_has_its_certificate(resolved):
    rabbitmq = resolved["services"]["rabbitmq"]
    assert any("/etc/rabbitmq/tls" in str(v) for v in rabbitmq["volumes"])
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert re.search(r"^listeners\.tcp\s*=\s*none$", conf, re.MULTILINE), "no plain AMQP listener"
    assert re.search(r"^listeners\.ssl\.default\s*=\s*5671$", conf, re.MULTILINE)
    for setting in ("cacertfile", "certfile", "keyfile"):
        assert re.search(rf"^ssl_options\.{setting}\s*=\s*/etc/rabbitmq/tls/", conf, re.MULTILINE), setting


def test_the_broker_users_are_provisioned_before_any_service_starts(resolved):
    services = resolved["services"]
    provisioning = services["broker-users"]
    assert provisioning["command"][:5] == [
        "hocba", "broker", "provision", "--definitions", "/app/deploy/rabbitmq/definitions.json"
    ]
    assert provisioning["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert provisioning["environment"]["HOCBA_BROKER_MANAGEMENT_URL"].startswith("http://hocba:validation-only@rabbitmq:")
    for name, variable in BROKER_PASSWORDS.items():
        assert provisioning["environment"][variable] == f"validation-only-{name}"
    for name in HOCBA:
        assert services[name]["depends_on"]["broker-users"]["condition"] == "service_completed_successfully", name


def test_no_broker_password_is_written_into_the_compose_file():
    text = COMPOSE.read_text()
    for line in re.findall(r"AMQP_URL: (.+)$", text, flags=re.MULTILINE):
        login = re.match(r"amqps://hocba-([a-z]+):([^@]+)@", line)
        assert login, line
        assert login.group(2).startswith(f"${{{BROKER_PASSWORDS[login.group(1)]}:?"), line


def test_rabbitmq_is_3_13_or_newer_with_management_and_prometheus(resolved):
    rabbitmq = resolved["services"]["rabbitmq"]
    major, minor = map(int, re.match(r"rabbitmq:(\d+)\.(\d+)", rabbitmq["image"]).groups())
    assert (major, minor) >= (3, 13)
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_management" in plugins and "rabbitmq_prometheus" in plugins
    assert any("/etc/rabbitmq/enabled_plugins" in str(v) for v in rabbitmq["volumes"])


def test_mongodb_7_runs_as_a_replica_set(resolved):
    mongo = resolved["services"]["mongo"]
    assert re.match(r"mongo:(7|8)(\.|$)", mongo["image"])
    assert "--replSet" in mongo["command"]
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    for name in HOCBA:
        assert "replicaSet=rs0" in resolved["services"][name]["environment"]["MONGO_URL"]


def test_the_five_services_wait_for_their_dependencies_and_report_health(resolved):
    for name in HOCBA:
        service = resolved["services"][name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert {"rabbitmq", "mongo"} <= set(service["depends_on"])
        assert "/health/ready" in " ".join(service["healthcheck"]["test"])
        assert service["environment"]["HOCBA_HTTP_PORT"] == "9100"


def seconds(duration: str) -> float:
    """A Compose duration ("120s", "2m0s", "1h") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def test_signing_scales_with_scale(resolved):
    signing = resolved["services"]["signing"]
    assert "container_name" not in signing and "ports" not in signing, "--scale needs no fixed name or host port"
    assert seconds(signing["stop_grace_period"]) >= 60, "a stopping worker must be able to finish its chunk"


def test_the_simulator_prometheus_and_grafana_are_there_and_provisioned(resolved):
    services = resolved["services"]
    assert "hocba.ministry_simulator" in services["ministry-simulator"]["command"]
    assert services["sync"]["environment"]["HOCBA_MINISTRY_URL"] == "http://ministry-simulator:9180"
    prometheus = " ".join(map(str, services["prometheus"]["volumes"]))
    assert "prometheus.compose.yml" in prometheus and "/etc/prometheus/rules" in prometheus
    grafana = " ".join(map(str, services["grafana"]["volumes"]))
    assert "/etc/grafana/provisioning" in grafana and "/var/lib/grafana/dashboards/hocba" in grafana


def test_files_the_compose_file_mounts_are_in_the_repository():
    text = COMPOSE.read_text()
    for path in re.findall(r"- \./([\w./-]+):", text):
        if not path.startswith("secrets"):
            assert (DEPLOY / path).exists(), f"deploy/{path} is mounted but missing"
    assert (DEPLOY / "Dockerfile").exists()


def test_no_secret_is_written_into_the_compose_file():
    text = yaml.safe_load(COMPOSE.read_text())
    for name, service in text["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items() if isinstance(environment, dict) else ():
            if any(word in key for word in ("PASS", "SECRET", "TOKEN", "PIN")):
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment"
