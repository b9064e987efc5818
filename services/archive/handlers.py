"""archive's use case: append a chunk of signed record versions to the log and report where they are."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from services.archive import domain
from services.archive.domain import Head, Key
from services.archive.metrics import ArchiveMetrics
from services.archive.repository import ArchivedRow, ArchiveRepository, Position
from shared.contracts.archive import ArchivedRecord, RecordsArchived
from shared.contracts.base import derived_id, utcnow
from shared.contracts.signing import RecordsCompleted, SignedRecord
from shared.crypto.canonical import digest
from shared.errors import InvalidMessage, TransientError

Clock = Callable[[], datetime]

#: Times an append is re-chained after another appender took the seqs it meant to use.
MAX_APPEND_ATTEMPTS = 10


class LogHead:
    """The log's head as this process knows it; this process appends one chunk at a time."""

    def __init__(self) -> None:
        self.head: Head | None = None
        self.lock = asyncio.Lock()

    async def load(self, repo: ArchiveRepository, metrics: ArchiveMetrics) -> Head:
        self.head = await repo.head()
        metrics.log_entries.set(self.head.size)
        return self.head


async def append_new(
    records: list[SignedRecord],
    repo: ArchiveRepository,
    state: LogHead,
    metrics: ArchiveMetrics,
    clock: Clock,
) -> dict[Key, Position]:
    """Append the versions not in the log yet; returns the log position of every one of `records`."""
    keys = [domain.key_of(r) for r in records]
    async with state.lock:
        head = state.head if state.head is not None else await state.load(repo, metrics)
        positions = await repo.positions(keys)
        pending = [r for r in records if domain.key_of(r) not in positions]
        attempts = 0
        while pending:
            if attempts == MAX_APPEND_ATTEMPTS:
                raise TransientError(f"the archive log kept moving; {len(pending)} versions not appended yet")
            attempts += 1
            entries = domain.build_entries(head, pending, clock())
            inserted = await repo.append(entries)
            written = entries[:inserted]
            metrics.archived.inc(inserted)
            positions.update({e.key: Position(e.seq, e.entry_hash, e.appended_at) for e in written})
            head = domain.head_after(head, written)
            if inserted < len(entries):
                # Another appender took the next seq, or archived one of these versions: look again.
                head = await repo.head()
                rest = pending[inserted:]
                positions.update(await repo.positions([domain.key_of(r) for r in rest]))
                pending = [r for r in rest if domain.key_of(r) not in positions]
            else:
                pending = []
        state.head = head
        metrics.log_entries.set(head.size)
    return positions


async def archive_records(
    event: RecordsCompleted,
    repo: ArchiveRepository,
    state: LogHead,
    metrics: ArchiveMetrics,
    clock: Clock = utcnow,
) -> RecordsArchived:
    """Archive each version once; report every version of the chunk, also those archived before."""
    problems = [p for signed in event.records for p in domain.signature_problems(signed)]
    if problems:
        raise InvalidMessage("; ".join(problems[:10]))
    by_key: dict[Key, SignedRecord] = {}
    for signed in event.records:
        by_key.setdefault(domain.key_of(signed), signed)
    unique = list(by_key.values())
    positions = await append_new(unique, repo, state, metrics, clock)
    await repo.add_rows(
        [
            ArchivedRow(
                record_id=r.record.record_id,
                version=r.record.version,
                seq=positions[domain.key_of(r)].seq,
                school_code=r.record.school_code,
                school_year=r.record.school_year,
                student_ref=r.record.student_ref,
                archived_at=positions[domain.key_of(r)].appended_at,
            )
            for r in unique
        ]
    )
    return RecordsArchived(
        message_id=derived_id(event.message_id, "archived"),
        actor=event.actor,
        records=[
            ArchivedRecord(
                record_id=r.record.record_id,
                version=r.record.version,
                school_code=r.record.school_code,
                school_year=r.record.school_year,
                student_ref=r.record.student_ref,
                seq=positions[domain.key_of(r)].seq,
                entry_hash=positions[domain.key_of(r)].entry_hash,
                digest=digest(r.record.document),
                document=r.record.document,
            )
            for r in unique
        ],
    )
