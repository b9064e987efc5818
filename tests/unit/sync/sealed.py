"""What the archive sends sync, made as the archive makes it, for sync's tests at every layer.

Sync delivers an archived record version only when the archive's seal on its announcement verifies
and its document is the one its digest names, and a checkpoint only when the archive signed it. So
the tests' announcements are sealed, and their checkpoints signed, by the archive certificate of a
small development PKI, made once per test run; `trust` is that PKI's trust store, as sync's `Deps`
wants it. A checkpoint states the root of a real log (`LOG`: leaves made up from their positions), so the
consistency proofs `LogProofs` gives (as the archive would) link any two of them; `forked` makes the log an
operator rewrote.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.contracts.archive import ArchivedRecord, CheckpointIssued, RecordsArchived
from shared.crypto.archive_log import sign_checkpoint
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import TrustStore
from shared.crypto.merkle import MerkleTree, leaf_hash
from shared.crypto.pki import ARCHIVE_SUBJECT, DevPki, service_holders
from shared.crypto.seal import archived_claims, seal
from shared.crypto.signer import X509Signer

ORIGIN = "hocba.test/archive"


def _new_pki(prefix: str) -> DevPki:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    pki = DevPki(folder / "pki", b"p")
    pki.create(service_holders())
    return pki


@functools.cache
def dev_pki() -> DevPki:
    """The PKI these tests' archive (and grades) hold certificates from."""
    return _new_pki("hocba-sync-pki-")


@functools.cache
def foreign_pki() -> DevPki:
    """Another PKI with certificates of the same names: what an attacker can make for themselves."""
    return _new_pki("hocba-sync-foreign-pki-")


@functools.cache
def _trust_store() -> TrustStore:
    return dev_pki().trust_store()


def trust() -> TrustStore:
    """The trust store sync checks seals and checkpoints against (`Deps.trust`, `build_app(trust=...)`)."""
    return _trust_store()


def archive_signer() -> X509Signer:
    return dev_pki().signer(ARCHIVE_SUBJECT)


def announced(records: list[ArchivedRecord], signer: X509Signer | None = None, **fields: Any) -> RecordsArchived:
    """`records` announced as archived, under a seal over what they say by `signer` (the archive's certificate
    unless told); `fields` are the message's other fields (e.g. its `message_id`)."""
    return RecordsArchived(records=records, seal=seal(signer or archive_signer(), archived_claims(records)), **fields)


def archived_record(
    record_id: str,
    seq: int,
    document: dict[str, Any],
    *,
    version: int = 1,
    school_code: str = "79000701",
    student_ref: str = "s-0",
) -> ArchivedRecord:
    """An archived record version as the archive announces it: its digest is its document's."""
    return ArchivedRecord(
        record_id=record_id,
        version=version,
        school_code=school_code,
        school_year="2025-2026",
        student_ref=student_ref,
        seq=seq,
        entry_hash=f"{seq:064x}",
        digest=sha256_hex(canonical_json(document)),
        content=canonical_json(document),
    )


def log_of(size: int, fork_at: int | None = None) -> MerkleTree:
    """The archive's log of `size` entries; with `fork_at`, the log whose entries from that position on were rewritten."""
    return MerkleTree(
        leaf_hash(f"entry {seq}{' rewritten' if fork_at is not None and seq >= fork_at else ''}".encode())
        for seq in range(size)
    )


#: The archive's log in these tests, long enough for every checkpoint they sign.
LOG = log_of(1024)


class LogProofs:
    """The archive's consistency proofs, as sync asks for them (`handlers.ArchiveLog`), over `log` (`LOG` unless told);
    `asked` keeps each (first, second) asked."""

    def __init__(self, log: MerkleTree = LOG) -> None:
        self.log = log
        self.asked: list[tuple[int, int]] = []

    async def consistency(self, first: int, second: int) -> list[str]:
        self.asked.append((first, second))
        return [p.hex() for p in self.log.consistency_proof(first, second)]


def signed_checkpoint(
    tree_size: int,
    origin: str = ORIGIN,
    signer: X509Signer | None = None,
    issued_at: datetime | None = None,
    log: MerkleTree = LOG,
) -> CheckpointIssued:
    """A checkpoint of the archive log (`LOG` unless told) signed by `signer` (the archive's certificate unless told)."""
    checkpoint = sign_checkpoint(
        signer or archive_signer(), origin, tree_size, log.root(tree_size), issued_at or datetime.now(UTC)
    )
    return CheckpointIssued(checkpoint=checkpoint)
