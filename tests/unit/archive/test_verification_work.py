"""What admitting a chunk costs, counted: each certificate chain is judged once per CRL, each document is made
canonical, hashed and base64-encoded once, each signature's header is read once. A new CRL is taken up at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.archive import domain, handlers
from shared.contracts.signing import RecordsCompleted
from shared.crypto import record_signatures
from shared.crypto.certs import TrustStore
from shared.errors import InvalidMessage
from tests.records import record_documents
from tests.unit.signing.trust import make_trust, signed_record

from .conftest import archive_deps

#: Chains a record of class 6A1 is checked against: its homeroom teacher's, the principal's, the school seal's
#: (signatures) and grades' (its seal).
CHAINS_PER_CLASS = 4


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, calls: Counter[str]) -> None:
    """Count the calls of `owner.name`, doing what it does."""
    real: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


def standings(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts each time a trust store works out what its CRLs say of a chain."""
    calls: Counter[str] = Counter()
    real = TrustStore._standing

    def counted(self: TrustStore, key: tuple[str, str], structure: Any) -> Any:
        calls["chains judged"] += 1
        return real(self, key, structure)

    monkeypatch.setattr(TrustStore, "_standing", counted)
    return calls


def class_6a1(trust: Any, first: int, count: int, signed_at: datetime) -> RecordsCompleted:
    """`count` records of class 6A1 from record `first` on: all signed by the same three certificates."""
    return RecordsCompleted(records=[signed_record(trust, 2 * n, signed_at=signed_at) for n in range(first, first + count)])


@pytest.fixture
def own(tmp_path):
    """A PKI of this test's own, as these tests revoke certificates."""
    return make_trust(tmp_path)


async def test_each_certificate_chain_is_judged_once_whatever_the_number_of_records(own, monkeypatch):
    now = datetime.now(UTC).replace(microsecond=0)
    deps = archive_deps(own, at=now)
    judged = standings(monkeypatch)
    await handlers.archive_records(class_6a1(own, 0, 3, now), deps)
    assert judged["chains judged"] == CHAINS_PER_CLASS
    await handlers.archive_records(class_6a1(own, 3, 12, now - timedelta(minutes=1)), deps)
    await handlers.archive_records(class_6a1(own, 15, 5, now), deps)
    assert judged["chains judged"] == CHAINS_PER_CLASS, "20 records, 80 chain validations, 4 chains judged"
    assert len(await deps.repo.entries()) == 20


async def test_a_new_crl_has_every_chain_judged_again_once(own, monkeypatch):
    now = datetime.now(UTC).replace(microsecond=0)
    deps = archive_deps(own, at=now)
    judged = standings(monkeypatch)
    await handlers.archive_records(class_6a1(own, 0, 4, now), deps)
    own.pki.revoke("gvcn-79000701-6A2", "affiliation_changed", at=now - timedelta(minutes=1))
    await handlers.archive_records(class_6a1(own, 4, 4, now), deps)
    await handlers.archive_records(class_6a1(own, 8, 4, now), deps)
    assert judged["chains judged"] == 2 * CHAINS_PER_CLASS


async def test_a_certificate_revoked_after_its_chain_was_judged_voids_the_signatures_made_since(own, monkeypatch):
    """A chain judged clean under one CRL is not believed under the next: the principal's certificate, revoked
    after the first chunk was admitted, voids the principal's signatures made after the revocation."""
    now = datetime.now(UTC).replace(microsecond=0)
    deps = archive_deps(own, at=now)
    await handlers.archive_records(class_6a1(own, 0, 4, now), deps)
    own.pki.revoke("ht-79000701", "affiliation_changed", at=now - timedelta(minutes=1))
    with pytest.raises(InvalidMessage, match="revoked .* reason affiliation_changed, before the signing time"):
        await handlers.archive_records(class_6a1(own, 4, 4, now), deps)
    before = class_6a1(own, 8, 2, now - timedelta(minutes=2))
    assert len((await handlers.archive_records(before, deps)).publish[0].records) == 2, "signed before it: they stand"
    assert len(await deps.repo.entries()) == 6


async def test_each_document_is_hashed_and_encoded_once_never_made_canonical_and_each_header_read_once(
    own, monkeypatch, canonicalised
):
    """Per record: no RFC 8785 serialisation (the content arrives as the bytes that were signed), one SHA-256 for
    the archive (the signature check takes its own digest for its report), one base64url encoding of the content
    for its three signatures, and no second reading of a signature's header for its signing time."""
    now = datetime.now(UTC).replace(microsecond=0)
    deps = archive_deps(own, at=now)
    chunk = class_6a1(own, 0, 10, now)
    canonicalised.clear()
    calls: Counter[str] = Counter()
    counting(monkeypatch, domain, "sha256_hex", calls)
    counting(monkeypatch, domain, "protected_header", calls)
    counting(monkeypatch, record_signatures, "b64url", calls)
    outcome = await handlers.archive_records(chunk, deps)
    assert calls == Counter(sha256_hex=10, b64url=10)
    assert record_documents(canonicalised) == []
    assert [r.content for r in outcome.publish[0].records] == [s.record.content for s in chunk.records]
