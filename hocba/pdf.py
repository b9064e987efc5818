"""A printed certified copy of an archived record: A4 PDF/A-3b, laid out like the ministry's paper học bạ.

The page shows everything one year's record holds (RULES.md §5), as the record document in the bundle states it:
the school, the student (the personal ID by its last digits only), every subject's assessments and results by term
and year with its teachers' comments, conduct, learning results, absences, the promotion decision and awards, the
homeroom teacher's and principal's comments, who signed in which role and when (in Vietnam time), and the rule set.
What the record does not state is said in words, and so is an incomplete record or a version the archive has since
replaced.

A QR code in the top right corner opens the copy's public verification page on a phone and carries the archive's
compact signed statement of the copy in the address's fragment (`shared.crypto.bundle.copy_qr`), which no phone
sends to a server; the PDF carries the whole verification bundle as an associated file (PDF/A-3, AFRelationship
/Data), so `hocba verify copy.pdf` checks it offline. The PDF itself is unsigned here: `copy_pdf_bytes` gives the
bytes a seal is then put on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import segno
from fpdf import FPDF, FontFace
from fpdf.enums import TableCellFillMode, XPos, YPos

from shared.crypto.bundle import copy_qr, split_qr
from shared.crypto.certs import from_x5c, identity
from shared.crypto.jws import protected_header
from shared.settings import Misconfigured, Settings

BUNDLE_NAME = "verification-bundle.json"
QR_NAME = "qr-payload.txt"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
TERMS = (("term_1", "Học kì I"), ("term_2", "Học kì II"), ("year", "Cả năm"))
#: The same periods within a sentence.
IN_SENTENCE = {"term_1": "học kì I", "term_2": "học kì II", "year": "cả năm"}
ROLE_TITLES = {
    "homeroom_teacher": "GIÁO VIÊN CHỦ NHIỆM",
    "principal": "HIỆU TRƯỞNG",
    "school_seal": "DẤU CỦA NHÀ TRƯỜNG",
}
#: Vietnam's time (UTC+7 all year): every time on the page is written in it, and says so.
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
VIETNAM_TIME = "giờ Việt Nam, UTC+7"
#: What the page says where the record states nothing: "the record does not state it".
NOT_STATED = "hồ sơ không ghi"
#: The personal ID's digits the page shows (the last ones); the others are masked.
ID_DIGITS_SHOWN = 3
MASK = "•"
#: Side of the printed QR code, in millimetres (a 17-version code: modules of about half a millimetre).
QR_SIZE = 50.0
#: Where the QR code sits: the top right corner of the first page, below the letterhead.
QR_X, QR_Y = 145.0, 36.0
SEX = {"M": "Nam", "F": "Nữ"}
LEVELS = ((5, "TIỂU HỌC"), (9, "TRUNG HỌC CƠ SỞ"), (12, "TRUNG HỌC PHỔ THÔNG"))
#: Each assessment as the record names it, and as the page does.
ASSESSMENTS = (
    ("regular", "ĐĐGtx"),
    ("midterm_level", "Giữa kì"),
    ("midterm", "ĐĐGgk"),
    ("midterm_test", "KT giữa kì"),
    ("final", "ĐĐGck"),
    ("test", "KT cuối kì"),
)


def _font_dir() -> Path:
    for folder in FONT_DIRS:
        if (folder / "DejaVuSerif.ttf").exists():
            return folder
    raise FileNotFoundError(
        "DejaVu fonts are needed for Vietnamese text: install Debian's fonts-dejavu-core (`make install` does)"
    )


def vietnam_time(moment: datetime | str) -> str:
    """A moment as the page writes it: 14:05:03 ngày 01/12/2026 (giờ Việt Nam, UTC+7)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(VIETNAM):%H:%M:%S} ngày {moment.astimezone(VIETNAM):%d/%m/%Y} ({VIETNAM_TIME})"


def masked_id(personal_id: Any) -> str:
    """The personal ID by its last digits only: •••••••••123."""
    digits = str(personal_id or "")
    if len(digits) <= ID_DIGITS_SHOWN:
        return NOT_STATED
    return MASK * (len(digits) - ID_DIGITS_SHOWN) + digits[-ID_DIGITS_SHOWN:]


def stated(value: Any, absent: str = NOT_STATED) -> str:
    """A value of the record as text, or in words that the record does not state it."""
    return absent if value in (None, "") else str(value)


def _date(text: Any) -> str:
    if not text:
        return NOT_STATED
    try:
        return datetime.fromisoformat(str(text)).strftime("%d/%m/%Y")
    except ValueError:
        return str(text)


class CopyPdf(FPDF):
    """An A4 PDF/A-3b with the DejaVu fonts embedded, each page footed with the copy it belongs to."""

    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4", enforce_compliance="PDFA_3B")
        fonts = _font_dir()
        self.add_font("Serif", "", str(fonts / "DejaVuSerif.ttf"))
        self.add_font("Serif", "B", str(fonts / "DejaVuSerif-Bold.ttf"))
        italic = fonts / "DejaVuSerif-Italic.ttf"  # fonts-dejavu-extra; upright when only the core fonts are there
        self.add_font("Serif", "I", str(italic if italic.exists() else fonts / "DejaVuSerif.ttf"))
        self.add_font("Mono", "", str(fonts / "DejaVuSans.ttf"))
        self.set_margins(15, 12, 15)
        self.set_auto_page_break(True, 14)
        self.footer_text = footer_text

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("Mono", "", 6.5)
        self.set_text_color(90, 90, 90)
        self.cell(0, 4, f"{self.footer_text} · trang {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0, 0, 0)

    def text_line(self, text: str, size: float = 10, style: str = "", align: str = "L", height: float = 5.2) -> None:
        self.set_font("Serif", style, size)
        self.multi_cell(0, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(self, text: str) -> None:
        if self.get_y() > 262:
            self.add_page()
        self.ln(1.5)
        self.set_font("Serif", "B", 10)
        self.cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def labelled(self, label: str, value: str, width: float = 0, size: float = 9) -> None:
        """`label: value` on its own lines within `width` (0: the page's), the value in bold, or in italic words when
        the record does not state it. The record's text is written as it is, never read as markup."""
        right = self.r_margin
        if width:
            self.set_right_margin(self.w - self.l_margin - width)
        self.set_x(self.l_margin)
        self.set_font("Serif", "", size)
        self.write(4.6, f"{label}: ")
        if value == NOT_STATED:
            self.set_font("Serif", "I", size)
            self.write(4.6, f"({value})")
        else:
            self.set_font("Serif", "B", size)
            self.write(4.6, value)
        self.ln(4.6)
        self.set_right_margin(right)


def _signers(signatures: Sequence[str]) -> list[dict[str, str]]:
    """Each signature's role, its signer's name and identifier as the certificate states them, and its time."""
    rows = []
    for jws in signatures:
        header = protected_header(jws)
        holder = identity(from_x5c(header["x5c"])[0])
        rows.append(
            {
                "role": header["role"],
                "name": holder.name or NOT_STATED,
                "subject": holder.subject_id or "",
                "at": vietnam_time(header["signed_at"]),
                "serial": f"{holder.serial:x}"[:16],
            }
        )
    return rows


def verify_base(settings: Settings | None = None) -> str:
    """Where a copy's QR code points (HOCBA_VERIFY_URL); `Misconfigured` for an address production refuses."""
    settings = settings or Settings()
    base = settings.verify_url.rstrip("/")
    if settings.production and not base.startswith("https://"):
        raise Misconfigured(
            "HOCBA_VERIFY_URL must be an https address in production: it is printed in the QR code of every copy "
            "(the department's public verification page)"
        )
    return base


def copy_pdf_bytes(bundle: dict[str, Any], qr: str, issued_at: datetime, verify_url: str | None = None) -> bytes:
    """The certified copy of the bundle's record version: an unsigned A4 PDF/A-3b, the bundle and the QR code's text
    attached. `qr` is the archive's signed payload (or a QR code's whole text); `verify_url` the public verification
    page's address (default: HOCBA_VERIFY_URL)."""
    record = bundle["record"]
    document = record["document"]
    student = (document.get("student") or {}).get("identity") or {}
    address, payload = split_qr(qr)
    text = qr if address is not None else copy_qr(verify_url or verify_base(), bundle, payload)
    signers = _signers(bundle["signatures"])
    log = bundle["log"]
    pdf = CopyPdf(f"Bản sao hồ sơ {record['record_id']} phiên bản {record['version']} · mục #{log['leaf_index']}")
    pdf.creation_date = issued_at
    pdf.set_lang("vi")
    pdf.set_title(f"Học bạ năm học {record['school_year']}, lớp {document.get('class_name', '')}")
    pdf.set_author(_school_name(record, document, signers))
    pdf.set_subject(f"Bản sao có xác thực: hồ sơ {record['record_id']} phiên bản {record['version']}")
    pdf.set_creator("hocba archive print")
    pdf.add_page()
    _letterhead(pdf, record, _school_name(record, document, signers))
    _draw_qr(pdf, text, QR_X, QR_Y, QR_SIZE)
    _title(pdf, record, document)
    _notices(pdf, bundle, document)
    _student(pdf, document, student)
    _results(pdf, document)
    _summaries(pdf, document)
    _decisions(pdf, document)
    _comments(pdf, document)
    _signatures(pdf, signers)
    _verification(pdf, bundle, text, issued_at)
    _attach(pdf, bundle, text)
    return bytes(pdf.output())


def render_copy(bundle: dict[str, Any], qr: str, out: Path, issued_at: datetime, verify_url: str | None = None) -> Path:
    """Write the certified copy of the bundle's record version to `out` (`copy_pdf_bytes`)."""
    data = copy_pdf_bytes(bundle, qr, issued_at, verify_url)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def _school_name(record: Mapping[str, Any], document: Mapping[str, Any], signers: list[dict[str, str]]) -> str:
    """As the record states it, or as the school's seal certificate names it."""
    school = document.get("school") or {}
    seal = next((s["name"] for s in signers if s["role"] == "school_seal" and s["name"] != NOT_STATED), None)
    return str(school.get("name") or seal or f"Trường {record['school_code']}")


def _letterhead(pdf: CopyPdf, record: Mapping[str, Any], school_name: str) -> None:
    """The department and school on the left, the national motto on the right."""
    top = pdf.get_y()
    pdf.set_font("Serif", "", 9)
    pdf.multi_cell(80, 4.5, "SỞ GIÁO DỤC VÀ ĐÀO TẠO", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Serif", "B", 9)
    pdf.multi_cell(80, 4.5, school_name.upper(), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Serif", "", 8)
    pdf.multi_cell(80, 4.5, f"Mã trường: {record['school_code']}", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_xy(95, top)
    pdf.set_font("Serif", "B", 9)
    pdf.multi_cell(100, 4.5, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", align="C")
    pdf.set_x(95)
    pdf.set_font("Serif", "B", 10)
    pdf.multi_cell(100, 4.5, "Độc lập - Tự do - Hạnh phúc", align="C")
    pdf.line(125, pdf.get_y() + 0.5, 165, pdf.get_y() + 0.5)
    pdf.set_y(top + 22)


def _draw_qr(pdf: CopyPdf, text: str, x: float, y: float, size: float) -> None:
    """The QR code (error correction M, a quiet zone of four modules), and below it what it is for."""
    code = segno.make(text, error="m", micro=False)
    matrix = list(code.matrix)
    quiet = 4
    step = size / (len(matrix) + 2 * quiet)
    pdf.set_fill_color(255, 255, 255)
    pdf.rect(x, y, size, size, style="F")
    pdf.set_fill_color(0, 0, 0)
    for row_no, row in enumerate(matrix):
        run_start = None
        for col_no, dark in enumerate([*row, 0]):
            if dark and run_start is None:
                run_start = col_no
            elif not dark and run_start is not None:
                pdf.rect(
                    x + (quiet + run_start) * step,
                    y + (quiet + row_no) * step,
                    (col_no - run_start) * step,
                    step,
                    style="F",
                )
                run_start = None
    pdf.set_xy(x, y + size)
    pdf.set_font("Serif", "B", 7.5)
    pdf.multi_cell(size, 3.6, "Quét để kiểm tra bản sao\n(Scan to verify this copy)", align="C")
    pdf.set_xy(pdf.l_margin, y)


#: The width the title and the student's details take beside the QR code.
BESIDE_QR = QR_X - 15 - 4


def _title(pdf: CopyPdf, record: Mapping[str, Any], document: Mapping[str, Any]) -> None:
    grade = document.get("grade")
    level = next((name for top, name in LEVELS if isinstance(grade, int) and grade <= top), "")
    pdf.set_font("Serif", "B", 20)
    pdf.cell(BESIDE_QR, 9, "HỌC BẠ", align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if level:
        pdf.set_font("Serif", "B", 12)
        pdf.cell(BESIDE_QR, 6, level, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Serif", "", 10)
    pdf.multi_cell(
        BESIDE_QR,
        5.2,
        f"Năm học {record['school_year']}  ·  Lớp {stated(document.get('class_name'))}  ·  Khối {stated(grade)}",
        align="C",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    rules = f"Căn cứ đánh giá: {stated(document.get('regulation'))} (bộ quy tắc {stated(document.get('rule_set'))})"
    pdf.set_font("Serif", "I", 8.5)
    pdf.multi_cell(BESIDE_QR, 4.4, rules, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)


def _notices(pdf: CopyPdf, bundle: Mapping[str, Any], document: Mapping[str, Any]) -> None:
    """In red, in words: a version the archive has since replaced, an incomplete record, an amendment."""
    said = []
    superseded = (bundle.get("status") or {}).get("superseded_by")
    if superseded:
        said.append(
            f"PHIÊN BẢN ĐÃ ĐƯỢC THAY THẾ: khi cấp bản sao này, kho lưu trữ ghi nhận phiên bản {superseded} thay thế "
            f"phiên bản {bundle['record']['version']} này (thông tin của kho lưu trữ, không nằm trong phần được ký)."
        )
    if document.get("complete") is False:
        missing = "; ".join(_missing_words(item) for item in document.get("missing") or []) or NOT_STATED
        said.append(f"HỒ SƠ CHƯA ĐẦY ĐỦ: hồ sơ ghi còn thiếu {missing}.")
    elif document.get("complete") is None:
        said.append(f"Hồ sơ không ghi đã đầy đủ hay chưa ({NOT_STATED}).")
    amendment = document.get("amendment")
    if isinstance(amendment, Mapping):
        note = f"; {amendment['note']}" if amendment.get("note") else ""
        said.append(
            f"BẢN ĐIỀU CHỈNH: thay thế phiên bản {stated(amendment.get('supersedes'))}, lý do: "
            f"{stated(amendment.get('reason'))}{note}."
        )
    if not said:
        return
    pdf.set_text_color(180, 30, 30)
    pdf.set_font("Serif", "B", 8.5)
    for words in said:
        pdf.multi_cell(BESIDE_QR, 4.4, words, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.ln(1)


def _missing_words(item: Mapping[str, Any]) -> str:
    term = IN_SENTENCE.get(f"term_{item.get('term')}", f"học kì {item.get('term')}")
    if item.get("entry") == "homeroom":
        return f"đánh giá của giáo viên chủ nhiệm {term}"
    return f"{item.get('subject', 'một môn')} {term}"


def _student(pdf: CopyPdf, document: Mapping[str, Any], student: Mapping[str, Any]) -> None:
    """I. The student, beside the QR code: the personal ID by its last digits only."""
    pdf.set_font("Serif", "B", 10)
    pdf.cell(BESIDE_QR, 6, "I. THÔNG TIN HỌC SINH", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    rows = (
        ("Họ và tên", stated(student.get("full_name"))),
        ("Ngày sinh", _date(student.get("date_of_birth"))),
        ("Giới tính", SEX.get(str(student.get("sex")), NOT_STATED)),
        ("Số định danh cá nhân", masked_id(student.get("personal_id"))),
        ("Nơi sinh", stated(student.get("place_of_birth"))),
        ("Dân tộc", stated(student.get("ethnicity"))),
        ("Cha, mẹ hoặc người giám hộ", stated(student.get("guardian_name"))),
    )
    for label, value in rows:
        pdf.labelled(label, value, BESIDE_QR)
    combination = document.get("combination")
    if isinstance(combination, Mapping):
        pdf.labelled("Môn học lựa chọn", ", ".join(combination.get("electives") or []) or NOT_STATED, BESIDE_QR)
        pdf.labelled("Chuyên đề học tập", ", ".join(combination.get("learning_topics") or []) or NOT_STATED, BESIDE_QR)
    pdf.set_font("Serif", "I", 7)
    pdf.multi_cell(
        BESIDE_QR,
        3.4,
        f"Số định danh cá nhân chỉ in {ID_DIGITS_SHOWN} chữ số cuối; gói xác minh đính kèm chứa hồ sơ đầy đủ.",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_y(max(pdf.get_y(), QR_Y + QR_SIZE + 9))


def _assessments(cell: Any) -> str:
    """A term's assessments as the record lists them: ĐĐGtx 8, 7.5, 9 · ĐĐGgk 8 · ĐĐGck 8.5."""
    if not isinstance(cell, Mapping):
        return ""
    parts = []
    for key, label in ASSESSMENTS:
        value = cell.get(key)
        if isinstance(value, list):
            parts.append(f"{label} {', '.join(str(v) for v in value)}")
        elif value not in (None, ""):
            parts.append(f"{label} {value}")
    return " · ".join(parts)


def _result(cell: Any) -> str:
    """A term's or the year's average or level, or the words that the record states none."""
    if isinstance(cell, Mapping):
        for key in ("average", "level", "result", "value"):
            if cell.get(key) not in (None, ""):
                return str(cell[key])
    elif cell not in (None, "") and not isinstance(cell, Mapping):
        return str(cell)
    return "không ghi"


def _subjects(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The record's subjects as a list, whether it states them as a list or by name."""
    subjects = document.get("subjects") or []
    if isinstance(subjects, Mapping):
        return [{"name": name, **(value if isinstance(value, Mapping) else {})} for name, value in subjects.items()]
    return [s for s in subjects if isinstance(s, Mapping)]


HEAD = FontFace(emphasis="BOLD", fill_color=(235, 235, 235), size_pt=7.5)
ROW = FontFace(size_pt=7.5)


def _results(pdf: CopyPdf, document: Mapping[str, Any]) -> None:
    """II. Each subject: each term's assessments and average or level, the year's result."""
    pdf.heading("II. KẾT QUẢ HỌC TẬP CÁC MÔN HỌC VÀ HOẠT ĐỘNG GIÁO DỤC")
    subjects = _subjects(document)
    if not subjects:
        pdf.text_line(f"Hồ sơ không ghi môn học nào ({NOT_STATED}).", 9, "I")
        return
    pdf.set_font("Serif", "", 7.5)
    with pdf.table(
        col_widths=(38, 45, 15, 45, 15, 22),
        line_height=3.8,
        text_align=("LEFT", "LEFT", "CENTER", "LEFT", "CENTER", "CENTER"),
        headings_style=HEAD,
        num_heading_rows=2,
        cell_fill_mode=TableCellFillMode.NONE,
        padding=0.8,
    ) as table:
        top = table.row()
        top.cell("Môn học và hoạt động giáo dục", rowspan=2, align="CENTER")
        top.cell("Học kì I", colspan=2, align="CENTER")
        top.cell("Học kì II", colspan=2, align="CENTER")
        top.cell("Cả năm", rowspan=2, align="CENTER")
        second = table.row()
        for _ in range(2):
            second.cell("Các lần đánh giá", align="CENTER")
            second.cell("ĐTB / mức", align="CENTER")
        for subject in subjects:
            row = table.row(style=ROW)
            row.cell(stated(subject.get("name")))
            for key in ("term_1", "term_2"):
                row.cell(_assessments(subject.get(key)))
                row.cell(_result(subject.get(key)))
            row.cell(_result(subject.get("year")))
    pdf.set_font("Serif", "I", 7)
    pdf.multi_cell(
        0,
        3.4,
        "ĐĐGtx: đánh giá thường xuyên; ĐĐGgk, ĐĐGck: đánh giá giữa kì, cuối kì; ĐTB: điểm trung bình môn; "
        "Đ / CĐ: Đạt / Chưa đạt; T / H / C: Hoàn thành tốt / Hoàn thành / Chưa hoàn thành; "
        f'"không ghi": {NOT_STATED}.',
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )


def _by_period(value: Any) -> dict[str, str]:
    """A result stated per term and year (or for the year alone), each period's text."""
    if isinstance(value, Mapping):
        return {key: _result(value.get(key)) for key, _ in TERMS}
    if value not in (None, ""):
        return {"term_1": "không ghi", "term_2": "không ghi", "year": str(value)}
    return {key: "không ghi" for key, _ in TERMS}


def _ratings(value: Any) -> str:
    """Primary school qualities or competencies: each name and its rating."""
    if not isinstance(value, Mapping) or not value:
        return "không ghi"
    return "; ".join(f"{name}: {rating}" for name, rating in value.items())


def _summaries(pdf: CopyPdf, document: Mapping[str, Any]) -> None:
    """III. Learning result, conduct (or, in primary school, qualities and competencies) and days absent, by term
    and year."""
    pdf.heading("III. KẾT QUẢ HỌC TẬP, RÈN LUYỆN VÀ CHUYÊN CẦN")
    rows: list[tuple[str, dict[str, str]]] = []
    primary = "qualities" in document or "outcome" in document
    if primary:
        for key, label in (("qualities", "Phẩm chất"), ("competencies", "Năng lực")):
            ratings = document.get(key) or {}
            rows.append(
                (label, {k: _ratings(ratings.get(k)) for k in ("term_1", "term_2")} | {"year": "không áp dụng"})
            )
    else:
        rows.append(("Kết quả học tập", _by_period(document.get("learning_result"))))
        rows.append(("Kết quả rèn luyện", _by_period(document.get("conduct"))))
    absences = document.get("absences")
    absent = (
        {k: stated((absences or {}).get(k), "không ghi") for k, _ in TERMS}
        if isinstance(absences, Mapping)
        else {k: "không ghi" for k, _ in TERMS}
    )
    rows.append(("Số buổi nghỉ học", absent))
    pdf.set_font("Serif", "", 7.5)
    widths = (50, 50, 50, 30) if primary else (60, 40, 40, 40)
    with pdf.table(
        col_widths=widths,
        line_height=3.8,
        headings_style=HEAD,
        text_align="CENTER",
        cell_fill_mode=TableCellFillMode.NONE,
        padding=0.8,
    ) as table:
        head = table.row()
        head.cell("")
        for _, title in TERMS:
            head.cell(title)
        for label, values in rows:
            row = table.row(style=ROW)
            row.cell(label, align="LEFT")
            for key, _ in TERMS:
                row.cell(values[key])


def _decisions(pdf: CopyPdf, document: Mapping[str, Any]) -> None:
    """IV. The year's decisions: promotion (or, in primary school, the outcome and completion) and awards."""
    pdf.heading("IV. ĐÁNH GIÁ CUỐI NĂM, KHEN THƯỞNG")
    if "outcome" in document or "qualities" in document:
        pdf.labelled("Đánh giá kết quả giáo dục cuối năm", stated(document.get("outcome")))
        if document.get("completion"):
            pdf.labelled("Ghi nhận", str(document["completion"]))
    else:
        promotion = document.get("promotion")
        decision = promotion.get("decision") if isinstance(promotion, Mapping) else None
        pdf.labelled("Quyết định lên lớp", stated(decision))
        following = promotion.get("next") if isinstance(promotion, Mapping) else None
        if following:
            pdf.labelled("Tiếp theo", "; ".join(str(n) for n in following))
    awards = document.get("awards")
    if awards is None:
        pdf.labelled("Khen thưởng", NOT_STATED)
    else:
        pdf.labelled("Khen thưởng", ", ".join(str(a) for a in awards) or "không có danh hiệu")


def _part(value: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """The object a record states under `key`, or an empty one."""
    found = value.get(key)
    return found if isinstance(found, Mapping) else {}


def _comments(pdf: CopyPdf, document: Mapping[str, Any]) -> None:
    """V. The subject teachers', the homeroom teacher's and the principal's comments, as the record states them."""
    pdf.heading("V. NHẬN XÉT")
    comments = _part(document, "comments")
    subjects = _part(comments, "subjects")
    if subjects:
        pdf.text_line("Nhận xét của giáo viên bộ môn:", 9, "B", height=4.6)
        for name, by_term in subjects.items():
            said = "; ".join(
                f"{IN_SENTENCE[key]}: {by_term[key]}"
                for key, _ in TERMS
                if isinstance(by_term, Mapping) and by_term.get(key)
            )
            pdf.labelled(f"   {name}", said or NOT_STATED)
    else:
        pdf.labelled("Nhận xét của giáo viên bộ môn", NOT_STATED)
    homeroom = _part(comments, "homeroom")
    for key in ("term_1", "term_2"):
        pdf.labelled(f"Nhận xét của giáo viên chủ nhiệm, {IN_SENTENCE[key]}", stated(homeroom.get(key)))
    pdf.labelled("Nhận xét của hiệu trưởng", stated(comments.get("principal")))


def _signatures(pdf: CopyPdf, signers: list[dict[str, str]]) -> None:
    """VI. Who signed, in which role and when: one column per role, in signing order."""
    pdf.heading("VI. XÁC NHẬN (CHỮ KÝ SỐ)")
    if pdf.get_y() > 240:
        pdf.add_page()
    by_role = {s["role"]: s for s in signers}
    roles = [*ROLE_TITLES, *(r for r in by_role if r not in ROLE_TITLES)]
    column = 180 / len(roles)
    top = pdf.get_y()
    bottom = top
    for n, role in enumerate(roles):
        _signer(pdf, role, by_role.get(role), 15 + n * column, top, column)
        bottom = max(bottom, pdf.get_y())
    pdf.set_y(bottom + 2)


def _signer(pdf: CopyPdf, role: str, signer: dict[str, str] | None, x: float, top: float, width: float) -> None:
    pdf.set_xy(x, top)
    pdf.set_font("Serif", "B", 8.5)
    pdf.multi_cell(width, 4.4, ROLE_TITLES.get(role, role), align="C")
    pdf.set_x(x)
    if signer is None:
        pdf.set_font("Serif", "I", 8)
        pdf.multi_cell(width, 4, "(hồ sơ lưu trữ không có chữ ký này)", align="C")
        return
    pdf.set_font("Serif", "I", 7.5)
    pdf.multi_cell(width, 3.8, "(đã ký số)" if role != "school_seal" else "(đã đóng dấu số)", align="C")
    pdf.set_draw_color(180, 30, 30)
    pdf.set_text_color(180, 30, 30)
    pdf.set_x(x + 3)
    pdf.set_font("Serif", "B", 8)
    pdf.multi_cell(width - 6, 4, f"{signer['name']}\nKý lúc {signer['at']}", border=1, align="C")
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_x(x)
    pdf.set_font("Mono", "", 6)
    pdf.multi_cell(width, 3.2, f"{signer['subject']} · chứng thư số {signer['serial']}", align="C")


def _verification(pdf: CopyPdf, bundle: Mapping[str, Any], qr: str, issued_at: datetime) -> None:
    """VII. What the copy refers to in the archive, and how to check it."""
    record, log, checkpoint = bundle["record"], bundle["log"], bundle["checkpoint"]
    if pdf.get_y() > 245:
        pdf.add_page()
    pdf.heading("VII. BẢN SAO ĐIỆN TỬ CÓ XÁC THỰC")
    address, _ = split_qr(qr)
    pdf.set_font("Serif", "", 8)
    pdf.multi_cell(
        0,
        4,
        "Quét mã QR bằng điện thoại để mở trang kiểm tra công khai của bản sao này. Phần sau dấu # trong mã là xác "
        "nhận có chữ ký số của kho lưu trữ học bạ (điện thoại không gửi phần này lên máy chủ). Tệp PDF đính kèm gói "
        "xác minh đầy đủ (hồ sơ, chữ ký, chứng thư số, bằng chứng trong nhật ký lưu trữ); kiểm tra ngoại tuyến bằng "
        "lệnh `hocba verify` trên tệp.",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_font("Mono", "", 6.8)
    pdf.multi_cell(
        0,
        3.5,
        f"Trang kiểm tra: {address}\n"
        f"Hồ sơ: {record['record_id']} phiên bản {record['version']}\n"
        f"Nhật ký lưu trữ: {log['origin']} mục #{log['leaf_index']}, lưu lúc {vietnam_time(log['archived_at'])}\n"
        f"Checkpoint đã ký: {checkpoint['tree_size']} mục, gốc {checkpoint['root_hash'][:32]}…\n"
        f"Bản sao cấp lúc {vietnam_time(issued_at)}",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )


def _attach(pdf: CopyPdf, bundle: Mapping[str, Any], qr: str) -> None:
    """The whole verification bundle and the QR code's text, as associated files of the document (the data it is
    rendered from)."""
    pdf.embed_file(
        bytes=json.dumps(bundle, ensure_ascii=False, indent=1).encode(),
        basename=BUNDLE_NAME,
        desc="hocba verification bundle: record, signatures, certificate chains, inclusion proof, checkpoint",
        mime_type="application/json",
        associated_file_relationship="Data",
    )
    pdf.embed_file(
        bytes=qr.encode(),
        basename=QR_NAME,
        desc="The QR code's text: the public verification address and the archive's signed payload",
        mime_type="text/plain",
        associated_file_relationship="Data",
    )


class NotACopy(ValueError):
    """A file that is not a printed copy `hocba verify` can read: one sentence says what was found and what was
    expected."""


def read_copy(path: Path) -> tuple[dict[str, Any], str]:
    """The bundle and QR payload attached to a printed copy; `NotACopy` says what is missing or unreadable."""
    from pypdf import PdfReader

    expected = "a printed copy from `hocba archive print`"
    try:
        attachments = PdfReader(str(path)).attachments
        bundle_file, qr_file = (attachments[n][0] if attachments.get(n) else None for n in (BUNDLE_NAME, QR_NAME))
    except Exception as exc:  # pypdf raises errors of many kinds on a malformed file; any of them means the same
        raise NotACopy(f"it starts like a PDF but cannot be read as one ({exc}): expected {expected}") from None
    if bundle_file is None:
        raise NotACopy(f"it is a PDF without an attached {BUNDLE_NAME}: expected {expected}, which carries one")
    if qr_file is None:
        raise NotACopy(f"it is a PDF without an attached {QR_NAME}: expected {expected}, which carries the QR payload")
    try:
        bundle = json.loads(bundle_file)
        qr = qr_file.decode("ascii").strip()
    except ValueError:
        raise NotACopy(
            f"its attached {BUNDLE_NAME} is not JSON or its {QR_NAME} is not text: expected {expected}"
        ) from None
    if not isinstance(bundle, dict):
        raise NotACopy(f"its attached {BUNDLE_NAME} is not a JSON object: expected {expected}")
    return bundle, qr
