"""What the pages say of a school year: a line per class and the school's totals, in the pages' words.

Each status comes from the service that knows it: the staff register (classes and their homeroom teachers), grades'
summary of the year's records (`ListRecords` with `summary`: records per class and how far they went, and the terms
closed), and signing's review (where each class's review stands, and how many of its records its homeroom teacher
signed). A status no service answers is `NOT_ANSWERED`, shown as "—".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hocba.staff import StaffRegister
from hocba.web.board import BatchView
from shared.contracts.grades import RecordList
from shared.contracts.signing import ClassReview, ClassReviews, MissingEntry

#: A status no service answers yet.
NOT_ANSWERED = "—"
TERM_NAMES = {1: "HK I", 2: "HK II"}
#: grades answered, and no term of the year is closed.
NO_TERM_CLOSED = "Chưa khoá"


def class_order(name: str) -> tuple[object, ...]:
    """6A2 before 6A10: the numbers in a class name compared as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def terms_closed(listed: RecordList | None) -> str:
    """The terms grades says are closed ("HK I, HK II"); "—" when grades did not answer."""
    if listed is None:
        return NOT_ANSWERED
    return ", ".join(TERM_NAMES.get(t, str(t)) for t in sorted(listed.terms_closed)) or NO_TERM_CLOSED


def records(n: int) -> str:
    """A count a service answered ("1.000 hồ sơ"; none is "0 hồ sơ", not "—")."""
    return f"{n:,} hồ sơ".replace(",", ".")


@dataclass(frozen=True)
class RecordCounts:
    """Records of a class (or of the school) as grades' summary counts them: how many, how many lack entries, and
    how many reached each step after assembly (signed and sealed counts the archived and delivered ones too)."""

    records: int = 0
    incomplete: int = 0
    sealed: int = 0
    archived: int = 0
    delivered: int = 0


def record_counts(answer: RecordList) -> dict[str, RecordCounts]:
    """grades' summary, class by class."""
    return {
        c.class_name: RecordCounts(c.records, c.incomplete, c.signed_and_sealed, c.archived, c.delivered)
        for c in answer.classes
    }


def school_counts(by_class: dict[str, RecordCounts]) -> RecordCounts:
    return RecordCounts(*(sum(getattr(c, f) for c in by_class.values()) for f in RecordCounts.__dataclass_fields__))


@dataclass(frozen=True)
class ClassLine:
    """One class of the principal's table, a status per column."""

    name: str
    homeroom_teacher: str
    #: The terms of the year closed: grades' summary answers.
    terms_closed: str = NOT_ANSWERED
    #: The class confirmed as reviewed by its homeroom teacher, and its records they signed: signing's review answers.
    reviewed: str = NOT_ANSWERED
    homeroom_signed: str = NOT_ANSWERED
    #: The class's records, incomplete ones, and those signed and sealed, archived, delivered: grades' summary.
    records: str = NOT_ANSWERED
    incomplete: str = NOT_ANSWERED
    sealed: str = NOT_ANSWERED
    archived: str = NOT_ANSWERED
    delivered: str = NOT_ANSWERED


@dataclass(frozen=True)
class SchoolTotals:
    terms_closed: str = NOT_ANSWERED
    sealed: str = NOT_ANSWERED
    archived: str = NOT_ANSWERED
    delivered: str = NOT_ANSWERED
    #: Review findings (classes waiting, incomplete records): signing's review answers.
    review: str = NOT_ANSWERED


def classes_of(register: StaffRegister, school_code: str) -> list[str]:
    """The school's classes that have a homeroom teacher enrolled."""
    enrolled = {c for m in register.members(school_code) if m.role == "homeroom_teacher" for c in m.classes}
    return sorted(enrolled, key=class_order)


def class_line(  # noqa: PLR0913 - each source of the line's statuses is a parameter
    register: StaffRegister,
    school_code: str,
    class_name: str,
    review: ClassReview | None = None,
    counts: RecordCounts | None = None,
    terms: str = NOT_ANSWERED,
) -> ClassLine:
    """The class's line: `review` None, signing did not answer for it; `counts` None, grades did not answer; `terms`
    the terms closed as grades answered them (their columns show "—" where no service answered)."""
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
    if review is not None:
        answered |= {"reviewed": REVIEW_NAMES[review.status], "homeroom_signed": records(review.homeroom_signed)}
    return ClassLine(
        name=class_name,
        homeroom_teacher=teacher.name if teacher else NOT_ANSWERED,
        terms_closed=terms,
        **answered,
    )


def school_totals(listed: RecordList | None, reviews: ClassReviews | None = None) -> SchoolTotals:
    """The school's totals: the terms closed and the records signed and sealed, archived, delivered as grades'
    summary answers them (`listed`), the review as signing answers it; "—" for a service that did not answer."""
    review = review_summary(reviews) if reviews is not None else NOT_ANSWERED
    if listed is None:
        return SchoolTotals(review=review)
    counts = school_counts(record_counts(listed))
    return SchoolTotals(
        terms_closed(listed), records(counts.sealed), records(counts.archived), records(counts.delivered), review
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
