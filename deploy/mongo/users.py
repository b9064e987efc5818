"""MongoDB's users for hocba: one per service, each able to read and write its own database and nothing else.

A stolen service login, or a service tricked into a query it should not make, then reaches that service's
data alone: grades' user cannot read identity's students, nor administer the server. Each service's user
is `hocba-<service>`, kept in the database of the same name (its URL says `authSource=<service>`), with
the single role `readWrite` on that database: reads, writes, transactions and its own indexes.

Run as MongoDB's administrator, whose login serves this step only (compose's one-shot `mongo-users`, the
Kubernetes Job `mongo-users`), in the hocba image:

    python /app/deploy/mongo/users.py --url URL --admin-user NAME --admin-password-file FILE \
        [--passwords-dir DIR] [--initiate rs0=mongo:27017] [--wait SECONDS]

It is idempotent: a user that exists gets the given password and exactly that role again, so running
it after changing a password is how the password is rotated. Each password is the file
`<passwords dir>/<service>` (a mounted secret), else the variable HOCBA_MONGO_PASSWORD_<SERVICE>.
`--initiate` first initiates a replica set that is not initiated yet (compose's single member; a
cluster's replica set is initiated by whoever runs it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from shared.settings import SERVICES, Names

PASSWORD_VARIABLE = "HOCBA_MONGO_PASSWORD_{}"
#: MongoDB's error code for a replica set member that has no configuration yet.
NOT_YET_INITIALIZED = 94


class ProvisioningError(RuntimeError):
    """A password is missing, or MongoDB did not become usable in time."""


def user_name(service: str) -> str:
    return f"hocba-{service}"


def database(service: str) -> str:
    """The service's database, as the services name it (no namespace in a deployment)."""
    return Names("").database(service)


def roles(service: str) -> list[dict[str, str]]:
    """Read and write, transactions and index builds on the service's own database; nothing anywhere else."""
    return [{"role": "readWrite", "db": database(service)}]


def read_secret(path: Path) -> str:
    """A mounted secret's value, without the newline an editor or `echo` leaves; an empty one is refused."""
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ProvisioningError(f"{path} is empty")
    return value


def passwords(folder: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Each service's password: `<folder>/<service>` when it exists, else HOCBA_MONGO_PASSWORD_<SERVICE>."""
    found: dict[str, str] = {}
    for service in SERVICES:
        file = folder / service if folder is not None else None
        if file is not None and file.exists():
            found[service] = read_secret(file)
        elif environ.get(PASSWORD_VARIABLE.format(service.upper())):
            found[service] = environ[PASSWORD_VARIABLE.format(service.upper())]
    missing = [s for s in SERVICES if s not in found]
    if missing:
        names = ", ".join(PASSWORD_VARIABLE.format(s.upper()) for s in missing)
        raise ProvisioningError(
            f"no MongoDB password for {', '.join(missing)}: mount them in --passwords-dir or set {names}"
        )
    return found


def initiate(client: MongoClient[dict[str, Any]], replica_set: str, member: str) -> bool:
    """Initiate `replica_set` with `member` alone when it has no configuration yet; True if it did."""
    try:
        client.admin.command("replSetGetStatus")
        return False
    except OperationFailure as exc:
        if exc.code != NOT_YET_INITIALIZED:
            raise
    client.admin.command("replSetInitiate", {"_id": replica_set, "members": [{"_id": 0, "host": member}]})
    return True


def wait_until(ready: Any, seconds: float, what: str) -> None:
    """Call `ready` until it answers true, for at most `seconds`: MongoDB may still be starting or electing."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
            problem = "not yet"
        except PyMongoError as exc:
            problem = str(exc)
        if time.monotonic() > deadline:
            raise ProvisioningError(f"{what} within {seconds:.0f} s: {problem}")
        time.sleep(1)


def ensure_user(client: MongoClient[dict[str, Any]], service: str, password: str) -> str:
    """Create the service's user, or reset an existing one's password and roles; returns what was done."""
    db = client[database(service)]
    name = user_name(service)
    if db.command("usersInfo", name)["users"]:
        db.command("updateUser", name, pwd=password, roles=roles(service))
        return "updated"
    db.command("createUser", name, pwd=password, roles=roles(service))
    return "created"


def provision(
    client: MongoClient[dict[str, Any]], secrets: Mapping[str, str], replica: str | None, wait: float
) -> None:
    """Initiate the replica set if asked, wait for a primary, then every service's user."""
    wait_until(lambda: client.admin.command("ping")["ok"], wait, "MongoDB did not answer")
    if replica is not None:
        replica_set, _, member = replica.partition("=")
        if initiate(client, replica_set, member):
            print(f"initiated replica set {replica_set} with {member}")
    wait_until(lambda: client.admin.command("hello").get("isWritablePrimary"), wait, "no primary was elected")
    for service in SERVICES:
        print(f"{user_name(service)} on {database(service)}: {ensure_user(client, service, secrets[service])}")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python deploy/mongo/users.py", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="MongoDB's address with its TLS options, without a login")
    parser.add_argument("--admin-user", required=True, help="MongoDB's administrator (in the admin database)")
    parser.add_argument("--admin-password-file", type=Path, required=True, help="a file holding its password")
    parser.add_argument("--passwords-dir", type=Path, help="a folder of files named after the services")
    parser.add_argument("--initiate", metavar="SET=HOST:PORT", help="initiate this replica set if it is not yet")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for MongoDB and its primary")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        secrets = passwords(args.passwords_dir, os.environ)
        admin_password = read_secret(args.admin_password_file)
        client: MongoClient[dict[str, Any]] = MongoClient(
            args.url, username=args.admin_user, password=admin_password, authSource="admin",
            serverSelectionTimeoutMS=5000,
        )
        with client:
            provision(client, secrets, args.initiate, args.wait)
    except (ProvisioningError, OSError, PyMongoError) as exc:
        print(f"mongo-users: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
