"""How failures are classified and described, retry back-off, bodies read or refused, and names under a namespace."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ValidationError

from shared.contracts import limits
from shared.contracts.base import Problem
from shared.contracts.grades import CloseTerm
from shared.contracts.identity import RegisterStudents
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from shared.messaging import (
    RETURNS_ALLOWED,
    TOO_LARGE,
    Topology,
    backoff_seconds,
    decode_body,
    describe_error,
    error_detail,
    field_path,
    is_permanent,
    problem,
    quorum_queue,
    refuse_oversized,
    validation_summary,
)
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
    """The queue's own limit leaves room, beyond the handler's 7 failures, for returns by consumers that stopped."""
    queue = quorum_queue(Names(), "grades.x.v1", "x.v1", 7)
    assert queue.arguments == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7 + RETURNS_ALLOWED,
        "x-dead-letter-exchange": "hocba.dlx",
        "x-dead-letter-routing-key": "grades.x.v1",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert queue.durable


def test_a_message_is_dead_lettered_from_the_queue_it_was_consumed_from_however_it_got_there():
    """Through the topic exchange a message has its contract's routing key; put straight into its queue (a replay
    by `hocba dlq replay`) it has the queue's name, which once made the edge name a queue that does not exist."""
    topology = Topology(Names("t1."), "grades", delivery_limit=5)
    queue = topology.queue_for(CloseTerm).name
    assert queue == "t1.grades.grades.term.close.v1"
    assert topology.arrived_on(CloseTerm.ROUTING_KEY) == queue
    assert topology.arrived_on(queue) == queue


# -- bad input gets a clear, harmless answer (issue 9, reproduction 6) -------------------------

PERSONAL_ID, FULL_NAME = "079214000123", "Nguyễn Văn An"


def roster_error(*rows: dict) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        RegisterStudents.model_validate({"students": list(rows)})
    return caught.value


def row(**identity) -> dict:
    person = {"personal_id": PERSONAL_ID, "full_name": FULL_NAME, "date_of_birth": "2014-09-05", "sex": "M"}
    enrolment = {"school_code": "79000701", "school_year": "2025-2026", "grade": 6, "class_name": "6A1"}
    return {"identity": {**person, **identity}, "enrolment": enrolment}


def test_a_validation_error_is_described_by_its_fields_and_kinds_never_its_values():
    no_sex = row()
    del no_sex["identity"]["sex"]
    error = roster_error(
        row(), row(personal_id=int(PERSONAL_ID), full_name=[FULL_NAME]), row(personal_id=PERSONAL_ID + "9"), no_sex
    )
    assert PERSONAL_ID[1:] in str(error) and FULL_NAME in str(error), "pydantic's own text quotes the message"

    described = describe_error(error)

    assert described == (
        "ValidationError: students.1.identity.personal_id: string_type; students.1.identity.full_name: string_type; "
        "students.2.identity.personal_id: string_too_long; students.3.identity.sex: missing"
    )
    assert error_detail(error) == described.removeprefix("ValidationError: ")


def test_the_body_parameter_is_no_part_of_a_field_path_and_a_key_that_is_no_field_name_is_not_repeated():
    assert field_path(("body", "students", 3, "identity", "personal_id")) == "students.3.identity.personal_id"
    assert field_path(("entries", 0, "qualities", "Nguyễn Văn An")) == "entries.0.qualities.*"
    assert field_path(("ratings", PERSONAL_ID)) == "ratings.*"
    assert field_path(("body",)) == "(message)"


def test_a_long_list_of_errors_is_cut_short():
    error = roster_error(*[row(sex="X")] * 25)
    assert validation_summary(error).endswith("; students.9.identity.sex: literal_error; 15 more")


def test_an_unexpected_error_is_told_by_its_type_and_hocba_errors_by_their_sentence():
    assert describe_error(KeyError(PERSONAL_ID)) == "KeyError"
    assert describe_error(ValueError(f"duplicate key: {FULL_NAME}")) == "ValueError"
    assert describe_error(Forbidden("not this school's principal")) == "Forbidden: not this school's principal"
    assert describe_error(InvalidMessage()) == "InvalidMessage"


def test_an_answered_error_says_as_little_and_fits_its_contract():
    assert problem("invalid", ValueError(PERSONAL_ID)) == Problem(code="invalid", message="ValueError")
    assert problem("forbidden", Forbidden("x" * 5_000)).message == "x" * limits.TEXT
    assert problem("invalid", roster_error(row(sex="X"))).message == "students.0.identity.sex: literal_error"


def test_input_nested_too_deep_for_python_is_permanent():
    assert is_permanent(RecursionError())


async def test_a_body_is_read_as_json_whatever_its_content_type():
    assert await decode_body(SimpleNamespace(body=b'{"n": 1}')) == {"n": 1}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"[" * 5_000 + b"]" * 5_000, "the body is nested too deeply to read"),
        (b"not json", "the body is not JSON"),
        (b'{"n": "\xff"}', "the body is not JSON"),
        (b'{"n": ' + b"9" * 5_000 + b"}", "the body is not JSON"),
    ],
)
async def test_a_body_that_cannot_be_read_is_invalid_at_once(body, said):
    with pytest.raises(InvalidMessage, match=said) as caught:
        await decode_body(SimpleNamespace(body=body))
    assert caught.value.reason == "invalid"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_body_over_the_limit_is_refused_unread():
    refuse_oversized(b"x" * 1024, 1024)
    with pytest.raises(InvalidMessage) as caught:
        refuse_oversized(b"x" * 1025, 1024)
    assert caught.value.reason == TOO_LARGE == "too-large"
    assert str(caught.value) == "the message has 1025 bytes, more than the 1024 a service reads"
