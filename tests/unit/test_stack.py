"""What a local stack takes from its environment for the broker: how long its dead letters are kept."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hocba import stack as stack_module
from hocba.broker import DAY_MS, DEFAULT_DEAD_LETTER_TTL_DAYS, dead_letter_policy_name
from hocba.stack import Stack, StackConfig


class Loaded:
    """A provisioner that keeps the definitions it was given."""

    def __init__(self) -> None:
        self.definitions: list[Mapping[str, Any]] = []

    def load(self, definitions: Mapping[str, Any]) -> None:
        self.definitions.append(definitions)

    def delete_users(self, users: Iterable[str]) -> None:
        pass

    def delete_policy(self, vhost: str, name: str) -> None:
        pass


def test_a_stacks_dead_letters_are_kept_30_days_unless_the_environment_says_otherwise(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("HOCBA_DEAD_LETTER_TTL_DAYS", raising=False)
    assert StackConfig.from_environment(tmp_path).dead_letter_ttl_days == DEFAULT_DEAD_LETTER_TTL_DAYS == 30
    monkeypatch.setenv("HOCBA_DEAD_LETTER_TTL_DAYS", "2.5")
    assert StackConfig.from_environment(tmp_path).dead_letter_ttl_days == 2.5


def test_a_stack_provisions_its_namespaces_dead_letter_policy_with_that_ttl(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOCBA_DEAD_LETTER_TTL_DAYS", "2.5")
    loaded = Loaded()
    monkeypatch.setattr(stack_module, "provisioner_for", lambda *_: loaded)
    stack = Stack(StackConfig.from_environment(tmp_path, namespace="s1."))
    stack._provision_broker_users()
    [policy] = loaded.definitions[0]["policies"]
    assert policy["name"] == dead_letter_policy_name("s1.") == "s1.hocba-dead-letters"
    assert policy["definition"] == {"message-ttl": 2.5 * DAY_MS}
