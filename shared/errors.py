"""One base error, grouped by what the edge does with the message that caused it.

Handlers raise; they never build dead letters or error replies themselves. At the edge
(`shared.messaging`) an error becomes one of three things:

* `PermanentError`: no retry can fix it. A requester waiting for a reply gets it as the reply's
  `error` (a `shared.contracts.base.Problem`); a message nobody waits on is dead-lettered at once
  with the error's `reason` in its headers.
* `TransientError`: a dependency is not ready yet. The message is handed back and tried again,
  a bounded number of times, then dead-lettered as `retries-exhausted`.
* anything else is a bug, and is treated as transient so that nothing is lost.

Each error has a short machine-readable `reason` (class default, or given per instance, e.g.
`Forbidden("...", reason="certificate-revoked")`), and a message in words for people.
"""

from __future__ import annotations


class HocbaError(Exception):
    """Base of every error hocba raises on purpose."""

    #: Short machine-readable reason, sent in the dead-letter header and in error replies.
    reason = "error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class PermanentError(HocbaError):
    """The message can never succeed: answer or dead-letter it with the reason, do not retry."""

    reason = "permanent"


class InvalidMessage(PermanentError):
    """What the message says is wrong: a bad value, a plan it does not match, a conflict with what is stored."""

    reason = "invalid"


class Forbidden(PermanentError):
    """Who sent the message may not do what it asks."""

    reason = "forbidden"


class NotFound(PermanentError):
    """The message names something that does not exist."""

    reason = "not-found"


class Unavailable(PermanentError):
    """A request could not be answered now (a dependency did not answer); asking again later may work.

    Permanent for the message at hand: a requester is waiting, and is told rather than kept waiting
    while the same request is retried.
    """

    reason = "unavailable"


class TransientError(HocbaError):
    """Might succeed later (a dependency is down, data has not arrived yet): retry a bounded number of times."""

    reason = "transient"


class Refused(PermanentError):
    """A service answered a request this process made with an error; `reason` is the code it gave."""


class NoAnswer(TransientError):
    """A request this process made got no answer: nothing takes it here, or nothing answered in time."""

    reason = "no-answer"
