"""signing's use cases: receive records, review a class and confirm the review, plan a batch, sign a chunk,
count chunks to the batch's end.

Each handler takes the message and `Deps` and returns an `Outcome` (shared.outcome): what to
publish, and which parts of the message are refused. A message refused whole raises.

The broker is not a trust boundary. A record version is kept for signing only when grades' seal on
it verifies (a version anyone could have published is never put before a signer); a command is
heard only with its sender's actor token for this message and this service. The events that
follow say who acted (`by`), and never carry a token.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry

from services.signing import domain
from services.signing.domain import Batch, Gate, Review, ReviewRefused, SignerRefused, StoredRecord
from services.signing.metrics import SigningMetrics
from services.signing.repository import SigningRepository
from shared.access import AccessLogStore, AccessRecorder, InMemoryAccessLog
from shared.at_rest import KeyRotation
from shared.auth import Actor, IssuerKeys, authorise_review, require_actor, service_subject
from shared.contracts.base import Acting, Message, derived_id, utcnow
from shared.contracts.grades import RecordsReady, RecordVersion, VersionKey
from shared.contracts.keys import RotateSigningKey
from shared.contracts.record import content_of
from shared.contracts.signing import (
    AmendmentReceived,
    BatchCompleted,
    BatchProgress,
    BatchRefused,
    ChunkSigned,
    ClassReviews,
    ClassWaiting,
    ConfirmReview,
    CopySeal,
    HeldSignatures,
    RecordRefused,
    RecordsCompleted,
    RecordsReceived,
    RequestAmendment,
    RequestSignBatch,
    ReviewClasses,
    ReviewConfirmed,
    Role,
    SealCopy,
    Signature,
    SignedRecord,
    SignWork,
    seal_subject,
)
from shared.crypto.canonical import sha256_hex
from shared.crypto.certs import TrustStore
from shared.crypto.jws import sign_detached
from shared.crypto.record_signatures import ChainCache
from shared.crypto.seal import record_claims, seal_problems
from shared.crypto.signer import SignerDirectory, UnknownSigner, X509Signer
from shared.errors import Forbidden, InvalidMessage, NotFound, TransientError
from shared.outcome import NOTHING, Outcome, Publish, RejectedPart, published_then_kept

Clock = Callable[[], datetime]

log = logging.getLogger(__name__)

#: Who seals the record versions signing keeps: grades, with its service certificate.
GRADES = service_subject("grades")


@dataclass(frozen=True)
class Signers:
    """The signers' keys and the trust their certificates are checked against before each use."""

    directory: SignerDirectory
    #: The current trust store (re-read when the CRL changes).
    trust: Callable[[], TrustStore]

    def valid_signer(self, subject_id: str, role: Role, school_code: str, at: datetime) -> X509Signer:
        """`subject_id`'s signer for `role`, refused unless its certificate may sign at `at`."""
        try:
            signer = self.directory.signer_for(subject_id)
        except UnknownSigner as exc:
            raise SignerRefused(str(exc), reason="no-certificate") from None
        problem = domain.certificate_problem(signer.identity, subject_id, role, school_code)
        if problem:
            raise SignerRefused(problem, reason="wrong-certificate")
        try:
            trust = self.trust()
        except FileNotFoundError as exc:
            raise SignerRefused(str(exc), reason="no-trust-anchor") from None
        check = trust.validate(signer.chain, at, trusted_at=at)  # the signature is made now, by this process
        if not check.ok:
            revoked = check.revoked and any("revoked" in f for f in check.failed)
            raise SignerRefused(
                f"{subject_id}'s certificate may not sign: {'; '.join(check.failed)}",
                reason="certificate-revoked" if revoked else "certificate-invalid",
            )
        return signer


@dataclass(frozen=True)
class Deps:
    """What signing's handlers need; `app.py` builds it once."""

    repo: SigningRepository
    metrics: SigningMetrics
    #: Public keys of the actor-token issuer, with signing as the audience (None: every command is refused).
    issuer_keys: IssuerKeys | None
    signers: Signers
    #: Record versions per chunk of a batch's work: what one worker signs in one go.
    records_per_chunk: int
    #: This process's name among the signing workers.
    worker: str
    #: The key ring the record documents are sealed under, and its rotation.
    rotation: KeyRotation
    clock: Clock = utcnow
    #: A completed version not announced this long after its completing signature was made is taken for lost in a
    #: crash (or a chunk dead-lettered) between storing and announcing, and announced again.
    announce_grace_seconds: float = 30.0
    #: How often signing looks for such versions.
    announce_interval_seconds: float = 10.0
    #: An open batch that has not moved this long (no chunk counted: one was dead-lettered, or is held by nothing
    #: that finishes it) while no chunk waits in the work queue has its unfinished chunks published again
    #: (`redrive`): a chunk takes a worker well under a second, so 45 s without one is a stall, and a stalled batch
    #: moves again within a minute...
    redrive_grace_seconds: float = 45.0
    #: ...looked for this often.
    redrive_interval_seconds: float = 10.0
    #: Chunks a worker holds unacknowledged: the one it signs and the next. A worker that stops hands back no more.
    work_prefetch: int = 2
    #: How many chunks wait in the work queue, ready for a worker (`Bus.waiting`); None: not known. While any wait, a
    #: batch that has not moved may be waiting behind them, and nothing is published again.
    work_waiting: Callable[[], Awaitable[int]] | None = None
    #: Makes and counts the access-log entries of the seals put on certified copies.
    access: AccessRecorder = field(default_factory=lambda: AccessRecorder("signing", CollectorRegistry()))
    #: The access log those entries are kept in (`app.py`: signing's `access_log` collection).
    access_log: AccessLogStore = field(default_factory=InMemoryAccessLog)


# --- receiving records -----------------------------------------------------------------------


async def receive_records(event: RecordsReady, deps: Deps) -> Outcome:
    """Keep each record version sealed by grades, with its digest; the others are refused and never signed.

    A version without grades' seal, or whose seal is over other content, is refused and dead-lettered with why.
    A version seen before with other content replaces the one kept while nobody has signed that one (the school
    reopened a term after the year's close and corrected it); once it carries a signature it is kept as signed,
    and the new content is refused (`domain.replacement_refusal`) and announced with the rest, for the school
    to amend the record after it is signed and sealed.
    """
    scope = (event.school_code, event.school_year)
    strays = [r.record_id for r in event.records if (r.school_code, r.school_year) != scope]
    if strays:
        raise InvalidMessage(f"records {strays[:5]} belong to another school or year than the message")
    sealed, refusals = sealed_by_grades(event.records, deps)
    incoming: dict[VersionKey, tuple[RecordVersion, StoredRecord]] = {}
    for record, stored in sealed:
        first = incoming.setdefault(stored.key, (record, stored))
        if first[1].digest != stored.digest:
            refusals.append((record, f"{stored.key[0]} v{stored.key[1]} appears twice with different content"))
    signed: list[RecordRefused] = []
    if await deps.repo.add_records([stored for _, stored in incoming.values()]) < len(incoming):
        signed = await replaced_unless_signed(incoming, deps)
    received = RecordsReceived(
        message_id=derived_id(event.message_id, "received"),
        by=event.by,
        school_code=event.school_code,
        school_year=event.school_year,
        count=len(incoming),
        source_message_id=event.message_id,
        refused=signed,
    )
    rejected = (
        [RejectedPart("records", [r for r, _ in refusals], "invalid", "; ".join(why for _, why in refusals))]
        if refusals
        else []
    )
    return Outcome(publish=[received] if incoming or signed else [], rejected=rejected)


async def replaced_unless_signed(
    incoming: dict[VersionKey, tuple[RecordVersion, StoredRecord]], deps: Deps
) -> list[RecordRefused]:
    """Of the versions kept before with other content, replace those nobody has signed; the others stay as signed,
    are taken out of `incoming` and returned as refused. A version replaced meanwhile by another delivery is
    looked at again on the next delivery (TransientError)."""
    known = await deps.repo.records(incoming)
    changed = [key for key, (_, stored) in incoming.items() if known[key].digest != stored.digest]
    present = await deps.repo.signatures(changed)
    refused = []
    for key in changed:
        if refusal := domain.replacement_refusal(known[key].held(), present.get(key, {})):
            refused.append(refusal)
            del incoming[key]
        elif not await deps.repo.replace_record(known[key], incoming[key][1]):
            raise TransientError(f"{key[0]} v{key[1]} was replaced while it was received again: received once more")
    return refused


def sealed_by_grades(
    records: list[RecordVersion], deps: Deps
) -> tuple[list[tuple[RecordVersion, StoredRecord]], list[tuple[RecordVersion, str]]]:
    """The versions whose grades seal verifies over their content, each as it is kept; and the others, with why.

    This is where a version's content is hashed, once: what is kept is those bytes as they came.
    """
    trust, now, chains = deps.signers.trust(), deps.clock(), ChainCache()
    sealed: list[tuple[RecordVersion, StoredRecord]] = []
    refused: list[tuple[RecordVersion, str]] = []
    for record in records:
        try:
            stored = StoredRecord.of(record)
        except ValueError:
            refused.append((record, f"{record.record_id} v{record.version}: its content is not a record document"))
            continue
        problems = seal_problems(record.seal, record_claims(record, stored.digest), trust, GRADES, now, chains)
        if problems:
            why = f"{record.record_id} v{record.version} is not sealed by grades: {'; '.join(problems)}"
            refused.append((record, why))
        else:
            sealed.append((record, stored))
    return sealed, refused


# --- planning a batch ------------------------------------------------------------------------


async def plan_batch(command: RequestSignBatch, deps: Deps) -> Outcome:
    """Check who asks, plan the batch once; a redelivered request re-publishes the stored plan.

    Refused unless the command carries a token for it from that class's homeroom teacher or that
    school's principal, and every certificate the batch signs with is valid and not revoked now; a
    refusal is announced (BatchRefused) to whoever follows the batch, and the request dead-lettered
    with its reason.

    Only what the gate lets through is planned (`domain.Gate`): a complete record version its class's review
    confirmed. A homeroom teacher's batch of a class whose review does not stand is refused whole, and announced
    with why (not dead-lettered: the request was heard, the class is not ready); a school's batch plans the
    classes that are ready and names the others, and every incomplete record, in what it announces.
    """
    actor: Actor | None = None
    try:
        actor = require_actor(command, deps.issuer_keys)
        signer = authorised_signer(command, actor, deps)
    except Forbidden as exc:
        return refused(command.batch_id, command, exc, command.message_id, actor.acting() if actor else None)
    stored = await deps.repo.batch(command.batch_id)
    resumed: list[Message] = []
    if stored is None:
        gate = await gate_of(command, deps)
        if waits := class_not_ready(command, gate):
            deps.metrics.batches.labels("waiting-review").inc()
            return Outcome(
                publish=[refusal_event(command.batch_id, command, waits, command.message_id, actor.acting())]
            )
        resumed = await taken_up_again(command, deps)
        stored = await new_plan(command, signer, actor.acting(), deps, gate)
    if (stored.school_code, stored.school_year, stored.role, stored.signer) != (
        command.school_code,
        command.school_year,
        command.role,
        signer,
    ):
        raise InvalidMessage(f"batch id {command.batch_id} is already used for another school year, role or signer")
    return Outcome(publish=[*resumed, *work_messages(stored)])


async def taken_up_again(command: RequestSignBatch, deps: Deps) -> list[Message]:
    """What a new click finishes of what an earlier one left: the unfinished chunks of the scope's open batches
    (`domain.resumes`), published again; and, for the school's click, every version of the school year signed by all
    roles that is not known to have reached the archive (owed an announcement, or completed before announcements
    were kept), owed again at once for `reannounce` to announce. Handling a chunk or an announcement twice has its
    effect once (the signatures and the archive are kept by record, version and role)."""
    now = deps.clock()
    again: list[Message] = []
    for batch in await deps.repo.open_batches():
        if domain.resumes(command, batch):
            again += await redriven(batch, None, now, deps)
    if command.role != "homeroom_teacher":
        owed = await deps.repo.completed_not_known_announced(command.school_code, command.school_year)
        if owed:
            log.warning(
                "%d completed versions of %s %s are owed to the archive again",
                len(owed),
                command.school_code,
                command.school_year,
            )
            await deps.repo.owe_again(owed)
    return again


def authorised_signer(command: RequestSignBatch, actor: Actor, deps: Deps) -> str:
    """Whose certificate signs the batch's first role; refused (Forbidden) as `plan_batch` says."""
    domain.authorise(actor, command.role, command.school_code, command.class_name)
    now = deps.clock()
    signer = actor.subject if command.role != "school_seal" else ""
    for role in domain.BATCH_ROLES[command.role]:
        deps.signers.valid_signer(domain.signer_subject(role, signer, command.school_code), role, command.school_code, now)
    return signer


def batch_class(command: RequestSignBatch) -> str | None:
    """The class a batch is confined to: a homeroom teacher's; None for the whole school."""
    return command.class_name if command.role == "homeroom_teacher" else None


async def gate_of(command: RequestSignBatch, deps: Deps) -> Gate:
    """What the batch may sign: the records of its scope that are complete, and confirmed by their class's review."""
    scope = (command.school_code, command.school_year, batch_class(command))
    return Gate.of(await deps.repo.held(*scope), await deps.repo.reviews(*scope))


def class_not_ready(command: RequestSignBatch, gate: Gate) -> ReviewRefused | None:
    """Why a homeroom teacher's class may not be signed yet (its review does not stand); None for a school's
    batch, and for a class of which signing holds no record (there is nothing to review, or to sign)."""
    class_name = batch_class(command)
    state = gate.of_class(class_name) if class_name else None
    return state.refusal() if state is not None else None


async def new_plan(command: RequestSignBatch, signer: str, requested_by: Acting, deps: Deps, gate: Gate) -> Batch:
    """Plan the batch over the records that lack its role's signature and that `gate` lets through, and store the
    plan (the first plan stands)."""
    unsigned, waiting = await deps.repo.unsigned(
        command.school_code,
        command.school_year,
        domain.BATCH_ROLES[command.role][0],
        batch_class(command),
        after=domain.previous_role(command.role),
    )
    plan = gate.planned(command, signer, unsigned, deps.records_per_chunk, deps.clock(), waiting)
    batch = replace(plan, requested_by=requested_by)
    if await deps.repo.add_batch(batch):
        if not batch.chunks:
            deps.metrics.batches.labels("empty").inc()
        return batch
    stored = await deps.repo.batch(command.batch_id)
    if stored is None:
        raise NotFound(f"batch {command.batch_id} vanished after it was created")
    return stored


def work_messages(batch: Batch) -> list[Message]:
    """What a batch's plan publishes: one SignWork per chunk, or BatchCompleted when there are none.

    The ids derive from the batch id, the key of the plan, so re-publishing the plan repeats them.
    Each says who asked for the batch, as the stored plan says it.
    """
    if not batch.chunks:
        return [completed_event(batch)]
    return [
        SignWork(
            message_id=derived_id(batch.batch_id, "work", chunk_no),
            by=batch.requested_by,
            batch_id=batch.batch_id,
            chunk_no=chunk_no,
            role=batch.role,
            records=[{"record_id": rid, "version": version} for rid, version in chunk],
        )
        for chunk_no, chunk in enumerate(batch.chunks)
    ]


def unfinished_work(batch: Batch) -> list[Message]:
    """The work of a batch's chunks not counted yet (`Batch.unfinished_chunks`), as its plan published it: the same
    message ids, so handling it twice counts it once."""
    unfinished = set(batch.unfinished_chunks)
    return [w for w in work_messages(batch) if isinstance(w, SignWork) and w.chunk_no in unfinished]


def completed_event(batch: Batch) -> BatchCompleted:
    return BatchCompleted(
        message_id=derived_id(batch.batch_id, "completed"),
        by=batch.requested_by,
        batch_id=batch.batch_id,
        school_code=batch.school_code,
        school_year=batch.school_year,
        records_signed=batch.records_signed,
        records_total=batch.records_total,
        role=batch.role,
        class_name=batch.class_name,
        records_completed=batch.records_completed,
        records_waiting=batch.records_waiting,
        refused=list(batch.refused),
        classes_waiting=list(batch.waiting),
    )


def refused(
    batch_id: str, scope: RequestSignBatch | Batch, exc: Forbidden, source_id: str, by: Acting | None
) -> Outcome:
    """A batch (or the rest of it) refused: announced to whoever follows it, the message refused (and counted) at the edge.

    `by` is who asked for the batch, when that is known (not when their token is refused).
    """
    return Outcome(publish=[refusal_event(batch_id, scope, exc, source_id, by)], refused=exc)


def refusal_event(
    batch_id: str, scope: RequestSignBatch | Batch, exc: Forbidden, source_id: str, by: Acting | None
) -> BatchRefused:
    return BatchRefused(
        message_id=derived_id(source_id, "refused"),
        by=by,
        batch_id=batch_id,
        school_code=scope.school_code,
        school_year=scope.school_year,
        role=scope.role,
        reason=str(exc),
        code=exc.reason,
    )


# --- the review before signing ---------------------------------------------------------------


async def review_classes(request: ReviewClasses, deps: Deps) -> Outcome:
    """What signing holds of a school year's classes (or one class) before they are signed, for the class's homeroom
    teacher or the school's principal or records administrator: per class its records, the incomplete ones with
    the entries they lack, how many its homeroom teacher has signed, where its review stands, and what changed since
    it was last confirmed.

    A class of which signing holds no record is not listed (its year is not closed, or it has no students). The
    homeroom teacher's signatures of the whole scope are one read, however many records it holds.
    """
    actor = require_actor(request, deps.issuer_keys)
    authorise_review(actor, request.school_code, request.class_name)
    scope = (request.school_code, request.school_year, request.class_name)
    held = await deps.repo.held(*scope)
    current = [h.key for h in domain.current_versions(held)]
    signed = await deps.repo.signed_by("homeroom_teacher", request.school_code, request.school_year, current)
    states = domain.class_states(held, await deps.repo.reviews(*scope), signed)
    reviews = ClassReviews(
        school_code=request.school_code, school_year=request.school_year, classes=[state.shown() for state in states]
    )
    return Outcome(reply=reviews)


async def confirm_review(request: ConfirmReview, deps: Deps) -> Outcome:
    """The class's homeroom teacher confirms the review they saw (`reviewed`); the confirmation keeps the record
    versions and digests it covers, and who confirmed them when.

    Refused ("changed-since-review") when the class is not as that review showed it; a redelivered confirmation
    answers with the confirmation it made.
    """
    actor = require_actor(request, deps.issuer_keys)
    domain.authorise_confirmation(actor, request.school_code, request.class_name)
    held = await deps.repo.held(request.school_code, request.school_year, request.class_name)
    review_id = derived_id(request.message_id, "review")
    kept = await deps.repo.review(review_id)
    if kept is None:
        [state] = domain.class_states(held, []) or [domain.ClassState(request.class_name, ())]
        if problem := domain.confirmation_problem(state, request.reviewed):
            raise problem
        review = Review(
            review_id=review_id,
            school_code=request.school_code,
            school_year=request.school_year,
            class_name=request.class_name,
            records=state.versions,
            confirmed_by=actor.acting(),
            confirmed_at=domain.whole_milliseconds(deps.clock()),
        )
        if await deps.repo.add_review(review):
            deps.metrics.reviews.inc()
        kept = await deps.repo.review(review_id) or review
    return Outcome(reply=confirmed(kept, held))


def confirmed(review: Review, held: list[domain.Held]) -> ReviewConfirmed:
    """The confirmation as its reply says it: how many records it covers, and how many of those are incomplete."""
    covered = set(review.records)
    incomplete = sum(1 for h in held if (h.record_id, h.version, h.digest) in covered and h.incomplete)
    return ReviewConfirmed(
        class_name=review.class_name,
        records=len(review.records),
        incomplete=incomplete,
        fingerprint=review.fingerprint,
        confirmed_by=review.confirmed_by.subject,
        confirmed_at=review.confirmed_at,
    )


# --- signatures held, asked by grades --------------------------------------------------------


async def held_signatures(request: HeldSignatures, deps: Deps) -> Outcome:
    """Which of the record versions asked about carry a signature, and whose: for grades alone, asking on its own
    behalf before a year closed again replaces a first version (one that carries any signature is kept as it is).

    One read of the versions' signatures, however many are asked about.
    """
    actor = require_actor(request, deps.issuer_keys)
    domain.authorise_signatures_question(actor)
    keys = [(r.record_id, r.version) for r in request.records]
    return Outcome(reply=domain.signed_versions(keys, await deps.repo.signatures(keys)))


# --- amendments ------------------------------------------------------------------------------


async def receive_amendment(command: RequestAmendment, deps: Deps) -> Outcome:
    """Keep an amended version to be signed again, if the issuing school's principal or administrator asks.

    The new version names the version it supersedes, the reason and who asked inside its document, so
    all are under every signature it will carry. It carries no grades seal: its content comes from the
    school's request, and the token of who asked stands for it (a seal it arrives with is dropped).
    Announced, and the answer to whoever asked, with `AmendmentReceived`.
    """
    actor = require_actor(command, deps.issuer_keys)
    record = command.record
    domain.authorise_amendment(actor, record.school_code, record.record_id)
    if record.version <= command.supersedes:
        raise InvalidMessage(
            f"{record.record_id} v{record.version} cannot supersede v{command.supersedes}: it must be a later version"
        )
    try:
        document = domain.amended_document(
            record.document, command.supersedes, command.reason_code, command.note, actor.subject
        )
        amended = RecordVersion(**record.model_dump(exclude={"content", "seal"}), content=content_of(document))
        stored = StoredRecord.of(amended)
    except ValueError:
        raise InvalidMessage(f"{record.record_id} v{record.version}: its content is not a record document") from None
    if not await deps.repo.add_records([stored]):
        known = (await deps.repo.records([stored.key])).get(stored.key)
        if known is None or known.digest != stored.digest:
            raise InvalidMessage(f"{record.record_id} v{record.version} exists already with other content")
    received = AmendmentReceived(
        message_id=derived_id(command.message_id, "amendment-received"),
        by=actor.acting(),
        record_id=record.record_id,
        version=record.version,
        supersedes=command.supersedes,
        reason_code=command.reason_code,
    )
    return Outcome(publish=[received], reply=received)


# --- signing a chunk -------------------------------------------------------------------------


def sign_record(
    record: StoredRecord, role: Role, present: dict[Role, Signature], signer: X509Signer, signed_at: datetime
) -> Signature:
    """ES256 over the kept canonical bytes, detached; the header binds record, version, role, time and chain."""
    header = domain.signature_header(record, role, signed_at, domain.prev_digest(role, present))
    return Signature(
        record_id=record.record_id,
        version=record.version,
        role=role,
        key_id=signer.key_id,
        digest=record.digest,
        jws=sign_detached(signer, record.canonical, header),
        signed_at=signed_at,
        signer=signer.identity.subject_id,
    )


def still_as_received(record: StoredRecord) -> None:
    """Refuse to sign a version whose kept bytes no longer hash to the digest it was received with."""
    if sha256_hex(record.canonical) != record.digest:
        raise InvalidMessage(f"{record.record_id} v{record.version} no longer matches its digest")


async def sign_chunk(work: SignWork, deps: Deps) -> Outcome:
    """Sign the chunk's records for the batch's roles (principal, then seal); report those now complete.

    Only a chunk of the stored plan is signed, with the signers the batch was planned for, so a
    forged work message cannot choose what is signed or by whom. A certificate revoked during the
    batch refuses the rest of it, and says so. Each record is signed only as its class's latest
    confirmed review saw it (`domain.may_be_signed`, as the plan checked): one replaced, or whose class was
    reviewed again, since the plan is left unsigned and its class named at the batch's end.
    """
    batch = await deps.repo.batch(work.batch_id)
    if batch is None:
        raise NotFound(f"unknown batch {work.batch_id}")
    keys = list(dict.fromkeys((k.record_id, k.version) for k in work.records))
    if work.chunk_no >= batch.chunks_total or set(keys) != set(batch.chunks[work.chunk_no]) or work.role != batch.role:
        raise InvalidMessage(f"the work for chunk {work.chunk_no} does not match batch {work.batch_id}'s plan")
    records = await deps.repo.records(keys)
    if missing := [f"{rid} v{version}" for rid, version in keys if (rid, version) not in records]:
        raise NotFound(f"unknown record versions: {', '.join(missing[:5])}")
    signed_at = domain.whole_milliseconds(deps.clock())
    try:
        signers = {
            role: deps.signers.valid_signer(batch.signer_of(role), role, batch.school_code, signed_at)
            for role in batch.roles
        }
    except SignerRefused as exc:
        # The batch stops here: what is left is neither published again nor taken up (`redrive`, `taken_up_again`).
        await deps.repo.refuse_batch(batch.batch_id)
        return refused(batch.batch_id, batch, exc, work.message_id, batch.requested_by)
    present, held = await signed_now(keys, records, batch, signers, signed_at, deps)
    if held:
        await deps.repo.hold_back(batch.batch_id, work.chunk_no, held)
    complete = [
        SignedRecord(record=records[key].record_version(), signatures=domain.in_role_order(present[key]))
        for key in keys
        if domain.is_complete(present.get(key, {}))
    ]
    chunk = ChunkSigned(
        message_id=derived_id(work.message_id, "chunk-signed"),
        by=batch.requested_by,
        batch_id=work.batch_id,
        chunk_no=work.chunk_no,
        signed=sum(1 for key in keys if batch.role in present.get(key, {})),
        worker=deps.worker,
        completed=len(complete),
    )
    if not complete:
        return Outcome(publish=[chunk])
    completed = RecordsCompleted(
        message_id=derived_id(work.message_id, "completed"),
        by=batch.requested_by,
        records=complete,
        batch_id=work.batch_id,
    )
    return Outcome(publish=[completed, chunk])


async def signed_now(
    keys: list[VersionKey],
    records: dict[VersionKey, StoredRecord],
    batch: Batch,
    signers: dict[Role, X509Signer],
    signed_at: datetime,
    deps: Deps,
) -> tuple[dict[VersionKey, dict[Role, Signature]], tuple[ClassWaiting, ...]]:
    """Make the signatures the chunk still lacks and store them; returns every stored signature of the chunk, and
    the classes whose versions it left unsigned because their class's latest confirmed review (read once for the
    chunk) did not see them as they are held.

    When another worker signed some of these first, the stored signatures are the ones that count.
    """
    classes = {record.class_name or "" for record in records.values()}
    reviews = await deps.repo.latest_reviews(batch.school_code, batch.school_year, classes)
    present = await deps.repo.signatures(keys)
    fresh: list[Signature] = []
    left: list[StoredRecord] = []
    for key in keys:
        have = dict(present.get(key, {}))
        record = records[key]
        if not any(domain.may_sign(role, have) for role in batch.roles):
            continue
        # Whatever a plan says: never an incomplete version, never one its class's review did not see as it is.
        if not domain.may_be_signed(record, reviews.get(record.class_name or "")):
            left.append(record)
            continue
        still_as_received(record)
        for role in batch.roles:
            if domain.may_sign(role, have):
                have[role] = sign_record(record, role, have, signers[role], signed_at)
                fresh.append(have[role])

    new = await deps.repo.add_signatures([(s, *records[(s.record_id, s.version)].scope) for s in fresh], batch.batch_id)
    if new < len(fresh):
        present = await deps.repo.signatures(keys)
    else:
        for signature in fresh:
            present.setdefault((signature.record_id, signature.version), {})[signature.role] = signature
    for signature in fresh:
        if present[(signature.record_id, signature.version)][signature.role].jws == signature.jws:
            deps.metrics.records_signed.labels(signature.role).inc()
    return present, domain.held_back(left, reviews)


# --- announcing completed records ------------------------------------------------------------
#
# The signature that completes a version is stored owed to the archive, in the same write; the version is
# announced (`RecordsCompleted`), and only once the broker has confirmed that announcement is it kept announced. A
# crash anywhere between, or a chunk dead-lettered after its signatures were stored, leaves the version found by
# `reannounce`, which announces it again. The archive appends a version once, by record and version, so a version
# announced twice is archived once.


async def announced(deps: Deps, publish: Publish, outcome: Outcome) -> Outcome:
    """Publish the completed versions `outcome` announces, then keep them announced; the rest of it is left to the
    edge."""

    async def kept(completed: Sequence[Message]) -> None:
        keys = [(s.record.record_id, s.record.version) for m in completed if isinstance(m, RecordsCompleted) for s in m.records]
        await deps.repo.announced(keys)

    return await published_then_kept(outcome, publish, kept, (RecordsCompleted,))


async def announcing(step: Callable[[Deps], Awaitable[Outcome]], deps: Deps, publish: Publish) -> Outcome:
    """A background step whose completed versions are announced, then kept announced (`announced`)."""
    return await announced(deps, publish, await step(deps))


async def reannounce(deps: Deps) -> Outcome:
    """Versions completed more than `announce_grace_seconds` ago and still not announced (a crash, or a chunk
    dead-lettered, came between): announced again, with their bytes and signatures as stored, up to a chunk's worth
    a step, one announcement per batch that completed them.

    Run at start and every `announce_interval_seconds`; a step that found as many as it may runs again at once.
    """
    before = deps.clock() - timedelta(seconds=deps.announce_grace_seconds)
    owed = await deps.repo.unannounced(before, deps.records_per_chunk)
    if not owed:
        return NOTHING
    keys = [o.key for o in owed]
    records, present = await deps.repo.records(keys), await deps.repo.signatures(keys)
    lost = [k for k in keys if k not in records or not domain.is_complete(present.get(k, {}))]
    if lost:
        # Not a version signing could announce (its record gone, a signature missing): kept announced, not retried.
        log.error("%d versions marked completed are not held complete, and are not announced: %s", len(lost), lost[:5])
        await deps.repo.announced(lost)
    by_batch: dict[str | None, list[SignedRecord]] = {}
    for o in owed:
        if o.key not in lost:
            chain = domain.in_role_order(present[o.key])
            signed = SignedRecord(record=records[o.key].record_version(), signatures=chain)
            by_batch.setdefault(o.batch_id, []).append(signed)
    again: list[Message] = []
    for batch_id, completed in by_batch.items():
        batch = await deps.repo.batch(batch_id, plan=False) if batch_id else None
        ids = [f"{s.record.record_id}:{s.record.version}" for s in completed]
        again.append(
            RecordsCompleted(
                message_id=derived_id("signing.reannounce", *ids),
                by=batch.requested_by if batch else None,
                records=completed,
                batch_id=batch_id,
            )
        )
    told = len(owed) - len(lost)
    log.warning("%d completed versions were stored but not announced to the archive; announced again", told)
    return Outcome(publish=again, again=len(owed) >= deps.records_per_chunk)


# --- counting chunks -------------------------------------------------------------------------


async def count_chunk(event: ChunkSigned, deps: Deps) -> Outcome:
    """Count the chunk once; when it was the last, close the batch exactly once.

    Counting is one write that returns the batch's totals, never its plan: the plan was read once
    for this chunk, by the worker that signed it. Only a chunk that was not counted now (counted
    before, or not the batch's) reads the batch again, to tell which.
    """
    repo, metrics = deps.repo, deps.metrics
    if event.chunk_no < 0:
        raise InvalidMessage(f"batch {event.batch_id} has no chunk {event.chunk_no}")
    counted = await repo.count_chunk(event.batch_id, event.chunk_no, event.signed, event.completed, deps.clock())
    batch = counted if counted is not None else await counted_before(event, repo)
    out: list[Message] = []
    if counted is not None:
        metrics.chunks.inc()
        out.append(
            BatchProgress(
                message_id=derived_id(event.message_id, "progress"),
                by=batch.requested_by,
                batch_id=batch.batch_id,
                school_code=batch.school_code,
                school_year=batch.school_year,
                chunks_done=len(batch.done_chunks),
                chunks_total=batch.chunks_total,
                records_signed=batch.records_signed,
                records_total=batch.records_total,
                role=batch.role,
            )
        )
    # Checked on redelivery too: a crash after counting the last chunk must not leave the batch open.
    if batch.all_chunks_done and batch.status == domain.OPEN:
        completed_at = deps.clock()
        if await repo.close_batch(batch.batch_id, completed_at):
            metrics.batches.labels("completed").inc()
            metrics.batch_duration.observe(max(0.0, (completed_at - batch.started_at).total_seconds()))
            out.append(completed_event(batch))
    return Outcome(publish=out) if out else NOTHING


async def redrive(deps: Deps) -> Outcome:
    """Batches that have not moved for `redrive_grace_seconds` (a chunk dead-lettered, or held by nothing that finishes
    it): their unfinished chunks published again, so that every batch finishes without anyone clicking again. One
    process takes each such batch (`SigningRepository.moved`), and waits the grace again before it looks at it anew.
    Nothing is published again while chunks wait in the work queue (`work_waiting`): a long queue is not a stall.

    A batch whose every chunk is counted but that is still open (its counting process stopped before closing it) is
    closed, and its end announced. Run at start and every `redrive_interval_seconds`.
    """
    now = deps.clock()
    before = now - timedelta(seconds=deps.redrive_grace_seconds)
    stalled = [batch for batch in await deps.repo.open_batches() if batch.stalled(before)]
    if not stalled or (deps.work_waiting is not None and await deps.work_waiting()):
        return NOTHING  # chunks still wait for a worker: a batch that has not moved may be waiting behind them
    again: list[Message] = []
    for batch in stalled:
            again += await redriven(batch, before if batch.progressed_at is not None else None, now, deps)
    return Outcome(publish=again) if again else NOTHING


async def redriven(batch: Batch, before: datetime | None, now: datetime, deps: Deps) -> list[Message]:
    """The open `batch` taken up again (unless another process moved it since `before`): its unfinished chunks' work,
    or its end when every chunk is counted."""
    if not await deps.repo.moved(batch.batch_id, before, now):
        return []
    if batch.all_chunks_done:
        if await deps.repo.close_batch(batch.batch_id, now):
            deps.metrics.batches.labels("completed").inc()
            return [completed_event(batch)]
        return []
    planned = await deps.repo.batch(batch.batch_id)
    if planned is None:
        return []
    work = unfinished_work(planned)
    deps.metrics.chunks_redriven.inc(len(work))
    log.warning(
        "batch %s had not moved since %s: %d unfinished chunk(s) published again",
        batch.batch_id,
        f"{batch.last_progress:%H:%M:%S}",
        len(work),
    )
    return work


async def counted_before(event: ChunkSigned, repo: SigningRepository) -> Batch:
    """The batch of a chunk that was not counted now: it was counted before; unless the batch or the chunk is unknown."""
    batch = await repo.batch(event.batch_id, plan=False)
    if batch is None:
        raise NotFound(f"unknown batch {event.batch_id}")
    if event.chunk_no >= batch.chunks_total:
        raise InvalidMessage(f"batch {event.batch_id} has no chunk {event.chunk_no}")
    return batch


# --- the school's seal on a certified copy ----------------------------------------------------


async def seal_copy(request: SealCopy, deps: Deps) -> Outcome:
    """The school's seal over a certified copy's CMS signed attributes (a PAdES signature the printing command makes):
    for the school's records administrator or principal, of an archived version of the school's records they name.

    The command that prints the copy never holds the seal's key: it builds the copy's signature around the signature
    this answers. Refused, with why, unless the token is theirs and for this request, signing holds that version of
    the school's records with every signature (`domain.copy_problem`), the bytes are a copy's signed attributes and
    nothing else (`domain.signed_attributes_problem`: the seal's key must not sign a record's JWS through here), and
    the seal's certificate may sign now. Each request answered is kept in signing's access log ("print", with the
    purpose given), as the archive keeps the print itself.
    """
    actor = require_actor(request, deps.issuer_keys)
    domain.authorise_copy_seal(actor, request.school_code, request.record_id)
    key = (request.record_id, request.version)
    record = (await deps.repo.records([key])).get(key)
    present = (await deps.repo.signatures([key])).get(key, {})
    if problem := domain.copy_problem(record, present, request.school_code, key):
        raise problem
    assert record is not None  # copy_problem refuses a version not held
    try:
        attributes = base64.b64decode(request.signed_attributes, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage("the signed attributes are not standard base64") from None
    if why := domain.signed_attributes_problem(attributes):
        raise InvalidMessage(why)
    now = deps.clock()
    school = request.school_code
    signer = deps.signers.valid_signer(seal_subject(school), "school_seal", school, now)
    signature = signer.sign_raw(attributes)
    reader, purpose = [record.student_ref], request.purpose
    await deps.access_log.add(deps.access.entries(actor, "print", reader, purpose=purpose, record_id=record.record_id))
    return Outcome(reply=CopySeal(signature=base64.b64encode(signature).decode(), chain=signer.x5c, signed_at=now))


# --- the data key ----------------------------------------------------------------------------


async def rotate_key(command: RotateSigningKey, deps: Deps) -> Outcome:
    """Add a data key, make it current and re-encrypt every record version under it, step by step (`KeyRotation`).

    One worker takes the command; the others see the ring file change and reload it before they store more.
    """
    return await deps.rotation.rotate(command)
