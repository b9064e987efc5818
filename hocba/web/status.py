"""What the pages say of a school year: a line per class and the school's totals, in the pages' words.

Each status comes from the service that knows it: the staff register (classes and their homeroom teachers), grades'
list of the year's records (`ListRecords`: records per class and where each stands), signing's review, and the
board (the terms closed and the homeroom teachers' signatures, as announced since the gateway started). A status no
service answers is `NOT_ANSWERED`, shown as "—".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hocba.staff import StaffRegister
from hocba.web.board import BatchView, YearView
from shared.contracts.grades import RecordList, RecordStatus
from shared.contracts.signing import ClassReview, ClassReviews, MissingEntry

#: A status no service answers yet.
NOT_ANSWERED = "—"
TERM_NAMES = {1: "HK I", 2: "HK II"}


def class_order(name: str) -> tuple[object, ...]:
    """6A2 before 6A10: the numbers in a class name compared as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def terms_closed(year: YearView) -> str:
    return ", ".join(TERM_NAMES.get(t, str(t)) for t in sorted(year.terms_closed)) or NOT_ANSWERED


def counted(n: int) -> str:
    """A count of records as the pages write it ("1.000 hồ sơ"), or "—" when none was seen."""
    return f"{n:,} hồ sơ".replace(",", ".") if n else NOT_ANSWERED


def records(n: int) -> str:
    """A count grades answered ("1.000 hồ sơ"; none is "0 hồ sơ", not "—")."""
    return f"{n:,} hồ sơ".replace(",", ".")


#: How far a record has gone: each status reached after the one before (a delivered record was archived, signed
#: and sealed).
STAGES: dict[RecordStatus, int] = {
    "assembled": 0,
    "incomplete": 0,
    "signed-and-sealed": 1,
    "archived": 2,
    "delivered": 3,
}


@dataclass(frozen=True)
class RecordCounts:
    """Records of a class (or of the school) as grades lists them: how many, how many lack entries, and how many
    reached each stage after assembly (signed and sealed counts the archived and delivered ones too)."""

    records: int = 0
    incomplete: int = 0
    sealed: int = 0
    archived: int = 0
    delivered: int = 0


def record_counts(answer: RecordList) -> dict[str, RecordCounts]:
    """grades' answer counted per class."""
    counts: dict[str, list[int]] = {}
    for line in answer.records:
        n = counts.setdefault(line.class_name, [0, 0, 0, 0, 0])
        stage = STAGES[line.status]
        n[0] += 1
        n[1] += not line.complete
        n[2] += stage >= STAGES["signed-and-sealed"]
        n[3] += stage >= STAGES["archived"]
        n[4] += stage >= STAGES["delivered"]
    return {name: RecordCounts(*n) for name, n in counts.items()}


def school_counts(by_class: dict[str, RecordCounts]) -> RecordCounts:
    return RecordCounts(*(sum(getattr(c, f) for c in by_class.values()) for f in RecordCounts.__dataclass_fields__))


@dataclass(frozen=True)
class ClassLine:
    """One class of the principal's table, a status per column."""

    name: str
    homeroom_teacher: str
    terms_closed: str
    #: The class confirmed as reviewed by its homeroom teacher: signing's review answers.
    reviewed: str
    #: Records signed by the homeroom teacher: only the board's announcements tell (no service answers it).
    homeroom_signed: str
    #: The class's records, incomplete ones, and those signed and sealed, archived, delivered: grades' ListRecords.
    records: str = NOT_ANSWERED
    incomplete: str = NOT_ANSWERED
    sealed: str = NOT_ANSWERED
    archived: str = NOT_ANSWERED
    delivered: str = NOT_ANSWERED


@dataclass(frozen=True)
class SchoolTotals:
    terms_closed: str
    sealed: str
    archived: str
    delivered: str
    #: Review findings (classes waiting, incomplete records): signing's review answers.
    review: str = NOT_ANSWERED


def classes_of(register: StaffRegister, year: YearView, school_code: str) -> list[str]:
    """The school's classes: those with a homeroom teacher enrolled, and any whose signing was announced."""
    enrolled = {c for m in register.members(school_code) if m.role == "homeroom_teacher" for c in m.classes}
    return sorted(enrolled | set(year.homeroom_signed), key=class_order)


def class_line(  # noqa: PLR0913 - each source of the line's statuses is a parameter
    register: StaffRegister,
    year: YearView,
    school_code: str,
    class_name: str,
    review: ClassReview | None = None,
    counts: RecordCounts | None = None,
) -> ClassLine:
    """The class's line; `counts` None: grades did not answer (its columns show "—")."""
    teacher = register.homeroom_teacher_of(school_code, class_name)
    answered = {}
    if counts is not None:
        answered = {
            "records": records(counts.records),
            "incomplete": records(counts.incomplete),
            "sealed": records(counts.sealed),
            "archived": records(counts.archived),
            "delivered": records(counts.delivered),
        }
    return ClassLine(
        name=class_name,
        homeroom_teacher=teacher.name if teacher else NOT_ANSWERED,
        terms_closed=terms_closed(year),
        reviewed=REVIEW_NAMES[review.status] if review is not None else NOT_ANSWERED,
        homeroom_signed=counted(year.homeroom_signed.get(class_name, 0)),
        **answered,
    )


def school_totals(
    year: YearView, reviews: ClassReviews | None = None, counts: RecordCounts | None = None
) -> SchoolTotals:
    """The school's totals: signed and sealed, archived, delivered as grades counts them when it answered
    (`counts`), else as the board saw them announced."""
    if counts is not None:
        sealed, archived, delivered = records(counts.sealed), records(counts.archived), records(counts.delivered)
    else:
        sealed, archived, delivered = counted(year.sealed), counted(year.archived), counted(year.delivered)
    return SchoolTotals(
        terms_closed(year),
        sealed,
        archived,
        delivered,
        review_summary(reviews) if reviews is not None else NOT_ANSWERED,
    )


# --- the review before signing (signing's ReviewClasses) ------------------------------------------

REVIEW_NAMES = {
    "not-reviewed": "Chưa rà soát",
    "reviewed": "Đã rà soát",
    "changed-since-review": "Có thay đổi sau rà soát",
}
#: An entry of a term that is not a subject's result, as grades names it in a record's `missing`.
ENTRY_NAMES = {"homeroom": "rèn luyện, chuyên cần và nhận xét của GVCN"}


def missing_entry(entry: MissingEntry) -> str:
    """ "Toán HK I": what a record lacks, never a value."""
    what = entry.subject or ENTRY_NAMES.get(entry.entry, entry.entry) or "một mục"
    return f"{what} {TERM_NAMES.get(entry.term, f'HK {entry.term}')}" if entry.term else what


@dataclass(frozen=True)
class ClassFindings:
    """A class's review as its page shows it: its records, those not signed as they are and why, where the review
    stands, and what to confirm."""

    class_name: str
    records: int
    status: str
    status_name: str
    #: (record id, what it lacks) for each incomplete record.
    incomplete: tuple[tuple[str, str], ...]
    changes: int
    reviewed_by: str | None
    reviewed_at: str | None
    fingerprint: str


def findings(review: ClassReview) -> ClassFindings:
    return ClassFindings(
        class_name=review.class_name,
        records=review.records,
        status=review.status,
        status_name=REVIEW_NAMES[review.status],
        incomplete=tuple(
            (r.record_id, ", ".join(missing_entry(m) for m in r.missing) or "—") for r in review.incomplete
        ),
        changes=len(review.changes),
        reviewed_by=review.reviewed_by,
        reviewed_at=review.reviewed_at.strftime("%H:%M %d/%m/%Y") if review.reviewed_at else None,
        fingerprint=review.fingerprint,
    )


def review_summary(reviews: ClassReviews) -> str:
    """The school's review in a line: the classes that wait, the records that will not be signed."""
    if not reviews.classes:
        return "Chưa có hồ sơ nào để rà soát (năm học chưa khoá)"
    waiting = [c.class_name for c in reviews.classes if c.status != "reviewed"]
    incomplete = sum(len(c.incomplete) for c in reviews.classes)
    said = [f"{len(waiting)} lớp chờ rà soát" if waiting else "Mọi lớp đã rà soát"]
    if incomplete:
        said.append(f"{incomplete} hồ sơ chưa đầy đủ (không được ký)")
    return "; ".join(said)


#: What a batch's state is called on the pages.
STATE_NAMES = {
    "sent": "Đã gửi yêu cầu",
    "signing": "Đang ký",
    "done": "Hoàn tất",
    "refused": "Bị từ chối",
    "unsent": "Chưa gửi được",
}

#: What to do when signing refuses a batch for a certificate (signing's codes).
REFUSAL_HINTS = {
    "no-certificate": "Người ký chưa có chứng thư số: cán bộ quản trị đăng ký họ (`hocba pki enrol staff.csv`) hoặc "
    "nhập chứng thư do tổ chức cung cấp dịch vụ chứng thực cấp (`hocba pki import-cert`), rồi bấm ký lại.",
    "certificate-revoked": "Chứng thư số của người ký đã bị thu hồi: cần được cấp chứng thư mới (`hocba pki enrol` "
    "hoặc `hocba pki import-cert`), rồi bấm ký lại.",
    "certificate-invalid": "Chứng thư số của người ký không còn hiệu lực: cần gia hạn hoặc nhập chứng thư mới, rồi "
    "bấm ký lại.",
    "forbidden": "Người đăng nhập không được ký phạm vi này: hiệu trưởng ký trường của mình, giáo viên chủ nhiệm ký "
    "lớp của mình.",
    "not-reviewed": "Lớp chưa được rà soát: giáo viên chủ nhiệm xem phần rà soát trên trang của lớp, bấm “Xác nhận "
    "đã rà soát”, rồi ký lại.",
    "changed-since-review": "Hồ sơ của lớp đã thay đổi sau lần rà soát trước: giáo viên chủ nhiệm xem lại phần rà "
    "soát, xác nhận lại, rồi ký lại.",
    "unauthenticated": "Dịch vụ ký không nhận mã xác thực của người đăng nhập: hãy đăng xuất, đăng nhập lại rồi "
    "bấm ký lại.",
}


def batch_outcome(batch: BatchView) -> str:
    """The batch's outcome in a sentence that says what to do next, when there is something to do."""
    if batch.state == "refused":
        hint = REFUSAL_HINTS.get(batch.code, "")
        return f"Dịch vụ ký từ chối ({batch.code}): {batch.reason}. {hint}".strip()
    if batch.state == "unsent":
        return (
            f"Không gửi được yêu cầu ký ({batch.reason}). Hệ thống cần đang chạy (`hocba up`); khi đã chạy, "
            "hãy bấm ký lại."
        )
    if batch.state != "done":
        return ""
    if batch.records_total:
        return done_sentence(batch)
    return nothing_signed(batch)


def done_sentence(batch: BatchView) -> str:
    signed = f"{batch.records_signed:,} / {batch.records_total:,}".replace(",", ".")
    if batch.role == "homeroom_teacher":
        said = f"Đã ký {signed} hồ sơ của lớp {batch.class_name}."
    else:
        said = (
            f"Đã ký và đóng dấu {signed} hồ sơ; {batch.records_completed:,} hồ sơ đủ chữ ký được chuyển lưu trữ "
            "và gửi Bộ GD&ĐT."
        ).replace(",", ".")
    if batch.records_waiting:
        said += f" Còn {batch.records_waiting:,} hồ sơ chờ giáo viên chủ nhiệm ký trước.".replace(",", ".")
    return said + left_out(batch)


def left_out(batch: BatchView) -> str:
    """What the batch did not sign because of the review: incomplete records, classes not reviewed."""
    said = ""
    if batch.records_refused:
        said += (
            f" {batch.records_refused} hồ sơ chưa đầy đủ không được ký: bổ sung điểm còn thiếu (xem phần rà soát "
            "của lớp), rồi ký lại."
        )
    if batch.classes_waiting:
        classes = ", ".join(f"{name} ({records} hồ sơ)" for name, records, _ in batch.classes_waiting)
        said += f" Các lớp chờ giáo viên chủ nhiệm rà soát: {classes}."
    return said


def nothing_signed(batch: BatchView) -> str:
    """Why a batch found nothing to sign, as far as signing can tell (it holds the records grades assembled)."""
    if batch.records_refused or batch.classes_waiting:
        return "Chưa ký hồ sơ nào." + left_out(batch)
    if batch.records_waiting:
        return (
            f"Chưa ký hồ sơ nào: {batch.records_waiting:,} hồ sơ của trường năm học {batch.school_year} còn chờ "
            "giáo viên chủ nhiệm ký trước (mỗi giáo viên chủ nhiệm ký lớp của mình trên trang của lớp)."
        ).replace(",", ".")
    scope = f"lớp {batch.class_name}" if batch.role == "homeroom_teacher" else f"trường {batch.school_code}"
    whose = "giáo viên chủ nhiệm" if batch.role == "homeroom_teacher" else "hiệu trưởng"
    return (
        f"Chưa ký hồ sơ nào: dịch vụ ký không có hồ sơ nào của {scope} năm học {batch.school_year} đang chờ chữ ký "
        f"{whose}. Có thể năm học chưa được khoá (hồ sơ được lập khi hiệu trưởng khoá năm học, sau khi khoá cả hai "
        f"học kỳ), {scope} chưa có học sinh trong năm học này, hoặc mọi hồ sơ đã được ký."
    )
