"""How failures are classified, retry back-off, and names under a namespace."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ValidationError

from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from shared.messaging import backoff_seconds, is_permanent, quorum_queue
from shared.settings import Names


class Shape(BaseModel):
    n: int


def validation_error() -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Shape(n="x")
    return caught.value


@pytest.mark.parametrize(
    "error",
    [InvalidMessage("x"), Forbidden("x"), NotFound("x"), json.JSONDecodeError("x", "{", 0)],
)
def test_permanent_errors_are_not_retried(error):
    assert is_permanent(error)


def test_validation_errors_are_permanent():
    assert is_permanent(validation_error())


@pytest.mark.parametrize("error", [TransientError("db down"), ConnectionError(), RuntimeError("?")])
def test_other_errors_are_retried(error):
    assert not is_permanent(error)


def test_backoff_grows_and_is_capped():
    delays = [backoff_seconds(n) for n in range(1, 10)]
    assert delays == sorted(delays)
    assert delays[0] == 0.4 and delays[-1] == 5.0


def test_names_under_a_namespace():
    names = Names("t1.")
    assert names.exchange == "t1.hocba"
    assert names.dead_letter_exchange == "t1.hocba.dlx"
    assert names.queue("grades", "identity.student.registered.v1") == "t1.grades.identity.student.registered.v1"
    assert names.database("grades") == "t1_grades"
    assert Names().exchange == "hocba" and Names().database("sync") == "sync"


def test_queues_are_quorum_with_a_delivery_limit_and_dead_letter_exchange():
    queue = quorum_queue(Names(), "grades.x.v1", "x.v1", 7)
    assert queue.arguments == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": "hocba.dlx",
        "x-dead-letter-routing-key": "grades.x.v1",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert queue.durable
