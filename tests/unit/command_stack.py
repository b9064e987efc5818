"""The running stack as the `hocba` commands see it, for their unit tests: the session connects to nothing, and each
request is answered as the test set it up (`FakeStack`); the broker users the commands log in as are kept in order
(`logged_in_roles`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hocba import commands as cli_commands
from hocba.console import console
from shared.contracts.base import Message, Reply
from shared.messaging import Bus
from shared.settings import Settings

#: What a request is answered with: a reply, an error raised, or a reply made from the request.
Answer = Reply | Exception | Callable[[Message], Reply]


class FakeStack:
    """Answers each request type as the test set it up, and keeps what was sent (as the services would parse it)."""

    def __init__(self) -> None:
        self.replies: dict[type[Message], Answer] = {}
        self.sent: list[Message] = []

    def answers(self, request: type[Message], reply: Answer) -> None:
        self.replies[request] = reply

    def answer(self, message: Message, answer: type[Reply]) -> Reply:
        # What a service receives is the message's JSON: the token must hold for the parsed copy.
        received = type(message).model_validate_json(message.model_dump_json())
        self.sent.append(received)
        reply = self.replies[type(message)]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply) and not isinstance(reply, Reply):
            reply = reply(received)
        return answer.model_validate(reply.model_dump(mode="json"))

    def of(self, request: type[Message]) -> list[Any]:
        return [m for m in self.sent if isinstance(m, request)]


def faked_stack(monkeypatch: pytest.MonkeyPatch) -> FakeStack:
    """The commands' sessions answered by a `FakeStack`, printing whole table rows."""
    fake = FakeStack()

    async def connected(bus: Bus) -> None:
        return None

    async def request(bus: Bus, message: Message, answer: type[Reply], timeout: float = 30.0) -> Reply:
        return fake.answer(message, answer)

    monkeypatch.setattr(cli_commands, "connect", connected)
    monkeypatch.setattr(Bus, "request", request)
    monkeypatch.setattr(console, "width", 240)
    return fake


def logged_in_roles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The broker users the commands log in as, in order, as they log in."""
    logged_in: list[str] = []
    as_role = cli_commands.role_settings

    def logging_in(role: str, settings: Settings) -> Settings:
        logged_in.append(role)
        return as_role(role, settings)

    monkeypatch.setattr(cli_commands, "role_settings", logging_in)
    return logged_in
