"""Synthetic but valid schools, rosters and gradebooks for the demo and the benchmarks."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import Enrolment, RegisteredStudent, StudentIdentity, StudentRegistration

SCHOOL_YEAR = "2025-2026"
#: The grade the demo and the benchmarks use unless told otherwise (lower secondary, Circular 22/2021).
GRADE = 6
#: The first primary grade (Circular 27/2020), the city pilot's cohort.
PRIMARY_GRADE = 1
#: The first upper-secondary grade (Circular 22/2021 with the 2018 programme), in the city's rollout from 2025-26.
UPPER_GRADE = 10
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

#: Grades 10-12 compulsory subjects (Circular 22/2021, 2018 programme): name, periods a year, score-assessed?
UPPER_COMPULSORY: tuple[tuple[str, int, bool], ...] = (
    ("Ngữ văn", 105, True),
    ("Toán", 105, True),
    ("Ngoại ngữ 1", 105, True),
    ("Lịch sử", 52, True),
    ("Giáo dục quốc phòng và an ninh", 35, True),
    ("Giáo dục thể chất", 70, False),
    ("Hoạt động trải nghiệm, hướng nghiệp", 105, False),
    ("Nội dung giáo dục của địa phương", 35, False),
)
#: The electives, 70 periods a year each, of which each student takes 4; Âm nhạc and Mĩ thuật are comment-assessed.
ELECTIVES: tuple[tuple[str, int, bool], ...] = (
    ("Địa lí", 70, True),
    ("Giáo dục kinh tế và pháp luật", 70, True),
    ("Vật lí", 70, True),
    ("Hóa học", 70, True),
    ("Sinh học", 70, True),
    ("Công nghệ", 70, True),
    ("Tin học", 70, True),
    ("Âm nhạc", 70, False),
    ("Mĩ thuật", 70, False),
)
#: Electives each student of grades 10-12 takes.
ELECTIVES_TAKEN = 4
#: Combinations a school offers: 4 electives and the subjects of 3 learning topics (chuyên đề học tập).
#: Each student is given one: the record holds the student's own subjects.
COMBINATIONS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("Vật lí", "Hóa học", "Sinh học", "Tin học"), ("Toán", "Vật lí", "Hóa học")),
    (("Vật lí", "Hóa học", "Công nghệ", "Tin học"), ("Toán", "Vật lí", "Tin học")),
    (("Địa lí", "Giáo dục kinh tế và pháp luật", "Vật lí", "Tin học"), ("Toán", "Ngữ văn", "Địa lí")),
    (("Địa lí", "Giáo dục kinh tế và pháp luật", "Công nghệ", "Âm nhạc"), ("Ngữ văn", "Lịch sử", "Âm nhạc")),
    (("Địa lí", "Giáo dục kinh tế và pháp luật", "Sinh học", "Mĩ thuật"), ("Ngữ văn", "Lịch sử", "Mĩ thuật")),
)
#: Regular assessments a learning topic adds to its (score-assessed) subject each term, as grades' rule set reads
#: Circular 22 (a point it marks unconfirmed).
TOPIC_REGULAR = 1

#: Grade 1 subjects and activities (Circular 27/2020, 2018 programme): name, has a periodic test?
PRIMARY_SUBJECTS: tuple[tuple[str, bool], ...] = (
    ("Tiếng Việt", True),
    ("Toán", True),
    ("Tự nhiên và Xã hội", False),
    ("Đạo đức", False),
    ("Giáo dục thể chất", False),
    ("Âm nhạc", False),
    ("Mĩ thuật", False),
    ("Hoạt động trải nghiệm", False),
)
#: Primary qualities and competencies (3 general, 7 specific), each rated Tốt / Đạt / Cần cố gắng.
QUALITIES = ("Yêu nước", "Nhân ái", "Chăm chỉ", "Trung thực", "Trách nhiệm")
COMPETENCIES = (
    "Tự chủ và tự học",
    "Giao tiếp và hợp tác",
    "Giải quyết vấn đề và sáng tạo",
    "Ngôn ngữ",
    "Tính toán",
    "Khoa học",
    "Công nghệ",
    "Tin học",
    "Thẩm mĩ",
    "Thể chất",
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
    grade: int = GRADE


def schools(count: int, grade: int = GRADE) -> list[School]:
    """`count` schools teaching `grade`: lower secondary (THCS) codes from 79007000, primary from 79001000,
    upper secondary (THPT) from 79008000."""
    if grade <= 5:
        return [School(f"79{1000 + n:06d}", f"Trường Tiểu học số {n + 1}", grade) for n in range(count)]
    if grade >= UPPER_GRADE:
        return [School(f"79{8000 + n:06d}", f"Trường THPT số {n + 1}", grade) for n in range(count)]
    return [School(f"79{7000 + n:06d}", f"Trường THCS số {n + 1}", grade) for n in range(count)]


def subjects(grade: int = GRADE) -> tuple[str, ...]:
    """The subjects and activities every student of `grade` has an entry in, each term (grades 10-12: the
    compulsory ones; each student also has their electives, `student_subjects`)."""
    table = PRIMARY_SUBJECTS if grade <= 5 else UPPER_COMPULSORY if grade >= UPPER_GRADE else SUBJECTS
    return tuple(name for name, *_ in table)


def subject_count(grade: int = GRADE) -> int:
    """How many subjects each student of `grade` has an entry in, each term (grades 10-12: with their electives)."""
    return len(subjects(grade)) + (ELECTIVES_TAKEN if grade >= UPPER_GRADE else 0)


def student_subjects(enrolment: Enrolment) -> tuple[str, ...]:
    """The subjects one student has an entry in, each term: their grade's, and in grades 10-12 their electives."""
    return subjects(enrolment.grade) + tuple(name for name, *_ in ELECTIVES if name in enrolment.electives)


def personal_id(serial: int, born: date, sex: str) -> str:
    century_sex = {"M": "2", "F": "3"}[sex]  # born in the 2000s
    return f"079{century_sex}{born.year % 100:02d}{serial:06d}"


def roster(school: School, students: int, first_serial: int, seed: int = 6) -> list[StudentRegistration]:
    """`students` of the school's grade, in classes of `CLASS_SIZE` (6A1, 6A2, … or 1A1, …), born the year their
    grade is the age for (grade 1 at six); in grades 10-12 each with one of the school's `COMBINATIONS`."""
    rng = random.Random(seed + first_serial)
    combinations = random.Random(seed + first_serial + 1)
    born_in = int(SCHOOL_YEAR[:4]) - 5 - school.grade
    rows = []
    for n in range(students):
        electives, topics = combinations.choice(COMBINATIONS) if school.grade >= UPPER_GRADE else ((), ())
        sex = rng.choice("MF")
        born = date(born_in, rng.randint(1, 12), rng.randint(1, 28))
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
                    grade=school.grade,
                    class_name=f"{school.grade}A{n // CLASS_SIZE + 1}",
                    electives=electives,
                    learning_topics=topics,
                ),
            )
        )
    return rows


def _score(rng: random.Random, ability: float) -> Decimal:
    value = max(0.0, min(10.0, rng.gauss(ability, 1.2)))
    return Decimal(f"{value:.1f}")


def gradebook(student_refs: list[str], seed: int = 22, grade: int = GRADE) -> Iterator[SubjectTermScores]:
    """Every subject's assessments, both terms, for each student of `grade` (grades 10-12: `upper_gradebook`,
    which takes each student's enrolment, since their subjects are their own)."""
    if grade >= UPPER_GRADE:
        raise ValueError(f"grade {grade} students have their own subjects: use upper_gradebook with their enrolments")
    if grade <= 5:
        yield from primary_gradebook(student_refs, seed)
        return
    rng = random.Random(seed)
    for ref in student_refs:
        ability = rng.uniform(4.5, 9.5)
        for subject, periods, scored in SUBJECTS:
            yield from _secondary_entries(rng, ref, subject, regular_assessments(periods) if scored else 0, ability)


def _secondary_entries(
    rng: random.Random, ref: str, subject: str, regular: int, ability: float
) -> Iterator[SubjectTermScores]:
    """A secondary subject's entries, both terms: `regular` regular assessments, mid-term and final; a level when
    `regular` is 0 (comment-assessed)."""
    for term in (1, 2):
        if regular:
            yield SubjectTermScores(
                student_ref=ref,
                subject=subject,
                term=term,
                regular=tuple(_score(rng, ability) for _ in range(regular)),
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


def upper_gradebook(students: Iterable[RegisteredStudent], seed: int = 22) -> Iterator[SubjectTermScores]:
    """Grades 10-12: each student's own subjects (the compulsory ones and their electives), both terms; a
    score-assessed subject with one of their learning topics has `TOPIC_REGULAR` more regular assessments."""
    rng = random.Random(seed)
    table = {name: (periods, scored) for name, periods, scored in (*UPPER_COMPULSORY, *ELECTIVES)}
    for student in students:
        ability = rng.uniform(4.5, 9.5)
        enrolment = student.enrolment
        for subject in student_subjects(enrolment):
            periods, scored = table[subject]
            topic = TOPIC_REGULAR if subject in enrolment.learning_topics else 0
            regular = regular_assessments(periods) + topic if scored else 0
            yield from _secondary_entries(rng, student.student_ref, subject, regular, ability)


#: Primary subject levels as teachers tend to give them: Hoàn thành tốt or Hoàn thành, rarely Chưa hoàn thành.
LEVEL_WEIGHTS = (("T", 55), ("H", 43), ("C", 2))
#: Primary qualities and competencies: Tốt, Đạt, rarely Cần cố gắng.
RATING_WEIGHTS = (("T", 60), ("Đ", 38), ("C", 2))


def _weighted(rng: random.Random, weights: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([value for value, _ in weights], [weight for _, weight in weights])[0]


def _test_score(rng: random.Random, ability: float) -> Decimal:
    """A primary periodic test: a whole number out of 10."""
    return Decimal(round(max(0.0, min(10.0, rng.gauss(ability, 1.2)))))


def primary_gradebook(student_refs: list[str], seed: int = 27) -> Iterator[SubjectTermScores]:
    """Grade 1 (Circular 27/2020): each subject's level at mid-term and at the end of each term, and the periodic
    test (whole points) at the end of each term in the tested subjects."""
    rng = random.Random(seed)
    for ref in student_refs:
        ability = rng.uniform(5.0, 10.0)
        for subject, tested in PRIMARY_SUBJECTS:
            for term in (1, 2):
                yield SubjectTermScores(
                    student_ref=ref,
                    subject=subject,
                    term=term,
                    midterm_level=_weighted(rng, LEVEL_WEIGHTS),
                    level=_weighted(rng, LEVEL_WEIGHTS),
                    final=_test_score(rng, ability) if tested else None,
                )


#: Term conduct as homeroom teachers tend to give it: mostly Tốt, rarely Chưa đạt.
CONDUCT_WEIGHTS = (("Tốt", 70), ("Khá", 22), ("Đạt", 7), ("Chưa đạt", 1))
COMMENTS = ("Chăm ngoan, tích cực phát biểu.", "Có tiến bộ, cần cẩn thận hơn.", "Hòa đồng, giúp đỡ bạn bè.")


def _absences(rng: random.Random) -> int:
    return min(rng.choice((0, 0, 0, 1, 2, 3)) + (rng.random() < 0.02) * 20, 30)


def homeroom(student_refs: list[str], seed: int = 27, grade: int = GRADE) -> Iterator[StudentTermConduct]:
    """Each student's conduct (secondary) or qualities and competencies (primary), absences (sessions) and the
    homeroom teacher's comment, both terms."""
    rng = random.Random(seed)
    for ref in student_refs:
        for term in (1, 2):
            if grade <= 5:
                yield StudentTermConduct(
                    student_ref=ref,
                    term=term,
                    qualities={q: _weighted(rng, RATING_WEIGHTS) for q in QUALITIES},
                    competencies={c: _weighted(rng, RATING_WEIGHTS) for c in COMPETENCIES},
                    absences=_absences(rng),
                    comment=rng.choice(COMMENTS),
                )
            else:
                yield StudentTermConduct(
                    student_ref=ref,
                    term=term,
                    conduct=_weighted(rng, CONDUCT_WEIGHTS),
                    absences=_absences(rng),
                    comment=rng.choice(COMMENTS),
                )


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
