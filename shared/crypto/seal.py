"""A producer's seal on content other services rely on: ES256 by the producer's certificate from the PKI.

The broker is not a trust boundary: a record version is believed to come from grades, and an
archived version from the archive, because each carries its producer's seal, not because of who
could publish on the exchange. A seal is a detached compact JWS (RFC 7515), `typ` "hocba-seal",
with the producer's certificate chain in `x5c`, over the RFC 8785 JSON of the claims it seals.
Whoever relies on the content checks the seal against the PKI's trust anchor and that its
certificate names the expected producer (`svc-grades`, `archive`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.contracts.archive import ArchivedRecord
from shared.contracts.grades import RecordVersion
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import TrustStore, ec_public_key, identity
from shared.crypto.jws import protected_header, sign_detached, verify_detached
from shared.crypto.record_signatures import ChainCache
from shared.crypto.signer import X509Signer

SEAL_TYPE = "hocba-seal"


def record_claims(record: RecordVersion, document_digest: str | None = None) -> dict[str, Any]:
    """What grades' seal on a record version binds: which version of whose record, and its content's digest."""
    return {
        "record_id": record.record_id,
        "version": record.version,
        "school_code": record.school_code,
        "school_year": record.school_year,
        "student_ref": record.student_ref,
        "digest": document_digest or sha256_hex(record.content),
    }


def archived_claims(records: Sequence[ArchivedRecord]) -> dict[str, Any]:
    """What the archive's seal on an announcement of archived versions binds: each version, where it is in the
    log and its content's digest, in the announcement's order.

    One seal covers the whole announcement: sync checks one signature for a chunk, not one for each record.
    """
    return {"records": [r.model_dump(mode="json", exclude={"content"}) for r in records]}


def seal(signer: X509Signer, claims: Mapping[str, Any]) -> str:
    """`signer`'s seal over `claims`."""
    return sign_detached(signer, canonical_json(dict(claims)), {"typ": SEAL_TYPE})


def seal_problems(
    sealed: str | None,
    claims: Mapping[str, Any],
    trust: TrustStore,
    producer: str,
    at: datetime,
    chains: ChainCache | None = None,
) -> list[str]:
    """Why `sealed` does not show that `producer` sealed exactly `claims`, with a certificate valid at `at` (none when it does).

    A seal states no time of its own: `at` is a time the checker trusts the seal existed by (now, when it
    arrives; the archive's admission time proven by a checkpoint, in a bundle), so a certificate revoked for
    key compromise after `at` does not void it.
    """
    if not sealed:
        return [f"it carries no seal by {producer}"]
    try:
        header = protected_header(sealed)
        chain = (chains or ChainCache()).chain(header["x5c"])
    except (ValueError, KeyError, TypeError, IndexError):
        return ["its seal cannot be read"]
    if header.get("alg") != "ES256" or header.get("typ") != SEAL_TYPE:
        return ["its seal is not an ES256 hocba seal"]
    key = ec_public_key(chain[0])
    if key is None or not verify_detached(key, sealed, canonical_json(dict(claims))):
        return ["its seal does not verify over what it says: the content is not the sealed content"]
    holder = identity(chain[0])
    if holder.subject_id != producer:
        return [f"it is sealed by '{holder.subject_id}', not by {producer}"]
    check = trust.validate(chain, at, purpose="checkpoint", trusted_at=at)
    return [f"its seal's certificate: {f}" for f in check.failed]
