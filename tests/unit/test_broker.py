"""The broker identities (hocba/broker.py): the table against the services' code, the permissions made from it,
RabbitMQ's password hashes, where a stack keeps the passwords, and which login the command line takes."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import pytest
from faststream.rabbit.publisher.usecase import RabbitPublisher
from faststream.rabbit.subscriber.usecase import RabbitSubscriber
from typer.testing import CliRunner

from hocba import broker
from hocba.broker import (
    IDENTITIES,
    ROLES,
    BrokerUsers,
    CredentialStore,
    EitherOf,
    ManagementApi,
    Rabbitmqctl,
    definitions,
    password_hash,
    permissions,
    provisioner_for,
    role_url,
    routing_keys,
    user_name,
    vhost_of,
    with_login,
)
from hocba.commands.pki import open_pki
from hocba.keys import dev_issuer
from services.archive import app as archive_app
from services.archive.repository import InMemoryArchiveRepository
from services.grades import app as grades_app
from services.grades.repository import InMemoryGradesRepository
from services.identity import app as identity_app
from services.identity.repository import InMemoryStudentRepository
from services.signing import app as signing_app
from services.signing.repository import InMemorySigningRepository
from services.sync import app as sync_app
from services.sync.repository import InMemoryOutboxRepository
from shared.contracts.archive import AuditArchive, IssueCheckpoint
from shared.contracts.grades import CloseYear, RecordAssessments, RecordsReady
from shared.contracts.identity import RegisterStudents, RotateIdentityKey
from shared.contracts.signing import RequestSignBatch
from shared.contracts.sync import GetSyncStatus, Reconcile, RetryParked
from shared.crypto.pki import service_holders
from shared.crypto.vault import Vault
from shared.service import ServiceApp
from shared.settings import SERVICES, Names, Settings

NAMESPACE = "t."


# --- the table against the code -------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    """What a service needs to be built: a PKI with the services' certificates, the issuer's public keys."""
    folder = tmp_path_factory.mktemp("broker-table")
    open_pki(folder / "pki").create(service_holders())
    _, jwks = dev_issuer(folder)
    return Settings(
        namespace=NAMESPACE,
        data_dir=folder,
        pki_dir=folder / "pki",
        actor_issuer_jwks=jwks,
        identity_key_ring=folder / "keys" / "identity-keyring.json",
    )


def build(name: str, settings: Settings) -> ServiceApp:
    """Each service as its `build_app` makes it, over its in-memory repository."""
    if name == "identity":
        vault = Vault.for_service(settings, "identity")
        return identity_app.build_app(settings, repository=InMemoryStudentRepository(vault), vault=vault)
    if name == "grades":
        return grades_app.build_app(settings, repository=InMemoryGradesRepository())
    if name == "signing":
        return signing_app.build_app(settings, repository=InMemorySigningRepository())
    if name == "archive":
        return archive_app.build_app(settings, repository=InMemoryArchiveRepository())
    return sync_app.build_app(settings, repository=InMemoryOutboxRepository(), http_client=httpx.AsyncClient())


def published(service: ServiceApp) -> set[str]:
    """The routing keys the service's broker publishes (`bus.publishes`)."""
    publishers = service.broker.publishers
    assert all(isinstance(p, RabbitPublisher) for p in publishers)
    return {p.routing() for p in publishers if isinstance(p, RabbitPublisher)}


def consumed(service: ServiceApp) -> set[str]:
    """The routing keys its queues are bound to (`bus.subscriber`)."""
    subscribers = service.broker.subscribers
    assert all(isinstance(s, RabbitSubscriber) for s in subscribers)
    return {s.queue.routing_key for s in subscribers if isinstance(s, RabbitSubscriber)}


@pytest.mark.parametrize("name", SERVICES)
def test_a_services_row_is_what_its_code_publishes_and_consumes(name, settings):
    service = build(name, settings)
    row = IDENTITIES[name]
    assert published(service) == routing_keys(row.publishes)
    assert consumed(service) == routing_keys(row.consumes)


@pytest.mark.parametrize("name", SERVICES)
def test_a_service_publishes_only_routing_keys_of_its_own(name):
    assert all(key.startswith(f"{name}.") for key in routing_keys(IDENTITIES[name].publishes))


def test_every_message_a_service_consumes_someone_may_send():
    senders = set().union(*(i.may_publish() for i in IDENTITIES.values()))
    for name in SERVICES:
        assert routing_keys(IDENTITIES[name].consumes) <= senders, name


def test_every_command_or_request_sent_is_taken_by_a_service():
    consumed = set().union(*(routing_keys(IDENTITIES[s].consumes) for s in SERVICES))
    for identity in IDENTITIES.values():
        assert routing_keys(identity.sends) <= consumed, identity.name


def test_the_school_tools_may_not_send_an_operators_command_and_the_operator_may_not_enter_grades():
    school, operator = IDENTITIES["school"].may_publish(), IDENTITIES["operator"].may_publish()
    operators_only = routing_keys([RotateIdentityKey, IssueCheckpoint, AuditArchive, RetryParked, Reconcile, GetSyncStatus])
    schools_only = routing_keys([RegisterStudents, RecordAssessments, CloseYear, RequestSignBatch])
    assert not school & operators_only
    assert not operator & schools_only


def test_only_grades_may_publish_a_record_as_ready():
    assert [i.name for i in IDENTITIES.values() if RecordsReady.ROUTING_KEY in i.may_publish()] == ["grades"]


# --- permissions ----------------------------------------------------------------------------------


def matches(pattern: str, name: str) -> bool:
    """As RabbitMQ matches a permission: the regex found in the name (ours are anchored)."""
    return re.search(pattern, name) is not None


@pytest.mark.parametrize("name", IDENTITIES)
def test_nobody_may_bind_a_wildcard(name):
    allowed = permissions(IDENTITIES[name], Names(NAMESPACE))
    for key in ("#", "*", "*.*.*.v1", "grades.#", "grades.record.*.v1", "#.v1"):
        assert not matches(allowed.topic_read, key), (name, key)


@pytest.mark.parametrize("name", IDENTITIES)
def test_the_topic_permissions_are_exactly_the_tables_keys(name):
    identity = IDENTITIES[name]
    allowed = permissions(identity, Names(NAMESPACE))
    every_key = set().union(*(routing_keys(i.publishes + i.sends + i.consumes + i.watches) for i in IDENTITIES.values()))
    assert {k for k in every_key if matches(allowed.topic_write, k)} == identity.may_publish()
    assert {k for k in every_key if matches(allowed.topic_read, k)} == identity.may_bind()


def test_a_service_declares_and_reads_only_its_own_queues_and_the_namespaces_exchanges():
    allowed = permissions(IDENTITIES["grades"], Names("a.b"))
    for own in ("a.b.grades.grades.year.close.v1", "a.b.grades.grades.year.close.v1.dlq", "a.b.hocba", "a.b.hocba.dlx"):
        assert matches(allowed.configure, own) and matches(allowed.read, own), own
    # The namespace is a prefix taken literally, with its separating dot: its "."s match nothing else.
    for foreign in (
        "aXb.grades.x",
        "a.bXgrades.x",
        "a.b.gradesX",
        "a.b.signing.signing.work.v1",
        "hocba",
        "grades.grades.year.close.v1",
        "xa.b.grades.x",
        "a.b.hocbaX",
        "amq.gen-xyz",
    ):
        assert not (matches(allowed.configure, foreign) or matches(allowed.read, foreign)), foreign


def test_only_services_may_write_to_the_default_exchange():
    """Replies go through it (direct reply-to); it also reaches any queue by name, so no command-line role has it."""
    writers = [n for n, i in IDENTITIES.items() if matches(permissions(i, Names("")).write, "amq.default")]
    assert writers == list(SERVICES)


def test_the_command_line_watches_through_server_named_queues_only():
    for role in ROLES:
        allowed = permissions(IDENTITIES[role], Names(""))
        assert matches(allowed.configure, "amq.gen-AbC") and matches(allowed.read, "amq.gen-AbC")
        assert not any(matches(allowed.configure, f"{s}.x") for s in [*SERVICES, role])


def test_the_monitor_may_neither_publish_nor_consume():
    monitor = IDENTITIES["monitor"]
    allowed = permissions(monitor, Names(""))
    assert monitor.tags == ("monitoring",)
    assert allowed.configure == allowed.write == allowed.read == "^$"
    assert allowed.topic_write == allowed.topic_read == "^$"


# --- definitions and password hashes --------------------------------------------------------------


def test_password_hashes_are_rabbitmqs_salted_sha256():
    # The example of RabbitMQ's documentation ("Computing Password Hashes"): salt 908DC60A, password test12.
    assert password_hash("test12", bytes.fromhex("908DC60A")) == "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
    assert password_hash("test12") != password_hash("test12"), "a fresh salt each time"


def test_definitions_name_a_user_per_identity_with_its_permissions_in_the_vhost():
    made = definitions("d1.", {"grades": "pw"}, vhost="hocba")
    users = {u["name"]: u for u in made["users"]}
    assert set(users) == {f"d1.hocba-{n}" for n in IDENTITIES}
    assert users["d1.hocba-grades"]["password_hash"] and not users["d1.hocba-sync"]["password_hash"]
    assert users["d1.hocba-monitor"]["tags"] == ["monitoring"]
    assert {p["vhost"] for p in made["permissions"] + made["topic_permissions"]} == {"hocba"}
    assert {t["exchange"] for t in made["topic_permissions"]} == {"d1.hocba"}
    grades = next(p for p in made["permissions"] if p["user"] == "d1.hocba-grades")
    assert grades["configure"] == permissions(IDENTITIES["grades"], Names("d1.")).configure
    assert {(e["name"], e["type"]) for e in made["exchanges"]} == {("d1.hocba", "topic"), ("d1.hocba.dlx", "direct")}


def test_a_template_is_given_each_identitys_password_hash():
    filled = broker.with_passwords(definitions(""), {"sync": "secret"})
    users = {u["name"]: u["password_hash"] for u in filled["users"]}
    assert users["hocba-sync"] and not users["hocba-grades"]


# --- how long dead letters are kept ---------------------------------------------------------------


def test_a_namespaces_dead_letter_queues_keep_a_message_30_days_by_a_policy_of_their_own():
    [policy] = definitions("d1.", vhost="hocba")["policies"]
    assert policy == {
        "vhost": "hocba",
        "name": "d1.hocba-dead-letters",
        "pattern": broker.dead_letter_pattern("d1."),
        "apply-to": "queues",
        "definition": {"message-ttl": 30 * 24 * 3600 * 1000},
        "priority": len("d1."),
    }
    assert definitions("d1.", dead_letter_ttl_days=0.5)["policies"][0]["definition"] == {"message-ttl": 43_200_000}


@pytest.mark.parametrize(
    ("queue", "matched"),
    [
        ("d1.grades.identity.student.registered.v1.dlq", True),
        ("d1.signing.signing.work.v1.dlq", True),
        ("d1.grades.identity.student.registered.v1", False),  # the work queue itself: never expires
        ("d2.grades.identity.student.registered.v1.dlq", False),  # another namespace's
        ("d1Xgrades.identity.student.registered.v1.dlq", False),  # "." is no wildcard
        ("d1.probe.test.ping.sent.v1.dlq", False),  # not a service's
        ("grades.identity.student.registered.v1.dlq", False),  # the namespace "" is another one
    ],
)
def test_the_policy_matches_exactly_the_namespaces_dead_letter_queues(queue, matched):
    assert bool(re.search(broker.dead_letter_pattern("d1."), queue)) is matched


def test_the_empty_namespaces_policy_yields_to_a_longer_namespaces_where_both_match():
    """Only one policy applies to a queue, the highest priority's: the namespace `sync.`'s dead letters keep its TTL."""
    queue = "sync.grades.identity.student.registered.v1.dlq"
    production, named = definitions("")["policies"][0], definitions("sync.")["policies"][0]
    assert re.search(production["pattern"], queue) and re.search(named["pattern"], queue)
    assert named["priority"] > production["priority"]


def test_a_deployments_provisioning_sets_the_ttl_of_its_environment(tmp_path, monkeypatch):
    """`hocba broker provision` loads the committed definitions (30 days) with HOCBA_DEAD_LETTER_TTL_DAYS."""
    recording = Recording()
    monkeypatch.setattr(broker, "provisioner_for", lambda *_: recording)
    monkeypatch.setenv("HOCBA_DEAD_LETTER_TTL_DAYS", "7")
    for name in IDENTITIES:
        monkeypatch.setenv(f"HOCBA_BROKER_PASSWORD_{name.upper()}", f"pw-{name}")
    template = tmp_path / "definitions.json"
    template.write_text(broker.definitions_text(""))
    result = CliRunner().invoke(broker.app, ["provision", "--definitions", str(template)])
    assert result.exit_code == 0, result.output
    [loaded] = recording.loaded
    assert [p["definition"] for p in loaded["policies"]] == [{"message-ttl": 7 * 24 * 3600 * 1000}]
    without = {**definitions(""), "policies": []}
    assert broker.with_dead_letter_ttl(without, 1, "")["policies"] == [broker.dead_letter_policy("", "/", 1)]


# --- where a stack keeps the passwords ------------------------------------------------------------


class Recording:
    """A provisioner that keeps what it was asked."""

    def __init__(self) -> None:
        self.loaded: list[Mapping[str, Any]] = []
        self.deleted: list[str] = []
        self.deleted_policies: list[tuple[str, str]] = []

    def load(self, definitions: Mapping[str, Any]) -> None:
        self.loaded.append(definitions)

    def delete_users(self, users: Iterable[str]) -> None:
        self.deleted += list(users)

    def delete_policy(self, vhost: str, name: str) -> None:
        self.deleted_policies.append((vhost, name))


ADMIN = "amqp://guest:guest@127.0.0.1:5672/"


def test_a_stack_keeps_its_passwords_in_a_private_file_and_reuses_them(tmp_path):
    first = BrokerUsers.provision(ADMIN, "n1.", tmp_path, Recording())
    store = CredentialStore(tmp_path)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert store.passwords("n1.") == first.passwords and set(first.passwords) == set(IDENTITIES)
    again = BrokerUsers.provision(ADMIN, "n1.", tmp_path, Recording())
    assert again.passwords == first.passwords
    other = BrokerUsers.provision(ADMIN, "n2.", tmp_path, Recording())
    assert other.passwords["grades"] != first.passwords["grades"]


def test_each_identity_logs_in_with_its_own_user_on_the_admins_broker(tmp_path):
    users = BrokerUsers.provision("amqps://admin:x@rabbit.example:5671/hocba?cafile=/ca.pem", "", tmp_path, Recording())
    url = users.url("signing")
    assert url == f"amqps://hocba-signing:{users.passwords['signing']}@rabbit.example:5671/hocba?cafile=/ca.pem"
    assert vhost_of(url) == "hocba"


def test_provisioning_loads_the_namespaces_definitions_with_the_passwords(tmp_path):
    recording = Recording()
    users = BrokerUsers.provision(ADMIN, "n1.", tmp_path, recording)
    [loaded] = recording.loaded
    hashes = {u["name"]: u["password_hash"] for u in loaded["users"]}
    assert all(hashes[user_name("n1.", n)] for n in IDENTITIES)
    assert users.rotate("grades") != users.url("signing")
    assert len(recording.loaded) == 2
    assert CredentialStore(tmp_path).passwords("n1.")["grades"] == users.passwords["grades"]


def test_a_throw_away_stacks_users_are_deleted_and_forgotten(tmp_path):
    recording = Recording()
    keep = BrokerUsers.provision(ADMIN, "keep.", tmp_path, Recording())
    gone = BrokerUsers.provision(ADMIN, "gone.", tmp_path, recording)
    gone.remove()
    assert sorted(recording.deleted) == sorted(user_name("gone.", n) for n in IDENTITIES)
    assert recording.deleted_policies == [("/", "gone.hocba-dead-letters")]
    store = CredentialStore(tmp_path)
    assert store.passwords("gone.") == {} and store.passwords("keep.") == keep.passwords


# --- the command line's login ---------------------------------------------------------------------


def test_the_command_line_takes_its_roles_login_from_the_stack(tmp_path):
    users = BrokerUsers.provision(ADMIN, "n1.", tmp_path, Recording())
    for given in (ADMIN, "amqp://127.0.0.1:5672/"):
        settings = Settings(amqp_url=given, namespace="n1.", data_dir=tmp_path)
        assert role_url("operator", settings) == users.url("operator")
        assert broker.role_settings("school", settings).amqp_url == users.url("school")


def test_an_amqp_url_with_a_login_of_its_own_is_used_as_it_is(tmp_path):
    BrokerUsers.provision(ADMIN, "", tmp_path, Recording())
    own = "amqps://hocba-operator:secret@rabbit.example:5671/"
    assert role_url("operator", Settings(amqp_url=own, data_dir=tmp_path)) == own
    nothing_kept = Settings(amqp_url=ADMIN, namespace="elsewhere.", data_dir=tmp_path)
    assert role_url("school", nothing_kept) == ADMIN
    with pytest.raises(ValueError, match="unknown broker role"):
        role_url("grades", nothing_kept)


def test_urls_keep_their_broker_vhost_and_options():
    assert with_login("amqp://guest:guest@h:5672/%2F", "u", "p/w") == "amqp://u:p%2Fw@h:5672/%2F"
    assert with_login("amqp://h", "u", "p") == "amqp://u:p@h"
    assert vhost_of("amqp://h:5672/") == vhost_of("amqp://h") == vhost_of("amqp://h/%2F") == "/"


# --- how the users reach the broker ---------------------------------------------------------------


def test_a_local_broker_is_provisioned_with_rabbitmqctl_and_a_remote_one_through_its_api(monkeypatch):
    monkeypatch.setattr(broker, "rabbitmqctl_command", lambda: "/usr/sbin/rabbitmqctl")
    local = provisioner_for(ADMIN)
    assert isinstance(local, EitherOf) and isinstance(local.first, Rabbitmqctl)
    assert local.second == ManagementApi("http://127.0.0.1:15672/", "guest", "guest")
    remote = provisioner_for("amqps://admin:s3cret@rabbit.example:5671/")
    assert remote == ManagementApi("https://rabbit.example:15671/", "admin", "s3cret")
    given = provisioner_for(ADMIN, "https://root:pw@mgmt.example/rabbitmq")
    assert given == ManagementApi("https://mgmt.example/rabbitmq/", "root", "pw")
