"""What a handler decided, for the edge to carry out: messages to publish, a reply, refused parts.

Every handler of every service has the shape `(message, deps) -> Outcome`: it decides, and the
edge (`shared.messaging.Bus`) does the I/O that follows, always in the same order: the refused
parts to the dead-letter queue, then the messages, then the reply. A handler that refuses the whole
message raises an error of `shared.errors`; when the refusal must be announced too, it returns the
announcement with the error in `refused`, and the edge publishes it, then treats the error as raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.contracts.base import Message, Model
from shared.errors import HocbaError


@dataclass(frozen=True)
class RejectedPart:
    """Items of one list field of the message, refused while the rest of it goes on.

    The edge dead-letters a copy of the message holding only these items, with `reason` ("invalid"
    or "forbidden") and `explanation` in its headers, so nothing of the refused part is lost.
    """

    field: str
    items: Sequence[Any]
    reason: str
    explanation: str


@dataclass(frozen=True)
class Outcome:
    """What follows from handling one message (or from one step of a background loop)."""

    publish: Sequence[Message] = ()
    reply: Model | None = None
    rejected: Sequence[RejectedPart] = ()
    #: The whole message is refused with this error, once `publish` has announced it.
    refused: HocbaError | None = None
    #: For a background loop's step: more work is waiting, run the step again at once.
    again: bool = False


NOTHING = Outcome()
