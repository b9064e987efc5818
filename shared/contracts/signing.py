"""Signing messages: the one-click batch request, work chunks, signatures and batch progress."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Notification, Reply, new_id
from shared.contracts.grades import RecordKey, RecordVersion
from shared.contracts.limits import (
    CODE,
    HASH,
    ID,
    JWS,
    LABEL,
    LINES,
    PROCESS,
    RECORDS,
    SCHOOL_CODE,
    SCHOOL_STUDENTS,
    SCHOOL_YEAR,
    SIGNATURES,
    SUBJECT,
    TEXT,
    WORDS,
    Certificate,
)
from shared.contracts.record import AmendmentReason

Role = Literal["homeroom_teacher", "principal", "school_seal"]

#: The order in which a record version is signed. Each signature names the digest of the one
#: before it, so the chain cannot be reordered or cut.
SIGNING_ORDER: tuple[Role, ...] = ("homeroom_teacher", "principal", "school_seal")


def seal_subject(school_code: str) -> str:
    """The subject id of a school's seal certificate (the school signs as an organisation)."""
    return f"seal-{school_code}"


class RequestSignBatch(Message):
    """Command: sign every record of a school year that still lacks `role`'s signature.

    The actor token names who signs: a homeroom teacher signs their class (`class_name`), the
    principal signs the school, and the school's seal follows the principal's signature.
    """

    ROUTING_KEY = "signing.batch.requested.v1"

    batch_id: str = Field(default_factory=new_id, max_length=ID)
    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    role: Role = "principal"
    #: The class a homeroom teacher signs; required for role homeroom_teacher.
    class_name: str | None = Field(None, max_length=CODE)


class SignWork(Message):
    """One chunk of a batch on the work queue that the signing workers compete for."""

    ROUTING_KEY = "signing.work.v1"

    batch_id: str = Field(max_length=ID)
    chunk_no: int = Field(ge=0)
    role: Role
    records: list[RecordKey] = Field(min_length=1, max_length=RECORDS)


class Signature(Model):
    record_id: str = Field(max_length=ID)
    version: int
    role: Role
    algorithm: Literal["ES256"] = "ES256"
    key_id: str = Field(max_length=ID)
    #: SHA-256 (hex) of the RFC 8785 canonical JSON of the record document.
    digest: str = Field(max_length=HASH)
    #: Compact JWS with detached payload.
    jws: str = Field(max_length=JWS)
    signed_at: datetime
    #: Subject id of the certificate holder (the person, or `seal-<school>` for the school's seal).
    signer: str | None = Field(None, max_length=ID)


class SignedRecord(Model):
    record: RecordVersion
    signatures: list[Signature] = Field(max_length=SIGNATURES)


class ChunkSigned(Message):
    """A worker finished one chunk; the batch coordinator counts it once."""

    ROUTING_KEY = "signing.chunk.signed.v1"

    batch_id: str = Field(max_length=ID)
    chunk_no: int
    signed: int
    worker: str = Field(max_length=PROCESS)
    #: Of those, how many now carry every signature (and so go to the archive).
    completed: int = 0


class RecordsCompleted(Message):
    """Event: record versions that now carry every required signature."""

    ROUTING_KEY = "signing.record.completed.v2"

    records: list[SignedRecord] = Field(min_length=1, max_length=RECORDS)
    #: The batch whose work completed them, so the archive can tell when a batch is all archived.
    batch_id: str | None = Field(None, max_length=ID)


class BatchProgress(Notification):
    ROUTING_KEY = "signing.batch.progress.v1"

    batch_id: str = Field(max_length=ID)
    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    chunks_done: int
    chunks_total: int
    records_signed: int
    records_total: int
    role: Role | None = None


class MissingEntry(Model):
    """An entry a record lacks, as grades lists it in the document's `missing`: a subject's result of a term
    (`subject`), or another entry of a term (`entry`: "homeroom" for the homeroom teacher's conduct, absences
    and comment). Names what is missing, never a value."""

    subject: str = Field("", max_length=SUBJECT)
    entry: str = Field("", max_length=CODE)
    term: int | None = None


class RecordRefused(Model):
    """A record version signing does not sign as it is, and why (`code` "incomplete": the entries it lacks;
    "signed": received again with other content after it was signed, and kept as signed)."""

    record_id: str = Field(max_length=ID)
    version: int
    class_name: str | None = Field(None, max_length=CODE)
    code: str = Field("incomplete", max_length=CODE)
    missing: list[MissingEntry] = Field(default_factory=list, max_length=LINES)


#: Where a class stands with its review before signing: never confirmed, confirmed as its records are now,
#: or confirmed and then changed (a record added, a new version).
ReviewStatus = Literal["not-reviewed", "reviewed", "changed-since-review"]


class ClassWaiting(Model):
    """A class whose records a batch left out because their review does not stand (`code`), said in words."""

    class_name: str = Field(max_length=CODE)
    #: The class's records (their current versions) that wait.
    records: int
    code: ReviewStatus
    reason: str = Field(max_length=TEXT)


class BatchCompleted(Message):
    """Event: every chunk of a batch is signed. The archive issues a checkpoint after it, so it is durable."""

    ROUTING_KEY = "signing.batch.completed.v1"

    batch_id: str = Field(max_length=ID)
    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    records_signed: int
    records_total: int
    role: Role | None = None
    class_name: str | None = Field(None, max_length=CODE)
    #: Records that now carry every signature: what the archive will have appended for this batch.
    records_completed: int = 0
    #: Records of the scope left out because an earlier role has not signed them yet.
    records_waiting: int = 0
    #: Record versions of the scope that are not signed as they are (incomplete ones), each with why.
    refused: list[RecordRefused] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)
    #: Classes of the scope whose records wait for their homeroom teacher's review, each with why.
    classes_waiting: list[ClassWaiting] = Field(default_factory=list, max_length=LINES)


class BatchRefused(Notification):
    """A sign-all request was refused: the wrong person, or a certificate that may not sign."""

    ROUTING_KEY = "signing.batch.refused.v1"

    batch_id: str = Field(max_length=ID)
    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    role: Role
    reason: str = Field(max_length=TEXT)
    #: Short machine-readable reason, as in the dead-letter header.
    code: str = Field(max_length=CODE)


class RequestAmendment(Message):
    """Command: replace an archived record version with a corrected one, for the issuing school only.

    `record` is the new version (a higher version number); it is signed again in the usual order
    before the archive accepts it as superseding `supersedes`.
    """

    ROUTING_KEY = "signing.amendment.requested.v2"

    record: RecordVersion
    supersedes: int = Field(ge=1)
    reason_code: AmendmentReason
    note: str = Field("", max_length=WORDS)


class AmendmentReceived(Notification):
    """Signing holds the amended version; it now awaits its signatures."""

    ROUTING_KEY = "signing.amendment.received.v1"

    record_id: str = Field(max_length=ID)
    version: int
    supersedes: int
    reason_code: AmendmentReason


class RecordsReceived(Notification):
    """Signing stored a chunk of record versions; they now await signature."""

    ROUTING_KEY = "signing.records.received.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    count: int
    source_message_id: str = Field(max_length=ID)
    #: Versions received again with other content that were kept as they are (code "signed": a signature is on
    #: the kept version; the record is corrected by an amendment once it is signed and sealed).
    refused: list[RecordRefused] = Field(default_factory=list, max_length=LINES)


# --- signatures held, asked by grades ----------------------------------------------------------


class HeldSignatures(Message):
    """Request: which of these record versions of a school year carry a signature, and whose.

    grades alone asks it, on its own behalf (its service certificate), before a year closed again replaces the first
    versions it assembled anew: a version that carries any signature is not replaced. Answered with
    `SignedVersions`. Names records and versions, never personal data.
    """

    ROUTING_KEY = "signing.signatures.held.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    records: list[RecordKey] = Field(min_length=1, max_length=RECORDS)


class SignedVersion(Model):
    """A record version that carries signatures: the roles that signed it, in signing order."""

    record_id: str = Field(max_length=ID)
    version: int
    roles: list[Role] = Field(min_length=1, max_length=len(SIGNING_ORDER))


class SignedVersions(Reply):
    """Of the versions asked about, those that carry any signature (the others carry none, or are not held)."""

    records: list[SignedVersion] = Field(default_factory=list, max_length=RECORDS)


# --- review before signing -------------------------------------------------------------------


class ReviewClasses(Message):
    """Request: signing's review of a school year's classes (or one class) before they are signed.

    For the school's principal or records administrator (every class), or a class's homeroom teacher (their
    class). Answered with `ClassReviews`. Names records, versions and missing entries, never personal data.
    """

    ROUTING_KEY = "signing.classes.review.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    class_name: str | None = Field(None, max_length=CODE)


class RecordChange(Model):
    """A record of a class as its last review confirmed it, and as signing holds it now (None: not there then)."""

    record_id: str = Field(max_length=ID)
    reviewed_version: int | None = None
    reviewed_digest: str | None = Field(None, max_length=HASH)
    version: int | None = None
    digest: str | None = Field(None, max_length=HASH)


class ClassReview(Model):
    """One class as signing holds it: its records, those it will not sign, how many its homeroom teacher signed, and
    where its review stands."""

    class_name: str = Field(max_length=CODE)
    #: The class's records (the current version of each) signing holds.
    records: int
    #: Those that say they are not complete, with the entries they lack: never signed as they are.
    incomplete: list[RecordRefused] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)
    status: ReviewStatus
    #: Who confirmed the last review, and when (None before any).
    reviewed_by: str | None = Field(None, max_length=ID)
    reviewed_at: datetime | None = None
    #: Of `records`, those that carry the homeroom teacher's signature (the current version of each).
    homeroom_signed: int = 0
    #: The records whose version or digest differs from the last review's (empty when none, or never reviewed).
    changes: list[RecordChange] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)
    #: Names the record versions shown (SHA-256 over each record id, version and digest): what a confirmation of
    #: this review sends back (`ConfirmReview.reviewed`).
    fingerprint: str = Field(max_length=HASH)


class ClassReviews(Reply):
    school_code: str = Field("", max_length=SCHOOL_CODE)
    school_year: str = Field("", max_length=SCHOOL_YEAR)
    classes: list[ClassReview] = Field(default_factory=list, max_length=LINES)


class ConfirmReview(Message):
    """Request: the class's homeroom teacher confirms that they reviewed its records as `reviewed` names them.

    `reviewed` is the fingerprint of the review they saw (`ClassReview.fingerprint`): a class whose records
    changed since is refused ("changed-since-review"), to be reviewed again. Answered with `ReviewConfirmed`.
    """

    ROUTING_KEY = "signing.review.confirm.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    class_name: str = Field(max_length=CODE)
    reviewed: str = Field(max_length=HASH)


class ReviewConfirmed(Reply):
    """The confirmation kept: the class's record versions it covers, and who confirmed them when."""

    class_name: str = Field("", max_length=CODE)
    records: int = 0
    #: Of those, the ones that are incomplete: confirmed as seen, and still never signed as they are.
    incomplete: int = 0
    fingerprint: str = Field("", max_length=HASH)
    confirmed_by: str = Field("", max_length=ID)
    confirmed_at: datetime | None = None


# --- the school's seal on a certified copy ------------------------------------------------------

#: The longest CMS signed attributes a copy's seal is asked for (base64 text): content type, message digest, signing
#: time and the signing certificate's reference take a few hundred bytes.
SIGNED_ATTRIBUTES = 8_000


class SealCopy(Message):
    """Request: the school's seal over a certified copy's CMS signed attributes (PAdES, `hocba archive print`).

    For the school's records administrator or principal, for their school, naming the archived record version the copy
    is of (one that carries every signature, the seal's included). `signed_attributes` is the DER of the CMS
    SignedAttributes (RFC 5652 §5.4: the SET OF Attribute, with content type and message digest): what the seal
    signs (ECDSA P-256 over its SHA-256), and nothing else: bytes that are not such a structure (a JWS signing
    input, say) are refused, so the seal's key never signs a record through this request. Answered with `CopySeal`;
    each request is kept in signing's access log.
    """

    ROUTING_KEY = "signing.copy.seal.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)
    #: Standard base64 of the DER SignedAttributes.
    signed_attributes: str = Field(min_length=1, max_length=SIGNED_ATTRIBUTES)
    purpose: str = Field("", max_length=LABEL)


class CopySeal(Reply):
    """The seal's signature over the signed attributes asked about, and its certificate chain."""

    #: Standard base64 of the ECDSA signature, r‖s (32 bytes each).
    signature: str = Field("", max_length=HASH * 2)
    #: The seal's certificate, then any CA certificate between it and the trust anchor (x5c: base64 DER): the
    #: signature is good only under signed attributes that name this certificate.
    chain: list[Certificate] = Field(default_factory=list, max_length=SIGNATURES)
    signed_at: datetime | None = None
