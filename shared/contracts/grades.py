"""Grades messages: assessment and conduct entries, terms, closing a year, the assembled record."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from shared.contracts.base import Message, Model, Notification, Reply
from shared.contracts.limits import (
    CODE,
    ID,
    LABEL,
    LINES,
    LISTING,
    LOOKUP,
    NAME,
    PERSONAL_ID,
    PLACE,
    RATINGS,
    RECORDS,
    REGULAR,
    ROWS,
    SCHOOL_CODE,
    SCHOOL_STUDENTS,
    SCHOOL_YEAR,
    SUBJECT,
    TEXT,
    WORDS,
    Identifier,
    Sentence,
    ShortCode,
    SubjectName,
)
from shared.contracts.record import AmendmentReason, CarriesContent

Term = Literal[1, 2]
CommentLevel = Literal["Đ", "CĐ"]
#: Primary subject levels: Hoàn thành tốt, Hoàn thành, Chưa hoàn thành (Circular 27/2020).
SubjectLevel = Literal["T", "H", "C"]
#: Primary qualities and competencies: Tốt, Đạt, Cần cố gắng.
QualityLevel = Literal["T", "Đ", "C"]
#: Secondary conduct (rèn luyện) per term (Circular 22/2021).
ConductLevel = Literal["Tốt", "Khá", "Đạt", "Chưa đạt"]


class SubjectTermScores(Model):
    """One student's assessments in one subject for one term.

    Secondary score-assessed subjects carry `regular` (ĐĐGtx), `midterm` (ĐĐGgk) and `final`
    (ĐĐGck); secondary comment-assessed subjects carry `comment_level` (Đạt / Chưa đạt).
    Primary subjects carry `level` (term 1: end of term I, term 2: end of year) and
    `midterm_level`; tested primary subjects carry the periodic test in `final` (and, in
    grades 4-5 for Tiếng Việt and Toán, the mid-term test in `midterm`).
    """

    student_ref: str = Field(max_length=ID)
    subject: str = Field(max_length=SUBJECT)
    term: Term
    regular: tuple[Decimal, ...] = Field((), max_length=REGULAR)
    midterm: Decimal | None = None
    final: Decimal | None = None
    comment_level: CommentLevel | None = None
    level: SubjectLevel | None = None
    midterm_level: SubjectLevel | None = None
    #: The subject teacher's comment for the term.
    comment: str = Field("", max_length=WORDS)


class RecordAssessments(Message):
    """Command: store a chunk of assessment entries of one school year, from a subject teacher.

    An entry that replaces a stored one is a change: it is logged with the actor and `reason`
    (required once the term has been reopened). Requested (not just published), it is answered
    with an `AssessmentsRecorded`.
    """

    ROUTING_KEY = "grades.assessments.record.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    entries: list[SubjectTermScores] = Field(min_length=1, max_length=ROWS)
    reason: str = Field("", max_length=WORDS)


class EntryRejection(Model):
    """Why entry `index` of a command was not stored; `code` is short, `reason` in words."""

    index: int
    code: str = Field(max_length=CODE)
    reason: str = Field(max_length=TEXT)


class EntriesRecorded(Notification):
    """What became of a command's entries: how many were stored new, changed or unchanged, and each one rejected."""

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    #: Entries accepted (new, changed or unchanged).
    entries: int
    source_message_id: str = Field(max_length=ID)
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected: list[EntryRejection] = Field(default_factory=list, max_length=ROWS)


class AssessmentsRecorded(EntriesRecorded):
    """Event (and reply): a subject teacher's entries recorded."""

    ROUTING_KEY = "grades.assessments.recorded.v1"


class StudentTermConduct(Model):
    """What the homeroom teacher enters for one student and one term.

    Secondary: `conduct` (rèn luyện) and `absences` (sessions, excused or not). Primary:
    `qualities` and `competencies` (name -> T/Đ/C) and `absences`. Both: `comment`.
    """

    student_ref: str = Field(max_length=ID)
    term: Term
    conduct: ConductLevel | None = None
    absences: int | None = Field(None, ge=0)
    qualities: dict[SubjectName, QualityLevel] = Field(default_factory=dict, max_length=RATINGS)
    competencies: dict[SubjectName, QualityLevel] = Field(default_factory=dict, max_length=RATINGS)
    comment: str = Field("", max_length=WORDS)


class RecordConduct(Message):
    """Command: the homeroom teacher's entries for students of their class."""

    ROUTING_KEY = "grades.conduct.record.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    entries: list[StudentTermConduct] = Field(min_length=1, max_length=ROWS)
    reason: str = Field("", max_length=WORDS)


class ConductRecorded(EntriesRecorded):
    """Event (and reply): the homeroom teacher's entries recorded."""

    ROUTING_KEY = "grades.conduct.recorded.v1"


class CloseTerm(Message):
    """Command (principal or school administrator): lock a term's entries."""

    ROUTING_KEY = "grades.term.close.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    term: Term


class ReopenTerm(Message):
    """Command (principal only): unlock a closed term for corrections, saying why."""

    ROUTING_KEY = "grades.term.reopen.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    term: Term
    reason: str = Field(min_length=1, max_length=WORDS)


class TermChanged(Notification):
    """A term was closed or reopened (or a repeated command found it so already)."""

    ROUTING_KEY = "grades.term.changed.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    term: Term
    state: Literal["open", "closed"]
    source_message_id: str = Field(max_length=ID)
    #: The term was so before this command, which changed nothing (another command closed or reopened it).
    already: bool = False


class CloseYear(Message):
    """Command (principal): close the school year and assemble every student's record.

    Both terms must be closed first: a record is assembled only from locked entries. The year closes for
    the whole school; `class_name` limits which records are assembled now (a later close assembles the
    others). Requested, it is answered with `YearClosed`, or with the reason it was refused.
    """

    ROUTING_KEY = "grades.year.close.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    #: Assemble only this class's records (None: every class of the school).
    class_name: str | None = Field(None, max_length=CODE)


#: A seal carries its producer's certificate chain; this is ample for it.
MAX_SEAL_LENGTH = 8_000

#: (record_id, version): one record version, as services key it in memory and in storage.
VersionKey = tuple[str, int]


class RecordKey(Model):
    """One record version, as messages name it."""

    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)


class RecordVersion(CarriesContent):
    """One version of one student's year record.

    `content` is the record itself: its document's RFC 8785 canonical bytes, exactly as grades wrote
    them (`shared.contracts.record`), which is what gets sealed, signed and archived. The other fields
    repeat what routing and storage need.
    """

    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)
    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    student_ref: str = Field(max_length=ID)
    #: grades' seal over this version (`shared.crypto.seal.record_claims`): where its content comes from.
    seal: str | None = Field(None, max_length=MAX_SEAL_LENGTH)

    @property
    def key(self) -> VersionKey:
        return (self.record_id, self.version)


class RecordsReady(Message):
    """Event: assembled record versions, ready to be signed."""

    ROUTING_KEY = "grades.record.ready.v2"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    records: list[RecordVersion] = Field(min_length=1, max_length=RECORDS)


class ExplainRecord(Message):
    """Request: how a record's results were computed (answered with `RecordExplanation`)."""

    ROUTING_KEY = "grades.record.explain.v1"

    record_id: str = Field(max_length=ID)
    #: None: the latest version.
    version: int | None = None
    #: Why the reader asks, in their words; kept in the access log.
    purpose: str = Field("", max_length=200)


class ExplanationLine(Model):
    """One computed result: what it is about, its value, the clause that decided it, the inputs."""

    about: str = Field(max_length=LABEL)
    result: Any
    clause: str = Field(max_length=LABEL)
    rule: str = Field(max_length=LABEL)
    inputs: dict[str, Any]
    text: str = Field(max_length=TEXT)


class RecordExplanation(Reply):
    record_id: str = Field(max_length=ID)
    version: int = 0
    school_code: str = Field("", max_length=SCHOOL_CODE)
    school_year: str = Field("", max_length=SCHOOL_YEAR)
    grade: int = 0
    class_name: str = Field("", max_length=CODE)
    student_name: str = Field("", max_length=NAME)
    rule_set: str = Field("", max_length=CODE)
    unconfirmed: list[Sentence] = Field(default_factory=list, max_length=LINES)
    lines: list[ExplanationLine] = Field(default_factory=list, max_length=LINES)


# -- a school year's steps, followed ----------------------------------------------------------


class YearClosing(Notification):
    """Progress of a year's close: one more group of classmates assembled (or left out)."""

    ROUTING_KEY = "grades.year.closing.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    source_message_id: str = Field(max_length=ID)
    #: The class of the group just done.
    class_name: str = Field(max_length=CODE)
    #: Students of the close done so far (assembled or left out), and in all.
    students_done: int
    students_total: int
    assembled: int


class LeftOut(Model):
    """Students of one class whose record a year's close did not assemble, and why (`reason`: a short code)."""

    reason: str = Field(max_length=CODE)
    class_name: str = Field(max_length=CODE)
    count: int
    #: Their references (the first of them): what identity and grades know them by.
    student_refs: list[Identifier] = Field(default_factory=list, max_length=LOOKUP)


class KeptSigned(Model):
    """A first version a year closed again assembled with other content and kept as it is: it carries a signature
    (`roles`: whose, in signing order). Names the record, its version and class, never personal data."""

    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)
    class_name: str = Field(max_length=CODE)
    roles: list[ShortCode] = Field(default_factory=list, max_length=3)


class YearClosed(Notification):
    """A year's close is done (event, and the answer to whoever asked): the records assembled and who was left out."""

    ROUTING_KEY = "grades.year.closed.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    class_name: str | None = Field(None, max_length=CODE)
    source_message_id: str = Field(max_length=ID)
    #: The year was closed before this command (which assembled its records again: nothing is stored twice).
    already: bool = False
    #: Students enrolled in the close's scope.
    students: int = 0
    #: Records assembled (stored now or before), and of them stored now.
    assembled: int = 0
    new: int = 0
    unassembled: list[LeftOut] = Field(default_factory=list, max_length=LINES)
    #: First versions assembled again with other content (a term reopened after the close) and kept as they are,
    #: because they carry a signature: each is corrected by an amendment once it is signed and sealed.
    kept_signed: list[KeptSigned] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)


#: Where a record version stands: assembled by grades (complete or not), signed by the homeroom teacher, the
#: principal and the school's seal (signing), kept in the archive, received by the ministry (sync).
RecordStatus = Literal["assembled", "incomplete", "signed-and-sealed", "archived", "delivered"]


class ListRecords(Message):
    """Request (the school's staff, an operator): the records of a school year, one line a record, answered with
    `RecordList`. Each student listed is kept in grades' access log with `purpose`.

    With `summary`, the answer counts the records per class (`RecordList.classes`) and lists none: it names no
    student, so it reads no one's personal data and nothing is kept in the access log.
    """

    ROUTING_KEY = "grades.record.list.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    class_name: str | None = Field(None, max_length=CODE)
    status: RecordStatus | None = None
    #: One student's record (identity's reference for them).
    student_ref: str | None = Field(None, max_length=ID)
    purpose: str = Field("", max_length=200)
    #: Counts per class only, no line a record (not with `student_ref`: a summary names no student).
    summary: bool = False


class RecordLine(Model):
    """One record: its latest version known to grades, where it stands, whose it is as the reader may see it."""

    record_id: str = Field(max_length=ID)
    version: int = Field(ge=1)
    status: RecordStatus
    grade: int
    class_name: str = Field(max_length=CODE)
    student_ref: str = Field(max_length=ID)
    #: The student's name, for a reader the access rules let see it ("" otherwise).
    student_name: str = Field("", max_length=NAME)
    #: The personal ID with all but its last digits hidden.
    masked_personal_id: str = Field("", max_length=PERSONAL_ID)
    complete: bool = True
    #: Entries the record lacks (its `missing`).
    missing: int = 0


class ClassSummary(Model):
    """One class's records counted, naming no student: how many, how many lack entries, and how many reached each
    step after assembly (a step counts every record that went past it: a delivered record was archived, and signed
    and sealed, before)."""

    class_name: str = Field(max_length=CODE)
    records: int = 0
    incomplete: int = 0
    signed_and_sealed: int = 0
    archived: int = 0
    delivered: int = 0


class RecordList(Reply):
    school_code: str = Field("", max_length=SCHOOL_CODE)
    school_year: str = Field("", max_length=SCHOOL_YEAR)
    records: list[RecordLine] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)
    #: A summary's counts, class by class (empty unless `ListRecords.summary`).
    classes: list[ClassSummary] = Field(default_factory=list, max_length=LINES)
    #: The terms of the school year that are closed now (1, 2), as grades locks them.
    terms_closed: list[int] = Field(default_factory=list, max_length=2)


class EntryHistory(Message):
    """Request (the school's staff, an operator): every change of one student's entries in a school year, answered
    with `EntryChanges`; kept in grades' access log with `purpose`."""

    ROUTING_KEY = "grades.entry.history.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    student_ref: str = Field(max_length=ID)
    #: One subject's entries only (None: every subject, and the homeroom entries).
    subject: str | None = Field(None, max_length=SUBJECT)
    purpose: str = Field("", max_length=200)


class EntryChange(Model):
    """One entry recorded or changed: which entry, by whom, when, its values before and after, why, by which message."""

    #: The subject, or "" for the homeroom teacher's entry (conduct, absences, comments).
    subject: str = Field(max_length=SUBJECT)
    term: Term
    kind: Literal["subject", "homeroom"]
    action: Literal["recorded", "changed"]
    #: The entry's revision this made (1: first recorded).
    revision: int = Field(ge=1)
    #: None: when it was first recorded was not kept (an entry stored by an earlier release).
    at: datetime | None = None
    by: str = Field(max_length=ID)
    old: dict[str, Any] | None = None
    new: dict[str, Any]
    reason: str = Field("", max_length=WORDS)
    message_id: str = Field(max_length=ID)
    #: The kind of message that made it (its routing key).
    message: str = Field(max_length=CODE)


class EntryChanges(Reply):
    school_code: str = Field("", max_length=SCHOOL_CODE)
    school_year: str = Field("", max_length=SCHOOL_YEAR)
    student_ref: str = Field("", max_length=ID)
    changes: list[EntryChange] = Field(default_factory=list, max_length=LISTING)


# --- a class's records beside identity's register (the review before signing) ----------------


class CompareIdentities(Message):
    """Request: a school year's classes (or one class) as grades holds them beside identity's register today.

    For a class's homeroom teacher, or the school's principal or records administrator; answered with
    `IdentityComparison`. grades looks the students up in identity on its own behalf (saying `purpose`) and keeps
    each student it shows in its access log.
    """

    ROUTING_KEY = "grades.record.identities.compare.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    class_name: str | None = Field(None, max_length=CODE)
    #: Why the reader asks, in their words; kept in the access log.
    purpose: str = Field("", max_length=200)


class IdentityDifference(Model):
    """One identity field whose value in the record is not what the register says today."""

    field: str = Field(max_length=CODE)
    in_record: str = Field(max_length=PLACE)
    in_register: str = Field(max_length=PLACE)


class StudentFinding(Model):
    """A student of the class a reviewer must look at: without a record (`record_id` None), unknown to the register
    now (`in_register` false), with an incomplete record (`complete` false), or whose record's identity fields
    differ from the register's (`differences`)."""

    student_ref: str = Field(max_length=ID)
    record_id: str | None = Field(None, max_length=ID)
    #: As the register has it today (as the record has it when the register does not know the student).
    full_name: str = Field("", max_length=NAME)
    in_register: bool = True
    #: None without a record.
    complete: bool | None = None
    differences: list[IdentityDifference] = Field(default_factory=list, max_length=LINES)


class ClassIdentities(Model):
    class_name: str = Field(max_length=CODE)
    #: Students enrolled in the class, and the records grades assembled for it.
    students: int
    records: int
    findings: list[StudentFinding] = Field(default_factory=list, max_length=SCHOOL_STUDENTS)


class IdentityComparison(Reply):
    school_code: str = Field("", max_length=SCHOOL_CODE)
    school_year: str = Field("", max_length=SCHOOL_YEAR)
    classes: list[ClassIdentities] = Field(default_factory=list, max_length=LINES)


# --- amending a signed record ----------------------------------------------------------------


class AmendRecord(Message):
    """Request (the issuing school's principal or records administrator): correct entries of a signed record and
    assemble it again as its next version, answered with `RecordAmended`.

    `supersedes` names the record's latest version, which carries every signature (signed and sealed, archived or
    delivered). The corrections are entries of the record's student, checked as every entry is (the grade's rule
    set, the subjects the student takes, the values) but not against the term and year locks; each change is kept
    in the entry's history with the amendment's reason and this message. The new version is assembled as at the
    year's close, names what it supersedes and why, and goes to signing next (`RequestAmendment`). Nothing is stored
    when a correction is refused (answered in `RecordAmended.rejected`) or when the record would not change.
    """

    ROUTING_KEY = "grades.record.amend.v1"

    school_code: str = Field(max_length=SCHOOL_CODE)
    school_year: str = Field(max_length=SCHOOL_YEAR)
    record_id: str = Field(max_length=ID)
    supersedes: int = Field(ge=1)
    reason_code: AmendmentReason
    note: str = Field("", max_length=WORDS)
    #: Corrected subject entries (a subject teacher's values for a term).
    scores: list[SubjectTermScores] = Field(default_factory=list, max_length=ROWS)
    #: Corrected homeroom entries (conduct, absences, ratings, comment for a term).
    conduct: list[StudentTermConduct] = Field(default_factory=list, max_length=ROWS)


class RejectedCorrection(Model):
    """A correction of an amendment that cannot be taken, and why: item `index` of its `part` (`scores` or
    `conduct`), with a short `code` and the `reason` in words."""

    part: Literal["scores", "conduct"]
    index: int
    code: str = Field(max_length=CODE)
    reason: str = Field(max_length=TEXT)


class RecordAmended(Reply):
    """The amended record's new version (its content the document's canonical bytes, to be signed), or the
    corrections refused (`rejected`), when any is: then nothing was stored."""

    record: RecordVersion | None = None
    supersedes: int = 0
    reason_code: AmendmentReason | None = None
    #: The parts of the record document that differ from the version superseded ("subjects", "conduct", ...).
    changed: list[ShortCode] = Field(default_factory=list, max_length=LINES)
    #: Corrections that changed a stored entry, or added one (the others were as stored).
    corrected: int = 0
    rejected: list[RejectedCorrection] = Field(default_factory=list, max_length=ROWS)


#: Where a record version stands once it carries every signature, in the order the later services announce it
#: (signing's RecordsCompleted, the archive's RecordsArchived, sync's RecordsDelivered): a version an amendment may
#: supersede.
SIGNED: tuple[RecordStatus, ...] = ("signed-and-sealed", "archived", "delivered")
