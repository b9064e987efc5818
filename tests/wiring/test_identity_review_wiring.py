"""grades' side of the review before signing, on the bus: a class's records set against identity's register,
which grades asks on its own behalf, answered to the class's reviewer and kept in grades' access log."""

from __future__ import annotations

from typing import TypeVar

import pytest

from services.grades.app import build_app
from services.grades.repository import InMemoryGradesRepository
from shared.auth import verify_token
from shared.contracts.access import AccessLog, ListGradesAccesses
from shared.contracts.base import Message
from shared.contracts.grades import CompareIdentities, IdentityComparison
from shared.crypto.pki import DevPki
from shared.errors import Refused
from shared.messaging import Bus
from shared.service import ServiceApp
from tests import records as builders
from tests.unit.grades.builders import (
    KEYS,
    SCHOOL,
    YEAR,
    enrolled,
    homeroom_teacher,
    principal,
    service_pki,
    snapshot,
    with_pki,
)
from tests.wiring.test_grades_wiring import identity_replier

R = TypeVar("R")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevPki:
    return service_pki(tmp_path_factory.mktemp("identity-review-wiring-pki"))


@pytest.fixture
def settings(settings, pki):
    return with_pki(settings, pki)


@pytest.fixture
async def repo() -> InMemoryGradesRepository:
    """s1 and s2 enrolled in 6A1, s3 in 6A2; s1's record as assembled, s2's with a name the register no longer has."""
    repo = InMemoryGradesRepository()
    await repo.enrol([enrolled("s1"), enrolled("s2"), enrolled("s3", class_name="6A2")])
    renamed = snapshot("s2").model_dump(mode="json")
    renamed["identity"]["full_name"] = "Nguyễn Văn Ân"
    await repo.add_records(
        [
            builders.record_version("rec-s1", 1, SCHOOL, YEAR, "s1", student=snapshot("s1").model_dump(mode="json")),
            builders.record_version("rec-s2", 1, SCHOOL, YEAR, "s2", student=renamed),
        ]
    )
    return repo


@pytest.fixture
def service(settings, repo) -> ServiceApp:
    return build_app(settings, repository=repo, issuer_keys=KEYS)


async def ask(wire, message: Message, answer: type[R]) -> R:
    """Ask as the command line does: on RabbitMQ through a connection of its own (grades asks identity while it
    answers, on its own connection), in memory through the service's test broker."""
    if not wire.real:
        return await wire.request(message, answer)
    client = Bus(wire.service.settings, "cli")
    await client.broker.connect()
    try:
        return await client.request(message, answer)
    finally:
        await client.broker.stop()
        await wire.settle()


async def test_a_classs_records_are_set_against_the_register_for_its_reviewer(service, repo, pki, wired):
    asked = identity_replier(service, {"s1", "s2", "s3"})
    by_principal = principal().signs(CompareIdentities(school_code=SCHOOL, school_year=YEAR, purpose="xem lại"))
    wrong_teacher = homeroom_teacher("6A2").signs(
        CompareIdentities(school_code=SCHOOL, school_year=YEAR, class_name="6A1")
    )
    async with wired(service) as wire:
        answer = await ask(wire, by_principal, IdentityComparison)
        with pytest.raises(Refused) as refused:
            await ask(wire, wrong_teacher, IdentityComparison)
        logs = {
            ref: await ask(wire, principal().signs(ListGradesAccesses(student_ref=ref)), AccessLog)
            for ref in ("s1", "s2", "s3")
        }
    class_6a1, class_6a2 = answer.classes
    [renamed] = class_6a1.findings
    assert (renamed.student_ref, renamed.record_id) == ("s2", "rec-s2")
    assert [(d.field, d.in_record, d.in_register) for d in renamed.differences] == [
        ("full_name", "Nguyễn Văn Ân", "Nguyễn Văn An")
    ]
    [without] = class_6a2.findings
    assert (without.student_ref, without.record_id) == ("s3", None)
    assert refused.value.reason == "forbidden"
    [lookup] = asked
    assert sorted(lookup.student_refs) == ["s1", "s2", "s3"]
    assert lookup.purpose == f"review of every class of {SCHOOL} {YEAR} by ht-1"
    identity = KEYS.for_service("identity", services=pki.trust_store)
    assert verify_token(lookup, identity).is_service("grades"), "grades asks on its own behalf"
    assert logs["s1"].entries == [], "a student with nothing to look at is not shown, nor logged"
    for ref, record in (("s2", "rec-s2"), ("s3", "")):
        [entry] = logs[ref].entries
        assert (entry.action, entry.subject, entry.record_id, entry.purpose) == ("review", "ht-1", record, "xem lại")
