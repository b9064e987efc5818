"""What the local stack says when RabbitMQ is missing, and how it starts it when installed."""

from __future__ import annotations

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


def test_an_installed_server_is_started_and_awaited(monkeypatch):
    calls = []
    opened = iter([False, False, True])
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: next(opened))
    monkeypatch.setattr(infra.shutil, "which", lambda _: "/usr/sbin/rabbitmq-server")
    monkeypatch.setattr(infra.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setattr(infra.time, "sleep", lambda _: None)
    assert infra.ensure_rabbitmq("amqp://guest:guest@127.0.0.1:5672/") == "started"
    assert calls == [["/usr/sbin/rabbitmq-server", "-detached"]]


def test_a_reachable_broker_is_left_alone(monkeypatch):
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: True)
    assert infra.ensure_rabbitmq("amqp://guest:guest@127.0.0.1:5672/") == "reachable"


def test_a_local_brokers_management_api_is_enabled_when_it_is_off(monkeypatch):
    calls: list[list[str]] = []
    opened = iter([False, True])
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: next(opened))
    monkeypatch.setattr(infra, "local_tool", lambda name: f"/usr/sbin/{name}")

    def run(command: list[str], **_: object) -> infra.subprocess.CompletedProcess[str]:
        calls.append(command)
        return infra.subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(infra.subprocess, "run", run)
    assert infra.ensure_management("amqp://guest:guest@127.0.0.1:5672/") == "enabled"
    assert calls == [["/usr/sbin/rabbitmq-plugins", "enable", "rabbitmq_management"]]


def test_a_served_management_api_is_left_alone(monkeypatch):
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: port == infra.MANAGEMENT_PORT)
    assert infra.ensure_management("amqp://guest:guest@127.0.0.1:5672/") == "reachable"


def test_a_remote_brokers_plugins_are_never_touched(monkeypatch):
    monkeypatch.setattr(infra, "port_open", lambda host, port, timeout=0.5: False)
    monkeypatch.setattr(infra.subprocess, "run", lambda cmd, **kw: pytest.fail(f"ran {cmd}"))
    with pytest.raises(infra.InfraError, match="management API is not reachable at rabbit.example:15672"):
        infra.ensure_management("amqps://admin:x@rabbit.example:5671/")
