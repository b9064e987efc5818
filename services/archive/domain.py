"""The archive log's rules: what an entry covers, how entries chain, how a chain is checked."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contracts.signing import SignedRecord
from shared.crypto.canonical import digest
from shared.crypto.hashchain import GENESIS, chain_hash

#: (record_id, version): one record version.
Key = tuple[str, int]


@dataclass(frozen=True)
class Head:
    """The last entry of the log: its seq and hash (seq -1 and the genesis hash when empty)."""

    seq: int
    entry_hash: str

    @property
    def size(self) -> int:
        return self.seq + 1


EMPTY = Head(seq=-1, entry_hash=GENESIS)


@dataclass(frozen=True)
class Entry:
    """One signed record version in the log. Only `document` and `signatures` are hashed content."""

    seq: int
    record_id: str
    version: int
    prev_hash: str
    content_digest: str
    entry_hash: str
    document: dict[str, Any]
    signatures: tuple[str, ...]
    appended_at: datetime

    @property
    def key(self) -> Key:
        return (self.record_id, self.version)


def key_of(signed: SignedRecord) -> Key:
    return (signed.record.record_id, signed.record.version)


def content_digest(document: dict[str, Any], signatures: Sequence[str]) -> str:
    """SHA-256 of the canonical {"record": document, "signatures": [compact JWS, …]}."""
    return digest({"record": document, "signatures": list(signatures)})


def build_entries(head: Head, records: Iterable[SignedRecord], appended_at: datetime) -> list[Entry]:
    """Entries for `records`, chained one after another from `head`."""
    entries: list[Entry] = []
    previous = head
    for signed in records:
        seq = previous.seq + 1
        jws = tuple(s.jws for s in signed.signatures)
        content = content_digest(signed.record.document, jws)
        entry_hash = chain_hash(previous.entry_hash, content, seq)
        entries.append(
            Entry(
                seq=seq,
                record_id=signed.record.record_id,
                version=signed.record.version,
                prev_hash=previous.entry_hash,
                content_digest=content,
                entry_hash=entry_hash,
                document=signed.record.document,
                signatures=jws,
                appended_at=appended_at,
            )
        )
        previous = Head(seq, entry_hash)
    return entries


def head_after(head: Head, entries: Sequence[Entry]) -> Head:
    return Head(entries[-1].seq, entries[-1].entry_hash) if entries else head


def verify_chain(entries: Iterable[Entry], start: Head = EMPTY) -> int | None:
    """Check entries in order from `start`: consecutive seqs, each content and link intact.

    Returns the seq of the first entry that breaks the chain, or None when it holds.
    """
    previous = start
    for entry in entries:
        if (
            entry.seq != previous.seq + 1
            or entry.prev_hash != previous.entry_hash
            or content_digest(entry.document, entry.signatures) != entry.content_digest
            or chain_hash(entry.prev_hash, entry.content_digest, entry.seq) != entry.entry_hash
        ):
            return entry.seq
        previous = Head(entry.seq, entry.entry_hash)
    return None


def signature_problems(signed: SignedRecord) -> list[str]:
    """Ways a signed record contradicts itself: no signatures, or one naming another version or content."""
    record = signed.record
    if not signed.signatures:
        return [f"{record.record_id} v{record.version} carries no signature"]
    expected = digest(record.document)
    return [
        f"{record.record_id} v{record.version}: {s.role}'s signature is for {s.record_id} v{s.version}"
        if (s.record_id, s.version) != (record.record_id, record.version)
        else f"{record.record_id} v{record.version}: {s.role}'s signature covers other content"
        for s in signed.signatures
        if (s.record_id, s.version) != (record.record_id, record.version) or s.digest != expected
    ]
