"""grades' composition: identity's snapshots are asked for by request, in bounded chunks, each signed by grades'
own certificate and saying why it asks."""

from __future__ import annotations

from services.grades.app import CERTIFICATE, IdentityLookup
from shared.auth import ServiceIdentity, verify_token
from shared.contracts.identity import LookupStudents, StudentSnapshots
from tests.unit.grades.builders import KEYS, snapshot


class FakeBus:
    """Answers LookupStudents as identity would: it knows every student whose reference does not end in 7."""

    def __init__(self) -> None:
        self.requests: list[tuple[LookupStudents, float]] = []

    async def request(self, message: LookupStudents, answer: type[StudentSnapshots], timeout: float) -> StudentSnapshots:
        self.requests.append((message, timeout))
        known = [r for r in message.student_refs if not r.endswith("7")]
        return answer(students=[snapshot(r) for r in known], missing=[r for r in message.student_refs if r not in known])


async def test_identity_is_asked_in_chunks_of_at_most_500_refs_each_signed_by_grades_for_a_purpose(pki):
    bus = FakeBus()
    grades = ServiceIdentity("grades", lambda: pki.signer(CERTIFICATE))
    refs = [f"s{n:04d}" for n in range(1201)]
    found = await IdentityLookup(bus, grades)(refs, "assembling the 2025-2026 records of school 79000701")
    assert [len(r.student_refs) for r, _ in bus.requests] == [500, 500, 201]
    assert [r for request, _ in bus.requests for r in request.student_refs] == refs
    assert {timeout for _, timeout in bus.requests} == {30.0}
    assert [s.student_ref for s in found] == [r for r in refs if not r.endswith("7")], "the 120 unknown ones left out"
    identity = KEYS.for_service("identity", services=pki.trust_store)
    for request, _ in bus.requests:
        assert verify_token(request, identity).is_service("grades")
        assert request.purpose == "assembling the 2025-2026 records of school 79000701"
