"""archive's log rules: entries chain from the head, and any tampering breaks the chain."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from services.archive import domain
from shared.contracts.signing import SignedRecord
from shared.crypto.canonical import digest
from shared.crypto.hashchain import GENESIS, chain_hash

AT = datetime(2026, 5, 21, tzinfo=UTC)


def test_entries_chain_from_the_empty_log(make_signed):
    records = [make_signed(n) for n in range(3)]
    entries = domain.build_entries(domain.EMPTY, records, AT)
    assert [e.seq for e in entries] == [0, 1, 2]
    assert entries[0].prev_hash == GENESIS
    assert [e.prev_hash for e in entries[1:]] == [e.entry_hash for e in entries[:-1]]
    first, signed = entries[0], records[0]
    assert first.content_digest == digest(
        {"record": signed.record.document, "signatures": [s.jws for s in signed.signatures]}
    )
    assert first.entry_hash == chain_hash(GENESIS, first.content_digest, 0)
    assert domain.verify_chain(entries) is None
    assert domain.head_after(domain.EMPTY, entries) == domain.Head(2, entries[-1].entry_hash)


def test_entries_continue_from_a_head_and_verify_from_it(make_signed):
    first = domain.build_entries(domain.EMPTY, [make_signed(0), make_signed(1)], AT)
    head = domain.head_after(domain.EMPTY, first)
    more = domain.build_entries(head, [make_signed(2)], AT)
    assert more[0].seq == 2 and more[0].prev_hash == first[-1].entry_hash
    assert domain.verify_chain(first + more) is None
    assert domain.verify_chain(more, start=head) is None
    assert domain.verify_chain(more) == 2


def test_a_tampered_document_is_detected_at_its_entry(make_signed):
    entries = domain.build_entries(domain.EMPTY, [make_signed(n) for n in range(4)], AT)
    entries[2] = replace(entries[2], document={**entries[2].document, "subjects": {"toan": {"year": 10}}})
    assert domain.verify_chain(entries) == 2


def test_a_dropped_signature_is_detected(make_signed):
    entries = domain.build_entries(domain.EMPTY, [make_signed(n) for n in range(2)], AT)
    entries[1] = replace(entries[1], signatures=())
    assert domain.verify_chain(entries) == 1


def test_a_rewritten_entry_with_recomputed_hashes_breaks_the_next_link(make_signed):
    entries = domain.build_entries(domain.EMPTY, [make_signed(n) for n in range(3)], AT)
    forged = domain.build_entries(domain.EMPTY, [make_signed(0, conduct="Khá")], AT)[0]
    assert domain.verify_chain([forged, *entries[1:]]) == 1


def test_removed_or_reordered_entries_are_detected(make_signed):
    entries = domain.build_entries(domain.EMPTY, [make_signed(n) for n in range(4)], AT)
    assert domain.verify_chain([entries[0], entries[2], entries[3]]) == 2
    assert domain.verify_chain([entries[1], entries[0]]) == 1
    assert domain.verify_chain([]) is None


def test_signatures_must_name_the_version_and_its_content(make_signed):
    good = make_signed(1)
    assert domain.signature_problems(good) == []
    assert domain.signature_problems(SignedRecord(record=good.record, signatures=[])) != []
    other = make_signed(2)
    mixed = SignedRecord(record=good.record, signatures=other.signatures)
    assert "is for rec-0002 v1" in domain.signature_problems(mixed)[0]
    altered = SignedRecord(record=make_signed(1, conduct="Khá").record, signatures=good.signatures)
    assert "other content" in domain.signature_problems(altered)[0]
