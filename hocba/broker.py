"""Broker identities: one RabbitMQ user per service, one per role of the command line, and a monitor.

`IDENTITIES` is the one table of who may do what on the `hocba` topic exchange. Everything else is
derived from it: the RabbitMQ definitions of a namespace (users `<namespace>hocba-<identity>`,
their permissions on the virtual host, their topic permissions on `<namespace>hocba`), which a
local stack provisions with `rabbitmqctl import_definitions` and a remote broker receives through
its management HTTP API, and `deploy/rabbitmq/definitions.json` (namespace "", users without
passwords: `hocba broker definitions`), which the deployments load with passwords from their secrets
(`hocba broker provision`).

What each RabbitMQ permission is given for (regexes over resource names; on a topic exchange,
topic permissions are regexes over routing keys):

| permission | allows | given |
|---|---|---|
| configure | declaring, deleting | the two exchanges (every client declares them), the identity's own queues `<ns><identity>.…` (a service), server-named queues `amq.gen-…` (a watcher) |
| write | publishing to an exchange, binding a queue | the exchange it publishes to, the dead-letter exchange (a service), its own queues, `amq.default` (a service answers requests through direct reply-to), `amq.gen-…` (a watcher) |
| read | consuming, binding from an exchange | its own queues, the exchanges it binds to, `amq.gen-…` (a watcher) |
| topic write on `<ns>hocba` | publishing with a routing key | the routing keys it publishes (its events, commands to itself) and sends (commands, requests) |
| topic read on `<ns>hocba` | binding with a binding key | the keys it consumes or watches, spelled out: nobody may bind `#` or `*` |

Each namespace also gets one policy, `<namespace>hocba-dead-letters`: its dead-letter queues
`<ns><service>.<routing key>.dlq` keep a message `Settings.dead_letter_ttl_days` (30 by default),
then the broker drops it. A policy, not a queue argument, so the TTL can change on queues that
exist (a queue re-declared with other arguments is refused). Only one policy applies to a queue,
the one with the highest priority: a broker-wide limit of an installation belongs in an operator
policy, which RabbitMQ applies beside this one.

A broker password lives in one place per stack: `<data dir>/broker/credentials.json` (0600, in a
0700 folder, under the ignored data folder). `hocba up`, `hocba demo` and the benchmarks provision
their namespace's users when they start (`BrokerUsers.provision`), give each service process its
own AMQP_URL, and a throw-away stack deletes its users when it stops. The command line picks its
role's login with `role_settings("operator" | "school")`. The bootstrap administrator (guest
locally) only provisions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import typer

from shared.contracts.access import ListArchiveAccesses, ListGradesAccesses, ListIdentityAccesses
from shared.contracts.archive import (
    AuditArchive,
    CheckpointIssued,
    ExportRecord,
    IssueCheckpoint,
    ProveConsistency,
    ProveInclusion,
    RecordsArchived,
    RenewTimestamps,
)
from shared.contracts.base import Message
from shared.contracts.grades import (
    AmendRecord,
    AssessmentsRecorded,
    CloseTerm,
    CloseYear,
    CompareIdentities,
    ConductRecorded,
    EntryHistory,
    ExplainRecord,
    ListRecords,
    RecordAssessments,
    RecordConduct,
    RecordsReady,
    ReopenTerm,
    TermChanged,
    YearClosed,
    YearClosing,
)
from shared.contracts.identity import (
    FindStudents,
    KeyRotationProgress,
    LookupStudents,
    RegisterStudents,
    RotateIdentityKey,
    StudentsRegistered,
)
from shared.contracts.keys import (
    ArchiveKeyRotationProgress,
    GradesKeyRotationProgress,
    RotateArchiveKey,
    RotateGradesKey,
    RotateSigningKey,
    RotateSyncKey,
    SigningKeyRotationProgress,
    SyncKeyRotationProgress,
)
from shared.contracts.signing import (
    AmendmentReceived,
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    ChunkSigned,
    ConfirmReview,
    HeldSignatures,
    RecordsCompleted,
    RecordsReceived,
    RequestAmendment,
    RequestSignBatch,
    ReviewClasses,
    SealCopy,
    SignWork,
)
from shared.contracts.sync import CheckpointDelivered, GetSyncStatus, Reconcile, RecordsDelivered, RetryParked
from shared.settings import SERVICES, Names, Settings

Messages = tuple[type[Message], ...]


@dataclass(frozen=True)
class BrokerIdentity:
    """One RabbitMQ user's part on the `hocba` exchange: what it publishes and sends, what it binds."""

    name: str
    #: What it publishes through its bus (`bus.publishes`): its events, and the commands it sends itself.
    publishes: Messages = ()
    #: Commands and requests it sends to another service (`bus.publish`, `bus.request`).
    sends: Messages = ()
    #: What its own queues `<ns><name>.<routing key>` receive (`bus.subscriber`): a service.
    consumes: Messages = ()
    #: Announcements it follows through server-named queues of its own (`hocba.watch.Watch`).
    watches: Messages = ()
    #: RabbitMQ management tags.
    tags: tuple[str, ...] = ()

    @property
    def is_service(self) -> bool:
        return self.name in SERVICES

    def may_publish(self) -> frozenset[str]:
        """Routing keys it may publish on the `hocba` exchange."""
        return routing_keys(self.publishes + self.sends)

    def may_bind(self) -> frozenset[str]:
        """Binding keys it may bind on the `hocba` exchange."""
        return routing_keys(self.consumes + self.watches)


def routing_keys(messages: Iterable[type[Message]]) -> frozenset[str]:
    return frozenset(m.ROUTING_KEY for m in messages)


#: The accesses a service answers (every read of a student is logged and can be listed).
ACCESS_LISTS: Messages = (ListIdentityAccesses, ListGradesAccesses, ListArchiveAccesses)

#: Each service's data-key rotation: the operator's command, and the progress it follows.
KEY_ROTATIONS: Messages = (RotateIdentityKey, RotateGradesKey, RotateSigningKey, RotateArchiveKey, RotateSyncKey)
KEY_ROTATION_PROGRESS: Messages = (
    KeyRotationProgress,
    GradesKeyRotationProgress,
    SigningKeyRotationProgress,
    ArchiveKeyRotationProgress,
    SyncKeyRotationProgress,
)

#: Who may do what. Services: exactly what their routers publish and consume (tests/unit/test_broker.py
#: checks it against each `build_app`), plus the requests they send. The command line: what its
#: commands send and the announcements they follow (hocba/commands, hocba/term_end.py).
IDENTITIES: dict[str, BrokerIdentity] = {
    identity.name: identity
    for identity in (
        BrokerIdentity(
            "identity",
            publishes=(StudentsRegistered, KeyRotationProgress),
            consumes=(RegisterStudents, LookupStudents, FindStudents, RotateIdentityKey, ListIdentityAccesses),
        ),
        BrokerIdentity(
            "grades",
            publishes=(
                AssessmentsRecorded,
                ConductRecorded,
                TermChanged,
                RecordsReady,
                YearClosing,
                YearClosed,
                GradesKeyRotationProgress,
            ),
            sends=(LookupStudents, HeldSignatures),
            consumes=(
                RotateGradesKey,
                StudentsRegistered,
                RecordAssessments,
                RecordConduct,
                CloseTerm,
                ReopenTerm,
                CloseYear,
                ExplainRecord,
                ListGradesAccesses,
                ListRecords,
                EntryHistory,
                CompareIdentities,
                AmendRecord,
                RecordsCompleted,
                RecordsArchived,
                RecordsDelivered,
            ),
        ),
        BrokerIdentity(
            "signing",
            publishes=(
                RecordsReceived,
                SignWork,
                RecordsCompleted,
                ChunkSigned,
                BatchProgress,
                BatchCompleted,
                BatchRefused,
                AmendmentReceived,
                SigningKeyRotationProgress,
            ),
            consumes=(
                RecordsReady,
                RequestSignBatch,
                RequestAmendment,
                SignWork,
                ChunkSigned,
                RotateSigningKey,
                ReviewClasses,
                ConfirmReview,
                HeldSignatures,
                SealCopy,
            ),
        ),
        BrokerIdentity(
            "archive",
            publishes=(RecordsArchived, CheckpointIssued, ArchiveKeyRotationProgress),
            consumes=(
                RotateArchiveKey,
                RecordsCompleted,
                BatchCompleted,
                IssueCheckpoint,
                RenewTimestamps,
                ProveInclusion,
                ProveConsistency,
                ExportRecord,
                AuditArchive,
                ListArchiveAccesses,
            ),
        ),
        BrokerIdentity(
            "sync",
            publishes=(RecordsDelivered, CheckpointDelivered, SyncKeyRotationProgress),
            # The consistency proof it sends the ministry with each checkpoint.
            sends=(ProveConsistency,),
            consumes=(RecordsArchived, CheckpointIssued, GetSyncStatus, RetryParked, Reconcile, RotateSyncKey),
        ),
        # The department's operators: key rotation, checkpoints, audits, the ministry outbox, reads.
        BrokerIdentity(
            "operator",
            sends=(
                *KEY_ROTATIONS,
                FindStudents,
                ExplainRecord,
                ListRecords,
                EntryHistory,
                ExportRecord,
                ProveInclusion,
                ProveConsistency,
                AuditArchive,
                IssueCheckpoint,
                RenewTimestamps,
                GetSyncStatus,
                RetryParked,
                Reconcile,
                *ACCESS_LISTS,
            ),
            watches=KEY_ROTATION_PROGRESS,
        ),
        # The schools' tools (the school management application): rosters, gradebooks, closing, signing.
        BrokerIdentity(
            "school",
            sends=(
                RegisterStudents,
                FindStudents,
                RecordAssessments,
                RecordConduct,
                CloseTerm,
                ReopenTerm,
                CloseYear,
                ExplainRecord,
                ListRecords,
                EntryHistory,
                ReviewClasses,
                CompareIdentities,
                ConfirmReview,
                RequestSignBatch,
                AmendRecord,
                RequestAmendment,
                ExportRecord,
                SealCopy,
                ProveInclusion,
                *ACCESS_LISTS,
            ),
            watches=(
                StudentsRegistered,
                AssessmentsRecorded,
                ConductRecorded,
                TermChanged,
                YearClosing,
                YearClosed,
                RecordsReady,
                RecordsReceived,
                BatchProgress,
                BatchRefused,
                BatchCompleted,
                RecordsCompleted,
                AmendmentReceived,
                RecordsArchived,
                RecordsDelivered,
            ),
        ),
        # KEDA and Prometheus: queue depths through the management API; no message in or out.
        BrokerIdentity("monitor", tags=("monitoring",)),
    )
}
#: The command line's roles: the broker login follows whose token a message carries.
ROLES = ("operator", "school")


# --- permissions ----------------------------------------------------------------------------------


def literal(name: str) -> str:
    """`name` as a regex matching only itself, in Python's and RabbitMQ's (PCRE) syntax alike."""
    return re.sub(r"([^A-Za-z0-9_-])", r"\\\1", name)


def any_of(patterns: Iterable[str]) -> str:
    """A regex matching a whole name matched by one of `patterns`; none matches nothing."""
    listed = sorted(set(patterns))
    return f"^({'|'.join(listed)})$" if listed else "^$"


@dataclass(frozen=True)
class Permissions:
    """A user's permissions on the virtual host, and its topic permissions on the `hocba` exchange."""

    configure: str
    write: str
    read: str
    topic_write: str
    topic_read: str


#: Server-named queues: a watcher's exclusive queues.
SERVER_NAMED = r"amq\.gen-.*"
#: The default exchange: replies through direct reply-to (and, as RabbitMQ has it, any queue by name).
DEFAULT_EXCHANGE = r"amq\.default"


def permissions(identity: BrokerIdentity, names: Names) -> Permissions:
    """What `identity` may do under `names` (a namespace): the table's row as RabbitMQ regexes."""
    exchange = literal(names.exchange)
    publishing, binding = identity.may_publish(), identity.may_bind()
    # What is its own: a service's queues (`<ns><service>.…` and their `.dlq`) and the dead-letter exchange
    # it sends them to; a watcher's server-named queues.
    own = [literal(names.queue(identity.name, "")) + ".*"] if identity.consumes else []
    own += [literal(names.dead_letter_exchange)] if identity.is_service else []
    own += [SERVER_NAMED] if identity.watches else []
    replies = [DEFAULT_EXCHANGE] if identity.is_service else []
    return Permissions(
        configure=any_of(([exchange] if publishing or binding else []) + own),
        write=any_of(([exchange] if publishing else []) + own + replies),
        read=any_of(([exchange] if binding else []) + own),
        topic_write=any_of(literal(key) for key in publishing),
        topic_read=any_of(literal(key) for key in binding),
    )


def user_name(namespace: str, identity: str) -> str:
    return f"{namespace}hocba-{identity}"


# --- definitions ----------------------------------------------------------------------------------

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ‖ SHA-256(salt ‖ UTF-8 password)), 4-byte salt."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def new_password() -> str:
    """A generated password (URL-safe: it goes into an AMQP URL as it is)."""
    return secrets.token_urlsafe(24)


#: How long a dead letter is kept unless HOCBA_DEAD_LETTER_TTL_DAYS says otherwise.
DEFAULT_DEAD_LETTER_TTL_DAYS: float = Settings.model_fields["dead_letter_ttl_days"].default
DAY_MS = 86_400_000


def dead_letter_policy_name(namespace: str) -> str:
    return f"{namespace}hocba-dead-letters"


def dead_letter_pattern(namespace: str) -> str:
    """A regex matching exactly `namespace`'s dead-letter queues, `<ns><service>.<routing key>.dlq`."""
    return f"^{literal(namespace)}({'|'.join(SERVICES)})\\..+\\.dlq$"


def dead_letter_policy(
    namespace: str, vhost: str = "/", ttl_days: float = DEFAULT_DEAD_LETTER_TTL_DAYS
) -> dict[str, Any]:
    """The policy that drops `namespace`'s dead letters `ttl_days` after they arrived.

    Its priority is the namespace's length: where two namespaces' patterns meet (the empty namespace's
    `sync.….dlq` and the namespace `sync.`), the longer, more specific one applies.
    """
    return {
        "vhost": vhost,
        "name": dead_letter_policy_name(namespace),
        "pattern": dead_letter_pattern(namespace),
        "apply-to": "queues",
        "definition": {"message-ttl": max(1, round(ttl_days * DAY_MS))},
        "priority": len(namespace),
    }


def with_dead_letter_ttl(template: Mapping[str, Any], ttl_days: float, namespace: str = "") -> dict[str, Any]:
    """`template`'s definitions with `namespace`'s dead-letter policy keeping dead letters `ttl_days`
    (added, on the template's virtual host, when the template has none)."""
    name = dead_letter_policy_name(namespace)
    kept = [p for p in template.get("policies", []) if p.get("name") != name]
    vhosts = [p["vhost"] for p in template.get("policies", []) if p.get("name") == name]
    vhosts = vhosts or [v["name"] for v in template.get("vhosts", [])][:1] or ["/"]
    return {**template, "policies": kept + [dead_letter_policy(namespace, v, ttl_days) for v in vhosts]}


def definitions(
    namespace: str,
    passwords: Mapping[str, str] | None = None,
    vhost: str = "/",
    dead_letter_ttl_days: float = DEFAULT_DEAD_LETTER_TTL_DAYS,
) -> dict[str, Any]:
    """RabbitMQ definitions of `namespace`'s identities on `vhost`, its two exchanges and its dead-letter policy.

    Users get the hash of their identity's password in `passwords`; a user without one gets none
    and cannot log in until a password is set (`deploy/rabbitmq/definitions.json`).
    """
    names = Names(namespace)
    passwords = passwords or {}
    users, granted, topics = [], [], []
    for name, identity in IDENTITIES.items():
        user = user_name(namespace, name)
        allowed = permissions(identity, names)
        given = passwords.get(name)
        users.append(
            {
                "name": user,
                "password_hash": password_hash(given) if given else "",
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": list(identity.tags),
                "limits": {},
            }
        )
        granted.append(
            {"user": user, "vhost": vhost, "configure": allowed.configure, "write": allowed.write, "read": allowed.read}
        )
        topics.append(
            {
                "user": user,
                "vhost": vhost,
                "exchange": names.exchange,
                "write": allowed.topic_write,
                "read": allowed.topic_read,
            }
        )
    exchange = {"vhost": vhost, "durable": True, "auto_delete": False, "internal": False, "arguments": {}}
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": granted,
        "topic_permissions": topics,
        "exchanges": [
            {"name": names.exchange, "type": "topic", **exchange},
            {"name": names.dead_letter_exchange, "type": "direct", **exchange},
        ],
        "queues": [],
        "bindings": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [dead_letter_policy(namespace, vhost, dead_letter_ttl_days)],
    }


def definitions_text(namespace: str = "") -> str:
    """The definitions without passwords as committed in deploy/rabbitmq/definitions.json."""
    return json.dumps(definitions(namespace), indent=2) + "\n"


def with_passwords(template: Mapping[str, Any], passwords: Mapping[str, str], namespace: str = "") -> dict[str, Any]:
    """`template`'s definitions with each identity's user given the hash of its password in `passwords`."""
    filled = dict(template)
    users = []
    for user in template.get("users", []):
        identity = next((n for n in IDENTITIES if user_name(namespace, n) == user["name"]), None)
        if identity is not None and identity in passwords:
            user = {**user, "password_hash": password_hash(passwords[identity]), "hashing_algorithm": HASHING_ALGORITHM}
        users.append(user)
    filled["users"] = users
    return filled


# --- where the passwords of a data folder's stacks are kept --------------------------------------


class CredentialStore:
    """`<data dir>/broker/credentials.json`: per namespace, the user that provisioned it and each identity's password.

    The file is 0600 in a 0700 folder under the data folder (never committed); it is replaced whole.
    """

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "broker"
        self.path = self.folder / "credentials.json"

    def _read(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"namespaces": {}}
        return loaded if isinstance(loaded.get("namespaces"), dict) else {"namespaces": {}}

    def _write(self, content: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        partial = self.folder / f".credentials.{os.getpid()}.json"
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(content, out, indent=2)
        os.replace(partial, self.path)

    def passwords(self, namespace: str) -> dict[str, str]:
        entry = self._read()["namespaces"].get(namespace) or {}
        return dict(entry.get("passwords") or {})

    def provisioned_by(self, namespace: str) -> str | None:
        entry = self._read()["namespaces"].get(namespace) or {}
        return entry.get("provisioned_by")

    def save(self, namespace: str, provisioned_by: str, passwords: Mapping[str, str]) -> None:
        content = self._read()
        content["namespaces"][namespace] = {"provisioned_by": provisioned_by, "passwords": dict(passwords)}
        self._write(content)

    def forget(self, namespace: str) -> None:
        content = self._read()
        if content["namespaces"].pop(namespace, None) is not None:
            self._write(content)


# --- AMQP URLs ------------------------------------------------------------------------------------


def login_of(url: str) -> str:
    """The user an AMQP (or HTTP) URL logs in as ("" when it names none)."""
    return unquote(urlsplit(url).username or "")


def with_login(url: str, user: str, password: str) -> str:
    """`url` (scheme, host, port, virtual host, options kept) logging in as `user` with `password`."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    where = f"{host}:{parts.port}" if parts.port else host
    login = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return urlunsplit((parts.scheme, login + where, parts.path, parts.query, parts.fragment))


def vhost_of(url: str) -> str:
    """The virtual host an AMQP URL names ("/" when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


# --- provisioning ---------------------------------------------------------------------------------


class ProvisioningError(RuntimeError):
    """The broker's users could not be provisioned or removed; the message says why."""


class Provisioner(Protocol):
    """Loads definitions into a broker and deletes users and policies from it."""

    def load(self, definitions: Mapping[str, Any]) -> None: ...

    def delete_users(self, users: Iterable[str]) -> None: ...

    def delete_policy(self, vhost: str, name: str) -> None: ...


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def rabbitmqctl_command() -> str | None:
    found = shutil.which("rabbitmqctl")
    if found:
        return found
    return "/usr/sbin/rabbitmqctl" if Path("/usr/sbin/rabbitmqctl").exists() else None


@dataclass(frozen=True)
class Rabbitmqctl:
    """The local broker's own tool: definitions imported from standard input (no file holds the hashes)."""

    command: str = "rabbitmqctl"
    timeout: float = 60.0

    def _run(self, *args: str, given: str | None = None) -> str:
        try:
            done = subprocess.run(
                [self.command, *args], input=given, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProvisioningError(f"rabbitmqctl {args[0]} failed: {exc}") from None
        if done.returncode != 0:
            raise ProvisioningError(f"rabbitmqctl {args[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")
        return done.stdout

    def load(self, definitions: Mapping[str, Any]) -> None:
        self._run("import_definitions", "--format", "json", given=json.dumps(definitions))
        self._await(definitions)

    def _await(self, definitions: Mapping[str, Any], timeout: float = 30.0) -> None:
        """The import is announced as asynchronous: wait until every topic permission and policy it sets is listed."""
        topics = definitions.get("topic_permissions", [])
        expected: set[tuple[str, ...]] = {(t["user"], t["exchange"], t["write"], t["read"]) for t in topics}
        expected |= {(p["name"], p["pattern"]) for p in definitions.get("policies", [])}
        vhosts = {t["vhost"] for t in [*definitions.get("topic_permissions", []), *definitions.get("policies", [])]}
        deadline = time.monotonic() + timeout
        while not expected <= self._listed(vhosts):
            if time.monotonic() > deadline:
                raise ProvisioningError("rabbitmqctl import_definitions did not take effect")
            time.sleep(0.2)

    def _listed(self, vhosts: Iterable[str]) -> set[tuple[str, ...]]:
        """The topic permissions (user, exchange, write, read) and policies (name, pattern) on `vhosts`."""
        listed: set[tuple[str, ...]] = set()
        for vhost in vhosts:
            text = self._run("list_topic_permissions", "--vhost", vhost, "--quiet", "--no-table-headers")
            listed |= {tuple(line.split("\t")) for line in text.splitlines() if line.strip()}
            text = self._run("list_policies", "--vhost", vhost, "--quiet", "--no-table-headers")
            listed |= {tuple(line.split("\t")[1:3]) for line in text.splitlines() if line.strip()}
        return listed

    def delete_users(self, users: Iterable[str]) -> None:
        running = [
            subprocess.Popen([self.command, "delete_user", user], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for user in users
        ]
        for process in running:
            process.wait(self.timeout)

    def delete_policy(self, vhost: str, name: str) -> None:
        try:
            self._run("clear_policy", "--vhost", vhost, name)
        except ProvisioningError as exc:
            if "does not exist" not in str(exc):
                raise


@dataclass(frozen=True)
class ManagementApi:
    """A broker's management HTTP API (`http(s)://host:15672/`), as an administrator."""

    url: str
    user: str
    password: str
    #: A CA bundle for an https API (True: the system's).
    verify: str | bool = True
    timeout: float = 30.0

    @classmethod
    def at(cls, management_url: str, admin_url: str | None = None) -> ManagementApi:
        """The API at `management_url`, logging in as the user it names, else as `admin_url`'s user."""
        parts = urlsplit(management_url)
        login = management_url if parts.username else admin_url or "amqp://guest:guest@localhost/"
        credentials = urlsplit(login)
        where = f"{parts.hostname}:{parts.port}" if parts.port else f"{parts.hostname}"
        base = urlunsplit((parts.scheme, where, parts.path.rstrip("/") + "/", "", ""))
        return cls(base, unquote(credentials.username or "guest"), unquote(credentials.password or "guest"))

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, auth=(self.user, self.password), verify=self.verify, timeout=self.timeout
        )

    def load(self, definitions: Mapping[str, Any]) -> None:
        try:
            with self._client() as client:
                answer = client.post("api/definitions", json=dict(definitions))
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"the management API at {self.url} cannot be reached: {exc}") from None
        if answer.status_code not in (200, 201, 204):
            raise ProvisioningError(f"the management API at {self.url} refused the definitions: HTTP {answer.status_code}")

    def delete_users(self, users: Iterable[str]) -> None:
        try:
            with self._client() as client:
                for user in users:
                    answer = client.delete(f"api/users/{quote(user, safe='')}")
                    if answer.status_code not in (204, 404):
                        raise ProvisioningError(f"the management API did not delete {user}: HTTP {answer.status_code}")
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"the management API at {self.url} cannot be reached: {exc}") from None

    def delete_policy(self, vhost: str, name: str) -> None:
        try:
            with self._client() as client:
                answer = client.delete(f"api/policies/{quote(vhost, safe='')}/{quote(name, safe='')}")
        except httpx.HTTPError as exc:
            raise ProvisioningError(f"the management API at {self.url} cannot be reached: {exc}") from None
        if answer.status_code not in (204, 404):
            raise ProvisioningError(f"the management API did not delete the policy {name}: HTTP {answer.status_code}")


@dataclass(frozen=True)
class EitherOf:
    """The first provisioner, and the second when the first fails (a local broker whose rabbitmqctl needs root)."""

    first: Provisioner
    second: Provisioner

    def load(self, definitions: Mapping[str, Any]) -> None:
        try:
            self.first.load(definitions)
        except ProvisioningError as first:
            try:
                self.second.load(definitions)
            except ProvisioningError as second:
                raise ProvisioningError(f"{first}; and {second}") from None

    def delete_users(self, users: Iterable[str]) -> None:
        users = list(users)
        try:
            self.first.delete_users(users)
        except ProvisioningError:
            self.second.delete_users(users)

    def delete_policy(self, vhost: str, name: str) -> None:
        try:
            self.first.delete_policy(vhost, name)
        except ProvisioningError:
            self.second.delete_policy(vhost, name)


#: Where the management API is when it is not beside the broker on 15672 (with an administrator's login).
MANAGEMENT_URL_VARIABLE = "HOCBA_BROKER_MANAGEMENT_URL"


def provisioner_for(admin_url: str, management_url: str | None = None) -> Provisioner:
    """The management API at `management_url` when one is given; else rabbitmqctl when the broker runs on this
    machine (its management API if that fails), else the API on the broker's host.

    The API on the broker's host is on 15672 (15671 for amqps); it is asked as the user `management_url`
    names, else as `admin_url`'s user: the bootstrap administrator.
    """
    if management_url is not None:
        return ManagementApi.at(management_url, admin_url)
    parts = urlsplit(admin_url)
    host = parts.hostname or "127.0.0.1"
    secure = parts.scheme == "amqps"
    api = ManagementApi.at(f"{'https' if secure else 'http'}://{host}:{15671 if secure else 15672}/", admin_url)
    tool = rabbitmqctl_command()
    if host in LOCAL_HOSTS and tool is not None:
        return EitherOf(Rabbitmqctl(tool), api)
    return api


# --- one namespace's users, as a stack holds them -------------------------------------------------


@dataclass
class BrokerUsers:
    """One namespace's identities on one broker: provisioned, their logins, rotated, removed."""

    admin_url: str
    namespace: str
    passwords: dict[str, str]
    provisioner: Provisioner
    store: CredentialStore
    #: How long the namespace's dead-letter queues keep a message (its dead-letter policy).
    dead_letter_ttl_days: float = DEFAULT_DEAD_LETTER_TTL_DAYS

    @classmethod
    def provision(
        cls,
        admin_url: str,
        namespace: str,
        data_dir: Path,
        provisioner: Provisioner | None = None,
        dead_letter_ttl_days: float = DEFAULT_DEAD_LETTER_TTL_DAYS,
    ) -> BrokerUsers:
        """Every identity of `namespace` as a user on `admin_url`'s broker, passwords kept in `data_dir`, and
        the namespace's dead-letter policy.

        Passwords already kept for the namespace are kept (a stack started again logs in as before);
        missing ones are generated. They are written down before the broker learns them.
        """
        store = CredentialStore(data_dir)
        kept = store.passwords(namespace)
        passwords = {name: kept.get(name) or new_password() for name in IDENTITIES}
        store.save(namespace, login_of(admin_url), passwords)
        provisioner = provisioner or provisioner_for(admin_url)
        users = cls(admin_url, namespace, passwords, provisioner, store, dead_letter_ttl_days)
        users.load()
        return users

    def load(self) -> None:
        vhost = vhost_of(self.admin_url)
        self.provisioner.load(definitions(self.namespace, self.passwords, vhost, self.dead_letter_ttl_days))

    def user(self, identity: str) -> str:
        return user_name(self.namespace, identity)

    def url(self, identity: str) -> str:
        """The AMQP URL `identity` logs in with (the admin URL's broker, virtual host and options)."""
        return with_login(self.admin_url, self.user(identity), self.passwords[identity])

    def rotate(self, identity: str) -> str:
        """A new password for `identity`, kept and loaded; returns its new URL. Open connections stay open."""
        self.passwords[identity] = new_password()
        self.store.save(self.namespace, login_of(self.admin_url), self.passwords)
        self.load()
        return self.url(identity)

    def remove(self) -> None:
        """Delete the namespace's users and its dead-letter policy (a throw-away stack, once its processes have
        stopped) and forget the passwords."""
        self.provisioner.delete_users(self.user(name) for name in IDENTITIES)
        self.provisioner.delete_policy(vhost_of(self.admin_url), dead_letter_policy_name(self.namespace))
        self.store.forget(self.namespace)


# --- the command line's login ---------------------------------------------------------------------


def role_url(role: str, settings: Settings | None = None) -> str:
    """The AMQP URL the command line uses as `role` ("operator" or "school").

    The role's user from the stack's credentials (`<data dir>/broker/credentials.json`, namespace
    HOCBA_NAMESPACE) when AMQP_URL names no user or the administrator that provisioned them; an
    AMQP_URL with a login of its own (a deployment's operator) is used as it is.
    """
    if role not in ROLES:
        raise ValueError(f"unknown broker role {role!r}: one of {', '.join(ROLES)}")
    settings = settings or Settings()
    store = CredentialStore(settings.data_dir)
    password = store.passwords(settings.namespace).get(role)
    given = login_of(settings.amqp_url)
    if password is None or given not in {"", store.provisioned_by(settings.namespace)}:
        return settings.amqp_url
    return with_login(settings.amqp_url, user_name(settings.namespace, role), password)


def role_settings(role: str, settings: Settings | None = None) -> Settings:
    """`settings` (default: the environment's) with AMQP_URL logging in as the command line's `role`."""
    settings = settings or Settings()
    return settings.model_copy(update={"amqp_url": role_url(role, settings)})


# --- `hocba broker` -------------------------------------------------------------------------------

app = typer.Typer(
    help="Broker users: one per service, per command-line role (operator, school) and a monitor.",
    no_args_is_help=True,
)

Namespace = Annotated[str, typer.Option(help="The namespace (prefix of exchanges, queues and users); production: none.")]
DataDirOption = Annotated[Path | None, typer.Option(help="The stack's data folder (default .hocba/).")]
PASSWORD_VARIABLE = "HOCBA_BROKER_PASSWORD_{}"


@app.command("definitions")
def definitions_command(
    namespace: Namespace = "",
    output: Annotated[Path | None, typer.Option(help="Write here instead of standard output.")] = None,
) -> None:
    """The RabbitMQ definitions of the broker users, without passwords (deploy/rabbitmq/definitions.json)."""
    text = definitions_text(namespace)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


def deployment_passwords(folder: Path | None) -> dict[str, str]:
    """Each identity's password: the file `<folder>/<identity>` (a mounted secret), else HOCBA_BROKER_PASSWORD_<IDENTITY>."""
    found = {}
    for name in IDENTITIES:
        path = folder / name if folder is not None else None
        value = path.read_text().strip() if path is not None and path.exists() else ""
        found[name] = value or os.environ.get(PASSWORD_VARIABLE.format(name.upper()), "")
    if missing := [name for name, value in found.items() if not value]:
        names = ", ".join(PASSWORD_VARIABLE.format(n.upper()) for n in missing)
        raise typer.BadParameter(f"no password for {', '.join(missing)}: set {names} or mount them in --passwords-dir")
    return found


@app.command("provision")
def provision_command(
    namespace: Namespace = "",
    template: Annotated[
        Path | None, typer.Option("--definitions", help="The definitions to load (default: made from the table).")
    ] = None,
    passwords_dir: Annotated[
        Path | None, typer.Option(help="A folder with one file per identity holding its password (a mounted secret).")
    ] = None,
    management_url: Annotated[
        str | None,
        typer.Option(envvar=MANAGEMENT_URL_VARIABLE, help="The management API, with an administrator's login."),
    ] = None,
    wait: Annotated[float, typer.Option(help="Seconds to keep trying while the broker is not ready yet.")] = 0.0,
) -> None:
    """Load the broker users with their passwords (a deployment's provisioning step; run it again to rotate).

    Passwords come from --passwords-dir or HOCBA_BROKER_PASSWORD_<IDENTITY>; the administrator's login from
    --management-url, else AMQP_URL. The dead-letter policy keeps dead letters HOCBA_DEAD_LETTER_TTL_DAYS
    (default 30). Nothing is written to disk.
    """
    settings = Settings()
    loaded = json.loads(template.read_text()) if template else definitions(namespace)
    filled = with_passwords(loaded, deployment_passwords(passwords_dir), namespace)
    filled = with_dead_letter_ttl(filled, settings.dead_letter_ttl_days, namespace)
    provisioner = provisioner_for(settings.amqp_url, management_url)
    deadline = time.monotonic() + wait
    while True:
        try:
            provisioner.load(filled)
            break
        except ProvisioningError as exc:
            if time.monotonic() >= deadline:
                typer.echo(f"cannot provision the broker users: {exc}", err=True)
                raise typer.Exit(1) from None
            time.sleep(2.0)
    typer.echo(f"broker users provisioned: {', '.join(user_name(namespace, n) for n in IDENTITIES)}")


@app.command("rotate")
def rotate_command(
    identity: Annotated[str, typer.Argument(help=f"One of {', '.join(IDENTITIES)}.")],
    data_dir: DataDirOption = None,
) -> None:
    """A new password for one identity of the local stack (kept in <data dir>/broker/credentials.json).

    Its open connections stay open; the process logs in with the new password when it starts again.
    """
    if identity not in IDENTITIES:
        raise typer.BadParameter(f"unknown identity {identity!r}: one of {', '.join(IDENTITIES)}")
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    store = CredentialStore(settings.data_dir)
    admin = store.provisioned_by(settings.namespace)
    if admin is None or not store.passwords(settings.namespace):
        typer.echo(f"no broker users for this namespace in {store.path}: start the stack first (`hocba up`)", err=True)
        raise typer.Exit(1)
    admin_url = settings.amqp_url
    users = BrokerUsers(
        admin_url,
        settings.namespace,
        store.passwords(settings.namespace),
        provisioner_for(admin_url),
        store,
        settings.dead_letter_ttl_days,
    )
    try:
        users.rotate(identity)
    except ProvisioningError as exc:
        typer.echo(f"cannot rotate: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{users.user(identity)}: new password kept in {store.path}; restart the process that uses it")


@app.command("url")
def url_command(
    role: Annotated[str, typer.Argument(help="operator or school.")],
    data_dir: DataDirOption = None,
) -> None:
    """The AMQP URL of a command-line role on the local stack (`export AMQP_URL=$(hocba broker url operator)`)."""
    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}")
    settings = Settings() if data_dir is None else Settings(data_dir=data_dir)
    typer.echo(role_url(role, settings))
