"""deploy/k8s: every manifest valid for Kubernetes, probes and requests set, a disruption budget, KEDA on queue depth.

Validated offline: core resources against Kubernetes' schemas with kubernetes-validate, KEDA's by
structure (their schemas come with KEDA's CRDs, not with Kubernetes). The kustomization is built
with `kubectl kustomize` where kubectl is installed, and otherwise its resource list is checked
against the files and each file is validated alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from hocba.broker import IDENTITIES
from shared.contracts.signing import SignWork
from shared.settings import Names
from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
HOCBA = ("identity", "grades", "signing", "archive", "sync")
#: FastStream's graceful_timeout for in-flight handlers (shared/messaging.py make_broker).
GRACEFUL_TIMEOUT = 30


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    """The built kustomization (kubectl kustomize) or, without kubectl, the listed files."""
    if shutil.which("kubectl"):
        built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
        return [d for d in yaml.safe_load_all(built.stdout) if d]
    docs = []
    for resource in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    return docs


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_the_kustomization_lists_every_manifest_in_its_folder():
    listed = set(kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == present


def test_core_resources_are_valid_for_kubernetes(documents):
    for document in documents:
        if document["apiVersion"].split("/")[0] in {"v1", "apps", "policy", "batch"}:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_optional_monitoring_kustomization_lists_its_files():
    monitoring = yaml.safe_load((K8S / "monitoring" / "kustomization.yaml").read_text())
    assert set(monitoring["resources"]) == {p.name for p in (K8S / "monitoring").glob("*.yaml")} - {"kustomization.yaml"}
    podmonitor = yaml.safe_load((K8S / "monitoring" / "podmonitor.yaml").read_text())
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_each_service_has_probes_on_its_health_endpoints_and_resource_requests(documents):
    deployments = by_kind(documents, "Deployment")
    assert set(deployments) == set(HOCBA)
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/ready"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"name": "metrics", "containerPort": 9100} in container["ports"]
        secrets = [e for e in container.get("env", []) if "valueFrom" in e]
        assert any(e["name"] == "AMQP_URL" and "secretKeyRef" in e["valueFrom"] for e in secrets)


def test_each_service_logs_in_as_its_own_broker_user_and_trusts_the_brokers_ca(documents):
    for name, deployment in by_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        [amqp] = [e for e in container["env"] if e["name"] == "AMQP_URL"]
        assert amqp["valueFrom"]["secretKeyRef"] == {"name": f"hocba-broker-{name}", "key": "amqp-url"}
        ca = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["rabbitmq-ca"]
        assert ca == "/run/hocba/rabbitmq"
        assert {"name": "rabbitmq-ca", "configMap": {"name": "hocba-rabbitmq-ca"}} in pod["volumes"]


def test_a_job_provisions_every_broker_user_with_its_password_from_its_secret(documents):
    job = by_kind(documents, "Job")["broker-users"]
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = container["command"]
    assert command[:5] == ["hocba", "broker", "provision", "--definitions", "/app/deploy/rabbitmq/definitions.json"]
    folder = command[command.index("--passwords-dir") + 1]
    assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "passwords"} == {folder}
    [passwords] = [v for v in pod["volumes"] if v["name"] == "passwords"]
    sources = {s["secret"]["name"]: s["secret"]["items"] for s in passwords["projected"]["sources"]}
    assert sources == {f"hocba-broker-{n}": [{"key": "password", "path": n}] for n in IDENTITIES}
    [admin] = container["env"]
    assert admin["name"] == "HOCBA_BROKER_MANAGEMENT_URL"
    assert admin["valueFrom"]["secretKeyRef"] == {"name": "hocba-rabbitmq-admin", "key": "management-url"}
    assert job["spec"]["ttlSecondsAfterFinished"] > 0, "a finished Job goes, so the next apply provisions again"


def test_each_service_has_a_disruption_budget(documents):
    budgets = by_kind(documents, "PodDisruptionBudget")
    deployments = by_kind(documents, "Deployment")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(
            all(labels.get(k) == v for k, v in b["spec"]["selector"]["matchLabels"].items()) for b in budgets.values()
        ), f"no PodDisruptionBudget selects {name}"


def test_keda_scales_signing_workers_on_the_work_queue_through_the_management_api(documents):
    [scaled] = by_kind(documents, "ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "signing"
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    [trigger] = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "rabbitmq"
    assert metadata["protocol"] == "http", "the management API counts unacknowledged messages too"
    assert metadata["mode"] == "QueueLength" and float(metadata["value"]) > 0
    assert metadata.get("excludeUnacknowledged", "false") == "false"
    # The queue the signing workers really consume (production has no namespace prefix).
    assert metadata["queueName"] == Names("").queue("signing", SignWork.ROUTING_KEY)
    auth = by_kind(documents, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert auth["spec"]["secretTargetRef"][0]["parameter"] == "host"
    # KEDA logs in as the monitor: queue depths through the management API, no message in or out.
    assert auth["spec"]["secretTargetRef"][0]["name"] == "hocba-broker-monitor"
    assert "signing" not in {d["metadata"]["name"] for d in documents if d["kind"] == "Deployment" and "replicas" in d["spec"]}


def test_signing_workers_get_longer_to_stop_than_the_slowest_chunk(documents):
    signing = by_kind(documents, "Deployment")["signing"]["spec"]["template"]["spec"]
    assert signing["terminationGracePeriodSeconds"] >= 2 * GRACEFUL_TIMEOUT


def test_no_secret_value_is_in_the_manifests(documents):
    assert not by_kind(documents, "Secret"), "Secrets are created at installation, not committed"
    text = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    assert not re.search(r"(password|passphrase|pin)\s*[:=]\s*[^\s{]", text, flags=re.IGNORECASE)
