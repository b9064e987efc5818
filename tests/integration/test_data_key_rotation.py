"""Each service's key ring rotated on the MongoDB-wire server while its reads go on: grades' and signing's records,
the archive's log (exports and the audit), sync's ministry payloads. Nothing personal is stored in clear meanwhile."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from services.archive import domain as archive_domain
from services.archive.repository import INDEXES as ARCHIVE_INDEXES
from services.archive.repository import MongoArchiveRepository
from services.grades.repository import INDEXES as GRADES_INDEXES
from services.grades.repository import MongoGradesRepository
from services.signing.domain import StoredRecord
from services.signing.repository import INDEXES as SIGNING_INDEXES
from services.signing.repository import MongoSigningRepository
from services.sync.domain import new_entry
from services.sync.repository import INDEXES as SYNC_INDEXES
from services.sync.repository import MongoOutboxRepository
from shared.at_rest import KeyRotation, RotationMetrics
from shared.contracts.archive import ArchivedRecord
from shared.contracts.base import Message
from shared.contracts.keys import (
    ArchiveKeyRotationProgress,
    DataKeyRotationProgress,
    GradesKeyRotationProgress,
    RotateArchiveKey,
    RotateGradesKey,
    RotateSigningKey,
    RotateSyncKey,
    SigningKeyRotationProgress,
    SyncKeyRotationProgress,
)
from shared.contracts.record import content_of
from shared.crypto.fields import DecryptionError
from shared.crypto.kek import FileKek
from shared.crypto.keyring import KeyRing, save_key_ring
from shared.crypto.vault import Vault
from tests.integration.conftest import service_database
from tests.records import identity, record_document
from tests.unit.signing.trust import Trust, make_trust, record_version, signed_record

COUNT = 23
STEP = 5
AT = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
PERSONAL_ID = "079214000123"


def with_identity(n: int) -> dict[str, object]:
    student = {"student_ref": f"student-{n:04d}", "identity": {**identity(f"0792140{n:05d}"), "full_name": f"Nguyễn Văn {n}"}}
    return {"student": student}


@dataclass
class Kept:
    """One service's store of sealed documents: how it is filled, read back whole, and what it calls its collection."""

    repo: object
    collection: str
    read_all: Callable[[], Awaitable[int]]
    command: type[Message]
    progress: type[DataKeyRotationProgress]


async def grades_kept(db, vault: Vault, trust: Trust) -> Kept:
    repo = MongoGradesRepository(db, vault)
    await repo.add_records([record_version(n, **with_identity(n)) for n in range(COUNT)])

    async def read_all() -> int:
        found = await repo.records("79000701", "2025-2026", 1)
        assert all(r.document["student"]["identity"]["personal_id"].startswith("0792140") for r in found)
        return len(found)

    return Kept(repo, "records", read_all, RotateGradesKey, GradesKeyRotationProgress)


async def signing_kept(db, vault: Vault, trust: Trust) -> Kept:
    repo = MongoSigningRepository(db, vault)
    records = [record_version(n, **with_identity(n)) for n in range(COUNT)]
    await repo.add_records([StoredRecord.of(r) for r in records])

    async def read_all() -> int:
        return len(await repo.records([r.key for r in records]))

    return Kept(repo, "records", read_all, RotateSigningKey, SigningKeyRotationProgress)


async def archive_kept(db, vault: Vault, trust: Trust) -> Kept:
    repo = MongoArchiveRepository(db, vault)
    entries = archive_domain.build_entries(0, [signed_record(trust, n, **with_identity(n)) for n in range(COUNT)], AT)
    await repo.append(entries)

    async def read_all() -> int:
        exported = [await repo.entry(e.record_id, e.version) for e in entries]
        audited = await repo.entries()
        assert [e.computed_leaf_hash() for e in audited] == [e.leaf_hash for e in entries], "the leaves hold"
        return sum(1 for e in exported if e is not None and not e.unreadable)

    return Kept(repo, "log", read_all, RotateArchiveKey, ArchiveKeyRotationProgress)


async def sync_kept(db, vault: Vault, trust: Trust) -> Kept:
    repo = MongoOutboxRepository(db, vault)
    archived = [
        ArchivedRecord(
            record_id=f"rec-{n:04d}", version=1, school_code="79000701", school_year="2025-2026",
            student_ref=f"student-{n:04d}", seq=n, entry_hash=f"{n:064x}", digest=f"{n + 1:064x}",
            content=content_of(record_document(f"rec-{n:04d}", 1, "79000701", "2025-2026", f"student-{n:04d}", **with_identity(n))),
        )
        for n in range(COUNT)
    ]
    outbox = [new_entry(r, AT) for r in archived]
    await repo.add_new(outbox)

    async def read_all() -> int:
        found = await repo.entries([e.key for e in outbox])
        assert all(e.payload["personal_id"].startswith("0792140") for e in found.values())
        return len(found)

    return Kept(repo, "outbox", read_all, RotateSyncKey, SyncKeyRotationProgress)


SERVICES = {
    "grades": (grades_kept, GRADES_INDEXES),
    "signing": (signing_kept, SIGNING_INDEXES),
    "archive": (archive_kept, ARCHIVE_INDEXES),
    "sync": (sync_kept, SYNC_INDEXES),
}


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("rotation-trust"))


@pytest.mark.parametrize("service", list(SERVICES))
async def test_a_rotation_re_encrypts_everything_in_steps_while_reads_go_on(service, mongo_client, settings, tmp_path, trust):
    fill, indexes = SERVICES[service]
    db = await service_database(mongo_client, settings, service, indexes)
    vault = Vault.at(tmp_path / "ring.json", FileKek(bytes(range(32))), service)
    kept = await fill(db, vault, trust)
    old_key = vault.current
    reads: list[int] = []

    async def read_while_rotating(event: Message) -> None:
        reads.append(await kept.read_all())

    registry = CollectorRegistry()
    rotation = KeyRotation(vault, kept.repo.sealed, kept.progress, trust.issuer.public_keys(service),
                           RotationMetrics(registry), read_while_rotating, per_step=STEP)
    outcome = await rotation.rotate(trust.staff.operator().signs(kept.command(message_id="rot-1")))

    final = outcome.reply
    assert isinstance(final, kept.progress) and final.finished and final.done == final.total == COUNT
    assert reads == [COUNT] * (1 + -(-COUNT // STEP)), "every read found everything, before and between the steps"
    assert final.key_id == vault.current != old_key
    assert await db[kept.collection].count_documents({"key_id": old_key}) == 0
    assert registry.get_sample_value("hocba_documents_reencrypted_total") == COUNT

    ring = vault.ring
    only_new = KeyRing({ring.current: ring.keys[ring.current]}, ring.current, ring.index_key, (ring.current,))
    save_key_ring(vault.path, only_new, vault.kek, service)
    vault.reload()
    assert await kept.read_all() == COUNT, "with the old key retired, everything still reads"


@pytest.mark.parametrize("service", list(SERVICES))
async def test_nothing_personal_is_stored_in_clear_and_another_ring_opens_nothing(service, mongo_client, settings, tmp_path, trust):
    fill, indexes = SERVICES[service]
    db = await service_database(mongo_client, settings, service, indexes)
    kept = await fill(db, Vault.at(tmp_path / "ring.json", FileKek(bytes(range(32))), service), trust)
    stored = [doc async for doc in db[kept.collection].find()]
    assert len(stored) == COUNT
    dumped = json.dumps(stored, default=repr, ensure_ascii=False)
    assert "0792140" not in dumped and "Nguyễn" not in dumped

    stranger = Vault.at(tmp_path / "another.json", FileKek(bytes(range(32))), service)
    sealed = kept.repo.sealed
    with pytest.raises(DecryptionError):
        stranger.documents.open(sealed.kind, sealed.owner(stored[0]), stored[0]["key_id"], stored[0][sealed.field])
