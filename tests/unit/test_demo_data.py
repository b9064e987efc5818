"""The demo's and the benchmarks' synthetic schools: valid entries that grades assembles into complete records,
grade 6 (Circular 22/2021) as before, grade 1 (Circular 27/2020) for the city's pilot cohort, and grade 10
(Circular 22/2021 with the 2018 programme), each student with their own electives and learning topics."""

from __future__ import annotations

from collections import Counter

import pytest

from hocba import demo_data
from services.grades.domain import assemble_record, conduct_problems, enrolled_entry_problems, entry_problems
from services.grades.rulesets import rule_set_for
from shared.contracts.identity import RegisteredStudent, StudentSnapshot


def school_of(grade: int, students: int = 45) -> list[tuple[RegisteredStudent, StudentSnapshot]]:
    """The roster as identity would register it: each student with a reference and their snapshot."""
    school = demo_data.schools(1, grade=grade)[0]
    found = []
    for n, row in enumerate(demo_data.roster(school, students, first_serial=1000)):
        ref = f"ref-{n:04d}"
        found.append((RegisteredStudent(student_ref=ref, enrolment=row.enrolment), StudentSnapshot(student_ref=ref, identity=row.identity)))
    return found


@pytest.mark.parametrize("grade", [1, 6])
def test_the_subject_tables_are_the_rule_sets(grade):
    rule_set = rule_set_for(grade)
    assert demo_data.subjects(grade) == tuple(rule.name for rule in rule_set.subjects(grade) or ())


def test_primary_ratings_name_every_quality_and_competency():
    rule_set = rule_set_for(demo_data.PRIMARY_GRADE)
    assert (rule_set.qualities, rule_set.competencies) == (demo_data.QUALITIES, demo_data.COMPETENCIES)


@pytest.mark.parametrize("grade", [1, 6])
def test_every_generated_entry_is_valid_and_every_record_complete(grade):
    rule_set = rule_set_for(grade)
    students = school_of(grade)
    refs = [student.student_ref for student, _ in students]
    entries = list(demo_data.gradebook(refs, grade=grade))
    homeroom = list(demo_data.homeroom(refs, grade=grade))
    assert len(entries) == len(refs) * len(demo_data.subjects(grade)) * 2 and len(homeroom) == len(refs) * 2
    for entry in entries:
        assert entry_problems(entry, rule_set.subject(grade, entry.subject), rule_set) == []
    assert all(conduct_problems(rule_set, conduct) == [] for conduct in homeroom)
    for student, snapshot in students:
        ref = student.student_ref
        record = assemble_record(
            rule_set, student, snapshot, [e for e in entries if e.student_ref == ref], [h for h in homeroom if h.student_ref == ref]
        ).document()
        assert record["complete"] is True and record["missing"] == [] and record["grade"] == grade
        assert record["rule_set"].startswith(rule_set.id)


def test_a_grade_1_school_is_primary_with_classes_of_forty_six_year_olds():
    school = demo_data.schools(2, grade=1)[1]
    assert (school.code, school.grade) == ("79001001", 1) and "Tiểu học" in school.name
    rows = demo_data.roster(school, 264, first_serial=0)
    assert Counter(r.enrolment.class_name for r in rows) == {**{f"1A{n}": 40 for n in range(1, 7)}, "1A7": 24}
    assert {r.identity.date_of_birth.year for r in rows} == {2019}
    assert len({r.identity.personal_id for r in rows}) == 264


def test_grade_1_outcomes_spread_over_the_four_levels_as_schools_give_them():
    rule_set = rule_set_for(1)
    students = school_of(1, students=200)
    refs = [student.student_ref for student, _ in students]
    entries = list(demo_data.gradebook(refs, grade=1))
    homeroom = list(demo_data.homeroom(refs, grade=1))
    outcomes = Counter(
        assemble_record(
            rule_set, student, snapshot,
            [e for e in entries if e.student_ref == student.student_ref],
            [h for h in homeroom if h.student_ref == student.student_ref],
        ).document()["outcome"]
        for student, snapshot in students
    )
    assert outcomes["Hoàn thành"] > outcomes["Chưa hoàn thành"] > 0


def test_grade_6_data_is_what_the_demo_always_had():
    """The demo's figures and checks stay comparable from run to run: the same seed gives the same school."""
    school = demo_data.schools(1)[0]
    assert (school.code, school.name, school.grade) == ("79007000", "Trường THCS số 1", 6)
    first = demo_data.roster(school, 3, first_serial=0)[0]
    assert first.enrolment.class_name == "6A1" and first.identity.date_of_birth.year == 2014
    conduct = next(demo_data.homeroom(["ref"]))
    assert conduct.conduct in {"Tốt", "Khá", "Đạt", "Chưa đạt"} and not conduct.qualities


# -- grade 10: each student's own subjects --------------------------------------------------------


def test_the_upper_secondary_tables_are_the_rule_sets():
    rule_set = rule_set_for(demo_data.UPPER_GRADE)
    choices = rule_set.choices(demo_data.UPPER_GRADE)
    assert choices is not None
    assert demo_data.subjects(10) == tuple(rule.name for rule in rule_set.subjects(10) or ())
    assert (
        tuple((r.name, r.periods_per_year, r.scored) for r in rule_set.subjects(10) or ()) == demo_data.UPPER_COMPULSORY
    )
    assert tuple((r.name, r.periods_per_year, r.scored) for r in choices.electives) == demo_data.ELECTIVES
    assert choices.topic.regular_per_term == demo_data.TOPIC_REGULAR
    assert choices.electives_taken == demo_data.ELECTIVES_TAKEN


def test_a_grade_10_school_gives_each_student_one_of_its_combinations():
    school = demo_data.schools(2, grade=10)[1]
    assert (school.code, school.grade) == ("79008001", 10) and "THPT" in school.name
    rows = demo_data.roster(school, 90, first_serial=0)
    assert Counter(r.enrolment.class_name for r in rows) == {"10A1": 40, "10A2": 40, "10A3": 10}
    assert {r.identity.date_of_birth.year for r in rows} == {2010}
    combinations = Counter((r.enrolment.electives, r.enrolment.learning_topics) for r in rows)
    assert set(combinations) == set(demo_data.COMBINATIONS), "every combination the school offers is taken"
    assert any("Âm nhạc" in electives or "Mĩ thuật" in electives for electives, _ in combinations)


def test_every_generated_grade_10_entry_is_valid_and_every_record_complete_over_the_students_own_subjects():
    rule_set = rule_set_for(10)
    students = school_of(10)
    entries = list(demo_data.upper_gradebook([student for student, _ in students]))
    refs = [student.student_ref for student, _ in students]
    homeroom = list(demo_data.homeroom(refs, grade=10))
    assert len(entries) == len(refs) * demo_data.subject_count(10) * 2 == len(refs) * 12 * 2
    assert (demo_data.subject_count(6), demo_data.subject_count(1)) == (12, 8)
    for entry in entries:
        student = next(s for s, _ in students if s.student_ref == entry.student_ref)
        assert enrolled_entry_problems(rule_set, student.enrolment.school_code, student, entry) == []
    assert all(conduct_problems(rule_set, conduct) == [] for conduct in homeroom)
    for student, snapshot in students:
        ref = student.student_ref
        record = assemble_record(
            rule_set,
            student,
            snapshot,
            [e for e in entries if e.student_ref == ref],
            [h for h in homeroom if h.student_ref == ref],
        ).document()
        assert record["complete"] is True and record["missing"] == [] and record["grade"] == 10
        assert [s["name"] for s in record["subjects"]] == list(demo_data.student_subjects(student.enrolment))
        assert set(record["combination"]["electives"]) == set(student.enrolment.electives)
        assert record["rule_set"] == "circular-22-2021-upper/v1"


def test_a_grade_10_gradebook_needs_each_students_enrolment():
    with pytest.raises(ValueError, match="use upper_gradebook"):
        next(demo_data.gradebook(["ref"], grade=10))
