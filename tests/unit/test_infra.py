"""What the local stack says when RabbitMQ is missing, and how it starts it when installed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hocba import infra
from tests.support import free_port


def test_unreachable_broker_without_a_server_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(infra.shutil, "which", lambda _: None)
    monkeypatch.setattr(infra.Path, "exists", lambda _: False)
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    with pytest.raises(infra.InfraError, match="apt-get install rabbitmq-server"):
        infra.ensure_rabbitmq(url)


def test_a_remote_broker_is_never_started_locally(monkeypatch):
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: False)
    with pytest.raises(infra.InfraError, match="check AMQP_URL"):
        infra.ensure_rabbitmq("amqp://guest:guest@rabbit.example:5672/")


class LocalBroker:
    """This machine's RabbitMQ as the commands see it: which ports answer, and what was run to open them."""

    def __init__(self, *open_ports: int) -> None:
        self.open = set(open_ports)
        self.calls: list[list[str]] = []

    def port_open(self, host: str, port: int, timeout: float = 0.5) -> bool:
        return port in self.open

    def run(self, command: list[str], **_: object) -> infra.subprocess.CompletedProcess[str]:
        self.calls.append(command)
        if command[0].endswith("rabbitmq-server"):
            self.open.add(5672)
        if command[0].endswith("rabbitmq-plugins"):
            self.open |= {infra.PLUGINS[name] for name in command[2:]}
        return infra.subprocess.CompletedProcess(command, 0, "", "")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> LocalBroker:
        monkeypatch.setattr(infra, "port_open", self.port_open)
        monkeypatch.setattr(infra.subprocess, "run", self.run)
        monkeypatch.setattr(infra, "local_tool", lambda name: f"/usr/sbin/{name}")
        monkeypatch.setattr(infra.shutil, "which", lambda name: f"/usr/sbin/{name}")
        monkeypatch.setattr(infra.time, "sleep", lambda _: None)
        return self


def test_an_installed_server_is_started_awaited_and_given_its_management_and_prometheus_plugins(monkeypatch):
    broker = LocalBroker().install(monkeypatch)
    assert infra.ensure_rabbitmq("amqp://guest:guest@127.0.0.1:5672/") == "started"
    assert broker.calls == [
        ["/usr/sbin/rabbitmq-server", "-detached"],
        ["/usr/sbin/rabbitmq-plugins", "enable", "rabbitmq_management", "rabbitmq_prometheus"],
    ]
    assert {infra.MANAGEMENT_PORT, infra.PROMETHEUS_PORT} <= broker.open


def test_a_reachable_broker_is_left_alone(monkeypatch):
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: True)
    assert infra.ensure_rabbitmq("amqp://guest:guest@127.0.0.1:5672/") == "reachable"


def test_a_local_brokers_management_api_and_prometheus_metrics_are_enabled_when_they_are_off(monkeypatch):
    broker = LocalBroker(5672).install(monkeypatch)
    assert infra.ensure_management("amqp://guest:guest@127.0.0.1:5672/") == "enabled"
    assert broker.calls == [["/usr/sbin/rabbitmq-plugins", "enable", "rabbitmq_management", "rabbitmq_prometheus"]]


def test_only_the_plugin_that_is_off_is_enabled(monkeypatch):
    """A broker with its management API but no Prometheus metrics (as `make rabbitmq` left it before) gets the
    metrics: without them RabbitMQDown fires on a healthy broker."""
    broker = LocalBroker(5672, infra.MANAGEMENT_PORT).install(monkeypatch)
    assert infra.ensure_management("amqp://guest:guest@127.0.0.1:5672/") == "enabled"
    assert broker.calls == [["/usr/sbin/rabbitmq-plugins", "enable", "rabbitmq_prometheus"]]


def test_served_plugins_are_left_alone(monkeypatch):
    broker = LocalBroker(5672, infra.MANAGEMENT_PORT, infra.PROMETHEUS_PORT).install(monkeypatch)
    assert infra.ensure_management("amqp://guest:guest@127.0.0.1:5672/") == "reachable"
    assert broker.calls == []


def test_a_remote_brokers_plugins_are_never_touched(monkeypatch):
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: False)
    monkeypatch.setattr(infra.subprocess, "run", lambda cmd, **kw: pytest.fail(f"ran {cmd}"))
    with pytest.raises(infra.InfraError, match=r"rabbit.example does not answer on 15672 \(rabbitmq_management\)"):
        infra.ensure_management("amqps://admin:x@rabbit.example:5671/")



def test_a_port_to_listen_on_is_outside_the_range_outgoing_connections_take_theirs_from():
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {infra.free_port() for _ in range(20)}
    assert all(port in infra.LISTEN_PORTS and not low <= port <= high for port in ports), ports


def test_a_port_something_listens_on_is_passed_over(monkeypatch):
    with socket.socket() as taken:
        busy = infra.free_port()
        taken.bind(("127.0.0.1", busy))
        taken.listen()
        other = infra.free_port()
        monkeypatch.setattr(infra.random, "sample", lambda population, k: [busy, other])
        assert infra.free_port() == other
