"""How a local stack lays out the embedded MongoDB-wire server: one for all services, or one per service
so that the pure-Python servers use more than one core; and the options each server is started with."""

from __future__ import annotations

from pathlib import Path

import pytest

from hocba import stack as stack_module
from hocba.infra import EmbeddedMongo, InfraError
from hocba.stack import SERVER_PER_SERVICE, SHARED_SERVER, Stack, StackConfig
from shared.settings import SERVICES


class Broker:
    """Stands in for the provisioned broker users: each identity's URL names it."""

    def url(self, identity: str) -> str:
        return f"amqp://{identity}@broker/"


@pytest.fixture
def started(monkeypatch) -> list[EmbeddedMongo]:
    """Embedded servers the stack starts, recorded instead of run."""
    servers: list[EmbeddedMongo] = []
    monkeypatch.setattr(stack_module.EmbeddedMongo, "start", lambda self, timeout=30.0: servers.append(self))
    monkeypatch.setattr(stack_module.EmbeddedMongo, "stop", lambda self, timeout=10.0: servers.remove(self))
    return servers


def children_of(tmp_path: Path, layout: str) -> tuple[Stack, dict[str, str]]:
    stack = Stack(StackConfig(tmp_path, fixed_ports=False, signing_workers=2, embedded_layout=layout))
    stack.broker = Broker()  # type: ignore[assignment]
    stack._start_mongo()
    base = {"MONGO_URL": stack.mongo_url}
    return stack, {c.name: c.env["MONGO_URL"] for c in stack._processes(base, 9999)}


def test_by_default_every_service_shares_one_embedded_server(tmp_path: Path, started, monkeypatch):
    monkeypatch.delenv("HOCBA_EMBEDDED_MONGO", raising=False)
    assert StackConfig.from_environment(tmp_path).embedded_layout == SHARED_SERVER
    stack, urls = children_of(tmp_path, SHARED_SERVER)
    assert len(started) == 1
    assert {urls[name] for name in urls if name != "ministry-simulator"} == {started[0].url} == {stack.mongo_url}


def test_per_service_each_service_has_its_own_server_and_signing_workers_share_theirs(tmp_path: Path, started):
    stack, urls = children_of(tmp_path, SERVER_PER_SERVICE)
    assert len(started) == len(SERVICES)
    own = {service: stack.mongo_url_for(service) for service in SERVICES}
    assert len(set(own.values())) == len(SERVICES)
    assert urls["signing-1"] == urls["signing-2"] == own["signing"]
    assert all(urls[service] == own[service] for service in SERVICES if service != "signing")
    assert {s.folder.name for s in started} == {f"mongo-{service}" for service in SERVICES}
    stack.stop()
    assert started == []


def test_the_layout_is_chosen_in_the_environment_and_a_misspelt_one_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOCBA_EMBEDDED_MONGO", "per-service")
    assert StackConfig.from_environment(tmp_path).embedded_layout == SERVER_PER_SERVICE
    monkeypatch.setenv("HOCBA_EMBEDDED_MONGO", "one-each")
    with pytest.raises(InfraError, match="HOCBA_EMBEDDED_MONGO"):
        StackConfig.from_environment(tmp_path)


def test_an_embedded_server_is_started_on_loopback_with_its_own_files_and_the_options_given(tmp_path: Path):
    command = EmbeddedMongo(tmp_path, 27999, options=("--journal-mode", "WAL")).command
    assert command[1:] == [
        "--host", "127.0.0.1", "--port", "27999", "--data-dir", str(tmp_path / "data"),
        "--pid-file", str(tmp_path / "nx-27017.pid"), "--log-file", str(tmp_path / "nx-27017.log"),
        "--journal-mode", "WAL",
    ]
