"""deploy/k8s: every manifest valid for Kubernetes, probes and requests set, a disruption budget, KEDA on queue depth,
each service and the web gateway with only its own keys and logins, every pod non-root on a read-only root file
system, and network policies that deny what the services and the gateway do not need.

Validated offline: core resources against Kubernetes' schemas with kubernetes-validate, KEDA's by
structure (their schemas come with KEDA's CRDs, not with Kubernetes). The kustomization is built
with `kubectl kustomize` where kubectl is installed, and otherwise its resource list is checked
against the files and each file is validated alone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import cast
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from faststream.rabbit.subscriber.usecase import RabbitSubscriber
from starlette.routing import Route

from hocba.broker import IDENTITIES
from services.archive.handlers import Deps
from services.archive.http import public_routes
from services.signing.app import build_app as build_signing
from shared.contracts.signing import SignWork
from shared.settings import Names, Settings
from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
HOCBA = ("identity", "grades", "signing", "archive", "sync")
#: The term-end web page (`python -m hocba.web`): a Deployment beside the services, on a port of its own.
GATEWAY = "web"
GATEWAY_PORT = 9190
#: Who holds a key of the PKI: their part of it (`hocba pki export --service S`) is a Secret each. The gateway
#: holds svc-web, with which it vouches for the people signed in on the web page.
PKI_PARTS = {
    "signing": "hocba-pki-signing",
    "archive": "hocba-pki-archive",
    "grades": "hocba-pki-grades",
    GATEWAY: "hocba-pki-web",
}
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|(^|_)PIN(_|$)")
#: Variables taken from a Secret: logins the drivers read from a URL (AMQP_URL, MONGO_URL, the gateway's two broker
#: logins), and the two Jobs' administrators (RabbitMQ's management URL, MongoDB's user name; its password is a file).
FROM_SECRETS = {
    "AMQP_URL",
    "MONGO_URL",
    "HOCBA_WEB_SCHOOL_AMQP_URL",
    "HOCBA_WEB_OPERATOR_AMQP_URL",
    "HOCBA_BROKER_MANAGEMENT_URL",
    "MONGO_ADMIN_USER",
}
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


def generated(name: str) -> dict[str, str]:
    """The literals of a ConfigMap the kustomization generates."""
    [generator] = [g for g in kustomization()["configMapGenerator"] if g["name"] == name]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def names(reference: str, generated_name: str) -> bool:
    """Whether a reference names the generated ConfigMap (kustomize appends a hash to its name)."""
    hashed = re.fullmatch(rf"{re.escape(generated_name)}-[a-z0-9]{{10}}", reference)
    return reference == generated_name or hashed is not None


def pods(documents: list[dict]) -> dict[str, dict]:
    """Every pod template (Deployments and Jobs) by its workload's name."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in documents if d["kind"] in {"Deployment", "Job"}
    }


def service_pod(documents: list[dict], name: str) -> tuple[dict, dict]:
    """A service's pod spec and its one container."""
    pod = by_kind(documents, "Deployment")[name]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return pod, container


def volumes(pod: dict) -> dict[str, dict]:
    return {v["name"]: v for v in pod["volumes"]}


def mounted(container: dict) -> dict[str, str]:
    """Mount path → volume name."""
    return {m["mountPath"]: m["name"] for m in container["volumeMounts"]}


def secret_names(volume: dict) -> set[str]:
    """The Secrets a volume holds (a secret volume, or a projected one's secret sources)."""
    if "secret" in volume:
        return {volume["secret"]["secretName"]}
    sources = volume.get("projected", {}).get("sources", [])
    return {s["secret"]["name"] for s in sources if "secret" in s}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_kustomization_lists_every_manifest_in_its_folder():
    listed = set(kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == present


def test_core_resources_are_valid_for_kubernetes(documents):
    for document in documents:
        if document["apiVersion"].split("/")[0] in {"v1", "apps", "policy", "batch", "networking.k8s.io"}:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_optional_monitoring_kustomization_lists_its_files():
    monitoring = yaml.safe_load((K8S / "monitoring" / "kustomization.yaml").read_text())
    assert set(monitoring["resources"]) == {p.name for p in (K8S / "monitoring").glob("*.yaml")} - {"kustomization.yaml"}
    podmonitor = yaml.safe_load((K8S / "monitoring" / "podmonitor.yaml").read_text())
    assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_each_service_has_probes_on_its_health_endpoints_and_resource_requests(documents):
    deployments = by_kind(documents, "Deployment")
    assert set(deployments) == {*HOCBA, GATEWAY}
    for name in HOCBA:
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["startupProbe"]["httpGet"]["path"] == "/health/ready"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"name": "metrics", "containerPort": 9100} in container["ports"]
        secrets = [e for e in container.get("env", []) if "valueFrom" in e]
        assert any(e["name"] == "AMQP_URL" and "secretKeyRef" in e["valueFrom"] for e in secrets)


def test_the_gateway_serves_its_pages_and_health_on_its_port_behind_a_service(documents):
    pod, container = service_pod(documents, GATEWAY)
    assert container["command"] == ["python", "-m", "hocba.web"]
    assert container["ports"] == [{"name": "http", "containerPort": GATEWAY_PORT}]
    assert env_of(container)["HOCBA_WEB_PORT"]["value"] == str(GATEWAY_PORT)
    assert env_of(container)["HOCBA_WEB_HOST"]["value"] == "0.0.0.0", "reachable from outside its pod"
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
    # Production settings from the one ConfigMap every service reads: production, the issuer's keys, the PKI folder.
    assert any(names(e["configMapRef"]["name"], "hocba-config") for e in container["envFrom"])
    assert "HOCBA_ENVIRONMENT" not in env_of(container)
    # One copy: the signing batches it follows live in its memory.
    assert by_kind(documents, "Deployment")[GATEWAY]["spec"]["replicas"] == 1
    selecting = {"app.kubernetes.io/name": GATEWAY}
    [service] = [s for s in by_kind(documents, "Service").values() if s["spec"]["selector"] == selecting]
    assert service["spec"]["ports"] == [{"name": "http", "port": GATEWAY_PORT, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP", "published through the ingress controller, with TLS"


def test_the_gateway_logs_in_as_the_command_lines_school_and_operator_and_uses_no_database(documents):
    pod, container = service_pod(documents, GATEWAY)
    env = env_of(container)
    for role in ("school", "operator"):
        login = env[f"HOCBA_WEB_{role.upper()}_AMQP_URL"]["valueFrom"]["secretKeyRef"]
        assert login == {"name": f"hocba-broker-{role}", "key": "amqp-url"}, role
    assert {"school", "operator"} <= set(IDENTITIES), "the broker users it logs in as exist"
    assert "AMQP_URL" not in env and "MONGO_URL" not in env
    assert mounted(container)["/run/hocba/rabbitmq"] == "rabbitmq-ca"
    assert volumes(pod)["rabbitmq-ca"] == {"name": "rabbitmq-ca", "configMap": {"name": "hocba-rabbitmq-ca"}}
    assert not any("mongo" in v["name"] for v in pod["volumes"]), "the gateway talks to no database"
    assert not any(s.startswith("hocba-mongo") for v in pod["volumes"] for s in secret_names(v))


def test_the_gateway_checks_sign_in_tokens_with_the_issuers_keys_and_keeps_its_sessions_key_as_a_file(documents):
    pod, container = service_pod(documents, GATEWAY)
    jwks = generated("hocba-config")["HOCBA_ACTOR_ISSUER_JWKS"]
    folder = str(PurePosixPath(jwks).parent)
    assert volumes(pod)[mounted(container)[folder]]["configMap"]["name"] == "hocba-actor-issuer"
    assert env_of(container)["HOCBA_WEB_SESSION_KEY_FILE"]["value"] == "/run/secrets/web-session-key"
    files = volumes(pod)[mounted(container)["/run/secrets"]]["projected"]["sources"]
    assert {"name": "hocba-web-session-key", "items": [{"key": "session-key", "path": "web-session-key"}]} in [
        f["secret"] for f in files
    ]
    users = {n for n, p in pods(documents).items() for v in p["volumes"] if "hocba-web-session-key" in secret_names(v)}
    assert users == {GATEWAY}, "the session key signs the gateway's cookies alone"


def test_every_pod_runs_as_a_non_root_user_on_a_read_only_root_file_system(documents):
    for name, pod in pods(documents).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
    assert GATEWAY in pods(documents)


def test_each_service_logs_in_as_its_own_broker_user_and_trusts_the_brokers_ca(documents):
    for name in HOCBA:
        pod = by_kind(documents, "Deployment")[name]["spec"]["template"]["spec"]
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
    assert metadata["mode"] == "QueueLength"
    assert metadata.get("excludeUnacknowledged", "false") == "false"
    # The queue the signing workers really consume, under the namespace the manifests give them.
    assert metadata["queueName"] == Names(Settings(namespace=manifest_namespace(documents)).namespace).queue(
        "signing", SignWork.ROUTING_KEY
    )
    auth = by_kind(documents, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    assert auth["spec"]["secretTargetRef"][0]["parameter"] == "host"
    # KEDA logs in as the monitor: queue depths through the management API, no message in or out.
    assert auth["spec"]["secretTargetRef"][0]["name"] == "hocba-broker-monitor"
    assert "signing" not in {d["metadata"]["name"] for d in documents if d["kind"] == "Deployment" and "replicas" in d["spec"]}


def manifest_namespace(documents: list[dict]) -> str:
    """HOCBA_NAMESPACE as the signing workers get it: their own env, else the generated hocba-config."""
    signing = by_kind(documents, "Deployment")["signing"]["spec"]["template"]["spec"]["containers"][0]
    own = {e["name"]: e.get("value", "") for e in signing.get("env", [])}
    return own.get("HOCBA_NAMESPACE", generated("hocba-config").get("HOCBA_NAMESPACE", ""))


def work_prefetch(data_dir: Path) -> int:
    """Chunks one signing worker holds unacknowledged: its work queue subscriber's prefetch, else the channel's."""
    service = build_signing(Settings(data_dir=data_dir))
    subscribers = [s for s in service.broker.subscribers if isinstance(s, RabbitSubscriber)]
    [worker] = [s for s in subscribers if s.queue.routing_key == SignWork.ROUTING_KEY]
    channel = worker.channel
    return channel.prefetch_count if channel is not None and channel.prefetch_count else Settings().prefetch


def test_keda_asks_for_no_worker_that_would_find_nothing_to_take(documents, tmp_path):
    """The target (queued chunks per worker) is at least what one worker holds: with less, KEDA asks for workers
    while the chunks are already held by the ones running (26 queued, 16 held by 2 workers of prefetch 8, 7 asked
    for at a target of 4)."""
    [scaled] = by_kind(documents, "ScaledObject").values()
    [trigger] = scaled["spec"]["triggers"]
    target = float(trigger["metadata"]["value"])
    prefetch = work_prefetch(tmp_path)
    assert target >= prefetch, f"target {target:.0f} chunks a worker, below the {prefetch} a worker holds"


def test_signing_workers_get_longer_to_stop_than_the_slowest_chunk(documents):
    signing = by_kind(documents, "Deployment")["signing"]["spec"]["template"]["spec"]
    assert signing["terminationGracePeriodSeconds"] >= 2 * GRACEFUL_TIMEOUT


def test_no_secret_value_is_in_the_manifests(documents):
    assert not by_kind(documents, "Secret"), "Secrets are created at installation, not committed"
    text = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    assert not re.search(r"(password|passphrase|pin)\s*[:=]\s*[^\s{]", text, flags=re.IGNORECASE)


# --- keys where they belong -------------------------------------------------------------------------


def test_the_root_ca_key_is_mounted_nowhere(documents):
    for name, pod in pods(documents).items():
        for volume in pod["volumes"]:
            assert "hocba-pki" not in secret_names(volume), f"{name} mounts the whole PKI"
            sources = [volume] + volume.get("projected", {}).get("sources", [])
            items = [i for s in sources for i in s.get("secret", {}).get("items", [])]
            assert not any("root.key" in i["key"] or "root.key" in i["path"] for i in items), name
        for container in pod["containers"]:
            pki = {path: volume for path, volume in mounted(container).items() if path.startswith("/run/hocba/pki")}
            assert set(pki) <= {"/run/hocba/pki/ca", "/run/hocba/pki/certs", "/run/hocba/pki/keys"}, name


def test_each_service_gets_only_its_own_keys(documents):
    for name in (*HOCBA, GATEWAY):
        pod, container = service_pod(documents, name)
        pki = {path: volume for path, volume in mounted(container).items() if path.startswith("/run/hocba/pki")}
        held = {s for v in pod["volumes"] for s in secret_names(v) if s in PKI_PARTS.values()}
        # Everyone checks certificates against the public trust: the anchor and the CRL.
        assert volumes(pod)[pki["/run/hocba/pki/ca"]]["configMap"]["name"] == "hocba-pki-trust", name
        if name in PKI_PARTS:
            assert held == {PKI_PARTS[name]}, f"{name} holds {held}"
            keys = volumes(pod)[pki["/run/hocba/pki/keys"]]
            assert keys["secret"]["secretName"] == PKI_PARTS[name] and keys["secret"]["defaultMode"] in (0o400, 0o440)
            assert volumes(pod)[pki["/run/hocba/pki/certs"]]["configMap"]["name"] == "hocba-pki-certs"
        else:
            assert held == set() and set(pki) == {"/run/hocba/pki/ca"}, f"{name} holds a key of the PKI"
        assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"].startswith("/run/")), name


def test_secrets_are_files_not_environment(documents):
    for name, pod in pods(documents).items():
        for container in pod["containers"]:
            for variable, entry in env_of(container).items():
                if SECRET_NAME.search(variable):
                    assert variable.endswith("_FILE") and entry["value"].startswith("/run/secrets/"), (name, variable)
                if "secretKeyRef" in entry.get("valueFrom", {}):
                    assert variable in FROM_SECRETS, f"{name}: {variable} comes from a Secret as a variable"
        for volume in pod["volumes"]:
            if secret_names(volume):
                mode = volume.get("secret", volume.get("projected", {})).get("defaultMode")
                assert mode in (0o400, 0o440), f"{name}: {volume['name']} is readable by others"
    for name in PKI_PARTS:
        pod, container = service_pod(documents, name)
        assert env_of(container)["HOCBA_PKI_PASSPHRASE_FILE"]["value"] == "/run/secrets/pki-passphrase"
        files = volumes(pod)[mounted(container)["/run/secrets"]]["projected"]["sources"]
        assert {"name": "hocba-pki-passphrase", "items": [{"key": "passphrase", "path": "pki-passphrase"}]} in [
            f["secret"] for f in files
        ]
    for name in set(HOCBA) - set(PKI_PARTS):
        pod, container = service_pod(documents, name)
        assert "hocba-pki-passphrase" not in secret_names(volumes(pod)["secrets"]), f"{name} needs no PKI passphrase"
    text = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    assert not re.search(r"HOCBA_PKI_PASSPHRASE(?!_FILE)|HOCBA_PKCS11_PIN(?!_FILE)", text)


def test_every_service_runs_in_production_with_its_own_kek(documents):
    config = generated("hocba-config")
    assert config["HOCBA_ENVIRONMENT"] == "production"
    assert config["HOCBA_KEK_FILE"] == "/run/secrets/kek"
    claims = by_kind(documents, "PersistentVolumeClaim")
    for name in HOCBA:
        pod, container = service_pod(documents, name)
        assert any(names(e["configMapRef"]["name"], "hocba-config") for e in container["envFrom"]), name
        assert "HOCBA_ENVIRONMENT" not in env_of(container) and "HOCBA_KEK_FILE" not in env_of(container), name
        files = volumes(pod)[mounted(container)["/run/secrets"]]["projected"]["sources"]
        keks = [f["secret"] for f in files if f["secret"]["name"].endswith("-kek")]
        assert keks == [{"name": f"hocba-{name}-kek", "items": [{"key": "kek", "path": "kek"}]}], name
        # The key ring on a volume of the service's own, shared by its copies and kept across restarts.
        assert env_of(container)["HOCBA_KEY_RING"]["value"] == f"/var/lib/hocba/keys/{name}-keyring.json"
        ring = volumes(pod)[mounted(container)["/var/lib/hocba/keys"]]["persistentVolumeClaim"]["claimName"]
        assert ring == f"hocba-{name}-keys"
        assert claims[ring]["spec"]["accessModes"] == ["ReadWriteMany"], "every copy of the service reads the ring"
    kek_users = {
        secret: name for name, pod in pods(documents).items() for v in pod["volumes"] for secret in secret_names(v)
        if secret.endswith("-kek")
    }
    assert kek_users == {f"hocba-{name}-kek": name for name in HOCBA}, "no pod gets another service's KEK"


# --- MongoDB ----------------------------------------------------------------------------------------


def test_each_service_logs_in_to_mongodb_as_its_own_user_limited_to_its_database(documents):
    assert not any(k.startswith("MONGO") for k in generated("hocba-config")), "no shared MongoDB login"
    for name in HOCBA:
        pod, container = service_pod(documents, name)
        url = env_of(container)["MONGO_URL"]["valueFrom"]["secretKeyRef"]
        assert url == {"name": f"hocba-mongo-{name}", "key": "mongo-url"}
        assert volumes(pod)[mounted(container)["/run/hocba/mongo"]]["configMap"]["name"] == "hocba-mongo-ca"
    job = by_kind(documents, "Job")["mongo-users"]["spec"]["template"]["spec"]
    [container] = job["containers"]
    passwords_dir = container["command"][container["command"].index("--passwords-dir") + 1]
    [passwords] = [volumes(job)[v] for path, v in mounted(container).items() if path == passwords_dir]
    sources = {s["secret"]["name"]: s["secret"]["items"] for s in passwords["projected"]["sources"]}
    assert sources == {f"hocba-mongo-{n}": [{"key": "password", "path": n}] for n in HOCBA}


def test_mongodb_requires_auth_and_tls(documents):
    job = by_kind(documents, "Job")["mongo-users"]
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = container["command"]
    assert command[:2] == ["python", "/app/deploy/mongo/users.py"] and (DEPLOY / "mongo" / "users.py").exists()
    url = command[command.index("--url") + 1]
    assert "tls=true" in url and "tlsCAFile=/run/hocba/mongo/ca.pem" in url and "@" not in url
    assert mounted(container)["/run/hocba/mongo"] == "mongo-ca"
    # The administrator's password is a file of this Job's alone.
    password = command[command.index("--admin-password-file") + 1]
    admin = volumes(pod)[mounted(container)[str(PurePosixPath(password).parent)]]
    assert admin["secret"]["secretName"] == "hocba-mongo-admin"
    users = {n for n, p in pods(documents).items() for v in p["volumes"] if "hocba-mongo-admin" in secret_names(v)}
    assert users == {"mongo-users"}
    assert job["spec"]["ttlSecondsAfterFinished"] > 0, "a finished Job goes, so the next apply provisions again"


# --- network policies -------------------------------------------------------------------------------


def peers(rules: list[dict], direction: str) -> set[tuple[str, str, int]]:
    """Each (peer, protocol, port) a list of ingress or egress rules allows; a peer is a pod's name label, a
    namespace's name, "namespace/pod", or a CIDR."""
    allowed = set()
    for rule in rules:
        for peer in rule[direction]:
            allowed |= {(describe(peer), p["protocol"], p["port"]) for p in rule["ports"]}
    return allowed


def describe(peer: dict) -> str:
    if "ipBlock" in peer:
        return peer["ipBlock"]["cidr"]
    namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
    selector = peer.get("podSelector", {})
    labels = selector.get("matchLabels", {})
    pod = labels.get("app.kubernetes.io/name") or labels.get("k8s-app")
    if pod is None and selector.get("matchExpressions"):
        [expression] = selector["matchExpressions"]
        pod = "|".join(expression["values"])
    return f"{namespace}/{pod}" if namespace and pod else namespace or pod


def address_blocks(rules: list[dict]) -> set[tuple[str, str, int]]:
    """The (CIDR, protocol, port) a list of egress rules allows outside the cluster's pods."""
    return {
        (peer["ipBlock"]["cidr"], p["protocol"], p["port"])
        for rule in rules for peer in rule["to"] if "ipBlock" in peer for p in rule["ports"]
    }


DNS = {("kube-system/kube-dns", "UDP", 53), ("kube-system/kube-dns", "TCP", 53)}
PROMETHEUS = ("monitoring/prometheus", "TCP", 9100)
#: The ingress controller (it terminates TLS), the one way in to the web page.
INGRESS_CONTROLLER = ("ingress-nginx/ingress-nginx", "TCP", GATEWAY_PORT)
SERVICES = "identity|grades|signing|archive|sync"


def policies_for(documents: list[dict], labels: dict[str, str]) -> list[dict]:
    """The policies that select a pod with `labels` (the default one, selecting every pod, included)."""
    return [
        p for p in by_kind(documents, "NetworkPolicy").values()
        if all(labels.get(k) == v for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items())
    ]


def merged(policies: list[dict]) -> dict:
    """What the policies selecting a pod allow together (Kubernetes adds them up): their types and rules."""
    return {
        "policyTypes": {kind for p in policies for kind in p["policyTypes"]},
        "ingress": [rule for p in policies for rule in p.get("ingress", [])],
        "egress": [rule for p in policies for rule in p.get("egress", [])],
    }


def test_network_policies_deny_by_default_and_allow_only_what_each_service_needs(documents):
    default = by_kind(documents, "NetworkPolicy")["default-deny-all"]["spec"]
    assert default == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, "deny everything unless allowed"
    for name in HOCBA:
        labels = by_kind(documents, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        policy = merged([p["spec"] for p in policies_for(documents, labels) if p["spec"]["podSelector"]])
        assert policy["policyTypes"] == {"Ingress", "Egress"}
        reached_by = {PROMETHEUS, ("ingress-nginx/ingress-nginx", "TCP", 9100)} if name == "archive" else {PROMETHEUS}
        assert peers(policy["ingress"], "from") == reached_by, f"{name} is reached by more than it needs"
        expected = {("rabbitmq", "TCP", 5671), ("mongo", "TCP", 27017), *DNS}
        if name in ("sync", "archive"):
            [outside] = address_blocks(policy["egress"])  # the ministry; the TSA
            expected.add(outside)
        assert peers(policy["egress"], "to") == expected, name
    labels = by_kind(documents, "Deployment")[GATEWAY]["spec"]["template"]["metadata"]["labels"]
    [policy] = [p["spec"] for p in policies_for(documents, labels) if p["spec"]["podSelector"]]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert peers(policy["ingress"], "from") == {INGRESS_CONTROLLER}, "the web page is reached through TLS alone"
    assert peers(policy["egress"], "to") == {("rabbitmq", "TCP", 5671), *DNS}, "the gateway reaches the broker alone"
    for job, port in (("broker-users", ("rabbitmq", "TCP", 15671)), ("mongo-users", ("mongo", "TCP", 27017))):
        selecting = policies_for(documents, {"app.kubernetes.io/name": job})
        [policy] = [p["spec"] for p in selecting if p["spec"]["podSelector"]]
        assert "ingress" not in policy and peers(policy["egress"], "to") == {port, *DNS}, job


def test_the_broker_and_mongodb_accept_the_services_and_their_provisioning_only(documents):
    policies = by_kind(documents, "NetworkPolicy")
    rabbitmq = peers(policies["rabbitmq"]["spec"]["ingress"], "from")
    assert {peer for peer, _, port in rabbitmq if port == 5671} == {f"{SERVICES}|{GATEWAY}"}
    assert {peer for peer, _, port in rabbitmq if port == 15671} == {"broker-users", "keda"}
    assert {port for _, _, port in rabbitmq} == {5671, 15671, 15692, 4369, 25672}
    assert {peer for peer, _, port in rabbitmq if port in (4369, 25672)} == {"rabbitmq"}, "its cluster's own traffic"
    mongo = peers(policies["mongo"]["spec"]["ingress"], "from")
    assert mongo == {(SERVICES, "TCP", 27017), ("mongo-users", "TCP", 27017), ("mongo", "TCP", 27017)}
    assert peers(policies["mongo"]["spec"]["egress"], "to") == {("mongo", "TCP", 27017), *DNS}


def test_sync_alone_reaches_the_ministry_over_https(documents):
    policies = by_kind(documents, "NetworkPolicy")
    outside = {name: address_blocks(p["spec"].get("egress", [])) for name, p in policies.items()}
    assert {name for name, allowed in outside.items() if allowed} == {"sync-to-ministry", "archive-to-tsa"}
    assert {(protocol, port) for _, protocol, port in outside["sync-to-ministry"]} == {("TCP", 443)}, "https only"
    [block] = {cidr for cidr, _, _ in outside["sync-to-ministry"]}
    assert [name for name, allowed in outside.items() if block in {c for c, _, _ in allowed}] == ["sync-to-ministry"]
    assert policies["sync-to-ministry"]["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "sync"}}
    ministry = generated("hocba-ministry")
    assert ministry["HOCBA_MINISTRY_URL"].startswith("https://")
    assert not any(k.startswith("HOCBA_MINISTRY") for k in generated("hocba-config"))
    readers = {
        name for name in (*HOCBA, GATEWAY)
        if any(names(e["configMapRef"]["name"], "hocba-ministry") for e in service_pod(documents, name)[1]["envFrom"])
    }
    assert readers == {"sync"}
    assert "ministry-tls" in volumes(service_pod(documents, "sync")[0])


# --- the archive's timestamp authority --------------------------------------------------------------


def test_archive_alone_reads_the_tsa_settings_and_its_anchor(documents):
    tsa = generated("hocba-tsa")
    assert urlsplit(tsa["HOCBA_TSA_URL"]).scheme == "https", "a production TSA by its https endpoint"
    assert not any(k.startswith("HOCBA_TSA") for k in generated("hocba-config")), "no other pod gets the TSA"
    readers = {
        name
        for name in (*HOCBA, GATEWAY)
        if any(names(e["configMapRef"]["name"], "hocba-tsa") for e in service_pod(documents, name)[1]["envFrom"])
    }
    assert readers == {"archive"}
    pod, container = service_pod(documents, "archive")
    assert not any(k.startswith("HOCBA_TSA") for k in env_of(container)), "set once, in the ConfigMap hocba-tsa"
    # The anchor is a file of a mounted ConfigMap (a public certificate), at the path the setting names.
    anchor = PurePosixPath(tsa["HOCBA_TSA_ANCHOR"])
    folder = str(anchor.parent)
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == folder]
    assert mount.get("readOnly"), "the anchor is read, never written"
    assert volumes(pod)[mounted(container)[folder]]["configMap"] == {"name": "hocba-tsa-anchor"}
    assert anchor.name == "anchor.pem"


def test_archive_alone_reaches_the_tsa_block_over_https(documents):
    policies = by_kind(documents, "NetworkPolicy")
    tsa = policies["archive-to-tsa"]["spec"]
    assert tsa["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "archive"}}
    assert tsa["policyTypes"] == ["Egress"] and "ingress" not in tsa
    blocks = address_blocks(tsa["egress"])
    assert {(protocol, port) for _, protocol, port in blocks} == {("TCP", 443)}, "https only"
    [block] = {cidr for cidr, _, _ in blocks}
    assert peers(tsa["egress"], "to") == {(block, "TCP", 443)}, "the TSA and nothing else"
    # No policy selecting another pod lets it reach the TSA's block.
    for name, policy in policies.items():
        reaching = block in {cidr for cidr, _, _ in address_blocks(policy["spec"].get("egress", []))}
        selected = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        assert not reaching or selected == "archive", f"{name} lets {selected or 'every pod'} reach the TSA"
    # The one in the manifests is the documentation placeholder the docs tell to change with HOCBA_TSA_URL.
    assert block == "198.51.100.0/24" and "archive-to-tsa" in (DEPLOY.parent / "docs" / "operations.md").read_text()


# --- the public verification page -------------------------------------------------------------------


#: The archive's own paths, for Prometheus and the kubelet: never published.
INTERNAL_PATHS = ("/metrics", "/health/live", "/health/ready")


def ingress_matches(paths: list[dict], request_path: str) -> bool:
    """Whether an Ingress's paths route a request path, as Kubernetes defines it: Exact whole, Prefix by whole
    path segments (/v matches /v and /v/…, not /v1 nor /verify)."""
    asked = [s for s in request_path.split("/") if s]
    for entry in paths:
        path = entry["path"]
        if entry["pathType"] == "Exact" and path == request_path:
            return True
        segments = [s for s in path.split("/") if s]
        if entry["pathType"] == "Prefix" and asked[: len(segments)] == segments:
            return True
    return False


def test_the_verification_page_is_published_with_tls_on_its_public_paths_alone(documents):
    [ingress] = by_kind(documents, "Ingress").values()
    spec = ingress["spec"]
    [rule] = spec["rules"]
    url = urlsplit(generated_verify_url())
    assert url.scheme == "https" and rule["host"] == url.hostname, "the host printed in every copy's QR code"
    tls = spec.get("tls", [])
    assert [h for entry in tls for h in entry["hosts"]] == [rule["host"]], "https for the page's host"
    assert all(entry.get("secretName") for entry in tls), "with the certificate of a Secret"
    paths = rule["http"]["paths"]
    assert {(p["path"], p["pathType"]) for p in paths} == {
        ("/verify", "Prefix"),
        ("/v", "Prefix"),
        ("/v1/copies", "Prefix"),
        ("/v1/log", "Prefix"),
    }
    # Every public route of the archive is routed (its parameters filled in), none of its own paths.
    # (The routes read the archive's state only when asked: none is needed to list them.)
    routes = public_routes(cast("Deps", None)).routes
    public = [re.sub(r"\{[a-z_]+\}", "1.key", route.path) for route in routes if isinstance(route, Route)]
    assert len(public) == 8 and all(ingress_matches(paths, p) for p in public), public
    for path in (*INTERNAL_PATHS, "/", "/v1", "/v1/other", "/verifyx"):
        assert not ingress_matches(paths, path), f"{path} is published"
    # Each path to the Service archive, which reaches the archive's HTTP port (the one of its public routes).
    services = by_kind(documents, "Service")
    for entry in paths:
        backend = entry["backend"]["service"]
        service = services[backend["name"]]["spec"]
        [port] = [p for p in service["ports"] if p["name"] == backend["port"]["name"]]
        assert service["selector"] == {"app.kubernetes.io/name": "archive"} and service.get("type") == "ClusterIP"
        _, container = service_pod(documents, "archive")
        assert {"name": port["targetPort"], "containerPort": 9100} in container["ports"]
    assert generated("hocba-config")["HOCBA_HTTP_PORT"] == "9100"


def test_the_ingress_controller_alone_reaches_the_archives_http_port_from_outside_the_namespace(documents):
    labels = by_kind(documents, "Deployment")["archive"]["spec"]["template"]["metadata"]["labels"]
    reached = merged([p["spec"] for p in policies_for(documents, labels) if p["spec"]["podSelector"]])
    assert peers(reached["ingress"], "from") == {PROMETHEUS, ("ingress-nginx/ingress-nginx", "TCP", 9100)}
    [ingress] = by_kind(documents, "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx", "the controller the policy lets in"


def generated_verify_url() -> str:
    """HOCBA_VERIFY_URL as the kustomization publishes it for the command line that prints copies."""
    [generator] = [g for g in kustomization()["configMapGenerator"] if g["name"] == "hocba-verify"]
    assert generator["options"]["disableNameSuffixHash"], "found by its name: `kubectl get configmap hocba-verify`"
    return generated("hocba-verify")["HOCBA_VERIFY_URL"]
