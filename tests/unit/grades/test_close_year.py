"""Closing a school's year class by class: the work per class does not grow with the class, the records held at
once do not grow with the school, and a close cut short is finished by its redelivery under the same ids."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.grades import handlers
from services.grades.repository import InMemoryGradesRepository, TermAction, Write, entry_key
from shared.contracts.base import Message
from shared.contracts.grades import CloseYear, RecordsReady
from shared.crypto.canonical import canonical_json
from tests.records import record_documents
from tests.unit.grades.builders import SCHOOL, YEAR, enrolled, full_year, homeroom, principal
from tests.unit.grades.conftest import FakeLookup, Published

AT = datetime(2026, 5, 1, tzinfo=UTC)


class CountingRepository:
    """grades' in-memory repository, counting each call and the most students' entries and records it passed at once."""

    def __init__(self, inner: InMemoryGradesRepository) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        #: Every call by name, in order.
        self.log: list[str] = []
        self.most_students_read = 0
        self.most_records_stored = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any) -> Any:
            self.calls[name] += 1
            self.log.append(name)
            answer = await method(*args)
            if name == "entries_of":
                self.most_students_read = max(self.most_students_read, len({e.student_ref for e in answer}))
            if name == "add_records":
                self.most_records_stored = max(self.most_records_stored, len(args[0]))
            return answer

        return counted


async def school(classes: int, students: int) -> CountingRepository:
    """A school of `classes` grade-6 classes of `students` each, every entry of the year in, both terms closed."""
    repo = InMemoryGradesRepository()
    refs = {f"6A{c}": [f"s{c}-{n:03d}" for n in range(students)] for c in range(1, classes + 1)}
    await repo.enrol([enrolled(ref, class_name=name) for name, members in refs.items() for ref in members])
    everyone = [ref for members in refs.values() for ref in members]
    for kind, entries in (("subject", [e for r in everyone for e in full_year(r)]), ("homeroom", [h for r in everyone for h in homeroom(r)])):
        await repo.write(SCHOOL, YEAR, kind, [Write(entry_key(e), e, "m-1", "gv-1", AT) for e in entries])
    for term in (1, 2):
        await repo.set_term(SCHOOL, YEAR, TermAction(term, True, "ht-1", AT, f"lock-{term}"))
    return CountingRepository(repo)


def close() -> CloseYear:
    return principal().signs(CloseYear(message_id="close-1", school_code=SCHOOL, school_year=YEAR, occurred_at=AT))


async def closed(deps, repo: CountingRepository, per_message: int = 100, publish=None) -> tuple[list[RecordsReady], FakeLookup]:
    """Close the school's year; what it published, and what identity was asked."""
    lookup = FakeLookup({ref for ref, _ in repo.inner._enrolments})
    published = publish if publish is not None else Published()
    await handlers.close_year(close(), replace(deps, repo=repo, lookup=lookup, records_per_message=per_message, publish=published))
    return list(published), lookup


@pytest.mark.parametrize("students", [10, 40])
async def test_database_calls_per_class_are_the_same_for_a_class_of_10_and_of_40(deps, students):
    """One read of the class's entries and one insert of its records, however many students it has."""
    repo = await school(classes=2, students=students)
    events, lookup = await closed(deps, repo)
    school_once = {"term_statuses": 1, "enrolled": 1, "close_year": 1}
    per_class = {"entries_of": 1, "add_records": 1}
    assert dict(repo.calls) == {**school_once, **{call: 2 * n for call, n in per_class.items()}}
    assert len(lookup.asked) == 2, "one identity look-up per class"
    assert [len(e.records) for e in events] == [students, students], "one RecordsReady per class"


async def test_a_class_larger_than_a_message_is_assembled_a_message_at_a_time(deps):
    repo = await school(classes=1, students=25)
    events, lookup = await closed(deps, repo, per_message=10)
    assert [len(e.records) for e in events] == [10, 10, 5]
    assert [len(refs) for refs in lookup.asked] == [10, 10, 5]
    assert repo.calls["entries_of"] == repo.calls["add_records"] == 3
    assert repo.most_records_stored == 10


async def test_the_most_records_held_at_once_is_one_classs_for_a_school_of_3_classes_and_of_6(deps):
    """Memory follows the class, not the school: each class is read, assembled, stored and announced, then let go."""
    held = {}
    for classes in (3, 6):
        repo = await school(classes=classes, students=20)
        events, lookup = await closed(deps, repo)
        assert len({r.record_id for e in events for r in e.records}) == classes * 20
        held[classes] = (
            repo.most_students_read,
            repo.most_records_stored,
            max(len(e.records) for e in events),
            max(len(refs) for refs in lookup.asked),
        )
    assert held[3] == held[6] == (20, 20, 20, 20)


async def test_each_class_is_stored_and_announced_before_the_next_one_is_read(deps):
    repo = await school(classes=3, students=5)

    class Watching(Published):
        async def __call__(self, message: Message) -> None:
            repo.log.append("publish")
            await super().__call__(message)

    await closed(deps, repo, publish=Watching())
    steps = [step for step in repo.log if step in {"entries_of", "add_records", "publish"}]
    assert steps == ["entries_of", "add_records", "publish"] * 3


async def test_a_close_cut_short_is_finished_by_its_redelivery_with_the_same_messages(deps):
    """Stored but not announced (the broker failed after the first class): the redelivery stores nothing twice
    and announces every class's stored records under the ids an uninterrupted close gives them."""
    uninterrupted, _ = await closed(deps, await school(classes=3, students=4))

    class FailingAfterOne(Published):
        async def __call__(self, message: Message) -> None:
            if self:
                raise ConnectionError("broker gone")
            await super().__call__(message)

    repo = await school(classes=3, students=4)
    with pytest.raises(ConnectionError):
        await closed(deps, repo, publish=FailingAfterOne())
    stored_before = len(await repo.inner.records(SCHOOL, YEAR, 1))
    again, _ = await closed(deps, repo)

    assert stored_before == 8, "two classes stored when the broker failed"
    assert len(await repo.inner.records(SCHOOL, YEAR, 1)) == 12
    assert [e.message_id for e in again] == [e.message_id for e in uninterrupted]
    assert [[r.record_id for r in e.records] for e in again] == [[r.record_id for r in e.records] for e in uninterrupted]
    assert repo.calls["records_of"] == 2, "the stored versions read back for the two classes stored before"


async def test_each_record_is_made_canonical_once_and_sealed_over_those_bytes(deps, canonicalised):
    """grades writes each record's canonical bytes once, when it assembles it: the seal names their digest, and
    every service after it (signing, the archive, sync) keeps, signs and hashes those bytes without writing them
    again (each has its own count)."""
    repo = await school(classes=2, students=10)
    canonicalised.clear()
    events, _ = await closed(deps, repo)
    records = [r for e in events for r in e.records]
    made = record_documents(canonicalised)
    assert len(made) == len(records) == 20
    assert sorted(canonical_json(d) for d in made) == sorted(r.content for r in records)
