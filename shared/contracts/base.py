"""The envelope every hocba message has: id, schema version, time, actor, routing key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar
from uuid import NAMESPACE_URL, uuid4, uuid5

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.limits import CODE, TEXT, ShortCode

#: An actor token with a service's certificate chain fits in this; a person's is far smaller.
MAX_TOKEN_LENGTH = 8_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid4().hex


class Model(BaseModel):
    """Immutable value inside a message. Unknown fields are ignored so optional additions stay compatible."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Acting(Model):
    """Who acted, as events say it: the subject, their roles and school (never their token)."""

    subject: str = Field(max_length=200)
    roles: list[ShortCode] = Field(default_factory=list, max_length=10)
    school_code: str = Field("", max_length=20)


class Message(Model):
    """A command, request or event on the `hocba` exchange.

    `message_id` is the idempotency key. A command or request carries in `actor` the token of who
    sends it, good for this message and the service that acts on it (`shared.auth`); an event
    carries no token, and says in `by` who acted. Each concrete message names its routing key
    `<service>.<entity>.<event-or-command>.v<N>`.
    """

    ROUTING_KEY: ClassVar[str]
    #: Durable messages must reach a queue: an unroutable publish raises.
    MANDATORY: ClassVar[bool] = True

    message_id: str = Field(default_factory=new_id, max_length=100)
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    actor: str | None = Field(None, max_length=MAX_TOKEN_LENGTH)
    by: Acting | None = None


class Notification(Message):
    """Progress news for whoever is watching (an operator's terminal, a school app).

    Nothing depends on receiving it, so it is published without the mandatory flag: when no one
    listens it is dropped by design, not by accident.
    """

    MANDATORY: ClassVar[bool] = False


class Problem(Model):
    """Why a request was not answered as asked: a short machine-readable code and a sentence for people."""

    code: str = Field(max_length=CODE)
    message: str = Field(max_length=TEXT)


class Reply(Model):
    """An answer to a request.

    When the request was refused or could not be answered, `error` says why and the other fields
    keep their defaults; the edge (`shared.messaging`) fills it from the error a handler raised, so
    every reply carries errors in this one shape.
    """

    error: Problem | None = None


def derived_id(source_id: str, *parts: object) -> str:
    """A deterministic message id for what a handler emits because of `source_id`.

    A redelivered command then yields events with the same ids, so consumers can deduplicate.
    """
    return uuid5(NAMESPACE_URL, "/".join([source_id, *map(str, parts)])).hex
