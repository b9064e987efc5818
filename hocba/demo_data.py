"""Synthetic but valid schools, rosters and gradebooks for the demo and the benchmarks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import Enrolment, StudentIdentity, StudentRegistration

SCHOOL_YEAR = "2025-2026"
GRADE = 6
CLASS_SIZE = 40

#: Grade 6 subjects (Circular 22/2021): name, periods a year, score-assessed?
SUBJECTS: tuple[tuple[str, int, bool], ...] = (
    ("Ngữ văn", 140, True),
    ("Toán", 140, True),
    ("Ngoại ngữ 1", 105, True),
    ("Lịch sử và Địa lí", 105, True),
    ("Khoa học tự nhiên", 140, True),
    ("Giáo dục công dân", 35, True),
    ("Công nghệ", 35, True),
    ("Tin học", 35, True),
    ("Giáo dục thể chất", 70, False),
    ("Nghệ thuật", 70, False),
    ("Hoạt động trải nghiệm, hướng nghiệp", 105, False),
    ("Nội dung giáo dục của địa phương", 35, False),
)

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ")
MIDDLE = ("Văn", "Thị", "Minh", "Ngọc", "Gia", "Quốc", "Thanh", "Bảo")
GIVEN = ("An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Khoa", "Lan", "Minh", "Nam", "Phúc", "Quân", "Thảo", "Vy")


def regular_assessments(periods: int) -> int:
    """ĐĐGtx per term: 2 for 35 periods a year, 3 up to 70, 4 above (Circular 22/2021)."""
    return 2 if periods <= 35 else 3 if periods <= 70 else 4


@dataclass(frozen=True)
class School:
    code: str
    name: str


def schools(count: int) -> list[School]:
    return [School(code=f"79{7000 + n:06d}", name=f"Trường THCS số {n + 1}") for n in range(count)]


def personal_id(serial: int, born: date, sex: str) -> str:
    century_sex = {"M": "2", "F": "3"}[sex]  # born in the 2000s
    return f"079{century_sex}{born.year % 100:02d}{serial:06d}"


def roster(school: School, students: int, first_serial: int, seed: int = 6) -> list[StudentRegistration]:
    rng = random.Random(seed + first_serial)
    rows = []
    for n in range(students):
        sex = rng.choice("MF")
        born = date(2014, rng.randint(1, 12), rng.randint(1, 28))
        name = f"{rng.choice(FAMILY)} {'Thị' if sex == 'F' else rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
        rows.append(
            StudentRegistration(
                identity=StudentIdentity(
                    personal_id=personal_id(first_serial + n, born, sex),
                    full_name=name,
                    date_of_birth=born,
                    sex=sex,
                    place_of_birth="Thành phố Hồ Chí Minh",
                    ethnicity="Kinh",
                    guardian_name=f"{name.split()[0]} Văn Phụ Huynh",
                ),
                enrolment=Enrolment(
                    school_code=school.code,
                    school_year=SCHOOL_YEAR,
                    grade=GRADE,
                    class_name=f"6A{n // CLASS_SIZE + 1}",
                ),
            )
        )
    return rows


def _score(rng: random.Random, ability: float) -> Decimal:
    value = max(0.0, min(10.0, rng.gauss(ability, 1.2)))
    return Decimal(f"{value:.1f}")


def gradebook(student_refs: list[str], seed: int = 22) -> Iterator[SubjectTermScores]:
    """Every subject's assessments, both terms, for each student."""
    rng = random.Random(seed)
    for ref in student_refs:
        ability = rng.uniform(4.5, 9.5)
        for subject, periods, scored in SUBJECTS:
            for term in (1, 2):
                if scored:
                    yield SubjectTermScores(
                        student_ref=ref,
                        subject=subject,
                        term=term,
                        regular=tuple(_score(rng, ability) for _ in range(regular_assessments(periods))),
                        midterm=_score(rng, ability),
                        final=_score(rng, ability),
                    )
                else:
                    yield SubjectTermScores(
                        student_ref=ref,
                        subject=subject,
                        term=term,
                        comment_level="Đ" if rng.random() > 0.03 else "CĐ",
                    )


#: Term conduct as homeroom teachers tend to give it: mostly Tốt, rarely Chưa đạt.
CONDUCT_WEIGHTS = (("Tốt", 70), ("Khá", 22), ("Đạt", 7), ("Chưa đạt", 1))
COMMENTS = ("Chăm ngoan, tích cực phát biểu.", "Có tiến bộ, cần cẩn thận hơn.", "Hòa đồng, giúp đỡ bạn bè.")


def homeroom(student_refs: list[str], seed: int = 27) -> Iterator[StudentTermConduct]:
    """Each student's conduct, absences (sessions) and the homeroom teacher's comment, both terms."""
    rng = random.Random(seed)
    levels = [level for level, _ in CONDUCT_WEIGHTS]
    weights = [weight for _, weight in CONDUCT_WEIGHTS]
    for ref in student_refs:
        for term in (1, 2):
            yield StudentTermConduct(
                student_ref=ref,
                term=term,
                conduct=rng.choices(levels, weights)[0],
                absences=min(rng.choice((0, 0, 0, 1, 2, 3)) + (rng.random() < 0.02) * 20, 30),
                comment=rng.choice(COMMENTS),
            )


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
