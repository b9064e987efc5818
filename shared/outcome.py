"""What a handler decided, for the edge to carry out: messages to publish, a reply, refused parts.

Every handler of every service has the shape `(message, deps) -> Outcome`: it decides, and the
edge (`shared.messaging.Bus`) does the I/O that follows, always in the same order: the refused
parts to the dead-letter queue, then the messages, then the reply. A handler that refuses the whole
message raises an error of `shared.errors`; when the refusal must be announced too, it returns the
announcement with the error in `refused`, and the edge publishes it, then treats the error as raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
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


#: Publishes messages, returning once the broker has confirmed them (`shared.messaging.Bus.publish_all`).
Publish = Callable[[Sequence[Message]], Awaitable[None]]


async def published_then_kept(
    outcome: Outcome,
    publish: Publish,
    kept: Callable[[Sequence[Message]], Awaitable[None]],
    kinds: tuple[type[Message], ...] = (Message,),
) -> Outcome:
    """Publish the announcements of `outcome` (its messages of `kinds`), then `kept(them)`: a store that marks what
    it owes an announcement clears the mark only once the broker took it, so a crash between the two leaves the
    mark for a re-announcing loop. The rest of the outcome (other messages, a reply, refusals) is left to the edge."""
    chosen = [m for m in outcome.publish if isinstance(m, kinds)]
    if not chosen:
        return outcome
    await publish(chosen)
    await kept(chosen)
    return replace(outcome, publish=[m for m in outcome.publish if not isinstance(m, kinds)])
