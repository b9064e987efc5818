"""The infrastructure a local stack needs: RabbitMQ reachable (with its management API), the embedded
MongoDB-wire server, and private files for everything it keeps on disk."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

#: What a local stack and the processes it starts create is theirs alone: folders 0700, files 0600. The data
#: folder holds databases, logs, keys and broker passwords of children's records.
PRIVATE_UMASK = 0o077
PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def private_folder(folder: Path) -> Path:
    """`folder`, created if missing; every folder this call creates is readable by its owner only.

    A folder that existed is left as it is: it may be the user's own (a home folder, a checkout, /tmp).
    """
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for made in missing:
        os.chmod(made, PRIVATE_FOLDER)
    return folder


def ours_to_tighten(path: Path) -> bool:
    """Whether an existing folder may be made private: this user's, and not a shared one (sticky, like /tmp)."""
    found = path.lstat()
    return found.st_uid == os.geteuid() and not found.st_mode & stat.S_ISVTX and not path.is_symlink()


def private_data_folder(folder: Path) -> Path:
    """A data folder (created if missing) made readable by its owner only, even one an earlier run left open."""
    private_folder(folder)
    if ours_to_tighten(folder):
        os.chmod(folder, PRIVATE_FOLDER)
    return folder


def private_tree(folder: Path) -> Path:
    """`folder` and everything under it made private: what an earlier run left readable is tightened too.

    Only a folder that is this user's own and not a shared one (`ours_to_tighten`) is walked.
    """
    private_data_folder(folder)
    if not ours_to_tighten(folder):
        return folder
    for parent, folders, files in os.walk(folder):
        for name, mode in [(n, PRIVATE_FOLDER) for n in folders] + [(n, PRIVATE_FILE) for n in files]:
            path = os.path.join(parent, name)
            if not os.path.islink(path):  # a link points at something not ours to change
                os.chmod(path, mode)
    return folder


def private_opener(path: str, flags: int) -> int:
    """For `open(..., opener=private_opener)`: a new file is 0600, and so becomes one that existed."""
    descriptor = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(descriptor, PRIVATE_FILE)
    return descriptor


def open_private(path: Path, mode: str = "ab") -> IO[bytes]:
    """`path` opened (appending, by default) as a file only its owner may read, in a private folder."""
    private_folder(path.parent)
    return open(path, mode, opener=private_opener)  # noqa: SIM115 - the caller closes it


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """While it lasts, whatever this process creates without saying a mode is its owner's alone.

    For code that writes through libraries which do not say (a PKI's certificates); the previous
    mask is put back after.
    """
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


class InfraError(RuntimeError):
    """Something the stack needs is missing; the message says how to get it."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout):
        return True
    return False


def wait_for_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise InfraError(f"{what} did not open {host}:{port} within {timeout:.0f}s")
        time.sleep(0.2)


#: Where a port for a process to listen on is chosen: below Linux's default range of ephemeral ports (32768–60999),
#: which every outgoing connection takes its source port from. A port the system picked from that range (bind to 0) can
#: be taken by some connection between being picked and being listened on, and the process then fails to start.
LISTEN_PORTS = range(20_000, 32_000)


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now, outside the range outgoing connections take theirs from."""
    for port in random.sample(LISTEN_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # that many taken: whatever the system gives
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_rabbitmq(amqp_url: str, timeout: float = 90.0) -> str:
    """Make sure RabbitMQ answers at `amqp_url`; start the local server if it is installed.

    Returns what was done, for the operator ("reachable" or "started").
    """
    parsed = urlparse(amqp_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5672
    if port_open(host, port):
        return "reachable"
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise InfraError(f"RabbitMQ is not reachable at {host}:{port}; check AMQP_URL")
    server = shutil.which("rabbitmq-server") or (
        "/usr/sbin/rabbitmq-server" if Path("/usr/sbin/rabbitmq-server").exists() else None
    )
    if server is None:
        raise InfraError(
            f"RabbitMQ is not reachable at {host}:{port} and rabbitmq-server is not installed. "
            "Install it (Debian/Ubuntu: `sudo apt-get install rabbitmq-server`), "
            "or point AMQP_URL at a running broker."
        )
    subprocess.run([server, "-detached"], check=False, capture_output=True)
    wait_for_port(host, port, timeout, "RabbitMQ")
    ensure_management(amqp_url)
    return "started"


#: The management API's port (plain HTTP; a deployment gives its URL instead).
MANAGEMENT_PORT = 15672
#: The port of RabbitMQ's Prometheus plugin (rabbitmq_prometheus), which deploy/prometheus scrapes.
PROMETHEUS_PORT = 15692
#: The plugins a local broker is given, and the port each opens: the management API (the broker users'
#: provisioning path, queue depths for KEDA and `hocba top`) and the Prometheus metrics (queue depths, consumers and
#: alarms for the rules and the dashboard; without them RabbitMQDown fires and four rules read nothing).
PLUGINS = {"rabbitmq_management": MANAGEMENT_PORT, "rabbitmq_prometheus": PROMETHEUS_PORT}


def local_tool(name: str) -> str | None:
    """A RabbitMQ command-line tool on PATH or in /usr/sbin, where Debian's package puts them."""
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)


def ensure_management(amqp_url: str, timeout: float = 60.0) -> str:
    """Enable the management and Prometheus plugins (`PLUGINS`) of the broker at `amqp_url` when it runs on this
    machine and they do not answer yet; wait until their ports open. Returns what was done ("reachable" or
    "enabled"). `rabbitmq-plugins enable` changes a running broker, without a restart, and is remembered for the
    next start.

    The broker users are provisioned with rabbitmqctl on this machine and through the management API
    elsewhere (hocba.broker); the API also serves queue depths to KEDA.
    """
    host = urlparse(amqp_url).hostname or "127.0.0.1"
    missing = [name for name, port in PLUGINS.items() if not port_open(host, port)]
    if not missing:
        return "reachable"
    plugins = local_tool("rabbitmq-plugins")
    if host not in {"127.0.0.1", "localhost", "::1"} or plugins is None:
        ports = ", ".join(f"{PLUGINS[name]} ({name})" for name in missing)
        raise InfraError(f"RabbitMQ at {host} does not answer on {ports}: enable the plugins there")
    enabled = subprocess.run([plugins, "enable", *missing], check=False, capture_output=True, text=True)
    if enabled.returncode != 0:
        raise InfraError(f"cannot enable {', '.join(missing)}: {(enabled.stderr or enabled.stdout).strip()[-300:]}")
    for name in missing:
        wait_for_port(host, PLUGINS[name], timeout, f"RabbitMQ's plugin {name}")
    return "enabled"


def nx_command() -> str:
    beside = Path(sys.executable).with_name("nx-27017")
    found = str(beside) if beside.exists() else shutil.which("nx-27017")
    if not found:
        raise InfraError("the embedded MongoDB-wire server (nx-27017) is not installed; run `make install`")
    return found


class EmbeddedMongo:
    """nx-27017 on loopback with its files (data, pid, log) under one folder of its own.

    The folder and data folder are 0700 and the server runs with umask 077, so its database files
    (children's records), PID and logs are 0600: readable by the user who runs the stack only.
    """

    def __init__(self, folder: Path, port: int, options: Sequence[str] = ()) -> None:
        self.folder = folder
        self.port = port
        #: Further command-line options of nx-27017 (its `--journal-mode`, say).
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def command(self) -> list[str]:
        """The server's command line: loopback only, its data, PID and log files in its own folder."""
        return [
            nx_command(),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.folder / "data"),
            "--pid-file", str(self.folder / "nx-27017.pid"),
            "--log-file", str(self.folder / "nx-27017.log"),
            *self.options,
        ]

    def start(self, timeout: float = 30.0) -> None:
        if port_open("127.0.0.1", self.port):
            raise InfraError(
                f"port {self.port} is already in use; stop what listens there or set MONGO_URL"
            )
        private_tree(self.folder)
        private_folder(self.folder / "data")
        with open_private(self.folder / "stdout.log") as out:
            self.process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=PRIVATE_UMASK,
            )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise InfraError(f"nx-27017 did not start; see {self.folder / 'stdout.log'}")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _main(argv: list[str]) -> int:
    """`python -m hocba.infra reachable|start|management`: used by the Makefile before the tests."""
    from shared.settings import Settings

    url = Settings().amqp_url
    parsed = urlparse(url)
    if argv[1:] == ["reachable"]:
        return 0 if port_open(parsed.hostname or "127.0.0.1", parsed.port or 5672) else 1
    if argv[1:] == ["start"]:
        try:
            print(f"RabbitMQ: {ensure_rabbitmq(url)}")
            print(f"RabbitMQ management API and Prometheus metrics: {ensure_management(url)}")
        except InfraError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if argv[1:] == ["management"]:
        try:
            print(f"RabbitMQ management API and Prometheus metrics: {ensure_management(url)}")
        except InfraError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print("usage: python -m hocba.infra reachable|start|management", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
