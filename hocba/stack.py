"""A whole hocba system on one machine: MongoDB, the five services and the ministry simulator as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from hocba.broker import (
    DEFAULT_DEAD_LETTER_TTL_DAYS,
    MANAGEMENT_URL_VARIABLE,
    BrokerUsers,
    ProvisioningError,
    provisioner_for,
)
from hocba.commands.pki import ensure_dev_pki
from hocba.infra import (
    PRIVATE_UMASK,
    EmbeddedMongo,
    InfraError,
    ensure_rabbitmq,
    free_port,
    open_private,
    private_data_folder,
    private_umask,
)
from hocba.keys import dev_issuer
from hocba.web import WEB_PORT
from shared.messaging import delete_exchanges, delete_queues
from shared.settings import DEFAULT_EMBEDDED_MONGO_PORT, DEFAULT_HTTP_PORTS, SERVICES, Settings

SIMULATOR = "ministry-simulator"
#: The development RFC 3161 time-stamping authority (hocba.tsa), run unless HOCBA_TSA_URL names another TSA.
TSA = "tsa"
TSA_URL_VARIABLE = "HOCBA_TSA_URL"
#: The web gateway's process (`StackConfig.web`).
WEB = "web"
#: Signing workers after the first listen on 9111, 9112, … when ports are fixed.
EXTRA_WORKER_PORT = 9110
#: How the embedded MongoDB-wire server is laid out: one for the whole stack, or one per service.
SHARED_SERVER, SERVER_PER_SERVICE = "shared", "per-service"
#: The environment variable that chooses the layout (`hocba up`, the demo, the benchmarks).
EMBEDDED_LAYOUT_VARIABLE = "HOCBA_EMBEDDED_MONGO"
#: The Prometheus job of the processes that serve /metrics (deploy/prometheus: rules and dashboards select it).
SCRAPE_JOB = "hocba"
#: Where `hocba up` and `hocba demo` list their processes for Prometheus (file-based service discovery), under the
#: data folder; deploy/prometheus/prometheus.yml reads every `*.json` there.
TARGETS_FOLDER = "prometheus"


@dataclass
class Child:
    """One process the stack started, with its log file and health URL."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str:
        """Where the process says it can take work: a service's readiness, else (the ministry simulator, the
        development TSA) that it answers at all."""
        return self.base_url + ("/health/live" if self.name in (SIMULATOR, TSA) else "/health/ready")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Start the process with its log (0600, in a 0700 folder) and umask 077: what it writes is private."""
        with open_private(self.log_path) as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the stack, which stops children in order
                umask=PRIVATE_UMASK,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ask_to_stop(self) -> None:
        """SIGTERM, when the process still runs: it finishes what it holds and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class StackConfig:
    data_dir: Path
    namespace: str = ""
    #: The bootstrap administrator's login: it provisions the namespace's broker users, and removes a
    #: throw-away namespace. No process of the stack is given it.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    mongo_url: str | None = None
    signing_workers: int = 1
    #: Fixed well-known ports (for `hocba up`, so Prometheus can scrape) or free ones (demo, tests).
    fixed_ports: bool = True
    ephemeral: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The broker's management API, when the broker is not on this machine and not on its host's 15672.
    management_url: str | None = None
    #: How long the namespace's dead-letter queues keep a message (HOCBA_DEAD_LETTER_TTL_DAYS).
    dead_letter_ttl_days: float = DEFAULT_DEAD_LETTER_TTL_DAYS
    #: Where MONGO_URL is unset: one embedded server for every service, or one per service
    #: (HOCBA_EMBEDDED_MONGO). The server is pure Python, so one process uses at most one core.
    embedded_layout: str = SHARED_SERVER
    #: The web page of the term end (hocba.web) beside the services, logged in as the command line's roles.
    web: bool = False
    #: Where to list the processes that serve /metrics for Prometheus's file-based service discovery while the
    #: stack runs (None: nowhere). Written once every process is ready, removed when the stack stops.
    targets_file: Path | None = None

    @classmethod
    def from_environment(cls, data_dir: Path, **overrides: Any) -> StackConfig:
        settings = Settings()
        from_settings = cls(
            data_dir=data_dir,
            amqp_url=settings.amqp_url,
            mongo_url=os.environ.get("MONGO_URL") or None,
            namespace=settings.namespace,
            ephemeral=settings.ephemeral,
            management_url=os.environ.get(MANAGEMENT_URL_VARIABLE) or None,
            dead_letter_ttl_days=settings.dead_letter_ttl_days,
            embedded_layout=embedded_layout(os.environ.get(EMBEDDED_LAYOUT_VARIABLE)),
        )
        return replace(from_settings, **overrides)


def embedded_layout(chosen: str | None) -> str:
    """The embedded servers' layout an operator chose (unset: one shared server); anything else is refused."""
    layout = (chosen or SHARED_SERVER).strip().lower()
    if layout not in {SHARED_SERVER, SERVER_PER_SERVICE}:
        raise InfraError(f"{EMBEDDED_LAYOUT_VARIABLE} is {chosen!r}: say {SHARED_SERVER!r} or {SERVER_PER_SERVICE!r}")
    return layout


def interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so whatever started a stack stops it.

    SIGINT is set explicitly because a program started in the background by a shell inherits it
    ignored; SIGTERM would otherwise end the process without running its clean-up.
    """

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


class Stack:
    """Starts everything in dependency order, waits until each is ready, stops all of it.

    Each service process logs in to the broker as its own user (hocba.broker), provisioned for the
    namespace when the stack starts; a throw-away stack deletes its users when it stops.

    Everything it keeps on disk is its user's alone: the data folder is 0700, what the stack writes while
    starting (keys, PKI, broker passwords, logs) is written with umask 077, and so is whatever its
    processes write (databases, key rings, the simulator's receipts).
    """

    def __init__(self, config: StackConfig, report: Callable[[str], None] = lambda _: None) -> None:
        self.config = config
        self.report = report
        #: The embedded servers this stack started, by the service each serves ("" for one shared server).
        self.mongo_servers: dict[str, EmbeddedMongo] = {}
        self.children: list[Child] = []
        self.mongo_url = config.mongo_url or ""
        self.mongo_urls: dict[str, str] = {}
        self.broker: BrokerUsers | None = None
        #: The TSA the services timestamp with: the local development one, or the one HOCBA_TSA_URL names.
        self.tsa_given = config.extra_env.get(TSA_URL_VARIABLE) or os.environ.get(TSA_URL_VARIABLE) or ""
        self.tsa_url = self.tsa_given

    def port(self, name: str) -> int:
        return DEFAULT_HTTP_PORTS[name] if self.config.fixed_ports else free_port()

    @property
    def simulator(self) -> Child:
        return next(c for c in self.children if c.name == SIMULATOR)

    @property
    def mongo(self) -> EmbeddedMongo | None:
        """The one embedded server every service shares, when the stack started one."""
        return self.mongo_servers.get("")

    def mongo_url_for(self, service: str) -> str:
        """The MongoDB URL `service` is given: its own embedded server's, or the one all share."""
        return self.mongo_urls.get(service, self.mongo_url)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def url_for(self, identity: str) -> str:
        """The AMQP URL `identity` (a service, "operator", "school" or "monitor") logs in with on this stack."""
        if self.broker is None:
            raise InfraError("the stack has not provisioned its broker users: start it first")
        return self.broker.url(identity)

    def start(self, ready_timeout: float = 60.0) -> None:
        try:
            with private_umask():
                self._start(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, ready_timeout: float) -> None:
        cfg = self.config
        private_data_folder(cfg.data_dir)
        self.report(f"RabbitMQ at {cfg.amqp_url.split('@')[-1]}: {ensure_rabbitmq(cfg.amqp_url)}")
        self._provision_broker_users()
        self._start_mongo()
        simulator_port = self.port(SIMULATOR)  # a free port is picked once: the services are told where it is
        tsa_port = None if self.tsa_given else self.port(TSA)
        if tsa_port is not None:
            self.tsa_url = f"http://127.0.0.1:{tsa_port}/"
        environment = self._environment(simulator_port)
        tsa = [self._tsa_child(environment, tsa_port)] if tsa_port is not None else []
        self.children = [*tsa, *self._processes(environment, simulator_port)]
        for child in self.children:
            child.start()
        self._wait_ready(ready_timeout)
        if cfg.targets_file is not None:
            write_targets(cfg.targets_file, self.children)
            self.report(f"Prometheus targets (file_sd_configs) in {cfg.targets_file}")

    def _provision_broker_users(self) -> None:
        """A user per service, per command-line role and a monitor, and the dead-letter policy, for this namespace
        (hocba.broker)."""
        cfg = self.config
        provisioner = provisioner_for(cfg.amqp_url, cfg.management_url)
        try:
            self.broker = BrokerUsers.provision(
                cfg.amqp_url, cfg.namespace, cfg.data_dir, provisioner, cfg.dead_letter_ttl_days
            )
        except ProvisioningError as exc:
            raise InfraError(f"cannot provision the broker users: {exc}") from None
        self.report(f"broker users {self.broker.user('*')}: passwords in {self.broker.store.path}")

    def _start_mongo(self) -> None:
        """The embedded MongoDB-wire server (or one per service), unless MONGO_URL names a MongoDB."""
        if self.mongo_url:
            self.report(f"MongoDB at {self.mongo_url} (MONGO_URL)")
            return
        if self.config.embedded_layout == SERVER_PER_SERVICE:
            for n, service in enumerate(SERVICES, start=1):
                server = self._start_embedded(service, f"mongo-{service}", n)
                self.mongo_urls[service] = server.url
            return
        self.mongo_url = self._start_embedded("", "mongo", 0).url

    def _start_embedded(self, service: str, folder: str, offset: int) -> EmbeddedMongo:
        """One embedded server in its own folder, on the well-known port (+ `offset`) or a free one."""
        cfg = self.config
        port = DEFAULT_EMBEDDED_MONGO_PORT + offset if cfg.fixed_ports else free_port()
        server = EmbeddedMongo(cfg.data_dir / folder, port)
        self.mongo_servers[service] = server
        server.start()
        self.report(f"embedded MongoDB-wire server (nx-27017) {'for ' + service + ' ' if service else ''}on {server.url}")
        return server

    def _environment(self, simulator_port: int) -> dict[str, str]:
        """What every process of the stack is started with: where the broker, database, ministry, keys and PKI are."""
        cfg = self.config
        _, issuer_jwks = dev_issuer(cfg.data_dir)
        # The signing PKI (`hocba pki init` when absent); this process's own tools (the demo, tests) use it too.
        pki_dir = Path(os.environ.get("HOCBA_PKI_DIR") or cfg.data_dir / "pki").resolve()
        ensure_dev_pki(pki_dir, report=self.report)
        os.environ.setdefault("HOCBA_PKI_DIR", str(pki_dir))
        # No process is given the administrator's login: each service gets its own (`_processes`).
        inherited = {k: v for k, v in os.environ.items() if k not in {"AMQP_URL", "HOCBA_AMQP_URL"}}
        return {
            **inherited,
            **cfg.extra_env,
            "MONGO_URL": self.mongo_url or "",
            "HOCBA_NAMESPACE": cfg.namespace,
            "HOCBA_MINISTRY_URL": f"http://127.0.0.1:{simulator_port}",
            "HOCBA_EPHEMERAL": "1" if cfg.ephemeral else "0",
            "HOCBA_DATA_DIR": str(cfg.data_dir.resolve()),
            "HOCBA_ACTOR_ISSUER_JWKS": os.environ.get("HOCBA_ACTOR_ISSUER_JWKS", str(issuer_jwks.resolve())),
            "HOCBA_PKI_DIR": str(pki_dir),
            TSA_URL_VARIABLE: self.tsa_url,
            "PYTHONUNBUFFERED": "1",
        }

    def _tsa_child(self, base_env: dict[str, str], port: int) -> Child:
        """The development TSA (`hocba.tsa`), signing with the PKI's `tsa` certificate; its URL goes to every service."""
        command = [sys.executable, "-m", "hocba.tsa", "--host", "127.0.0.1", "--port", str(port)]
        return Child(TSA, command, base_env, port, self.config.data_dir / "logs" / f"{TSA}.log")

    def _processes(self, base_env: dict[str, str], simulator_port: int) -> list[Child]:
        """The ministry simulator, then each service (signing as many workers as asked), each with its port and log."""
        cfg = self.config
        logs = cfg.data_dir / "logs"
        simulator = [
            sys.executable, "-m", "hocba.ministry_simulator",
            "--host", "127.0.0.1", "--port", str(simulator_port),
            "--data-file", str(cfg.data_dir / "ministry-simulator.jsonl"),
        ]
        processes = [Child(SIMULATOR, simulator, base_env, simulator_port, logs / f"{SIMULATOR}.log")]
        for service in SERVICES:
            copies = cfg.signing_workers if service == "signing" else 1
            for n in range(copies):
                port = self.port(service) if n == 0 or not cfg.fixed_ports else EXTRA_WORKER_PORT + n
                name = service if copies == 1 else f"{service}-{n + 1}"
                env = {
                    **base_env, "AMQP_URL": self.url_for(service), "MONGO_URL": self.mongo_url_for(service),
                    "HOCBA_HTTP_PORT": str(port), "HOCBA_INSTANCE": name,
                }
                processes.append(Child(name, [sys.executable, "-m", f"services.{service}"], env, port, logs / f"{name}.log"))
        if cfg.web:
            processes.append(self._web(base_env, logs))
        return processes

    def _web(self, base_env: dict[str, str], logs: Path) -> Child:
        """The web gateway: the school tools' and the operators' broker logins, its own port."""
        port = WEB_PORT if self.config.fixed_ports else free_port()
        env = {
            **base_env,
            "HOCBA_WEB_PORT": str(port),
            "HOCBA_WEB_SCHOOL_AMQP_URL": self.url_for("school"),
            "HOCBA_WEB_OPERATOR_AMQP_URL": self.url_for("operator"),
        }
        return Child(WEB, [sys.executable, "-m", "hocba.web"], env, port, logs / f"{WEB}.log")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.children)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for child in list(pending):
                    if not child.alive():
                        raise InfraError(f"{child.name} exited during start-up:\n{child.log_tail()}")
                    try:
                        if client.get(child.ready_url).status_code == 200:
                            pending.remove(child)
                            self.report(f"{child.name} ready on :{child.port}")
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    names = ", ".join(c.name for c in pending)
                    raise InfraError(f"not ready after {timeout:.0f}s: {names}\n{pending[0].log_tail()}")
                if pending:
                    time.sleep(0.2)

    def dead_children(self) -> list[Child]:
        return [c for c in self.children if not c.alive()]

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every process this stack started: services first, then the simulator, then MongoDB.

        Its Prometheus targets go first, so that a process stopping on purpose is not a target that is down.
        """
        if self.config.targets_file is not None:
            self.config.targets_file.unlink(missing_ok=True)
        for child in reversed(self.children):
            child.ask_to_stop()
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        had_children = bool(self.children)
        self.children.clear()
        for server in self.mongo_servers.values():
            server.stop()
        self.mongo_servers.clear()
        if had_children and self.config.ephemeral and self.config.namespace:
            self._remove_namespace()
        if self.broker is not None and self.config.ephemeral:
            self._remove_broker_users(self.broker)
        self.broker = None

    def _remove_broker_users(self, broker: BrokerUsers) -> None:
        """A throw-away stack's users and dead-letter policy go with it (their passwords are forgotten too)."""
        try:
            broker.remove()
        except ProvisioningError as exc:
            self.report(f"broker users of {self.config.namespace or 'the default namespace'} not removed: {exc}")

    def _remove_namespace(self) -> None:
        """A throw-away stack's exchanges go once nothing uses them, and so do any queues left.

        Each service removes its own queues as it stops, but copies of one service (signing
        workers) stopping together can re-declare a queue another copy just removed; a local
        broker lists what is left under the namespace (`rabbitmqctl`), which is then removed too.
        """
        names = Settings(namespace=self.config.namespace).names()
        leftovers = namespace_queues(self.config.namespace)

        async def remove() -> None:
            await delete_queues(self.config.amqp_url, leftovers)
            await delete_exchanges(self.config.amqp_url, names)

        # In a thread of its own: stop() may be called where an event loop is already running.
        worker = threading.Thread(target=asyncio.run, args=(remove(),))
        worker.start()
        worker.join(30)


def scrape_service(child: Child) -> str | None:
    """The `service` label of a process that serves /metrics (a service, a signing worker, the web page, the
    development TSA), else None (the ministry simulator)."""
    service = child.name.split("-")[0]
    return service if service in SERVICES or child.name in {WEB, TSA} else None


def scrape_targets(children: list[Child]) -> list[dict[str, Any]]:
    """Prometheus's file-based service discovery entries for the processes that serve /metrics: one target group a
    process, labelled with its job, instance, service and process name."""
    groups = []
    for child in children:
        service = scrape_service(child)
        if service is None:
            continue
        address = f"127.0.0.1:{child.port}"
        labels = {"job": SCRAPE_JOB, "instance": address, "service": service, "process": child.name}
        groups.append({"targets": [address], "labels": labels})
    return groups


def write_targets(path: Path, children: list[Child]) -> None:
    """Write the targets file whole (a temporary file renamed over it), so Prometheus never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(scrape_targets(children), indent=2) + "\n")
    partial.replace(path)


def namespace_queues(namespace: str) -> list[str]:
    """Queues (not their `.dlq`) under `namespace` on the local broker; none when rabbitmqctl is not at hand."""
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "name", "--quiet", "--no-table-headers"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    names = [line.strip() for line in listed.splitlines()]
    return [n for n in names if n.startswith(namespace) and not n.endswith(".dlq")]
