"""One base error, grouped by what the messaging layer should do with the message."""

from __future__ import annotations


class HocbaError(Exception):
    """Base of every error hocba raises on purpose."""

    #: Short machine-readable reason, sent in the dead-letter header.
    reason = "error"


class PermanentError(HocbaError):
    """The message can never succeed: dead-letter it with the reason, do not retry."""

    reason = "permanent"


class InvalidMessage(PermanentError):
    reason = "invalid"


class Forbidden(PermanentError):
    reason = "forbidden"


class NotFound(PermanentError):
    reason = "not-found"


class TransientError(HocbaError):
    """Might succeed later (a dependency is down): retry a bounded number of times."""

    reason = "transient"
