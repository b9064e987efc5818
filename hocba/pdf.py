"""A printed certified copy of an archived record: A4, laid out like the ministry's paper học bạ.

The page shows the school, the student, every subject by term and year, conduct and results, and
who signed when. A QR code carries the archive's compact signed statement of the record's digest,
log entry and checkpoint, and the PDF carries the whole verification bundle as an attached file,
so `hocba verify copy.pdf` checks it offline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import segno
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from shared.crypto.certs import from_x5c, identity
from shared.crypto.jws import protected_header

BUNDLE_NAME = "verification-bundle.json"
QR_NAME = "qr-payload.txt"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
TERMS = (("term_1", "Học kì I"), ("term_2", "Học kì II"), ("year", "Cả năm"))
ROLE_TITLES = {
    "homeroom_teacher": "GIÁO VIÊN CHỦ NHIỆM",
    "principal": "HIỆU TRƯỞNG",
    "school_seal": "DẤU CỦA NHÀ TRƯỜNG",
}


def _font_dir() -> Path:
    for folder in FONT_DIRS:
        if (folder / "DejaVuSerif.ttf").exists():
            return folder
    raise FileNotFoundError(
        "DejaVu fonts are needed for Vietnamese text: install Debian's fonts-dejavu-core (`make install` does)"
    )


def _value(cell: Any) -> str:
    if isinstance(cell, Mapping):
        for key in ("average", "level", "result", "value"):
            if key in cell and cell[key] is not None:
                return str(cell[key])
        return "—"
    return "—" if cell in (None, "") else str(cell)


def _date(text: str | None) -> str:
    if not text:
        return "—"
    try:
        return datetime.fromisoformat(text).strftime("%d/%m/%Y")
    except ValueError:
        return text


def _conduct(document: Mapping[str, Any]) -> dict[str, str]:
    """Conduct (rèn luyện) by term and year, whichever way the record states it."""
    conduct = document.get("conduct")
    if isinstance(conduct, Mapping):
        return {k: _value(conduct.get(k)) for k, _ in TERMS}
    if isinstance(conduct, str):
        return {"term_1": "—", "term_2": "—", "year": conduct}
    return {k: "—" for k, _ in TERMS}


class CopyPdf(FPDF):
    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        fonts = _font_dir()
        self.add_font("Serif", "", str(fonts / "DejaVuSerif.ttf"))
        self.add_font("Serif", "B", str(fonts / "DejaVuSerif-Bold.ttf"))
        italic = fonts / "DejaVuSerif-Italic.ttf"  # fonts-dejavu-extra; upright when only the core fonts are there
        self.add_font("Serif", "I", str(italic if italic.exists() else fonts / "DejaVuSerif.ttf"))
        self.add_font("Mono", "", str(fonts / "DejaVuSans.ttf"))
        self.set_margins(15, 12, 15)
        self.set_auto_page_break(True, 12)

    def text_line(self, text: str, size: float = 10, style: str = "", align: str = "L", height: float = 5.2) -> None:
        self.set_font("Serif", style, size)
        self.cell(0, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _signers(signatures: list[str]) -> list[dict[str, str]]:
    rows = []
    for jws in signatures:
        header = protected_header(jws)
        holder = identity(from_x5c(header["x5c"])[0])
        signed_at = datetime.fromisoformat(header["signed_at"])
        rows.append(
            {
                "role": header["role"],
                "name": holder.name,
                "subject": holder.subject_id,
                "at": signed_at.strftime("%H:%M:%S %d/%m/%Y UTC"),
                "serial": f"{holder.serial:x}"[:16],
            }
        )
    return rows


def _draw_qr(pdf: CopyPdf, payload: str, x: float, y: float, size: float) -> None:
    code = segno.make(payload, error="m", micro=False)
    matrix = list(code.matrix)
    quiet = 2
    modules = len(matrix) + 2 * quiet
    step = size / modules
    pdf.set_fill_color(255, 255, 255)
    pdf.rect(x, y, size, size, style="F")
    pdf.set_fill_color(0, 0, 0)
    for row_no, row in enumerate(matrix):
        run_start = None
        for col_no, dark in enumerate([*row, 0]):
            if dark and run_start is None:
                run_start = col_no
            elif not dark and run_start is not None:
                pdf.rect(x + (quiet + run_start) * step, y + (quiet + row_no) * step, (col_no - run_start) * step, step, style="F")
                run_start = None


def render_copy(bundle: dict[str, Any], qr: str, out: Path, issued_at: datetime) -> Path:
    """Write the certified copy of the bundle's record version to `out` (A4 PDF)."""
    record = bundle["record"]
    document = record["document"]
    student = (document.get("student") or {}).get("identity") or {}
    signers = _signers(bundle["signatures"])
    pdf = CopyPdf()
    pdf.set_title(f"Học bạ {student.get('full_name', record['student_ref'])} {record['school_year']}")
    pdf.set_author("hocba archive")
    pdf.set_subject(f"{record['record_id']} v{record['version']}")
    pdf.set_keywords(qr)
    pdf.add_page()
    _letterhead(pdf, record, _school_name(record, document, signers))
    _title(pdf, record, document)
    _student(pdf, record, student)
    _results(pdf, document)
    _signatures(pdf, signers)
    _verification(pdf, bundle, qr, issued_at)
    _attach(pdf, bundle, qr)
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return out


def _school_name(record: Mapping[str, Any], document: Mapping[str, Any], signers: list[dict[str, str]]) -> str:
    """As the record states it, or as the school's seal certificate names it."""
    school = document.get("school") or {}
    seal = next((s["name"] for s in signers if s["role"] == "school_seal"), None)
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
    pdf.set_y(top + 20)


def _title(pdf: CopyPdf, record: Mapping[str, Any], document: Mapping[str, Any]) -> None:
    pdf.text_line("HỌC BẠ", 20, "B", "C", 9)
    pdf.text_line("TRUNG HỌC CƠ SỞ", 12, "B", "C", 6)
    pdf.text_line(
        f"Năm học {record['school_year']}  ·  Lớp {document.get('class_name', '—')}  ·  Khối {document.get('grade', '—')}",
        10, "", "C",
    )
    pdf.ln(3)


def _student(pdf: CopyPdf, record: Mapping[str, Any], student: Mapping[str, Any]) -> None:
    """I. The student: two labelled columns."""
    pdf.set_font("Serif", "B", 10)
    pdf.cell(0, 6, "I. THÔNG TIN HỌC SINH", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    sex = {"M": "Nam", "F": "Nữ"}.get(str(student.get("sex")), "—")
    rows = [
        ("Họ và tên", student.get("full_name", "—"), "Giới tính", sex),
        ("Ngày sinh", _date(student.get("date_of_birth")), "Dân tộc", student.get("ethnicity", "—")),
        ("Nơi sinh", student.get("place_of_birth", "—"), "Mã định danh", student.get("personal_id", "—")),
        ("Cha/mẹ/giám hộ", student.get("guardian_name", "—"), "Mã học sinh", record["student_ref"][:16]),
    ]
    for left_label, left, right_label, right in rows:
        pdf.set_font("Serif", "", 9.5)
        pdf.cell(38, 5.5, f"{left_label}:")
        pdf.set_font("Serif", "B", 9.5)
        pdf.cell(62, 5.5, str(left))
        pdf.set_font("Serif", "", 9.5)
        pdf.cell(28, 5.5, f"{right_label}:")
        pdf.set_font("Serif", "B", 9.5)
        pdf.cell(0, 5.5, str(right), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


#: Column widths of the results table: subject, then each of TERMS.
RESULT_WIDTHS = (82, 32, 32, 34)


def _results(pdf: CopyPdf, document: Mapping[str, Any]) -> None:
    """II. Subjects by term and year, then learning result and conduct, then any amendment."""
    pdf.set_font("Serif", "B", 10)
    pdf.cell(0, 6, "II. KẾT QUẢ HỌC TẬP VÀ RÈN LUYỆN", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_fill_color(235, 235, 235)
    pdf.set_font("Serif", "B", 9)
    titles = ("Môn học và hoạt động giáo dục", *(t for _, t in TERMS))
    for width, title in zip(RESULT_WIDTHS, titles, strict=True):
        pdf.cell(width, 6.5, title, border=1, align="C", fill=True)
    pdf.ln()
    pdf.set_font("Serif", "", 9)
    for subject in _subjects(document):
        pdf.cell(RESULT_WIDTHS[0], 5.8, str(subject.get("name", "?")), border=1)
        for width, (key, _) in zip(RESULT_WIDTHS[1:], TERMS, strict=True):
            pdf.cell(width, 5.8, _value(subject.get(key)), border=1, align="C")
        pdf.ln()
    learning = document.get("learning_result") or {}
    summaries = (
        ("Kết quả học tập", {k: _value(learning.get(k)) for k, _ in TERMS}),
        ("Kết quả rèn luyện", _conduct(document)),
    )
    pdf.set_font("Serif", "B", 9)
    for label, values in summaries:
        pdf.cell(RESULT_WIDTHS[0], 6, label, border=1, fill=True)
        for width, (key, _) in zip(RESULT_WIDTHS[1:], TERMS, strict=True):
            pdf.cell(width, 6, values[key], border=1, align="C", fill=True)
        pdf.ln()
    _amendment(pdf, document)
    pdf.ln(3)


def _subjects(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The record's subjects as a list, whether it states them as a list or by name."""
    subjects = document.get("subjects") or []
    if isinstance(subjects, Mapping):
        return [{"name": name, **(value if isinstance(value, Mapping) else {})} for name, value in subjects.items()]
    return list(subjects)


def _amendment(pdf: CopyPdf, document: Mapping[str, Any]) -> None:
    amendment = document.get("amendment")
    if not isinstance(amendment, Mapping):
        return
    note = f"; {amendment['note']}" if amendment.get("note") else ""
    pdf.set_font("Serif", "I", 8.5)
    pdf.multi_cell(
        0, 4.5,
        f"Bản điều chỉnh thay thế phiên bản {amendment.get('supersedes')} — lý do: {amendment.get('reason')}{note}.",
        new_x=XPos.LMARGIN, new_y=YPos.NEXT,
    )


def _signatures(pdf: CopyPdf, signers: list[dict[str, str]]) -> None:
    """III. Who signed, and when: one column per signature."""
    pdf.set_font("Serif", "B", 10)
    pdf.cell(0, 6, "III. XÁC NHẬN (CHỮ KÝ SỐ)", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    column = 180 / max(len(signers), 1)
    top = pdf.get_y()
    for n, signer in enumerate(signers):
        _signer(pdf, signer, 15 + n * column, top, column)
    pdf.set_y(max(pdf.get_y(), top + 36) + 4)


def _signer(pdf: CopyPdf, signer: dict[str, str], x: float, top: float, width: float) -> None:
    pdf.set_xy(x, top)
    pdf.set_font("Serif", "B", 9)
    pdf.multi_cell(width, 4.8, ROLE_TITLES.get(signer["role"], signer["role"]), align="C")
    pdf.set_x(x)
    pdf.set_font("Serif", "I", 8)
    pdf.multi_cell(width, 4.2, "(đã ký số)" if signer["role"] != "school_seal" else "(đã đóng dấu số)", align="C")
    pdf.set_draw_color(180, 30, 30)
    pdf.set_text_color(180, 30, 30)
    pdf.set_x(x + 6)
    pdf.set_font("Serif", "B", 8.5)
    pdf.multi_cell(width - 12, 4.4, f"{signer['name']}\nKý lúc {signer['at']}", border=1, align="C")
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_x(x)
    pdf.set_font("Mono", "", 6.5)
    pdf.multi_cell(width, 3.5, f"{signer['subject']}\nchứng thư số {signer['serial']}", align="C")


#: Side of the printed QR code, in millimetres.
QR_SIZE = 46.0


def _verification(pdf: CopyPdf, bundle: Mapping[str, Any], qr: str, issued_at: datetime) -> None:
    """The QR code, and beside it how to verify and what the copy refers to."""
    record, log, checkpoint = bundle["record"], bundle["log"], bundle["checkpoint"]
    y = pdf.get_y()
    if y + QR_SIZE > 285:
        pdf.add_page()
        y = pdf.get_y()
    _draw_qr(pdf, qr, 15, y, QR_SIZE)
    beside = 15 + QR_SIZE + 5
    pdf.set_xy(beside, y)
    pdf.set_font("Serif", "B", 9.5)
    pdf.multi_cell(0, 5, "BẢN SAO ĐIỆN TỬ CÓ XÁC THỰC", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_x(beside)
    pdf.set_font("Serif", "", 8.5)
    pdf.multi_cell(
        0, 4.3,
        "Mã QR chứa xác nhận có chữ ký số của kho lưu trữ học bạ: mã băm hồ sơ, vị trí trong nhật ký và điểm "
        "kiểm tra (checkpoint). Tệp PDF này đính kèm gói xác minh đầy đủ; kiểm tra ngoại tuyến bằng lệnh "
        "`hocba verify` trên tệp.",
        new_x=XPos.LMARGIN, new_y=YPos.NEXT,
    )
    pdf.set_x(beside)
    pdf.set_font("Mono", "", 6.8)
    status = bundle.get("status") or {}
    superseded = f"\nĐÃ ĐƯỢC THAY THẾ bởi phiên bản {status['superseded_by']}" if status.get("superseded_by") else ""
    pdf.multi_cell(
        0, 3.6,
        f"Hồ sơ: {record['record_id']} phiên bản {record['version']}\n"
        f"Nhật ký: {log['origin']} mục #{log['leaf_index']} (lưu {log['archived_at']})\n"
        f"Checkpoint: {checkpoint['tree_size']} mục, gốc {checkpoint['root_hash'][:32]}…\n"
        f"Bản sao cấp lúc {issued_at:%H:%M:%S %d/%m/%Y} UTC{superseded}",
        new_x=XPos.LMARGIN, new_y=YPos.NEXT,
    )


def _attach(pdf: CopyPdf, bundle: Mapping[str, Any], qr: str) -> None:
    """The whole verification bundle and the QR code's payload, as files inside the PDF."""
    pdf.embed_file(
        bytes=json.dumps(bundle, ensure_ascii=False, indent=1).encode(),
        basename=BUNDLE_NAME,
        desc="hocba verification bundle: record, signatures, certificate chains, inclusion proof, checkpoint",
        mime_type="application/json",
    )
    pdf.embed_file(bytes=qr.encode(), basename=QR_NAME, desc="The QR code's signed payload", mime_type="text/plain")


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
        raise NotACopy(f"its attached {BUNDLE_NAME} is not JSON or its {QR_NAME} is not text: expected {expected}") from None
    if not isinstance(bundle, dict):
        raise NotACopy(f"its attached {BUNDLE_NAME} is not a JSON object: expected {expected}")
    return bundle, qr
