"""Runtime settings read from the environment, and the names derived from a namespace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts import limits

SERVICES = ("identity", "grades", "signing", "archive", "sync")

#: Default HTTP port of each process for /metrics and /health (override with HOCBA_HTTP_PORT).
DEFAULT_HTTP_PORTS = {
    "identity": 9101,
    "grades": 9102,
    "signing": 9103,
    "archive": 9104,
    "sync": 9105,
    "ministry-simulator": 9180,
    "tsa": 9181,
}
DEFAULT_EMBEDDED_MONGO_PORT = 27817


class Misconfigured(ValueError):
    """A process cannot start as configured (a secret missing or given the wrong way, a setting production refuses):
    said in one sentence naming the setting to change."""


class Settings(BaseSettings):
    """Everything a service process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="HOCBA_", extra="ignore", frozen=True)

    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        validation_alias=AliasChoices("AMQP_URL", "HOCBA_AMQP_URL"),
    )
    mongo_url: str = Field(
        f"mongodb://127.0.0.1:{DEFAULT_EMBEDDED_MONGO_PORT}/",
        validation_alias=AliasChoices("MONGO_URL", "HOCBA_MONGO_URL"),
    )
    #: Prefix for the exchange, queue and database names; lets several stacks share one broker. Separated from
    #: the names by a dot ("demo" gives the exchange "demo.hocba").
    namespace: str = ""
    http_host: str = "127.0.0.1"
    #: 0 means the service's default port from DEFAULT_HTTP_PORTS.
    http_port: int = 0
    #: How many times a message is delivered before it is dead-lettered.
    delivery_limit: int = Field(5, ge=1)
    #: Unacknowledged messages a consumer may hold.
    prefetch: int = Field(8, ge=1)
    #: The largest message body a service reads, in bytes; a larger one is dead-lettered `too-large` unread. The
    #: largest legitimate message, a chunk of 100 signed records (about 1 MB; 4 MB with the longest comment on every
    #: entry), fits with room. The broker refuses larger publishes (`max_message_size` in deploy/rabbitmq/rabbitmq.conf).
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    #: Records per message where records travel in bulk.
    chunk_size: int = Field(100, ge=1, le=limits.RECORDS)
    ministry_url: str = "http://127.0.0.1:9180"
    ministry_concurrency: int = Field(16, ge=1)
    #: Seconds one request to the ministry may take before it counts as a failed attempt.
    ministry_timeout_seconds: float = Field(10.0, gt=0)
    #: Deliver through the ministry's batch endpoint (off: one request per entry, for a ministry without it)...
    ministry_batch: bool = True
    #: ...with at most this many entries per request (the endpoint takes up to 100).
    ministry_batch_size: int = Field(100, ge=1, le=100)
    #: TLS towards the ministry (an https ministry_url): the CA bundle that signs its certificate...
    ministry_ca_file: Path | None = None
    #: ...and this system's client certificate and key, when the ministry asks for mutual TLS.
    ministry_client_cert: Path | None = None
    ministry_client_key: Path | None = None
    #: Attempts to deliver one outbox entry to the ministry before it is parked.
    sync_max_attempts: int = Field(16, ge=1)
    data_dir: Path = Path(".hocba")
    #: Name of this process among copies of one service (signing workers), for logs and metrics.
    instance: str = ""
    #: Delete this service's queues when it stops: for throw-away stacks (demo, tests), never production.
    ephemeral: bool = False
    log_level: str = "INFO"
    #: JWKS file with the public keys whose actor tokens are accepted (the school management system's).
    actor_issuer_jwks: Path | None = None
    #: The `iss` those tokens must carry.
    actor_issuer: str = "hocba-school-app"
    #: `development` generates what is missing (key-encryption key, PKI passphrase) into ignored folders;
    #: `production` refuses to start without each secret given as a file, refuses secrets in environment
    #: variables and an empty passphrase, and delivers to an https ministry only.
    environment: Literal["development", "production"] = "development"
    #: This service's key ring for encryption at rest (created at first start, wrapped under the key-encryption
    #: key); default <data_dir>/keys/<service>-keyring.json.
    key_ring: Path | None = None
    #: identity's key ring (the older name of `key_ring` for identity; `key_ring` wins when both are set).
    identity_key_ring: Path | None = None
    #: The key-encryption key that wraps the key ring: a file holding 32 random bytes in base64, mounted as a
    #: secret. Development generates <data_dir>/secrets/kek (0600) when unset; production requires it (or the
    #: PKCS#11 key below).
    kek_file: Path | None = None
    #: ...or an AES-256 key inside a PKCS#11 token, by label (module, token label; PIN from `pkcs11_pin_file`).
    kek_pkcs11_module: str | None = None
    kek_pkcs11_token: str | None = None
    kek_pkcs11_label: str | None = None
    #: The signing PKI folder: trust anchor, CRL, certificates, encrypted keys (default <data_dir>/pki). A service
    #: gets only its own part of it (`hocba pki export --service`); the root CA's key never leaves `hocba pki`.
    pki_dir: Path | None = None
    #: Unlocks the PKI's encrypted PKCS#8 keys; a development PKI keeps a generated one beside it otherwise.
    #: Development only: production reads it from `pki_passphrase_file`.
    pki_passphrase: str | None = Field(None, repr=False)
    #: A file holding the PKI passphrase (a mounted secret); wins over `pki_passphrase`.
    pki_passphrase_file: Path | None = None
    #: User PIN of the PKCS#11 token when the PKI's signing keys (or the key-encryption key) live in one.
    #: Development only: production reads it from `pkcs11_pin_file`.
    pkcs11_pin: str | None = Field(None, repr=False)
    #: A file holding the token's user PIN (a mounted secret); wins over `pkcs11_pin`.
    pkcs11_pin_file: Path | None = None
    #: How long a dead letter waits in its `<queue>.dlq` before the broker drops it (a policy the broker
    #: users' provisioning sets): time to inspect and replay it, not a place to keep data.
    dead_letter_ttl_days: float = Field(30.0, gt=0)
    #: Seconds between scheduled archive checkpoints (one is also issued after every signing batch).
    checkpoint_interval: float = Field(60.0, gt=0)
    #: The archive log's name in its checkpoints.
    archive_origin: str = "hocba.archive"
    #: Where the public verification page is served: a printed copy's QR code opens `{verify_url}/v/{entry}.{key}`.
    #: In development the archive's HTTP address as `hocba up` runs it; in production the department's https address
    #: (printed on paper that is kept for decades: choose one that will last).
    verify_url: str = f"http://127.0.0.1:{DEFAULT_HTTP_PORTS['archive']}"
    #: The RFC 3161 time-stamping authority (POST application/timestamp-query): in development the local one
    #: `hocba up` runs (hocba.tsa, its certificate in the development PKI); in production any TSA by URL.
    tsa_url: str = f"http://127.0.0.1:{DEFAULT_HTTP_PORTS['tsa']}/"
    #: PEM file with the certificate(s) a production TSA's certificate chains to; unset: the PKI's trust anchors.
    tsa_anchor: Path | None = None
    #: Seconds one timestamp request may take before the TSA counts as down (the checkpoint is stamped later).
    tsa_timeout_seconds: float = Field(10.0, gt=0)
    #: Seconds between the archive's looks for checkpoints still waiting for their timestamp.
    tsa_retry_seconds: float = Field(10.0, gt=0)
    #: The archive verifies every signature and certificate chain before it admits a record version.
    archive_verify_signatures: bool = True
    #: How far, in seconds, the time a record's last signature states may be from the archive's clock when it
    #: admits the record (and how far any signature's stated time may run ahead of that clock).
    archive_max_clock_skew_seconds: float = Field(600.0, gt=0)

    @field_validator("namespace")
    @classmethod
    def _separated(cls, namespace: str) -> str:
        return namespace_prefix(namespace)

    def names(self) -> Names:
        return Names(self.namespace)

    def port_for(self, service: str) -> int:
        return self.http_port or DEFAULT_HTTP_PORTS[service]

    def key_ring_path(self, service: str) -> Path:
        """Where `service`'s key ring is: HOCBA_KEY_RING, else <data dir>/keys/<service>-keyring.json."""
        if self.key_ring is not None:
            return self.key_ring
        if service == "identity" and self.identity_key_ring is not None:
            return self.identity_key_ring
        return self.data_dir / "keys" / f"{service}-keyring.json"

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def pki_path(self) -> Path:
        """Where the signing PKI is: HOCBA_PKI_DIR, else `pki` under the data folder."""
        return self.pki_dir or self.data_dir / "pki"


def namespace_prefix(namespace: str) -> str:
    """The prefix a namespace gives names: itself and a dot (none for the empty namespace)."""
    return namespace if not namespace or namespace.endswith(".") else f"{namespace}."


@dataclass(frozen=True)
class Names:
    """Broker and database names under one namespace (empty in production)."""

    namespace: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespace", namespace_prefix(self.namespace))

    @property
    def exchange(self) -> str:
        return f"{self.namespace}hocba"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}hocba.dlx"

    def queue(self, consumer: str, routing_key: str) -> str:
        """The queue through which `consumer` receives `routing_key`: `<consumer>.<routing key>`."""
        return f"{self.namespace}{consumer}.{routing_key}"

    def dead_letter_queue(self, queue: str) -> str:
        return f"{queue}.dlq"

    def database(self, service: str) -> str:
        prefix = self.namespace.replace(".", "_").replace("-", "_")
        return f"{prefix}{service}"

