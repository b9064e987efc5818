"""The archive's rules: leaves, amendments, and an audit that names altered, removed and reordered entries."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.archive import domain
from services.archive.domain import ArchivedVersion, SupersededNotArchived
from shared.contracts.record import content_of
from shared.crypto.archive_log import sign_checkpoint
from shared.crypto.merkle import MerkleTree
from shared.errors import Forbidden, InvalidMessage

AT = datetime.now(UTC).replace(microsecond=0)


def entries(make_signed, count: int) -> list[domain.Entry]:
    return domain.build_entries(0, [make_signed(n) for n in range(count)], AT)


def checkpoint(trust, log: list[domain.Entry], size: int | None = None):
    size = len(log) if size is None else size
    tree = MerkleTree(bytes.fromhex(e.leaf_hash) for e in log)
    return sign_checkpoint(trust.signers.signer_for("archive"), "test", size, tree.root(size), AT)


def no_signature_problems(_) -> list[str]:
    return []


def test_a_leaf_commits_to_its_position_record_signatures_and_time(make_signed):
    [first, second] = entries(make_signed, 2)
    assert (first.seq, second.seq) == (0, 1) and first.archived_at == second.archived_at
    assert first.computed_leaf_hash() == first.leaf_hash
    assert replace(first, seq=1).computed_leaf_hash() != first.leaf_hash
    assert replace(first, signatures=first.signatures[:2]).computed_leaf_hash() != first.leaf_hash
    assert replace(first, archived_at="2020-01-01T00:00:00.000Z").computed_leaf_hash() != first.leaf_hash
    later = domain.build_entries(7, [make_signed(0)], AT)[0]
    assert later.seq == 7 and later.leaf_hash != first.leaf_hash


def test_an_intact_log_passes_the_audit(trust, make_signed):
    log = entries(make_signed, 6)
    report = domain.audit(log, [checkpoint(trust, log, 3), checkpoint(trust, log)], no_signature_problems)
    assert report.ok and not report.findings
    assert report.entries == 6 and report.checkpoints == 2 and len(report.passed) == 3


def test_the_audit_names_an_altered_entry(trust, make_signed):
    log = entries(make_signed, 6)
    signed = [checkpoint(trust, log)]
    altered = [*log[:2], replace(log[2], content=content_of({**log[2].document, "conduct": "Tốt"})), *log[3:]]
    report = domain.audit(altered, signed, no_signature_problems)
    assert not report.ok
    named = {f.seq for f in report.findings if f.seq is not None}
    assert named == {2}
    assert any("rec-0002 v1" in f.problem and "leaf hash" in f.problem for f in report.findings)
    assert any("no longer match the digest" in f.problem or "no longer matches" in f.problem for f in report.findings)
    assert any("no longer give the root" in f.problem for f in report.findings)


def test_the_audit_names_an_altered_entry_even_when_its_stored_leaf_hash_was_rewritten(trust, make_signed):
    log = entries(make_signed, 4)
    signed = [checkpoint(trust, log)]
    forged = replace(log[1], content=content_of({**log[1].document, "conduct": "Tốt"}))
    forged = replace(forged, leaf_hash=forged.computed_leaf_hash())
    report = domain.audit([log[0], forged, *log[2:]], signed, no_signature_problems)
    assert [f.seq for f in report.findings if f.seq is not None] == [1]
    assert any("no longer give the root" in f.problem for f in report.findings)


def test_the_audit_names_removed_and_reordered_entries(trust, make_signed):
    log = entries(make_signed, 5)
    signed = [checkpoint(trust, log)]
    removed = domain.audit([e for e in log if e.seq != 3], signed, no_signature_problems)
    assert any(f.seq == 3 and "removed" in f.problem for f in removed.findings)
    swapped = [log[0], replace(log[2], seq=1), replace(log[1], seq=2), *log[3:]]
    reordered = domain.audit(swapped, signed, no_signature_problems)
    assert {f.seq for f in reordered.findings if f.seq is not None} == {1, 2}
    cut = domain.audit(log[:3], signed, no_signature_problems)
    assert any("removed from the end" in f.problem for f in cut.findings)


def test_the_audit_reports_a_checkpoint_whose_signature_fails(trust, make_signed):
    log = entries(make_signed, 2)
    report = domain.audit(log, [checkpoint(trust, log)], lambda _: ["the signature does not verify"])
    assert not report.ok and "does not verify" in report.findings[0].problem


def test_a_first_version_needs_no_amendment_and_a_later_one_must_be_one(make_signed):
    domain.check_amendment(make_signed(1), [])
    with pytest.raises(InvalidMessage, match="must name the version"):
        domain.check_amendment(make_signed(1, 2), [ArchivedVersion(1, "79000701")])


def test_an_amendment_replaces_the_latest_version_of_its_own_school(make_signed):
    amendment = {"supersedes": 2, "reason": "grade-correction"}
    domain.check_amendment(make_signed(1, 3, amendment=amendment), [ArchivedVersion(1, "79000701"), ArchivedVersion(2, "79000701")])
    with pytest.raises(InvalidMessage, match="latest archived version is v3"):
        domain.check_amendment(make_signed(1, 4, amendment=amendment), [ArchivedVersion(v, "79000701") for v in (1, 2, 3)])
    with pytest.raises(Forbidden, match="may not amend"):
        domain.check_amendment(make_signed(1, 3, amendment=amendment), [ArchivedVersion(2, "79000999")])
    with pytest.raises(SupersededNotArchived):
        domain.check_amendment(make_signed(1, 3, amendment=amendment), [])
