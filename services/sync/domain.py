"""Delivery rules, pure: what the archive vouches for, outbox entries, the ministry payload, answers, back-off,
parking, operators, reconciliation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from shared.auth import Actor, Role
from shared.contracts.archive import ArchivedRecord, Checkpoint, RecordsArchived
from shared.crypto.archive_log import check_checkpoint
from shared.crypto.canonical import sha256_hex
from shared.crypto.certs import TrustStore
from shared.crypto.pki import ARCHIVE_SUBJECT
from shared.crypto.record_signatures import ChainCache
from shared.crypto.seal import archived_claims, seal_problems
from shared.errors import Forbidden

PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
PARKED = "parked"

#: What an outbox entry carries: one archived record version, or one archive checkpoint.
RECORD = "record"
CHECKPOINT = "checkpoint"
KINDS = (RECORD, CHECKPOINT)

#: The parts of the record document the ministry's record store needs (docs/ministry-api.md says
#: why, field by field). Everything else stays in the system: the student's name, date and place
#: of birth, sex, ethnicity and guardian (the ministry matches the personal ID against the national
#: population register), the internal student reference, free-text comments, and how results were
#: derived. Parts a document does not have are simply not sent.
RECORD_FIELDS = (
    "rule_set",
    "regulation",
    "grade",
    "class_name",
    "subjects",
    "learning_result",
    "conduct",
    "qualities",
    "competencies",
    "outcome",
    "completion",
    "promotion",
    "awards",
    "absences",
    "complete",
    "missing",
)


# -- what the archive vouches for -------------------------------------------------------------
#
# The broker is not a trust boundary: an archived record version goes to the ministry only when
# the archive's seal on its announcement verifies against the PKI and its document is the one its
# digest names;
# a checkpoint only when the archive's signature on it verifies.


def seal_problems_of(event: RecordsArchived, trust: TrustStore, at: datetime, chains: ChainCache | None = None) -> list[str]:
    """Why the archive's seal does not show it announced exactly these record versions (none when it does).

    The seal covers every version's fields but the content; each content is bound through its `digest`.
    """
    return seal_problems(event.seal, archived_claims(event.records), trust, ARCHIVE_SUBJECT, at, chains)


def content_problems(record: ArchivedRecord) -> list[str]:
    """Why a version's content is not the year record its (sealed) digest names (none when it is)."""
    if sha256_hex(record.content) != record.digest:
        return ["its document does not match its digest"]
    if not reads_as_a_record(record):
        return ["its document is not a year record"]
    return []


def reads_as_a_record(record: ArchivedRecord) -> bool:
    """Whether the content reads as a year record (`shared.contracts.record.RecordDocument`): what sync sends from."""
    try:
        return record.fields.record_id == record.record_id
    except ValueError:
        return False


@dataclass(frozen=True)
class Vouched:
    """The records of one RecordsArchived event the archive vouches for, and the others with why not."""

    records: list[ArchivedRecord]
    refused: list[tuple[ArchivedRecord, list[str]]]

    def explanation(self) -> str:
        """Each refused version by record id and version, and why: never what the record says."""
        return "; ".join(
            f"{r.record_id} v{r.version}: {', '.join(problems)}" for r, problems in self.refused
        )


def vouched_for(event: RecordsArchived, trust: TrustStore, at: datetime) -> Vouched:
    """Split an announcement's record versions into those the archive vouches for and the refused ones.

    A seal that fails refuses every version of the announcement (it vouches for none of them); under a good
    seal, a version whose content is not the one its digest names is refused alone.
    """
    sealing = seal_problems_of(event, trust, at)
    good: list[ArchivedRecord] = []
    refused: list[tuple[ArchivedRecord, list[str]]] = []
    for record in event.records:
        problems = sealing + content_problems(record)
        if problems:
            refused.append((record, problems))
        else:
            good.append(record)
    return Vouched(good, refused)


def checkpoint_problems(checkpoint: Checkpoint, trust: TrustStore) -> list[str]:
    """Why `checkpoint` is not shown to be signed by the archive's certificate from the PKI (none when it is)."""
    return check_checkpoint(checkpoint, trust).failed


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard sync tries: a bounded number of attempts with exponential back-off and jitter."""

    #: With the back-off below, 16 attempts span about 3 to 6 minutes of failures while the ministry answers other
    #: requests, about 40 to 80 minutes while nothing gets through (attempts are not counted while the circuit is open).
    max_attempts: int = 16
    base_seconds: float = 2.0
    cap_seconds: float = 600.0
    #: How long a claimed entry belongs to one sender without word from it; after that (a crash) another may take it.
    #: The sender renews the lease every `renew_seconds` while its round runs, so a round may take as long as its
    #: requests do (the ministry's timeout is 10 s a request). A sender that is cancelled releases its claim at once;
    #: one that is killed cannot, so its entries wait out what is left of this lease: seconds. A sender too slow to
    #: renew in time may see its entries sent again by another, which the ministry answers idempotently (the same
    #: Idempotency-Key).
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    #: How often the relay looks for entries whose next attempt is due.
    relay_interval_seconds: float = 1.0
    #: A delivery not announced this long after it was recorded is taken for lost in a crash and announced again.
    announce_grace_seconds: float = 30.0
    #: How often sync looks for such deliveries (and repairs their receipts).
    announce_interval_seconds: float = 10.0
    #: While the ministry answers some requests (one delivered within `answering_window_seconds`), a failed entry
    #: waits at most this long: a flaky but live endpoint never leaves an entry minutes behind it.
    answering_cap_seconds: float = 30.0
    answering_window_seconds: float = 60.0
    #: Rounds in a row in which every request failed before the relay stops sending (the circuit opens).
    circuit_rounds: int = 3
    #: While the circuit is open, one entry is sent this often to find out whether the ministry is back.
    probe_seconds: float = 5.0


@dataclass(frozen=True)
class OutboxEntry:
    """One record version or checkpoint waiting for (or done with) delivery to the ministry.

    `subject` and `number` identify what is delivered: record id and version, or the checkpoint's
    origin and tree size. `key` is made from them and is the idempotency key the ministry sees.
    """

    key: str
    kind: str
    subject: str
    number: int
    payload: dict[str, Any]
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None = None
    claim: str | None = None
    #: Position in the archive log (record entries only): lets reconciliation find gaps.
    seq: int | None = None

    @property
    def digest(self) -> str:
        """What the ministry must hold for this key: the record's digest or the checkpoint's root."""
        return str(self.payload.get("digest") or self.payload.get("root_hash") or "")


class Answer(Enum):
    """What the ministry's answer to one request means for the entry."""

    DELIVERED = "delivered"
    RETRY = "retry"
    PARK = "park"


@dataclass(frozen=True)
class Attempt:
    """What one entry's request to the ministry came to: a receipt, or an error to retry or park on."""

    answer: Answer
    #: How long the request took (a batch request's whole time for each entry it carried).
    seconds: float
    receipt: dict[str, Any] | None = None
    error: str = ""
    #: False for the other entries of one batch request, so that request's duration is counted once.
    counts_request: bool = True
    #: The reason code the ministry gave with a refusal (`unsigned`, `inconsistent`, ...), when it gave one.
    reason: str = ""


@dataclass(frozen=True)
class Receipt:
    """The ministry's acknowledgement of one entry."""

    key: str
    kind: str
    subject: str
    number: int
    receipt_id: str
    received_at: str
    delivered_at: datetime
    #: When the entry was taken into the outbox: delivered_at minus this is the sync lag.
    created_at: datetime


@dataclass(frozen=True)
class Failure:
    """A failed attempt as it is recorded: back to pending with a later time, or parked."""

    key: str
    claim: str
    status: str
    attempts: int
    last_error: str
    next_attempt_at: datetime | None


def record_key(record_id: str, version: int) -> str:
    """The key the ministry deduplicates on: one record version is one delivery."""
    return f"{record_id}:{version}"


def checkpoint_key(origin: str, tree_size: int) -> str:
    """One checkpoint (origin, tree size) is one delivery."""
    return f"checkpoint:{origin}:{tree_size}"


def ministry_payload(record: ArchivedRecord) -> dict[str, Any]:
    """The body sent to the ministry for one archived record version: only what it needs."""
    document = record.document
    personal_id = record.fields.student.identity.personal_id
    return {
        "record_id": record.record_id,
        "version": record.version,
        "school_code": record.school_code,
        "school_year": record.school_year,
        "personal_id": personal_id,
        "supersedes": getattr(record, "supersedes", None),
        "record": {name: document[name] for name in RECORD_FIELDS if name in document},
        "digest": record.digest,
        "archive": {"seq": record.seq, "entry_hash": record.entry_hash},
    }


def checkpoint_payload(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint goes out whole, each field as its signature covers it (`issued_at` as signed, to the millisecond)."""
    return checkpoint.model_dump(mode="json")


#: Why the ministry, as a witness of the archive's log, refuses a checkpoint (docs/ministry-api.md), and why sync
#: could not send one (`no-proof`: the archive gave no consistency proof): the reasons a refusal is counted under.
CHECKPOINT_REFUSALS = ("unsigned", "bad-signature", "no-anchor", "bad-proof", "inconsistent", "no-proof", "other")


def refusal_reason(reason: str) -> str:
    """A refusal's reason as it is counted: one of `CHECKPOINT_REFUSALS`."""
    return reason if reason in CHECKPOINT_REFUSALS else "other"


def consistency_links(checkpoints: Iterable[OutboxEntry], held: Mapping[str, int | None]) -> dict[str, tuple[int, int]]:
    """For each checkpoint about to be sent, the two tree sizes its consistency proof must link (by entry key).

    The ministry takes a new checkpoint when a proof links it with the latest checkpoint of its origin it holds
    (`held`, as far as sync knows: the largest it acknowledged). Sent in order of size, each larger one is linked with
    the one before it (the first with what is held), so a round's checkpoints are taken one after the other; an older
    one than held is linked from itself up to the held one. The first checkpoint of an origin needs no proof, nor one
    the ministry holds already.
    """
    links: dict[str, tuple[int, int]] = {}
    latest = dict(held)
    for entry in sorted(checkpoints, key=lambda e: (e.subject, e.number)):
        last = latest.get(entry.subject)
        if last is not None and entry.number < last:
            links[entry.key] = (entry.number, last)
            continue
        if last is not None and entry.number > last:
            links[entry.key] = (last, entry.number)
        latest[entry.subject] = entry.number if last is None else max(last, entry.number)
    return links


def with_consistency(payload: dict[str, Any], first: int, second: int, proof: list[str]) -> dict[str, Any]:
    """A checkpoint's payload with the RFC 9162 consistency proof from tree size `first` to `second` (hex hashes)."""
    return {**payload, "consistency": {"first": first, "second": second, "proof": list(proof)}}


def new_entry(record: ArchivedRecord, now: datetime) -> OutboxEntry:
    """A fresh outbox entry for a record version, due at once."""
    return OutboxEntry(
        key=record_key(record.record_id, record.version),
        kind=RECORD,
        subject=record.record_id,
        number=record.version,
        payload=ministry_payload(record),
        status=PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        seq=record.seq,
    )


def new_checkpoint_entry(checkpoint: Checkpoint, now: datetime) -> OutboxEntry:
    """A fresh outbox entry for a checkpoint, due at once."""
    return OutboxEntry(
        key=checkpoint_key(checkpoint.origin, checkpoint.tree_size),
        kind=CHECKPOINT,
        subject=checkpoint.origin,
        number=checkpoint.tree_size,
        payload=checkpoint_payload(checkpoint),
        status=PENDING,
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )


def classify(status_code: int) -> Answer:
    """2xx is delivered; 408, 429, 5xx and 412 may pass later; any other answer never will.

    412 is the ministry saying a checkpoint's consistency proof does not link it with the latest checkpoint it holds
    (another was taken meanwhile): the next attempt carries a proof from that one.
    """
    if 200 <= status_code < 300:
        return Answer.DELIVERED
    if status_code in (408, 412, 429) or status_code >= 500:
        return Answer.RETRY
    return Answer.PARK


def backoff_seconds(attempts: int, jitter: float, policy: DeliveryPolicy, *, answering: bool = False) -> float:
    """Delay before the next try after `attempts` failures ("equal jitter").

    The ceiling doubles with each failure up to the cap: the low one (`answering_cap_seconds`) while the ministry
    is `answering` some requests, the long one while nothing gets through. The delay is drawn from the ceiling's
    upper half, `jitter` in [0, 1) choosing where, so retries of many entries spread out but never bunch at zero.
    """
    cap = min(policy.cap_seconds, policy.answering_cap_seconds) if answering else policy.cap_seconds
    ceiling = min(cap, policy.base_seconds * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + ceiling / 2 * min(max(jitter, 0.0), 1.0)


def after_failure(
    entry: OutboxEntry,
    attempt: Attempt,
    now: datetime,
    jitter: float,
    policy: DeliveryPolicy,
    circuit: Circuit | None = None,
) -> Failure:
    """Retry later with back-off, or park: at once for a permanent answer, or after the last attempt.

    How the ministry has been answering (`circuit`) shapes the retry: while the circuit is open the attempt is not
    counted and the entry is due again at once (the relay sends only probes until the ministry is back); while the
    ministry is answering other requests the back-off stays under the low cap.
    """
    circuit = circuit or Circuit()
    if attempt.answer is not Answer.PARK and circuit.is_open:
        return Failure(entry.key, entry.claim or "", PENDING, entry.attempts, attempt.error, now)
    attempts = entry.attempts + 1
    if attempt.answer is Answer.PARK or attempts >= policy.max_attempts:
        return Failure(entry.key, entry.claim or "", PARKED, attempts, attempt.error, None)
    answering = circuit.answering(now, policy)
    delay = timedelta(seconds=backoff_seconds(attempts, jitter, policy, answering=answering))
    return Failure(entry.key, entry.claim or "", PENDING, attempts, attempt.error, now + delay)


# -- the ministry's endpoint: answering, flaky, or down ----------------------------------------


@dataclass(frozen=True)
class Circuit:
    """What sync knows of the ministry's endpoint from its latest rounds of requests.

    Closed, entries are sent as they fall due. After `circuit_rounds` rounds in a row in which every request failed
    (no delivery, no answer other than "try later": connection errors, timeouts, 5xx), it opens: nothing is sent but
    one probe every `probe_seconds`, and no entry's attempts are counted. The first round with an answer closes it.
    """

    #: Rounds in a row in which every request failed.
    failed_rounds: int = 0
    #: When the circuit opened (None: closed).
    opened_at: datetime | None = None
    #: While open: when the next probe may go.
    next_probe_at: datetime | None = None
    #: When the ministry last acknowledged an entry.
    delivered_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def answering(self, now: datetime, policy: DeliveryPolicy) -> bool:
        """Whether the ministry acknowledged an entry within the last `answering_window_seconds`."""
        return self.delivered_at is not None and now - self.delivered_at <= timedelta(
            seconds=policy.answering_window_seconds
        )

    def allowance(self, limit: int, now: datetime) -> int:
        """How many entries a round may send now: up to `limit` while closed; while open one probe when it is due."""
        if not self.is_open:
            return limit
        return min(limit, 1) if self.next_probe_at is None or self.next_probe_at <= now else 0

    def probing(self, now: datetime, policy: DeliveryPolicy) -> Circuit:
        """The circuit with a probe under way: no other probe goes before `probe_seconds` from now."""
        if not self.is_open:
            return self
        return replace(self, next_probe_at=now + timedelta(seconds=policy.probe_seconds))

    def after_round(self, attempts: Iterable[Attempt], now: datetime, policy: DeliveryPolicy) -> Circuit:
        """The circuit after a round of requests answered with `attempts`.

        A delivery, or any answer but "try later" (a refusal shows the endpoint is up), closes it; a round in which
        every request failed counts towards opening it, and while open moves the next probe on. No request, no change.
        """
        answers = [a.answer for a in attempts]
        if not answers:
            return self
        delivered = now if Answer.DELIVERED in answers else self.delivered_at
        if any(a is not Answer.RETRY for a in answers):
            return Circuit(delivered_at=delivered)
        failed = self.failed_rounds + 1
        if not self.is_open and failed < policy.circuit_rounds:
            return replace(self, failed_rounds=failed)
        return Circuit(failed, self.opened_at or now, now + timedelta(seconds=policy.probe_seconds), self.delivered_at)


def receipt_from(entry: OutboxEntry, answer: dict[str, Any], now: datetime) -> Receipt:
    return Receipt(
        key=entry.key,
        kind=entry.kind,
        subject=entry.subject,
        number=entry.number,
        receipt_id=str(answer["receipt_id"]),
        received_at=str(answer.get("received_at", "")),
        delivered_at=now,
        created_at=entry.created_at,
    )


# -- operators --------------------------------------------------------------------------------

#: The role an actor token must carry to resume or resend outbox entries.
OPERATOR: Role = "operator"


def authorise_operator(actor: Actor) -> None:
    """Refuse anyone but an operator: only operators hand outbox entries back to the relay."""
    if not actor.has(OPERATOR):
        raise Forbidden(f"{actor.subject} is not an operator", reason="not-an-operator")


# -- reconciliation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """What sync holds for one key: its state, the digest sent and the receipt it recorded."""

    key: str
    kind: str
    status: str
    digest: str
    receipt_id: str | None = None
    seq: int | None = None
    #: The receipt id of the document kept for the key in the receipts collection (None: none kept).
    kept_receipt_id: str | None = None
    #: When the entry was recorded delivered, while the step that recorded it has not finished (its receipt
    #: kept and its delivery announced); None once it has.
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class Acknowledged:
    """One acknowledgement the ministry lists for a key."""

    key: str
    receipt_id: str
    digest: str


#: Each kind of difference reconciliation reports, with what it means for the operator.
DIFFERENCES = {
    "missing_at_ministry": "sync recorded a receipt, but the ministry does not list the key",
    "unknown_to_sync": "the ministry lists a key that sync never had in its outbox",
    "acknowledged_not_recorded": "the ministry holds the key, sync has not recorded it delivered (an answer lost)",
    "receipt_mismatch": "the ministry's receipt id differs from the one sync recorded",
    "digest_mismatch": "the ministry holds another digest (or root hash) than the one sync sent",
    "acknowledged_twice": "the ministry lists more than one acknowledgement for one key",
    "not_in_outbox": "archive log positions below the latest checkpoint's tree size that sync never received",
    "receipt_not_kept": "sync recorded the key delivered, but its receipts collection keeps no receipt for it, or another",
}

#: Entries not delivered yet: the backlog, reported beside the differences but not one of them.
WAITING = (PENDING, SENDING, PARKED)


@dataclass
class Reconciliation:
    """Compares, key by key, what sync holds with what the ministry acknowledges. Pure and incremental.

    Feed it every key present on either side (`compare`), the archive log positions sync knows
    (through `compare` of record entries), then call `finish` with the latest checkpoint's tree size.
    Each kind of difference keeps its count and up to `limit` example keys. A delivery recorded at or
    after `settling_since` is still being completed (its receipt kept, its delivery announced), so
    its receipt is not yet looked for; one recorded before it and not completed is a difference.
    """

    limit: int = 100
    settling_since: datetime | None = None
    held: int = 0
    acknowledged: int = 0
    matched: int = 0
    waiting: dict[str, int] = field(default_factory=lambda: {s: 0 for s in WAITING})
    counts: dict[str, int] = field(default_factory=lambda: {d: 0 for d in DIFFERENCES})
    examples: dict[str, list[str]] = field(default_factory=lambda: {d: [] for d in DIFFERENCES})
    seqs: set[int] = field(default_factory=set)

    def _note(self, difference: str, key: str) -> None:
        self.counts[difference] += 1
        if len(self.examples[difference]) < self.limit:
            self.examples[difference].append(key)

    def compare(self, key: str, held: Held | None, acks: list[Acknowledged]) -> None:
        """One key: sync's entry (or None) against the ministry's acknowledgements of it (maybe none)."""
        self._tally(held, acks)
        if held is not None and self._receipt_not_kept(held):
            self._note("receipt_not_kept", key)
        if len(acks) > 1:
            self._note("acknowledged_twice", key)
        if held is None:
            if acks:
                self._note("unknown_to_sync", key)
        elif not acks:
            self._unacknowledged(key, held)
        else:
            self._acknowledged(key, held, acks)

    def _receipt_not_kept(self, held: Held) -> bool:
        """Delivered, with no receipt document (or another) kept, and past the time the step recording it needs."""
        if held.status != DELIVERED or held.kept_receipt_id == held.receipt_id:
            return False
        if held.recorded_at is None or self.settling_since is None:
            return True
        return held.recorded_at < self.settling_since

    def _tally(self, held: Held | None, acks: list[Acknowledged]) -> None:
        """Count the key on each side that has it, and the archive log position sync knows for it."""
        if held is not None:
            self.held += 1
            if held.seq is not None:
                self.seqs.add(held.seq)
        if acks:
            self.acknowledged += 1

    def _unacknowledged(self, key: str, held: Held) -> None:
        """An entry the ministry does not list: missing there when sync recorded it delivered, else on its way."""
        if held.status == DELIVERED:
            self._note("missing_at_ministry", key)
        else:
            self.waiting[held.status] = self.waiting.get(held.status, 0) + 1

    def _acknowledged(self, key: str, held: Held, acks: list[Acknowledged]) -> None:
        """An entry the ministry lists: it must hold the digest sent and the receipt sync recorded."""
        if any(a.digest != held.digest for a in acks):
            self._note("digest_mismatch", key)
        if held.status != DELIVERED:
            self._note("acknowledged_not_recorded", key)
        elif held.receipt_id not in {a.receipt_id for a in acks}:
            self._note("receipt_mismatch", key)
        else:
            self.matched += 1

    def finish(self, archive_size: int | None) -> None:
        """Count the archive log positions below `archive_size` that no record entry carries."""
        if not archive_size:
            return
        for start, end in missing_ranges(self.seqs, archive_size):
            self.counts["not_in_outbox"] += end - start + 1
            if len(self.examples["not_in_outbox"]) < self.limit:
                self.examples["not_in_outbox"].append(f"seq {start}" if start == end else f"seq {start}-{end}")

    @property
    def differences(self) -> int:
        return sum(self.counts.values())


def missing_ranges(present: Iterable[int], size: int) -> list[tuple[int, int]]:
    """The runs of positions in [0, size) that `present` lacks, as inclusive (start, end) pairs."""
    ranges: list[tuple[int, int]] = []
    expected = 0
    for seq in sorted(s for s in set(present) if 0 <= s < size):
        if seq > expected:
            ranges.append((expected, seq - 1))
        expected = seq + 1
    if expected < size:
        ranges.append((expected, size - 1))
    return ranges
