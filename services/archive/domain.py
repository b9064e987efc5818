"""The archive's rules: what an entry commits to, which versions it admits (and when), amendments, who may ask
what, and the audit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Protocol

from shared.auth import Actor
from shared.contracts.archive import AuditFinding, AuditReport, Checkpoint
from shared.contracts.grades import VersionKey
from shared.contracts.signing import SignedRecord
from shared.crypto.archive_log import Leaf, fields_of, timestamp
from shared.crypto.canonical import sha256_hex
from shared.crypto.jws import protected_header
from shared.crypto.merkle import MerkleTree
from shared.errors import Forbidden, InvalidMessage, TransientError


@dataclass(frozen=True)
class Entry(Leaf):
    """One signed record version in the log: leaf `seq` of the Merkle tree. Never changed once written."""

    leaf_hash: str
    batch_id: str | None = None
    #: Read back from the log, its stored document did not decrypt (its ciphertext was altered, or its data
    #: key is gone); `content` is then empty.
    unreadable: bool = field(default=False, compare=False)

    @property
    def key(self) -> VersionKey:
        return (self.record_id, self.version)

    @property
    def supersedes(self) -> int | None:
        return superseded_version(self)

    def computed_leaf_hash(self) -> str:
        """The leaf hash recomputed from what the entry holds now (the stored `leaf_hash` says what it held)."""
        return self.hash().hex()


def key_of(signed: SignedRecord) -> VersionKey:
    return (signed.record.record_id, signed.record.version)


@dataclass(frozen=True)
class Chunk:
    """The record versions one message brings, each once, with the digest of its content.

    A version's content (the canonical bytes it arrived with) is what the signatures cover, what the
    digest is taken of and what the leaf commits to; the digest is what each signature and grades'
    seal name, and what the archived version states. It is taken once.
    """

    versions: Mapping[VersionKey, SignedRecord]
    batch_id: str | None = None
    #: SHA-256 (hex) of each version's content.
    digests: Mapping[VersionKey, str] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Iterable[SignedRecord], batch_id: str | None = None) -> Chunk:
        versions: dict[VersionKey, SignedRecord] = {}
        for signed in records:
            versions.setdefault(key_of(signed), signed)
        digests = {key: sha256_hex(s.record.content) for key, s in versions.items()}
        return cls(versions, batch_id, digests)


class Versioned(Protocol):
    """A record version whose document can be read: a signed version, or a log entry."""

    @property
    def version(self) -> int: ...

    @property
    def document(self) -> dict[str, Any]: ...


def superseded_version(record: Versioned) -> int | None:
    """The version an amended version states it supersedes (signing writes it in), if it is an amendment.

    An amendment supersedes an earlier version, so a first version is none, and its document is not read.
    """
    if record.version == 1:
        return None
    amendment = record.document.get("amendment")
    if isinstance(amendment, Mapping) and isinstance(amendment.get("supersedes"), int):
        return int(amendment["supersedes"])
    return None


def amendment_requester(record: Versioned) -> str | None:
    """Who at the school asked for the amendment a version states, if it is one and names them."""
    if superseded_version(record) is None:
        return None
    requester = record.document["amendment"].get("requested_by")
    return requester if isinstance(requester, str) and requester else None


def build_entries(
    size: int, records: Iterable[SignedRecord], archived_at: datetime, batch_id: str | None = None
) -> list[Entry]:
    """Entries for `records` as leaves size, size+1, … of the tree.

    `archived_at` is the archive's clock when it admitted them: the time a checkpoint over the entries proves.
    """
    when = timestamp(archived_at)
    entries = []
    for seq, signed in enumerate(records, start=size):
        record = signed.record
        leaf = Leaf(
            seq=seq,
            record_id=record.record_id,
            version=record.version,
            school_code=record.school_code,
            school_year=record.school_year,
            student_ref=record.student_ref,
            content=record.content,
            signatures=tuple(s.jws for s in signed.signatures),
            archived_at=when,
            seal=record.seal,
        )
        entries.append(Entry(**fields_of(leaf), leaf_hash=leaf.hash().hex(), batch_id=batch_id))
    return entries


def signature_problems(signed: SignedRecord, expected: str | None = None) -> list[str]:
    """Ways a signed record contradicts itself: no signatures, or one naming another version or content."""
    record = signed.record
    if not signed.signatures:
        return [f"{record.record_id} v{record.version} carries no signature"]
    expected = expected or sha256_hex(record.content)
    return [
        f"{record.record_id} v{record.version}: {s.role}'s signature is for {s.record_id} v{s.version}"
        if (s.record_id, s.version) != (record.record_id, record.version)
        else f"{record.record_id} v{record.version}: {s.role}'s signature covers other content"
        for s in signed.signatures
        if (s.record_id, s.version) != (record.record_id, record.version) or s.digest != expected
    ]


def stated_time(jws: str) -> datetime | None:
    """The signing time a signature states in its protected header (UTC when it names no zone); None if unreadable."""
    try:
        moment = datetime.fromisoformat(str(protected_header(jws)["signed_at"]))
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    return in_utc(moment)


def in_utc(moment: datetime | None) -> datetime | None:
    """A stated time as a moment: one that names no zone is taken as UTC."""
    return moment if moment is None or moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def signing_time_problems(
    signed: SignedRecord,
    now: datetime,
    max_skew: timedelta,
    *,
    revoked: bool = False,
    stated_times: Sequence[datetime | None] | None = None,
) -> list[str]:
    """Why the times a record's signatures state cannot be believed at admission `now`, give or take `max_skew`.

    No signature states a time ahead of the archive's clock, or later than the signature that names it
    (a homeroom teacher signs days before the principal, never after). When a certificate of the record is
    `revoked`, its verdict rests on the time the signature states: the signature that completed the record
    (the last, made just before the record came here) must then state a time within `max_skew` of the
    archive's clock, so a revoked signer cannot back-date. Certificates still valid now need no such bound:
    a record the archive admits late (after an outage) is as good as one admitted at once. `stated_times` is
    the time each signature states, in order, when its header was read already (None where it was unreadable).
    """
    record = signed.record
    name = f"{record.record_id} v{record.version}"
    moments = stated_times if stated_times is not None else [stated_time(s.jws) for s in signed.signatures]
    times = [(s.role, in_utc(moment)) for s, moment in zip(signed.signatures, moments, strict=True)]
    stated = [(role, moment) for role, moment in times if moment is not None]
    if len(stated) < len(times):
        return [f"{name}: a signature states no readable signing time"]
    if not stated:
        return []
    skew, clock = int(max_skew.total_seconds()), f"{now.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"
    problems = [
        f"{name}: the {role}'s signature states {moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z, more than {skew}s "
        f"ahead of the archive's clock ({clock})"
        for role, moment in stated
        if moment > now + max_skew
    ]
    problems += [
        f"{name}: the {first}'s signature states a later time than the {then}'s, which names it"
        for (first, earlier), (then, later) in pairwise(stated)
        if earlier > later + max_skew
    ]
    last_role, last = stated[-1]
    if revoked and last < now - max_skew:
        problems.append(
            f"{name}: its last signature (the {last_role}'s) states {last.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z, more "
            f"than {skew}s before the archive's clock ({clock}), and a certificate of it is revoked: its signing time "
            "is not believable"
        )
    return problems


@dataclass(frozen=True)
class ArchivedVersion:
    """What the archive knows of an archived version when it judges an amendment."""

    version: int
    school_code: str


class SupersededNotArchived(TransientError):
    """The amendment names a version the archive does not hold yet: it waits for that version to arrive."""

    reason = "superseded-not-archived"


def check_amendment(signed: SignedRecord, archived: Sequence[ArchivedVersion]) -> None:
    """Admit a new version of an archived record only as an amendment by the issuing school.

    Raises Forbidden (another school), InvalidMessage (no or wrong superseded version), or
    SupersededNotArchived (the superseded version may still be on its way).
    """
    record = signed.record
    supersedes = superseded_version(record)
    if not archived:
        if supersedes is not None:
            raise SupersededNotArchived(f"{record.record_id} v{supersedes} is not archived; the amendment waits for it")
        return
    foreign = [a for a in archived if a.school_code != record.school_code]
    if foreign:
        raise Forbidden(
            f"{record.record_id} was issued by school {foreign[0].school_code}; "
            f"school {record.school_code} may not amend it"
        )
    latest = max(a.version for a in archived)
    if supersedes is None:
        raise InvalidMessage(
            f"{record.record_id} v{record.version}: a new version of an archived record must name the version "
            "it supersedes and a reason (an amendment)"
        )
    if supersedes != latest or record.version <= latest:
        raise InvalidMessage(
            f"{record.record_id} v{record.version} supersedes v{supersedes}, but the latest archived version is "
            f"v{latest}: an amendment replaces the latest version with a later one"
        )


# --- who may ask what -------------------------------------------------------------------------
#
# Reading the archive is reading students' records: an export (or a printed copy) is for the
# department's operators and for the principal or records administrator of the record's school; a
# proof of inclusion, for the operators and that school's staff; a proof of consistency (hashes
# only), for any authenticated staff. Operating the log (audit, checkpoint) is for operators.

#: The roles of a school's staff; an operator is the city department's.
SCHOOL_STAFF = ("subject_teacher", "homeroom_teacher", "principal", "school_admin")
#: Who keeps a school's records: they may export them and see who read them.
RECORD_KEEPERS = ("principal", "school_admin")


def _is_one_of(actor: Actor, roles: Sequence[str]) -> bool:
    return any(role in actor.roles for role in roles)


def authorise_operator(actor: Actor, what: str) -> None:
    """Refuse anyone but an operator."""
    if not actor.has("operator"):
        raise Forbidden(f"{actor.subject} may not {what}: only an operator may", reason="not-operator")


def authorise_export(actor: Actor, school_code: str) -> None:
    """An operator, or the principal or records administrator of the record's school."""
    if actor.has("operator") or (actor.school_code == school_code and _is_one_of(actor, RECORD_KEEPERS)):
        return
    raise Forbidden(
        f"{actor.subject} may not export a record of school {school_code}: only an operator, or that school's "
        "principal or records administrator, may",
        reason="wrong-school" if actor.school_code != school_code else "wrong-role",
    )


def authorise_inclusion_proof(actor: Actor, school_code: str) -> None:
    """An operator, or the staff of the record's school."""
    if actor.has("operator") or (actor.school_code == school_code and _is_one_of(actor, SCHOOL_STAFF)):
        return
    raise Forbidden(
        f"{actor.subject} may not have a proof about a record of school {school_code}: only an operator or that "
        "school's staff may",
        reason="wrong-school",
    )


# --- the audit -------------------------------------------------------------------------------


def audit(
    entries: Sequence[Entry],
    checkpoints: Sequence[Checkpoint],
    check_signature: Callable[[Checkpoint], list[str]],
) -> AuditReport:
    """Recompute the log from stored entries and hold it against every signed checkpoint.

    Names each entry that was altered (its content no longer gives its leaf hash, or its record
    no longer matches its signatures' digest), removed (a gap in the positions) or reordered
    (stored out of its position); and each checkpoint whose root the stored entries no longer give.
    """
    by_seq, findings = positions_claimed(entries)
    size = max(by_seq) + 1 if by_seq else 0
    leaves, entry_findings = recomputed_leaves(by_seq, size)
    findings += entry_findings
    passed = []
    if size and not entry_findings:
        passed.append(f"all {size} entries give their stored leaf hashes and match their signatures")
    checkpoint_findings, held = held_checkpoints(MerkleTree(leaves), size, checkpoints, check_signature)
    return AuditReport(
        entries=len(entries),
        checkpoints=len(checkpoints),
        ok=not findings and not checkpoint_findings,
        passed=passed + held,
        findings=findings + checkpoint_findings,
    )


def positions_claimed(entries: Sequence[Entry]) -> tuple[dict[int, Entry], list[AuditFinding]]:
    """Each position's stored entry (the first that claims it), and a finding for each second claim."""
    by_seq: dict[int, Entry] = {}
    findings: list[AuditFinding] = []
    for entry in entries:
        if entry.seq in by_seq:
            findings.append(AuditFinding(seq=entry.seq, record_id=entry.record_id, version=entry.version,
                                         problem=f"two entries claim position {entry.seq}"))
        by_seq.setdefault(entry.seq, entry)
    return by_seq, findings


def recomputed_leaves(by_seq: Mapping[int, Entry], size: int) -> tuple[list[bytes], list[AuditFinding]]:
    """The leaf hashes the stored entries give, position by position, and the entries removed or altered."""
    leaves: list[bytes] = []
    findings: list[AuditFinding] = []
    for seq in range(size):
        entry = by_seq.get(seq)
        if entry is None:
            findings.append(AuditFinding(seq=seq, problem=f"entry {seq} is missing: removed from the log"))
            leaves.append(b"\x00" * 32)
            continue
        computed = entry.computed_leaf_hash()
        leaves.append(bytes.fromhex(computed))
        findings += [
            AuditFinding(seq=seq, record_id=entry.record_id, version=entry.version,
                         problem=f"entry {seq} ({entry.record_id} v{entry.version}): {problem}")
            for problem in entry_problems(entry, computed)
        ]
    return leaves, findings


def entry_problems(entry: Entry, computed_leaf_hash: str) -> list[str]:
    """How a stored entry no longer matches what was appended."""
    problems = []
    if entry.unreadable:
        problems.append("its stored document does not decrypt (its ciphertext was altered, or its data key is gone)")
    if computed_leaf_hash != entry.leaf_hash:
        problems.append("its content no longer gives its stored leaf hash (altered, or moved from another position)")
    if entry.unreadable:
        return problems
    record_digest = sha256_hex(entry.content)
    if any(_signed_digest(jws) != record_digest for jws in entry.signatures):
        problems.append("its record no longer matches the digest its signatures cover")
    return problems


def held_checkpoints(
    tree: MerkleTree,
    size: int,
    checkpoints: Sequence[Checkpoint],
    check_signature: Callable[[Checkpoint], list[str]],
) -> tuple[list[AuditFinding], list[str]]:
    """Each signed checkpoint held against the recomputed tree: (what fails, what holds)."""
    findings: list[AuditFinding] = []
    passed: list[str] = []
    for checkpoint in sorted(checkpoints, key=lambda c: c.tree_size):
        when = f"{checkpoint.issued_at:%Y-%m-%d %H:%M:%S}"
        problems = check_signature(checkpoint)
        for problem in problems:
            findings.append(AuditFinding(seq=None, problem=f"checkpoint of size {checkpoint.tree_size} ({when}): {problem}"))
        if checkpoint.tree_size > size:
            findings.append(AuditFinding(seq=None, problem=(
                f"checkpoint of size {checkpoint.tree_size} ({when}) covers entries that are no longer stored "
                f"(only {size} are): entries removed from the end of the log")))
            continue
        if tree.root(checkpoint.tree_size).hex() != checkpoint.root_hash:
            findings.append(AuditFinding(seq=None, problem=(
                f"the stored entries 0-{checkpoint.tree_size - 1} no longer give the root signed in the checkpoint "
                f"of size {checkpoint.tree_size} ({when})")))
        elif not problems:
            passed.append(f"the checkpoint of size {checkpoint.tree_size} ({when}) is signed and its root recomputes")
    return findings, passed


def _signed_digest(jws: str) -> str | None:
    try:
        return protected_header(jws).get("digest")
    except (ValueError, IndexError):
        return None


# --- timestamps ------------------------------------------------------------------------------

#: Digest algorithms a timestamp may use, weakest first: a renewal never moves down this list.
HASH_STRENGTH = ("sha256", "sha384", "sha512")


def renewal_reason(
    tsa_not_after: datetime | None, hash_algorithm: str | None, until: datetime, algorithm: str
) -> str | None:
    """Why a checkpoint's latest timestamp must be renewed before `until` under `algorithm`, or None when it holds.

    None for both when the checkpoint has no timestamp yet: it gets its first. A token renewed already by a TSA whose
    certificate outlives `until` and with a digest at least as strong is left alone, so asking twice renews once.
    """
    if tsa_not_after is None or hash_algorithm is None:
        return "no timestamp yet"
    if tsa_not_after <= until:
        return f"its TSA's certificate expires {tsa_not_after:%Y-%m-%d}"
    if hash_algorithm not in HASH_STRENGTH or HASH_STRENGTH.index(hash_algorithm) < HASH_STRENGTH.index(algorithm):
        return f"its digest {hash_algorithm} is weaker than {algorithm}"
    return None
