"""Signing rules: what may be signed at all, who may sign what, in which order, how a batch is cut into chunks,
what a signature says, and the review of a class that comes before its signatures."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

from asn1crypto import cms

from shared.auth import Actor
from shared.contracts.base import Acting
from shared.contracts.grades import RecordVersion, VersionKey
from shared.contracts.signing import (
    SIGNING_ORDER,
    ClassReview,
    ClassWaiting,
    MissingEntry,
    RecordChange,
    RecordRefused,
    RequestSignBatch,
    ReviewStatus,
    Role,
    Signature,
    SignedVersion,
    SignedVersions,
    seal_subject,
)
from shared.crypto.canonical import canonical_json, sha256_hex
from shared.crypto.certs import CertIdentity
from shared.crypto.record_signatures import signature_digest
from shared.errors import Forbidden, NotFound

#: The roles a record version needs, in the order they sign. Each signature names the digest of
#: the one before it, so the chain cannot be reordered or cut.
REQUIRED_ROLES: tuple[Role, ...] = SIGNING_ORDER

#: The role whose signature completes a record version: it signs only after every other (`may_sign`), so storing
#: it is what makes the version complete, and what leaves it owed to the archive until it is announced.
COMPLETING_ROLE: Role = REQUIRED_ROLES[-1]

#: What one batch of a role signs. The school's seal follows the principal's signature within the
#: same chunk: the principal's one click signs and seals (ký và đóng dấu), as on paper, where the
#: principal holds the school's seal. A `school_seal` batch (requested by the principal) seals what
#: carries the principal's signature but no seal yet.
BATCH_ROLES: dict[Role, tuple[Role, ...]] = {
    "homeroom_teacher": ("homeroom_teacher",),
    "principal": ("principal", "school_seal"),
    "school_seal": ("school_seal",),
}

OPEN = "open"
COMPLETED = "completed"
#: A batch a signer's certificate stopped (revoked, expired during it): its remaining chunks are neither signed, nor
#: published again, nor taken up by another click; a new click plans what is left once the certificate is renewed.
REFUSED = "refused"


class SignerRefused(Forbidden):
    """A signature by the wrong person, or with a certificate that may not sign; `reason` says which."""


class ReviewRefused(Forbidden):
    """A class that may not be signed yet: its review does not stand (`reason`: "not-reviewed" or
    "changed-since-review"), or its confirmation names other records than it holds ("changed-since-review")."""


@dataclass(frozen=True)
class StoredRecord:
    """A record version as signing keeps it: what names it, and its document as the exact bytes that are signed.

    The document is kept as the RFC 8785 canonical bytes the version arrived with, and their digest:
    every signature is made over those bytes, so signing never serialises a document. What a plan
    or a check needs to know about a version (its school year, its class) is kept beside the bytes,
    so nothing has to read the document again to find it.
    """

    record_id: str
    version: int
    school_code: str
    school_year: str
    student_ref: str
    #: grades' seal over the version; None for an amended version (the school's request stands for it).
    seal: str | None
    class_name: str | None
    #: The document's RFC 8785 canonical bytes: what every signature of this version is made over.
    canonical: bytes
    #: SHA-256 (hex) of `canonical`, as received.
    digest: str
    #: What the document says of itself: every entry the record needs is there; and those that are not.
    complete: bool = True
    missing: tuple[MissingEntry, ...] = ()

    @classmethod
    def of(cls, record: RecordVersion) -> StoredRecord:
        """`record` as it is kept: its content as it came, hashed, the class it names and whether it is complete."""
        fields = record.fields
        return cls(
            record_id=record.record_id,
            version=record.version,
            school_code=record.school_code,
            school_year=record.school_year,
            student_ref=record.student_ref,
            seal=record.seal,
            class_name=fields.class_name,
            canonical=record.content,
            digest=sha256_hex(record.content),
            complete=fields.complete,
            missing=missing_entries(fields.missing),
        )

    def held(self) -> Held:
        """What a plan or a review needs of this version: no more than its names, digest and completeness."""
        return Held(self.record_id, self.version, self.class_name, self.digest, self.complete, self.missing)

    @property
    def key(self) -> VersionKey:
        return (self.record_id, self.version)

    @property
    def scope(self) -> tuple[str, str]:
        """(school_code, school_year): what a batch selects records by."""
        return (self.school_code, self.school_year)

    def record_version(self) -> RecordVersion:
        """The version as messages carry it: the kept bytes as its content.

        Not validated again: the bytes are the ones received, and their digest is checked before
        anything is signed over them.
        """
        return RecordVersion.model_construct(
            record_id=self.record_id,
            version=self.version,
            school_code=self.school_code,
            school_year=self.school_year,
            student_ref=self.student_ref,
            content=self.canonical,
            seal=self.seal,
        )


@dataclass(frozen=True)
class Batch:
    """One "sign all" request: its plan (the chunks), who signs, and how far the workers have got."""

    batch_id: str
    school_code: str
    school_year: str
    role: Role
    #: The plan: each chunk's record versions. Empty when the batch was read without it (counting a
    #: chunk needs only the totals, and a plan grows with the school).
    chunks: tuple[tuple[VersionKey, ...], ...]
    started_at: datetime
    chunks_total: int
    records_total: int
    status: str = OPEN
    done_chunks: frozenset[int] = field(default_factory=frozenset)
    records_signed: int = 0
    completed_at: datetime | None = None
    #: Subject id of the person whose certificate signs the batch's first role.
    signer: str = ""
    class_name: str | None = None
    records_completed: int = 0
    records_waiting: int = 0
    #: Who asked for the batch (their token was checked then): what the batch's events say in `by`.
    requested_by: Acting | None = None
    #: Records of the scope the batch does not sign as they are (incomplete), each with why.
    refused: tuple[RecordRefused, ...] = ()
    #: Classes of the scope whose records wait for their review, each with why.
    classes_waiting: tuple[ClassWaiting, ...] = ()
    #: Classes whose records a chunk left unsigned (their review no longer saw them as held), by chunk number.
    held_back: Mapping[int, tuple[ClassWaiting, ...]] = field(default_factory=dict)
    #: When the batch last moved: planned, a chunk counted, or its unfinished chunks published again. None for a
    #: batch stored before this was kept (its start then stands for it).
    progressed_at: datetime | None = None

    @property
    def waiting(self) -> tuple[ClassWaiting, ...]:
        """Every class the batch leaves waiting for its review: those its plan named, then those its chunks held back."""
        return waiting_together(
            [*self.classes_waiting, *(c for chunk_no in sorted(self.held_back) for c in self.held_back[chunk_no])]
        )

    def holding_back(self, chunk_no: int, classes: tuple[ClassWaiting, ...]) -> Batch:
        """The batch once chunk `chunk_no` left `classes`' records unsigned (said again, it says the same)."""
        return replace(self, held_back={**self.held_back, chunk_no: classes})

    @property
    def all_chunks_done(self) -> bool:
        return len(self.done_chunks) >= self.chunks_total

    @property
    def unfinished_chunks(self) -> tuple[int, ...]:
        """The chunks of the plan not counted yet, in order."""
        return tuple(n for n in range(self.chunks_total) if n not in self.done_chunks)

    @property
    def last_progress(self) -> datetime:
        """When the batch last moved (`progressed_at`, or its start for a batch stored before that was kept)."""
        return self.progressed_at or self.started_at

    def stalled(self, before: datetime) -> bool:
        """Open, and not moved since `before`: a chunk of it was dead-lettered, or is held by nothing that finishes it."""
        return self.status == OPEN and self.last_progress <= before

    @property
    def roles(self) -> tuple[Role, ...]:
        return BATCH_ROLES[self.role]

    def signer_of(self, role: Role) -> str:
        """Whose certificate makes `role`'s signature in this batch."""
        return signer_subject(role, self.signer, self.school_code)

    def counted(self, chunk_no: int, signed: int, completed: int = 0) -> Batch:
        """The batch after chunk `chunk_no` is counted (unchanged if it was counted before)."""
        if chunk_no in self.done_chunks:
            return self
        return replace(
            self,
            done_chunks=self.done_chunks | {chunk_no},
            records_signed=self.records_signed + signed,
            records_completed=self.records_completed + completed,
        )


def resumes(request: RequestSignBatch, batch: Batch) -> bool:
    """Whether a new click `request` takes up the unfinished `batch` again: the same school year, and the same signing
    (a class's homeroom teacher their class's batch; the principal the school's batches, its seal's too)."""
    if (batch.school_code, batch.school_year) != (request.school_code, request.school_year) or batch.status != OPEN:
        return False
    if request.role == "homeroom_teacher":
        return batch.role == "homeroom_teacher" and batch.class_name == request.class_name
    return batch.role in BATCH_ROLES["principal"] and request.role in BATCH_ROLES["principal"]


def signer_subject(role: Role, person: str, school_code: str) -> str:
    """The subject id whose certificate makes `role`'s signature: the person, or the school's seal."""
    return seal_subject(school_code) if role == "school_seal" else person


def plan_chunks(keys: Iterable[VersionKey], per_chunk: int) -> tuple[tuple[VersionKey, ...], ...]:
    """Cut the keys, in a stable order, into chunks of at most `per_chunk` record versions."""
    if per_chunk < 1:
        raise ValueError("a chunk holds at least one record version")
    ordered = sorted(set(keys))
    return tuple(tuple(ordered[i : i + per_chunk]) for i in range(0, len(ordered), per_chunk))


def new_batch(
    request: RequestSignBatch, signer: str, unsigned: Iterable[VersionKey], per_chunk: int, started_at: datetime, waiting: int = 0
) -> Batch:
    """The plan of `request`: chunks over the records that lack its role's signature; with none it is complete at once.

    `signer` is the person whose certificate signs the batch's first role; `waiting` counts the
    records that cannot be signed yet (the role before has not signed them).
    """
    chunks = plan_chunks(unsigned, per_chunk)
    return Batch(
        batch_id=request.batch_id,
        school_code=request.school_code,
        school_year=request.school_year,
        role=request.role,
        chunks=chunks,
        started_at=started_at,
        chunks_total=len(chunks),
        records_total=sum(len(chunk) for chunk in chunks),
        status=OPEN if chunks else COMPLETED,
        completed_at=None if chunks else started_at,
        progressed_at=started_at,
        signer=signer,
        class_name=request.class_name,
        records_waiting=waiting,
    )


# --- who may sign ----------------------------------------------------------------------------


def authorise(actor: Actor, role: Role, school_code: str, class_name: str | None) -> None:
    """Refuse a request by anyone but that class's homeroom teacher or that school's principal."""
    if role == "homeroom_teacher":
        if not class_name:
            raise SignerRefused("a homeroom teacher's batch names the class it signs", reason="invalid")
        if actor.school_code != school_code or not actor.is_homeroom_teacher_of(class_name):
            raise SignerRefused(
                f"{actor.subject} is not the homeroom teacher of class {class_name} at school {school_code}",
                reason="wrong-signer",
            )
        return
    if not actor.is_principal_of(school_code):
        raise SignerRefused(f"{actor.subject} is not the principal of school {school_code}", reason="wrong-signer")


def authorise_amendment(actor: Actor, school_code: str, record_id: str) -> None:
    """Refuse an amendment asked for by anyone but the issuing school's principal or records administrator."""
    if actor.school_code != school_code or not (actor.has("principal") or actor.has("school_admin")):
        raise SignerRefused(
            f"{actor.subject} may not amend {record_id}: only the issuing school ({school_code}) "
            "may, through its principal or records administrator",
            reason="wrong-school",
        )


def certificate_problem(holder: CertIdentity, subject_id: str, role: Role, school_code: str) -> str | None:
    """Why a certificate may not make `role`'s signature for `subject_id` at `school_code`, if it may not."""
    if holder.subject_id != subject_id:
        return f"the certificate names {holder.subject_id or 'nobody'}, not {subject_id}"
    if holder.role != role:
        return f"{subject_id}'s certificate is for {holder.role or 'no role'}, not {role}"
    if holder.school_code != school_code:
        return f"{subject_id}'s certificate is for school {holder.school_code or '?'}, not {school_code}"
    return None


# --- the order of signatures -----------------------------------------------------------------


def previous_role(role: Role, order: Sequence[Role] = REQUIRED_ROLES) -> Role | None:
    """The role that signs just before `role`, or None when `role` signs first."""
    if role not in order:
        return None
    index = order.index(role)
    return order[index - 1] if index else None


def may_sign(role: Role, present: Mapping[Role, Signature], order: Sequence[Role] = REQUIRED_ROLES) -> bool:
    """`role` may sign once, and only after every role before it in `order`."""
    if role in present:
        return False
    before = order[: order.index(role)] if role in order else ()
    return all(r in present for r in before)


def is_complete(present: Mapping[Role, Signature], required: Sequence[Role] = REQUIRED_ROLES) -> bool:
    return all(role in present for role in required)


def in_role_order(present: Mapping[Role, Signature], order: Sequence[Role] = REQUIRED_ROLES) -> list[Signature]:
    """The signatures in signing order; roles outside `order` follow by name."""
    rank = {role: i for i, role in enumerate(order)}
    return [present[r] for r in sorted(present, key=lambda r: (rank.get(r, len(rank)), r))]


def prev_digest(
    role: Role, present: Mapping[Role, Signature], order: Sequence[Role] = REQUIRED_ROLES
) -> str | None:
    """`prev` of `role`'s signature: the digest of the previous role's, or None for the first role."""
    before = previous_role(role, order)
    return signature_digest(present[before].jws) if before is not None else None


def whole_milliseconds(moment: datetime) -> datetime:
    """`moment` as the database keeps it (BSON dates hold milliseconds), so header and row agree."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def signature_header(record: StoredRecord, role: Role, signed_at: datetime, prev: str | None) -> dict[str, Any]:
    """The protected header fields that bind a signature to one record version, role, time and chain."""
    return {
        "record_id": record.record_id,
        "version": record.version,
        "role": role,
        "digest": record.digest,
        "signed_at": signed_at.isoformat(),
        "prev": prev,
    }


def amended_document(document: Mapping[str, Any], supersedes: int, reason_code: str, note: str, by: str) -> dict[str, Any]:
    """The amended version's document: it names the version it supersedes and why, under the signatures."""
    return {**document, "amendment": {"supersedes": supersedes, "reason": reason_code, "note": note, "requested_by": by}}


@dataclass(frozen=True)
class Owed:
    """A record version its stored signatures complete that was not announced to the archive yet: which version, and
    the batch whose work completed it."""

    key: VersionKey
    batch_id: str | None


# --- what may be signed at all ---------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """A record version signing holds, as a plan or a review sees it: its names, digest and completeness."""

    record_id: str
    version: int
    class_name: str | None
    #: SHA-256 (hex) of the version's canonical bytes.
    digest: str
    complete: bool = True
    missing: tuple[MissingEntry, ...] = ()

    @property
    def key(self) -> VersionKey:
        return (self.record_id, self.version)

    @property
    def incomplete(self) -> bool:
        """The document says it lacks entries: `complete` false, or anything named in `missing`."""
        return not self.complete or bool(self.missing)

    def refusal(self) -> RecordRefused | None:
        """Why this version is never signed as it is, or None when it may be."""
        if not self.incomplete:
            return None
        return RecordRefused(
            record_id=self.record_id, version=self.version, class_name=self.class_name, missing=list(self.missing)
        )


def missing_entries(items: Iterable[Mapping[str, Any]]) -> tuple[MissingEntry, ...]:
    """The document's `missing` list as entries: a subject's term (`subject`), or another entry of a term (`entry`).

    Only names are kept (the subject, the kind of entry, the term); an item of another shape is named by its keys.
    """
    entries = []
    for item in items:
        term = item.get("term")
        subject, entry = str(item.get("subject") or ""), str(item.get("entry") or "")
        if not subject and not entry:
            entry = ",".join(sorted(k for k in item if k != "term"))[:50] or "entry"
        entries.append(MissingEntry(subject=subject, entry=entry, term=term if isinstance(term, int) else None))
    return tuple(entries)


def signable(record: Held | StoredRecord) -> bool:
    """A record whose document says it is not complete is never signed, by anyone: not by its homeroom
    teacher, not by the principal, not with the school's seal. It waits for a complete version."""
    return record.complete and not record.missing


def replacement_refusal(kept: Held, present: Mapping[Role, Signature]) -> RecordRefused | None:
    """Why a version received again with other content may not replace the one kept; None when it may.

    A version nobody has signed is not yet a record: when the school reopens a term after the year's close and
    corrects it, the version assembled again replaces it (and its class's review no longer stands). Once any
    signature is on it, it stays as it was signed: a correction is then an amendment, a new version, after the
    school has signed and sealed this one.
    """
    if not present:
        return None
    return RecordRefused(record_id=kept.record_id, version=kept.version, class_name=kept.class_name, code="signed")


def authorise_signatures_question(actor: Actor) -> None:
    """Which versions carry signatures is asked by grades alone, on its own behalf (its service certificate), before
    it replaces a first version it assembled again."""
    if not actor.is_service("grades"):
        raise Forbidden(
            f"{actor.subject} may not ask which record versions carry signatures: only the grades service does"
        )


def signed_versions(
    keys: Iterable[VersionKey], present: Mapping[VersionKey, Mapping[Role, Signature]]
) -> SignedVersions:
    """Of the versions `keys`, those that carry any signature (`present`: what is held), each with the roles that
    signed it in signing order; in record order."""
    return SignedVersions(
        records=[
            SignedVersion(record_id=key[0], version=key[1], roles=[r for r in SIGNING_ORDER if r in present[key]])
            for key in sorted(set(keys))
            if present.get(key)
        ]
    )


# --- the review before signing ---------------------------------------------------------------

#: A record version as a review confirms it: (record id, version, digest in hex).
Reviewed = tuple[str, int, str]


def fingerprint(versions: Iterable[Reviewed]) -> str:
    """SHA-256 (hex) over the record versions a review shows, in record order: what a confirmation names."""
    return sha256_hex(canonical_json(sorted([rid, version, digest] for rid, version, digest in versions)))


@dataclass(frozen=True)
class Review:
    """A homeroom teacher's confirmation that they reviewed their class as these record versions say it."""

    review_id: str
    school_code: str
    school_year: str
    class_name: str
    records: tuple[Reviewed, ...]
    confirmed_by: Acting
    confirmed_at: datetime

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.records)

    @cached_property
    def covered(self) -> frozenset[Reviewed]:
        return frozenset(self.records)


def confirmed_as_held(record: Held | StoredRecord, review: Review | None) -> bool:
    """A record version is signed only as its class's latest confirmed review saw it: that record, that version,
    that digest. Checked when a batch is planned and again when each chunk is signed, for a version can be
    replaced (`replacement_refusal`) or the class reviewed again in between."""
    return review is not None and (record.record_id, record.version, record.digest) in review.covered


def may_be_signed(record: Held | StoredRecord, review: Review | None) -> bool:
    """Complete (`signable`) and confirmed as it is held by its class's latest review (`confirmed_as_held`)."""
    return signable(record) and confirmed_as_held(record, review)


def latest_reviews(reviews: Iterable[Review]) -> dict[str, Review]:
    """Each class's latest confirmed review, by class name."""
    latest: dict[str, Review] = {}
    for review in reviews:
        if review.class_name not in latest or latest[review.class_name].confirmed_at < review.confirmed_at:
            latest[review.class_name] = review
    return latest


def held_back(records: Iterable[Held | StoredRecord], reviews: Mapping[str, Review]) -> tuple[ClassWaiting, ...]:
    """The classes of complete record versions a chunk leaves unsigned because their class's latest review did not
    see them as they are held (class order), as a batch reports them."""
    by_class: dict[str, int] = {}
    for record in records:
        class_name = record.class_name or ""
        if signable(record) and not confirmed_as_held(record, reviews.get(class_name)):
            by_class[class_name] = by_class.get(class_name, 0) + 1
    return tuple(
        ClassWaiting(
            class_name=name,
            records=count,
            code="changed-since-review" if name in reviews else "not-reviewed",
            reason=why_held_back(name, count, reviews.get(name)),
        )
        for name, count in sorted(by_class.items())
    )


def why_held_back(class_name: str, count: int, review: Review | None) -> str:
    if review is None:
        return (
            f"class {class_name} has not been reviewed: {count} of its record(s) were left unsigned; its homeroom "
            "teacher reviews the class and confirms the review before anyone signs them"
        )
    return (
        f"class {class_name} changed since its homeroom teacher ({review.confirmed_by.subject}) confirmed its review "
        f"at {review.confirmed_at:%Y-%m-%d %H:%M} UTC: {count} of its record(s) changed after the batch was planned "
        "and were left unsigned; the homeroom teacher reviews the class again and confirms it before anyone signs them"
    )


def waiting_together(waiting: Iterable[ClassWaiting]) -> tuple[ClassWaiting, ...]:
    """Classes reported waiting by a plan and by its chunks, one entry a class: its records added up, the first
    reason said."""
    merged: dict[str, ClassWaiting] = {}
    for entry in waiting:
        first = merged.get(entry.class_name)
        merged[entry.class_name] = (
            entry if first is None else first.model_copy(update={"records": first.records + entry.records})
        )
    return tuple(merged.values())


def current_versions(held: Iterable[Held]) -> list[Held]:
    """The latest version of each record, in record order: what a class is now."""
    latest: dict[str, Held] = {}
    for version in held:
        if version.record_id not in latest or latest[version.record_id].version < version.version:
            latest[version.record_id] = version
    return [latest[rid] for rid in sorted(latest)]


@dataclass(frozen=True)
class ClassState:
    """A class as signing holds it (its records' current versions) beside its last confirmed review."""

    class_name: str
    current: tuple[Held, ...]
    review: Review | None = None
    #: Of `current`, how many carry the homeroom teacher's signature.
    homeroom_signed: int = 0

    @property
    def versions(self) -> tuple[Reviewed, ...]:
        return tuple((h.record_id, h.version, h.digest) for h in self.current)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.versions)

    @cached_property
    def status(self) -> ReviewStatus:
        """Reviewed only when the last confirmation names exactly the record versions the class has now."""
        if self.review is None:
            return "not-reviewed"
        return "reviewed" if set(self.review.records) == set(self.versions) else "changed-since-review"

    def changes(self) -> list[RecordChange]:
        """The records whose version or digest is not what the last review confirmed (added ones included)."""
        if self.review is None:
            return []
        then = {rid: (version, digest) for rid, version, digest in self.review.records}
        now = {rid: (version, digest) for rid, version, digest in self.versions}
        return [
            RecordChange(
                record_id=rid,
                reviewed_version=then[rid][0] if rid in then else None,
                reviewed_digest=then[rid][1] if rid in then else None,
                version=now[rid][0] if rid in now else None,
                digest=now[rid][1] if rid in now else None,
            )
            for rid in sorted(then.keys() | now.keys())
            if then.get(rid) != now.get(rid)
        ]

    def incomplete(self) -> list[RecordRefused]:
        return [refusal for h in self.current if (refusal := h.refusal()) is not None]

    def why_waiting(self) -> str:
        """Why the class's records are not signed yet, in words (the review does not stand)."""
        if self.review is None:
            return (
                f"class {self.class_name} has not been reviewed: its homeroom teacher reviews the class's "
                f"{len(self.current)} record(s) and confirms the review before anyone signs them"
            )
        changed = len(self.changes())
        return (
            f"class {self.class_name} changed since its homeroom teacher ({self.review.confirmed_by.subject}) "
            f"confirmed its review at {self.review.confirmed_at:%Y-%m-%d %H:%M} UTC: {changed} record(s) added or "
            "changed; the homeroom teacher reviews the class again and confirms it before anyone signs it"
        )

    def waiting(self) -> ClassWaiting | None:
        """The class as a batch reports it when it holds the class's records back, or None when it does not."""
        status = self.status
        if status == "reviewed":
            return None
        return ClassWaiting(
            class_name=self.class_name, records=len(self.current), code=status, reason=self.why_waiting()
        )

    def refusal(self) -> ReviewRefused | None:
        """A homeroom teacher's batch of this class, refused while its review does not stand."""
        if self.status == "reviewed":
            return None
        return ReviewRefused(self.why_waiting(), reason=self.status)

    def shown(self) -> ClassReview:
        """The class as a review shows it."""
        return ClassReview(
            class_name=self.class_name,
            records=len(self.current),
            incomplete=self.incomplete(),
            status=self.status,
            homeroom_signed=self.homeroom_signed,
            reviewed_by=self.review.confirmed_by.subject if self.review else None,
            reviewed_at=self.review.confirmed_at if self.review else None,
            changes=self.changes(),
            fingerprint=self.fingerprint,
        )


def class_states(
    held: Iterable[Held], reviews: Iterable[Review], homeroom_signed: Collection[VersionKey] = frozenset()
) -> list[ClassState]:
    """Each class of the held record versions (class order), with its latest confirmed review and how many of its
    current versions are among `homeroom_signed` (those that carry the homeroom teacher's signature)."""
    latest = latest_reviews(reviews)
    by_class: dict[str, list[Held]] = {}
    for version in current_versions(held):
        by_class.setdefault(version.class_name or "", []).append(version)
    return [
        ClassState(name, tuple(versions), latest.get(name), sum(1 for v in versions if v.key in homeroom_signed))
        for name, versions in sorted(by_class.items())
    ]


@dataclass(frozen=True)
class Gate:
    """What a batch may sign of the records it would plan: a complete version that its class's review confirmed.

    The rest is held back and said: each incomplete record with the entries it lacks, each class whose
    review does not stand with why.
    """

    classes: tuple[ClassState, ...]

    @classmethod
    def of(cls, held: Iterable[Held], reviews: Iterable[Review]) -> Gate:
        return cls(tuple(class_states(held, reviews)))

    @cached_property
    def allowed(self) -> frozenset[VersionKey]:
        """The versions that may be signed: complete, and confirmed by a review that still stands for their class."""
        return frozenset(
            h.key
            for state in self.classes
            if state.status == "reviewed"
            for h in state.current
            if may_be_signed(h, state.review)
        )

    def lets_through(self, key: VersionKey) -> bool:
        return key in self.allowed

    def planned(
        self,
        request: RequestSignBatch,
        signer: str,
        unsigned: Iterable[VersionKey],
        per_chunk: int,
        started_at: datetime,
        waiting: int = 0,
    ) -> Batch:
        """The plan of `request` (`new_batch`) over what the gate lets through, naming what it holds back.

        `waiting` counts the records that lack the signature before this role's. An incomplete record lacks every
        signature, yet it does not wait for one: it waits to be completed, and is named among the refused instead.
        """
        refused = self.refused()
        waiting = max(0, waiting - len(refused)) if waiting else 0
        plan = new_batch(request, signer, [k for k in unsigned if self.lets_through(k)], per_chunk, started_at, waiting)
        return replace(plan, refused=refused, classes_waiting=self.waiting())

    def refused(self) -> tuple[RecordRefused, ...]:
        return tuple(refusal for state in self.classes for refusal in state.incomplete())

    def waiting(self) -> tuple[ClassWaiting, ...]:
        return tuple(waiting for state in self.classes if (waiting := state.waiting()) is not None)

    def of_class(self, class_name: str) -> ClassState | None:
        return next((state for state in self.classes if state.class_name == class_name), None)


def confirmation_problem(state: ClassState, reviewed: str) -> ReviewRefused | None:
    """Why a confirmation of `reviewed` (a review's fingerprint) cannot stand for the class now, if it cannot."""
    if not state.current:
        return ReviewRefused(f"class {state.class_name} has no record to review yet", reason="nothing-to-review")
    if reviewed != state.fingerprint:
        return ReviewRefused(
            f"class {state.class_name} is not as the review being confirmed showed it (its records were added to or "
            "changed since): review the class again and confirm what that review shows",
            reason="changed-since-review",
        )
    return None


# --- who may review --------------------------------------------------------------------------


def authorise_confirmation(actor: Actor, school_code: str, class_name: str) -> None:
    """Only the class's homeroom teacher confirms its review."""
    if actor.school_code != school_code or not actor.is_homeroom_teacher_of(class_name):
        raise Forbidden(
            f"{actor.subject} may not confirm the review of class {class_name} at school {school_code}: "
            "only its homeroom teacher does"
        )


# --- the school's seal on a certified copy ---------------------------------------------------

#: The CMS attributes every SignedAttributes the seal signs carries (RFC 5652 §5.3: content type and message digest).
COPY_ATTRIBUTES_REQUIRED = frozenset({"content_type", "message_digest"})
#: The content a PAdES signature's SignedData encapsulates (detached): id-data.
COPY_CONTENT_TYPE = "data"
#: SHA-256, the message digest the seal's signatures are made with.
COPY_DIGEST_LENGTH = 32


def authorise_copy_seal(actor: Actor, school_code: str, record_id: str) -> None:
    """The school's seal goes on a certified copy of its records at the request of the school's records administrator
    or principal, and no one else's (another school's staff, a teacher, an operator, a service)."""
    if actor.school_code != school_code or not (actor.has("principal") or actor.has("school_admin")):
        raise SignerRefused(
            f"{actor.subject} may not have the seal of school {school_code} put on a copy of {record_id}: only that "
            "school's records administrator or principal may",
            reason="wrong-school",
        )


def copy_problem(
    record: StoredRecord | None, present: Mapping[Role, Signature], school_code: str, key: VersionKey
) -> Forbidden | NotFound | None:
    """Why a certified copy of `key` may not carry `school_code`'s seal: signing holds no such version of the school's
    (said alike for a version of another school, so a request learns nothing of other schools' records), or the version
    is not signed and sealed yet, so the archive does not keep it; None when it may."""
    name = f"{key[0]} v{key[1]}"
    if record is None or record.school_code != school_code:
        return NotFound(f"school {school_code} has no record version {name}: name an archived version of its records")
    if not is_complete(present):
        missing = ", ".join(role for role in REQUIRED_ROLES if role not in present)
        return Forbidden(
            f"{name} is not archived: it still lacks the signature of {missing}; a certified copy is of a version that "
            "is signed and sealed",
            reason="not-archived",
        )
    return None


def signed_attributes_problem(data: bytes) -> str | None:
    """Why `data` is not a CMS SignedAttributes the seal may sign (DER: a SET OF Attribute holding one content type,
    id-data, and one SHA-256 message digest), if it is not. Anything else (a JWS signing input, a record's bytes, an
    arbitrary digest) is refused: through this request the seal's key signs a copy's attributes and nothing else."""
    if not data or data[0] != 0x31:  # a DER SET OF
        return "the signed attributes are not a DER SET OF attributes (RFC 5652 §5.3)"
    try:
        attributes = cms.CMSAttributes.load(data, strict=True)
        types = [attribute["type"].native for attribute in attributes]
        values = {attribute["type"].native: attribute["values"] for attribute in attributes}
        reencoded = attributes.dump(force=True)
    except (ValueError, TypeError, KeyError):
        return "the signed attributes cannot be read as DER CMS attributes (RFC 5652 §5.3)"
    if reencoded != data:
        return "the signed attributes are not in DER (RFC 5652 §5.4 signs their DER encoding)"
    if len(set(types)) != len(types):
        return "the signed attributes name an attribute twice"
    if missing := sorted(COPY_ATTRIBUTES_REQUIRED - set(types)):
        return f"the signed attributes lack {', '.join(missing)}"
    content_type, digest = values["content_type"], values["message_digest"]
    if len(content_type) != 1 or content_type[0].native != COPY_CONTENT_TYPE:
        return "the signed attributes' content type is not id-data"
    if len(digest) != 1 or len(digest[0].native) != COPY_DIGEST_LENGTH:
        return f"the signed attributes' message digest is not one SHA-256 digest ({COPY_DIGEST_LENGTH} bytes)"
    return None
