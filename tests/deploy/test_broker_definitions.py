"""deploy/rabbitmq/definitions.json: the broker users of hocba/broker.py for namespace "", without passwords."""

from __future__ import annotations

import fnmatch
import json
import re

from hocba.broker import IDENTITIES, definitions_text, user_name
from tests.deploy.conftest import DEPLOY, ROOT

DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"


def test_the_committed_definitions_are_made_from_the_table():
    assert DEFINITIONS.read_text() == definitions_text(""), "regenerate it: make definitions"


def test_no_password_is_committed():
    users = json.loads(DEFINITIONS.read_text())["users"]
    assert {u["name"] for u in users} == {user_name("", n) for n in IDENTITIES}
    assert all(u["password_hash"] == "" for u in users), "passwords come from the installation's secrets"


def test_dead_letters_are_kept_30_days_by_default_and_no_other_policy_competes():
    """Only one policy applies to a queue: the dead-letter queues' TTL is the only one the installation loads."""
    [policy] = json.loads(DEFINITIONS.read_text())["policies"]
    assert policy["name"] == "hocba-dead-letters" and policy["apply-to"] == "queues"
    assert policy["definition"] == {"message-ttl": 30 * 24 * 60 * 60 * 1000}
    assert re.search(policy["pattern"], "grades.identity.student.registered.v1.dlq")
    assert not re.search(policy["pattern"], "grades.identity.student.registered.v1")


def test_the_image_carries_the_definitions_its_provisioning_step_loads():
    ignored = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()]
    path = str(DEFINITIONS.relative_to(ROOT))
    patterns = [p for p in ignored if p and not p.startswith("#")]
    assert not any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)
