"""deploy/compose.yaml: valid for Compose, and shaped as the issue asks (validated offline, no engine needed)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from hocba.broker import IDENTITIES
from shared.settings import Names
from tests.deploy.conftest import DEPLOY, tool

COMPOSE = DEPLOY / "compose.yaml"
SIMULATOR = DEPLOY / "compose.simulator.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
HOCBA = ("identity", "grades", "signing", "archive", "sync")
#: The term-end web page (`python -m hocba.web`): a service of the compose file beside the five, on a port of its own.
GATEWAY = "web"
GATEWAY_PORT = 9190
#: Each broker user's password (deploy/.env), as the compose file names it.
BROKER_PASSWORDS = {name: f"HOCBA_BROKER_PASSWORD_{name.upper()}" for name in IDENTITIES}
#: Each service's MongoDB password (deploy/.env).
MONGO_PASSWORDS = {name: f"HOCBA_MONGO_PASSWORD_{name.upper()}" for name in HOCBA}
MINISTRY_URL = "https://ministry.example.invalid"
#: Compose requires these (no default: they are passwords, or the ministry's address); validation uses stand-ins.
ENV = {
    "RABBITMQ_PASSWORD": "validation-only",
    "GRAFANA_ADMIN_PASSWORD": "validation-only",
    **{variable: f"validation-only-{name}" for name, variable in BROKER_PASSWORDS.items()},
    **{variable: f"validation-only-mongo-{name}" for name, variable in MONGO_PASSWORDS.items()},
    "HOCBA_MINISTRY_URL": MINISTRY_URL,
    "HOCBA_TSA_URL": "https://tsa.example.invalid/",
    "HOCBA_VERIFY_URL": "https://verify.example.invalid",
}
#: Where the PKI kept by `hocba pki` (the root CA's key with it) would be, were a file to name it.
OFFLINE_PKI = "/offline/hocba-pki"
#: The part of the PKI each service mounts (`hocba pki export --service S`); identity and sync mount none. The
#: gateway mounts its own (svc-web, with which it vouches for the people signed in on the web page).
PKI_PARTS = {"signing": "pki-signing", "archive": "pki-archive", "grades": "pki-grades", GATEWAY: "pki-web"}
#: Environment variables that carry a password in clear, on one-shot or first-start logins only: the broker's
#: and Grafana's bootstrap administrators (read at their first start), and the two provisioning steps that
#: give each service its broker and MongoDB user. A compose file cannot turn a value of deploy/.env into a
#: secret file (that needs Compose's `environment` secrets, newer than what validates here), and each service
#: has its passwords inside its AMQP_URL and MONGO_URL, which the drivers read; no service gets a variable
#: of this kind.
BOOTSTRAP_LOGINS = {
    "rabbitmq": {"RABBITMQ_DEFAULT_PASS"},
    "grafana": {"GF_SECURITY_ADMIN_PASSWORD"},
    "broker-users": set(BROKER_PASSWORDS.values()),
    "mongo-users": set(MONGO_PASSWORDS.values()),
}
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|(^|_)PIN(_|$)")


def compose_command() -> list[str]:
    """`docker compose` when the plugin answers, else Debian's docker-compose."""
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            return ["docker", "compose"]
    except FileNotFoundError:
        pass
    return tool("docker-compose")


def config(*files, env: dict[str, str] | None = None) -> dict:
    """The files as Compose resolves them together (anchors merged, variables filled in)."""
    command = compose_command()
    arguments = [argument for file in files for argument in ("-f", str(file))]
    env = {**os.environ, **ENV, **(env or {})}
    checked = subprocess.run([*command, *arguments, "config", "-q"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stderr
    out = subprocess.run([*command, *arguments, "config"], capture_output=True, text=True, env=env, check=True)
    return yaml.safe_load(out.stdout)


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The production file as Compose resolves it, the offline PKI's folder named where a file could use it."""
    return config(COMPOSE, env={"HOCBA_PKI_DIR": OFFLINE_PKI})


@pytest.fixture(scope="module")
def with_simulator() -> dict:
    return config(COMPOSE, SIMULATOR)


def refused_without(variable: str) -> subprocess.CompletedProcess:
    command = compose_command()
    env = {**{k: v for k, v in os.environ.items() if k not in ENV}, **ENV}
    del env[variable]
    return subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env)


def bind_mounts(service: dict) -> dict[str, str]:
    """Container path → host path of the service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = volume["source"]
            continue
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            mounts[target] = source
    return mounts


def named_volumes(service: dict) -> dict[str, str]:
    """Container path → volume name of the service's named volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume":
                mounts[volume["target"]] = volume["source"]
            continue
        source, target = volume.split(":")[:2]
        if not source.startswith("/"):
            mounts[target] = source
    return mounts


def read_only(service: dict) -> set[str]:
    """Container paths the service mounts read-only."""
    targets = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("read_only"):
                targets.add(volume["target"])
        elif volume.endswith(":ro"):
            targets.add(volume.split(":")[1])
    return targets


def secrets_of(service: dict) -> dict[str, str]:
    """Secret name → the name it has under /run/secrets in the service's container."""
    found = {}
    for secret in service.get("secrets", []):
        if isinstance(secret, str):
            found[secret] = secret
        else:
            found[secret["source"]] = secret.get("target") or secret["source"]
    return found


def secrets_dir_part(path: str) -> str:
    """`path` relative to deploy/secrets (the default of every secret path in deploy/.env.example), else as is."""
    folder = PurePosixPath(DEPLOY / "secrets")
    return str(PurePosixPath(path).relative_to(folder)) if PurePosixPath(path).is_relative_to(folder) else path


# --- refusing to start without what must be given --------------------------------------------------


def test_compose_refuses_to_start_without_the_passwords():
    command = compose_command()
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "RABBITMQ_PASSWORD" in result.stderr


@pytest.mark.parametrize("variable", BROKER_PASSWORDS.values())
def test_compose_refuses_to_start_without_each_broker_users_password(variable):
    result = refused_without(variable)
    assert result.returncode != 0 and f"set {variable} in deploy/.env" in result.stderr


@pytest.mark.parametrize("variable", MONGO_PASSWORDS.values())
def test_compose_refuses_to_start_without_each_services_mongodb_password(variable):
    result = refused_without(variable)
    assert result.returncode != 0 and f"set {variable} in deploy/.env" in result.stderr


def test_compose_refuses_to_start_without_the_ministrys_address():
    result = refused_without("HOCBA_MINISTRY_URL")
    assert result.returncode != 0 and "HOCBA_MINISTRY_URL (the ministry's https endpoint)" in result.stderr


def test_compose_refuses_to_start_without_the_time_stamping_authority():
    result = refused_without("HOCBA_TSA_URL")
    assert result.returncode != 0 and "HOCBA_TSA_URL (an RFC 3161 time-stamping authority)" in result.stderr


# --- RabbitMQ ---------------------------------------------------------------------------------------


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


def test_the_gateway_logs_in_as_the_command_lines_school_and_operator_over_tls(resolved):
    gateway = resolved["services"][GATEWAY]
    environment = gateway["environment"]
    for role in ("school", "operator"):
        assert role in IDENTITIES, f"the broker user hocba-{role} exists"
        assert environment[f"HOCBA_WEB_{role.upper()}_AMQP_URL"] == (
            f"amqps://hocba-{role}:validation-only-{role}@rabbitmq:5671/?cafile=/run/hocba/rabbitmq-ca.pem"
        ), role
    assert "AMQP_URL" not in environment, "it logs in only as the two roles it acts for"
    assert secrets_dir_part(bind_mounts(gateway)["/run/hocba/rabbitmq-ca.pem"]) == "rabbitmq-tls/ca.pem"
    assert gateway["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["broker-users"]["condition"] == "service_completed_successfully"


def test_the_gateway_uses_no_database(resolved):
    gateway = resolved["services"][GATEWAY]
    assert "MONGO_URL" not in gateway["environment"]
    assert not {"mongo", "mongo-users"} & set(gateway["depends_on"])
    assert not any("mongo" in target for target in bind_mounts(gateway)), "it has no MongoDB CA to use"


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


# --- MongoDB ----------------------------------------------------------------------------------------


def test_mongodb_7_runs_as_a_replica_set(resolved):
    mongo = resolved["services"]["mongo"]
    assert re.match(r"mongo:(7|8)(\.|$)", mongo["image"])
    command = mongo["command"]
    assert command[command.index("--replSet") + 1] == "rs0"
    initiating = resolved["services"]["mongo-users"]["command"]
    assert initiating[initiating.index("--initiate") + 1] == "rs0=mongo:27017"
    for name in HOCBA:
        assert "replicaSet=rs0" in resolved["services"][name]["environment"]["MONGO_URL"]


def test_mongodb_requires_auth_and_tls(resolved):
    mongo = resolved["services"]["mongo"]
    command = mongo["command"]
    assert "--auth" in command
    assert command[command.index("--tlsMode") + 1] == "requireTLS"
    # The replica set's members prove themselves to each other with the keyFile, a secret of MongoDB's alone.
    assert command[command.index("--keyFile") + 1] == f"/run/secrets/{secrets_of(mongo)['mongo-keyfile']}"
    # Its certificate and key, and the CA, from the secrets folder, read-only.
    assert secrets_dir_part(bind_mounts(mongo)["/etc/mongo/tls"]) == "mongo-tls"
    assert "/etc/mongo/tls" in read_only(mongo)
    assert command[command.index("--tlsCertificateKeyFile") + 1] == "/etc/mongo/tls/server.pem"
    assert command[command.index("--tlsCAFile") + 1] == "/etc/mongo/tls/ca.pem"
    # The administrator exists from the first start, its password read from a secret file.
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo-admin-password"
    assert "mongo-admin-password" in secrets_of(mongo)
    assert "--tls" in mongo["healthcheck"]["test"]


def test_attack_a_client_without_a_login_or_without_tls_is_refused_by_mongodb(resolved):
    command = resolved["services"]["mongo"]["command"]
    assert "--auth" in command or "--keyFile" in command, "anyone who reaches port 27017 would read every database"
    assert "--tlsMode" in command and command[command.index("--tlsMode") + 1] == "requireTLS", "passwords in clear"
    assert "--noauth" not in command and "--tlsAllowInvalidCertificates" not in command


def mongo_url(resolved: dict, name: str):
    url = urlsplit(resolved["services"][name]["environment"]["MONGO_URL"])
    return url, {key: values[0] for key, values in parse_qs(url.query).items()}


def test_each_service_logs_in_to_mongodb_as_its_own_user_limited_to_its_database(resolved):
    for name in HOCBA:
        service = resolved["services"][name]
        url, options = mongo_url(resolved, name)
        assert url.scheme == "mongodb" and url.hostname == "mongo", name
        assert (unquote(url.username), unquote(url.password)) == (f"hocba-{name}", f"validation-only-mongo-{name}")
        assert url.path == f"/{Names('').database(name)}", name
        assert options["authSource"] == Names("").database(name), name
        assert options["tls"] == "true", name
        assert options["tlsCAFile"] in bind_mounts(service), f"{name}: MongoDB's CA is not mounted"
        assert secrets_dir_part(bind_mounts(service)[options["tlsCAFile"]]) == "mongo-tls/ca.pem"
    users = {url.username for url, _ in (mongo_url(resolved, name) for name in HOCBA)}
    assert len(users) == len(HOCBA), "every service has a login of its own"


def test_mongodb_users_are_created_by_the_administrator_before_any_service_starts(resolved):
    services = resolved["services"]
    provisioning = services["mongo-users"]
    command = provisioning["command"]
    assert command[:2] == ["python", "/app/deploy/mongo/users.py"]
    assert (DEPLOY / "mongo" / "users.py").exists()
    assert command[command.index("--admin-user") + 1] == services["mongo"]["environment"]["MONGO_INITDB_ROOT_USERNAME"]
    assert command[command.index("--admin-password-file") + 1] == "/run/secrets/mongo-admin-password"
    assert "tls=true" in command[command.index("--url") + 1]
    assert provisioning["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert provisioning["user"] == "999:999", "MongoDB's uid: the administrator's password file is MongoDB's"
    for name, variable in MONGO_PASSWORDS.items():
        assert provisioning["environment"][variable] == f"validation-only-mongo-{name}"
    for name in HOCBA:
        assert services[name]["depends_on"]["mongo-users"]["condition"] == "service_completed_successfully", name
        assert "mongo-admin-password" not in secrets_of(services[name]), f"{name} has MongoDB's administrator"


def test_no_mongodb_password_is_written_into_the_compose_file():
    text = COMPOSE.read_text()
    logins = re.findall(r"MONGO_URL: (.+)$", text, flags=re.MULTILINE)
    assert len(logins) == len(HOCBA)
    for line in logins:
        login = re.match(r"mongodb://hocba-([a-z]+):([^@]+)@", line)
        assert login, line
        assert login.group(2).startswith(f"${{{MONGO_PASSWORDS[login.group(1)]}:?"), line


# --- keys where they belong -------------------------------------------------------------------------


def test_the_root_ca_key_is_mounted_nowhere(resolved):
    for name, service in resolved["services"].items():
        for target, source in bind_mounts(service).items():
            assert not source.startswith(OFFLINE_PKI), f"{name} mounts the PKI kept by `hocba pki` at {target}"
            assert secrets_dir_part(source).split("/")[0] != "pki", f"{name} mounts the whole PKI at {target}"
            assert "root.key" not in source, name
    assert not re.search(r"^HOCBA_PKI_DIR=", ENV_EXAMPLE.read_text(), re.MULTILINE), "the whole PKI is no setting"


def test_each_service_gets_only_its_own_keys(resolved):
    services = resolved["services"]
    for name in (*HOCBA, GATEWAY):
        mounts = bind_mounts(services[name])
        pki = {target: secrets_dir_part(source) for target, source in mounts.items() if "/pki" in target}
        expected = {"/run/hocba/pki/ca": "pki-trust"}
        if name in PKI_PARTS:
            expected["/run/hocba/pki"] = PKI_PARTS[name]
        assert pki == expected, name
        assert set(pki) <= read_only(services[name]), name
        assert services[name]["environment"]["HOCBA_PKI_DIR"] == "/run/hocba/pki", name
    parts = [bind_mounts(services[name])["/run/hocba/pki"] for name in PKI_PARTS]
    assert len(set(parts)) == len(parts), "each service's part of the PKI is a folder of its own"


def test_attack_a_compromised_archive_or_signing_container_holds_no_other_services_keys(resolved):
    services = resolved["services"]
    for name, part in PKI_PARTS.items():
        sources = {secrets_dir_part(s) for s in bind_mounts(services[name]).values() if "/secrets/" in s}
        others = {p for n, p in PKI_PARTS.items() if n != name}
        assert part in sources and not sources & others, f"{name} mounts another service's keys"
    assert "/run/hocba/pki" not in bind_mounts(services["operator"]), "the command line gets the trust folder only"


def test_secrets_are_files_not_environment(resolved, with_simulator):
    for config_ in (resolved, with_simulator):
        for name, service in config_["services"].items():
            for variable, value in (service.get("environment") or {}).items():
                if not SECRET_NAME.search(variable):
                    continue
                if variable.endswith("_FILE"):
                    assert str(value).startswith("/run/secrets/"), f"{name}: {variable} is not a mounted secret"
                else:
                    assert variable in BOOTSTRAP_LOGINS.get(name, set()), f"{name}: {variable} is an environment secret"
    for secret in resolved["secrets"].values():
        assert set(secret) == {"file"}, "every secret is a file"
    deploy_text = "\n".join(p.read_text() for p in DEPLOY.rglob("*") if p.is_file() and "secrets" not in p.parts)
    assert not re.search(r"HOCBA_PKI_PASSPHRASE(?!_FILE)", deploy_text)
    assert not re.search(r"HOCBA_PKCS11_PIN(?!_FILE)", deploy_text)
    example = ENV_EXAMPLE.read_text()
    assert "leave empty" not in example.lower() and "empty passphrase is refused" in example


def test_every_service_runs_in_production_with_its_own_kek(resolved):
    services = resolved["services"]
    keks, rings = set(), set()
    for name in HOCBA:
        service = services[name]
        environment = service["environment"]
        assert environment["HOCBA_ENVIRONMENT"] == "production", name
        assert environment["HOCBA_KEK_FILE"] == "/run/secrets/kek", name
        assert {s: t for s, t in secrets_of(service).items() if t == "kek"} == {f"kek-{name}": "kek"}, name
        keks.add(resolved["secrets"][f"kek-{name}"]["file"])
        # The key ring outlives the container, on a volume of the service's own.
        assert environment["HOCBA_KEY_RING"] == f"/var/lib/hocba/keys/{name}-keyring.json", name
        volume = named_volumes(service)["/var/lib/hocba/keys"]
        assert volume.endswith(f"{name}-keys"), name
        rings.add(volume)
    assert len(keks) == len(rings) == len(HOCBA)


def test_only_the_services_that_use_the_pki_passphrase_get_it(resolved):
    for name in (*HOCBA, GATEWAY):
        service = resolved["services"][name]
        gets = "pki-passphrase" in secrets_of(service)
        assert gets == (name in PKI_PARTS), name
        if gets:
            assert service["environment"]["HOCBA_PKI_PASSPHRASE_FILE"] == "/run/secrets/pki-passphrase"


# --- the ministry -----------------------------------------------------------------------------------


def test_sync_alone_reaches_the_ministry_over_https(resolved):
    services = resolved["services"]
    for name, service in services.items():
        ministry = {k for k in service.get("environment") or {} if k.startswith("HOCBA_MINISTRY")}
        assert not ministry or name == "sync", f"{name} is configured for the ministry"
    sync = services["sync"]["environment"]
    assert sync["HOCBA_MINISTRY_URL"] == MINISTRY_URL
    assert "ministry-simulator" not in services, "the simulator is a development convenience, not production"
    tls = bind_mounts(services["sync"])["/run/hocba/ministry"]
    assert secrets_dir_part(tls) == "ministry-tls"
    for setting in ("HOCBA_MINISTRY_CA_FILE", "HOCBA_MINISTRY_CLIENT_CERT", "HOCBA_MINISTRY_CLIENT_KEY"):
        assert sync[setting].startswith("/run/hocba/ministry/"), setting
    [example] = re.findall(r"^HOCBA_MINISTRY_URL=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert example.startswith("https://")


def test_the_simulators_overlay_switches_sync_alone_to_development(resolved, with_simulator):
    services = with_simulator["services"]
    assert "hocba.ministry_simulator" in services["ministry-simulator"]["command"]
    assert services["sync"]["environment"]["HOCBA_MINISTRY_URL"] == "http://ministry-simulator:9180"
    assert services["sync"]["environment"]["HOCBA_ENVIRONMENT"] == "development"
    for name in (*HOCBA, GATEWAY):
        if name != "sync":
            assert services[name]["environment"] == resolved["services"][name]["environment"], name
            assert bind_mounts(services[name]) == bind_mounts(resolved["services"][name]), name


# --- the rest of the stack --------------------------------------------------------------------------


def test_the_five_services_wait_for_their_dependencies_and_report_health(resolved):
    for name in HOCBA:
        service = resolved["services"][name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert {"rabbitmq", "mongo", "broker-users", "mongo-users"} <= set(service["depends_on"])
        assert "/health/ready" in " ".join(service["healthcheck"]["test"])
        assert service["environment"]["HOCBA_HTTP_PORT"] == "9100"


def published(service: dict) -> set[tuple[str, int, int]]:
    """(host address, host port, container port) of each port the service publishes, in either Compose's form."""
    found = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.add((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
        else:
            *address, host, container = str(port).split("/")[0].split(":")
            found.add((address[0] if address else "", int(host), int(container)))
    return found


def test_the_gateway_serves_the_web_page_on_its_port_for_the_hosts_tls_proxy(resolved):
    gateway = resolved["services"][GATEWAY]
    assert gateway["command"] == ["python", "-m", "hocba.web"]
    assert gateway["environment"]["HOCBA_WEB_PORT"] == str(GATEWAY_PORT)
    assert gateway["environment"]["HOCBA_WEB_HOST"] == "0.0.0.0", "reachable from outside its container"
    # Plain http: published on the loopback interface alone, for the proxy that gives people https.
    assert published(gateway) == {("127.0.0.1", GATEWAY_PORT, GATEWAY_PORT)}
    check = " ".join(gateway["healthcheck"]["test"])
    assert f"http://127.0.0.1:{GATEWAY_PORT}/health/ready" in check
    assert gateway["restart"] == "unless-stopped"


def test_compose_refuses_to_start_without_the_verification_pages_address():
    result = refused_without("HOCBA_VERIFY_URL")
    assert result.returncode != 0 and "HOCBA_VERIFY_URL (the public verification page's https address)" in result.stderr


def test_the_command_line_prints_copies_with_the_verification_pages_address_and_the_archives_tsa(resolved):
    operator = resolved["services"]["operator"]["environment"]
    assert operator["HOCBA_VERIFY_URL"] == ENV["HOCBA_VERIFY_URL"]
    assert operator["HOCBA_TSA_URL"] == resolved["services"]["archive"]["environment"]["HOCBA_TSA_URL"]
    example = dict(
        line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines() if line and line[0] != "#"
    )
    assert example["HOCBA_VERIFY_URL"].startswith("https://"), "production prints https addresses only"


def test_the_archive_serves_the_verification_page_on_the_loopback_interface_alone_for_the_hosts_tls_proxy(resolved):
    archive = resolved["services"]["archive"]
    # Plain http, with /metrics and /health beside the public paths: never published beyond the host.
    assert published(archive) == {("127.0.0.1", 9104, 9100)}
    assert {name for name, s in resolved["services"].items() if ("127.0.0.1", 9104, 9100) in published(s)} == {
        "archive"
    }


def test_the_gateway_runs_in_production_as_the_images_user_with_its_secrets_as_files(resolved):
    gateway = resolved["services"][GATEWAY]
    environment = gateway["environment"]
    assert environment["HOCBA_ENVIRONMENT"] == "production"
    # Not root: the image's own user (Dockerfile), which no `user:` overrides.
    assert "user" not in gateway
    assert re.search(r"^USER 10001$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    # Sign-in tokens are checked with the school management system's public keys.
    jwks = environment["HOCBA_ACTOR_ISSUER_JWKS"]
    assert jwks in read_only(gateway)
    assert bind_mounts(gateway)[jwks] == bind_mounts(resolved["services"]["grades"])[jwks], "the services' JWKS"
    # The session key signs its cookies: a file of its own, mounted under /run/secrets, given to nobody else.
    assert environment["HOCBA_WEB_SESSION_KEY_FILE"] == "/run/secrets/web-session-key"
    assert secrets_of(gateway) == {"pki-passphrase": "pki-passphrase", "web-session-key": "web-session-key"}
    assert resolved["secrets"]["web-session-key"]["file"].endswith("/web-session-key")
    others = {name for name, service in resolved["services"].items() if "web-session-key" in secrets_of(service)}
    assert others == {GATEWAY}
    # It keeps nothing at rest: no key-encryption key, no key ring, no volume.
    assert "HOCBA_KEK_FILE" not in environment and "HOCBA_KEY_RING" not in environment
    assert named_volumes(gateway) == {}


def seconds(duration: str) -> float:
    """A Compose duration ("120s", "2m0s", "1h") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def test_signing_scales_with_scale(resolved):
    signing = resolved["services"]["signing"]
    assert "container_name" not in signing and "ports" not in signing, "--scale needs no fixed name or host port"
    assert seconds(signing["stop_grace_period"]) >= 60, "a stopping worker must be able to finish its chunk"


def test_prometheus_and_grafana_are_there_and_provisioned(resolved):
    services = resolved["services"]
    prometheus = " ".join(map(str, services["prometheus"]["volumes"]))
    assert "prometheus.compose.yml" in prometheus and "/etc/prometheus/rules" in prometheus
    grafana = " ".join(map(str, services["grafana"]["volumes"]))
    assert "/etc/grafana/provisioning" in grafana and "/var/lib/grafana/dashboards/hocba" in grafana


def test_files_the_compose_files_mount_are_in_the_repository():
    for file in (COMPOSE, SIMULATOR):
        for path in re.findall(r"- \./([\w./-]+):", file.read_text()):
            if not path.startswith("secrets"):
                assert (DEPLOY / path).exists(), f"deploy/{path} is mounted but missing"
    assert (DEPLOY / "Dockerfile").exists()


def test_no_secret_is_written_into_the_compose_files():
    for file in (COMPOSE, SIMULATOR):
        for name, service in yaml.safe_load(file.read_text())["services"].items():
            environment = service.get("environment") or {}
            for key, value in environment.items() if isinstance(environment, dict) else ():
                if not SECRET_NAME.search(key):
                    continue
                if key.endswith("_FILE"):
                    assert str(value).startswith("/run/secrets/"), f"{name}: {key} must name a mounted secret"
                else:
                    assert str(value).startswith("${"), f"{name}: {key} must come from the environment"
