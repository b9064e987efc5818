"""deploy/mongo/users.py: the step that gives each service a MongoDB user limited to its own database.

Run against a stand-in for MongoDB that keeps the replica set's state and its users as a real server
answers the commands the step sends (replSetGetStatus, replSetInitiate, hello, usersInfo, createUser,
updateUser): the embedded MongoDB-wire server of the other layers has no users or replica set to check.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from tests.deploy.conftest import DEPLOY

HOCBA = ("identity", "grades", "signing", "archive", "sync")
PASSWORDS = {name: f"password-of-{name}" for name in HOCBA}


def load_users_module():
    spec = importlib.util.spec_from_file_location("hocba_mongo_users", DEPLOY / "mongo" / "users.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


users = load_users_module()


class Server:
    """A replica set member's answers to the commands the step sends, with its users by (database, name)."""

    def __init__(self, *, initiated: bool = True) -> None:
        self.config: dict[str, Any] | None = {"_id": "rs0"} if initiated else None
        self.users: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def admin(self) -> Database:
        return Database(self, "admin")

    def __getitem__(self, name: str) -> Database:
        return Database(self, name)


class Database:
    def __init__(self, server: Server, name: str) -> None:
        self.server, self.name = server, name

    def command(self, command: str, value: Any = None, **fields: Any) -> dict[str, Any]:
        server = self.server
        if command == "ping":
            return {"ok": 1}
        if command == "replSetGetStatus":
            if server.config is None:
                raise OperationFailure("no replset config has been received", code=users.NOT_YET_INITIALIZED)
            return {"set": server.config["_id"]}
        if command == "replSetInitiate":
            server.config = value
            return {"ok": 1}
        if command == "hello":
            return {"isWritablePrimary": server.config is not None}
        if command == "usersInfo":
            found = server.users.get((self.name, value))
            return {"users": [found] if found else []}
        if command in ("createUser", "updateUser"):
            assert (command == "updateUser") == ((self.name, value) in server.users), f"{command} {value}"
            server.users[(self.name, value)] = {"pwd": fields["pwd"], "roles": fields["roles"]}
            return {"ok": 1}
        raise AssertionError(f"unexpected command {command}")


def test_each_service_gets_a_user_of_its_own_that_can_read_and_write_only_its_database():
    server = Server()
    users.provision(server, PASSWORDS, None, wait=1)
    assert server.users == {
        (name, f"hocba-{name}"): {"pwd": PASSWORDS[name], "roles": [{"role": "readWrite", "db": name}]}
        for name in HOCBA
    }


def test_attack_a_stolen_grades_login_reaches_no_other_services_data():
    server = Server()
    users.provision(server, PASSWORDS, None, wait=1)
    grades = server.users[("grades", "hocba-grades")]
    assert {role["db"] for role in grades["roles"]} == {"grades"}, "identity's students stay out of its reach"
    assert not {role["role"] for role in grades["roles"]} & {"readAnyDatabase", "readWriteAnyDatabase", "root"}
    assert ("admin", "hocba-grades") not in server.users


def test_running_again_resets_each_users_password_and_roles():
    server = Server()
    server.users[("sync", "hocba-sync")] = {"pwd": "old", "roles": [{"role": "readAnyDatabase", "db": "admin"}]}
    users.provision(server, PASSWORDS, None, wait=1)
    assert server.users[("sync", "hocba-sync")] == {
        "pwd": PASSWORDS["sync"],
        "roles": [{"role": "readWrite", "db": "sync"}],
    }


def test_a_replica_set_not_yet_initiated_is_initiated_with_its_one_member_before_the_users():
    server = Server(initiated=False)
    users.provision(server, PASSWORDS, "rs0=mongo:27017", wait=1)
    assert server.config == {"_id": "rs0", "members": [{"_id": 0, "host": "mongo:27017"}]}
    assert len(server.users) == len(HOCBA)


def test_an_initiated_replica_set_is_left_as_it_is():
    server = Server()
    assert users.initiate(server, "rs0", "mongo:27017") is False
    assert server.config == {"_id": "rs0"}


def test_without_a_primary_no_user_is_created():
    server = Server(initiated=False)
    with pytest.raises(users.ProvisioningError, match="no primary"):
        users.provision(server, PASSWORDS, None, wait=0)
    assert server.users == {}


def test_passwords_come_from_the_mounted_files_before_the_environment(tmp_path):
    for name in HOCBA:
        (tmp_path / name).write_text(f"file-{name}\n")
    environ = {f"HOCBA_MONGO_PASSWORD_{name.upper()}": f"variable-{name}" for name in HOCBA}
    assert users.passwords(tmp_path, environ) == {name: f"file-{name}" for name in HOCBA}
    assert users.passwords(None, environ) == {name: f"variable-{name}" for name in HOCBA}


def test_a_missing_or_empty_password_is_refused(tmp_path):
    environ = {f"HOCBA_MONGO_PASSWORD_{name.upper()}": "x" for name in HOCBA if name != "archive"}
    with pytest.raises(users.ProvisioningError, match="HOCBA_MONGO_PASSWORD_ARCHIVE"):
        users.passwords(None, environ)
    (tmp_path / "archive").write_text("\n")
    with pytest.raises(users.ProvisioningError, match="empty"):
        users.passwords(tmp_path, environ)
