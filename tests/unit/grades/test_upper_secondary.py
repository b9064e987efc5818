"""Grades 10-12 under Circular 22/2021 with the 2018 programme: each student's own subjects, by kind.

Compulsory score-assessed and comment-assessed subjects, the four electives each student chooses (Âm nhạc and
Mĩ thuật comment-assessed), and the three learning topics, each assessed with the subject it is tied to. The
combination comes with the enrolment; the record holds the student's own subjects and notes the combination.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.grades import handlers
from services.grades.domain import assemble_record, enrolled_entry_problems
from services.grades.domain.combination import combination_problems
from services.grades.domain.reading import UnreadableRecord, record_from_document
from services.grades.rulesets import RULE_SETS, rule_set_for
from services.grades.rulesets.circular_22_2021_upper import CIRCULAR_22_2021_UPPER as RULES
from services.grades.rulesets.circular_22_2021_upper import COMPULSORY, ELECTIVES, SCORED_COUNT
from shared.contracts.grades import CloseTerm, CloseYear, RecordAssessments, RecordsReady
from shared.contracts.identity import Enrolment
from shared.crypto.canonical import canonical_json
from tests.unit.grades.builders import (
    SCHOOL,
    SCIENCE_TOPICS,
    SCIENCES,
    YEAR,
    commented,
    enrolled,
    homeroom,
    own_year,
    principal,
    scored,
    snapshot,
    subject_teacher,
    upper_enrolled,
)
from tests.unit.grades.conftest import FakeLookup, Published

#: A student who takes a comment-assessed elective, with learning topics in a compulsory subject, a scored
#: elective and a comment-assessed elective.
ARTS = ("Vật lí", "Hóa học", "Tin học", "Âm nhạc")
ARTS_TOPICS = ("Toán", "Vật lí", "Âm nhạc")
STUDENT = upper_enrolled("s", ARTS, ARTS_TOPICS)


def codes(entry, student=STUDENT) -> list[str]:
    return [p.code for p in enrolled_entry_problems(RULES, SCHOOL, student, entry)]


def score_entry(subject: str, regular: int, ref: str = "s"):
    return scored(ref, subject, 1, ["8"] * regular, "7", "9")


# -- the table --------------------------------------------------------------------------------


def test_grades_10_to_12_have_five_compulsory_scored_three_compulsory_comment_subjects_and_nine_electives():
    for grade in (10, 11, 12):
        assert rule_set_for(grade) is RULES and RULES.subjects(grade) == COMPULSORY
        assert RULES.choices(grade) is not None and RULES.choices(grade).electives == ELECTIVES
    assert {s.name: s.periods_per_year for s in COMPULSORY if s.scored} == {
        "Ngữ văn": 105,
        "Toán": 105,
        "Ngoại ngữ 1": 105,
        "Lịch sử": 52,
        "Giáo dục quốc phòng và an ninh": 35,
    }
    assert {s.name: s.periods_per_year for s in COMPULSORY if not s.scored} == {
        "Giáo dục thể chất": 70,
        "Hoạt động trải nghiệm, hướng nghiệp": 105,
        "Nội dung giáo dục của địa phương": 35,
    }
    assert {s.name for s in ELECTIVES if not s.scored} == {"Âm nhạc", "Mĩ thuật"}
    assert len(ELECTIVES) == 9 and {s.periods_per_year for s in ELECTIVES} == {70}
    choices = RULES.choices(10)
    assert (choices.electives_taken, choices.topics_taken, choices.topic.periods_per_year) == (4, 3, 35)


def test_grades_6_to_9_keep_their_rule_set_and_have_no_choices():
    assert rule_set_for(6).key == "circular-22-2021/v2" and rule_set_for(6).choices(6) is None
    assert RULES.key == "circular-22-2021-upper/v1" and RULES.key in RULE_SETS


# -- compulsory score-assessed subjects: regular assessments by their periods -----------------


@pytest.mark.parametrize(
    ("subject", "regular"),
    [
        ("Ngữ văn", 4),  # 105 periods a year
        ("Ngoại ngữ 1", 4),
        ("Lịch sử", 3),  # 52
        ("Giáo dục quốc phòng và an ninh", 2),  # 35
        ("Toán", 5),  # 105, and the student's learning topic in Toán
    ],
)
def test_a_compulsory_scored_subject_takes_the_regular_assessments_of_its_periods(subject, regular):
    assert codes(score_entry(subject, regular)) == []
    assert codes(score_entry(subject, regular - 1)) == ["regular-count"]
    assert codes(commented("s", subject, 1)) == ["score-only", "regular-count", "missing-score", "missing-score"]


# -- compulsory comment-assessed subjects: Đạt / Chưa đạt only --------------------------------


@pytest.mark.parametrize(
    "subject", ["Giáo dục thể chất", "Hoạt động trải nghiệm, hướng nghiệp", "Nội dung giáo dục của địa phương"]
)
def test_a_compulsory_comment_subject_takes_its_level_only(subject):
    assert codes(commented("s", subject, 1, "Đ")) == [] and codes(commented("s", subject, 2, "CĐ")) == []
    assert codes(score_entry(subject, 2)) == ["comment-only", "missing-level"]


# -- score-assessed electives: only for the students who take them ----------------------------


@pytest.mark.parametrize(
    ("subject", "regular", "found"),
    [
        ("Hóa học", 3, []),  # 70 periods a year
        ("Tin học", 3, []),
        ("Vật lí", 4, []),  # 70, and the student's learning topic in Vật lí
        ("Vật lí", 3, ["regular-count"]),
        ("Sinh học", 3, ["not-taken"]),  # an elective this student did not choose
        ("Địa lí", 3, ["not-taken"]),
    ],
)
def test_a_scored_elective_is_entered_for_the_students_who_take_it(subject, regular, found):
    assert codes(score_entry(subject, regular)) == found


def test_an_elective_not_taken_says_which_the_student_takes():
    (problem,) = enrolled_entry_problems(RULES, SCHOOL, STUDENT, score_entry("Sinh học", 3))
    assert problem.message == (
        "Sinh học is not among the student's electives (Vật lí, Hóa học, Tin học and Âm nhạc): "
        "enter it only for the students who take it"
    )


# -- comment-assessed electives: Âm nhạc and Mĩ thuật -----------------------------------------


@pytest.mark.parametrize(
    ("entry", "found"),
    [
        (commented("s", "Âm nhạc", 1, "Đ"), []),
        (commented("s", "Âm nhạc", 2, "CĐ"), []),
        (score_entry("Âm nhạc", 3), ["comment-only", "missing-level"]),  # its learning topic adds no score
        (commented("s", "Mĩ thuật", 1, "Đ"), ["not-taken"]),
    ],
)
def test_a_comment_elective_takes_its_level_for_the_students_who_take_it(entry, found):
    assert codes(entry) == found


# -- learning topics: one more regular assessment of their subject, no periodic one -----------


def test_a_learning_topic_counts_as_one_more_regular_assessment_of_its_subject_each_term():
    (problem,) = enrolled_entry_problems(RULES, SCHOOL, STUDENT, score_entry("Vật lí", 3))
    assert problem.message == (
        "Vật lí (70 periods a year, and a learning topic counted as 1 of them) needs 4 regular assessments per term, "
        "got 3"
    )
    # the same subject without a topic: 3
    assert codes(score_entry("Vật lí", 3), upper_enrolled("t", SCIENCES, ("Toán", "Hóa học", "Sinh học"))) == []


def test_a_learning_topic_enters_its_subjects_term_average_as_a_regular_assessment():
    entries = [e for e in own_year(STUDENT) if (e.subject, e.term) != ("Vật lí", 1)]
    entries.append(scored("s", "Vật lí", 1, ["8", "8", "8", "10"], "7", "7"))  # the topic's assessment: 10
    document = assemble_record(RULES, STUDENT, snapshot("s"), entries).document()
    physics = next(s for s in document["subjects"] if s["name"] == "Vật lí")
    # (8 + 8 + 8 + 10 + 2×7 + 3×7) / (4 + 5) = 69 / 9 = 7.67: one mid-term and one final, none for the topic
    assert physics["term_1"]["average"] == "7.7"


def test_how_a_learning_topic_is_assessed_is_rule_set_data_marked_unconfirmed():
    choices = RULES.choices(10)
    assert choices.topic.regular_per_term == 1 and not choices.topic.clause.confirmed
    assert any("learning topic's assessment counts as one regular assessment" in n for n in RULES.unconfirmed(10))
    counted_apart = replace(
        RULES, choices_by_grade={10: replace(choices, topic=replace(choices.topic, regular_per_term=0))}
    )
    assert [p.code for p in enrolled_entry_problems(counted_apart, SCHOOL, STUDENT, score_entry("Vật lí", 3))] == []


# -- the combination ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("electives", "topics", "found"),
    [
        (SCIENCES, SCIENCE_TOPICS, []),
        (ARTS, ARTS_TOPICS, []),
        (("Địa lí", "Giáo dục kinh tế và pháp luật", "Âm nhạc", "Mĩ thuật"), ("Ngữ văn", "Lịch sử", "Mĩ thuật"), []),
        (
            (),
            SCIENCE_TOPICS,
            [
                "no electives in the enrolment; expected 4 of Địa lí, Giáo dục kinh tế và pháp luật, "
                "Vật lí, Hóa học, Sinh học, Công nghệ, Tin học, Âm nhạc and Mĩ thuật: add the "
                "student's electives to the roster row",
                "learning topics in Vật lí and Hóa học, which the student does not take",
            ],
        ),
        (SCIENCES[:3], SCIENCE_TOPICS, ["3 electives (Vật lí, Hóa học and Sinh học); expected 4 of"]),
        ((*SCIENCES, "Địa lí"), SCIENCE_TOPICS, ["5 electives"]),
        (
            ("Vật lí", "Hóa học", "Sinh học", "Khoa học tự nhiên"),
            SCIENCE_TOPICS,
            ["Khoa học tự nhiên is not an elective; expected 4 of"],
        ),
        (("Vật lí", "Vật lí", "Hóa học", "Sinh học"), SCIENCE_TOPICS, ["electives named twice: Vật lí", "3 electives"]),
        (
            SCIENCES,
            (),
            [
                "no learning topics in the enrolment; expected 3 learning topics, each in a different "
                "subject the student takes"
            ],
        ),
        (SCIENCES, ("Toán", "Vật lí"), ["2 learning topics (Toán and Vật lí); expected 3"]),
        (SCIENCES, ("Toán", "Vật lí", "Địa lí"), ["learning topic in Địa lí, which the student does not take"]),
        (SCIENCES, ("Toán", "Vật lí", "Ngoại ngữ 1"), ["Ngoại ngữ 1 has no learning topics; they are in Ngữ văn"]),
        (SCIENCES, ("Toán", "Toán", "Vật lí"), ["learning topics named twice: Toán", "2 learning topics"]),
    ],
)
def test_each_student_takes_four_electives_and_three_learning_topics_in_their_own_subjects(electives, topics, found):
    problems = combination_problems(RULES, upper_enrolled("s", electives, topics).enrolment)
    assert len(problems) == len(found)
    for problem, expected in zip(problems, found, strict=True):
        assert problem.startswith(expected)


def test_a_student_without_a_combination_takes_no_entries_and_is_told_why():
    student = upper_enrolled("s", (), ())
    (problem,) = enrolled_entry_problems(RULES, SCHOOL, student, score_entry("Toán", 4))
    assert problem.code == "combination"
    assert problem.message.startswith("the student's enrolment cannot take entries: no electives in the enrolment")
    with pytest.raises(ValueError, match="combination cannot be used"):
        assemble_record(RULES, student, snapshot("s"), [])


def test_grades_below_10_have_no_electives():
    enrolment = Enrolment(school_code=SCHOOL, school_year=YEAR, grade=6, class_name="6A1", electives=("Vật lí",))
    assert combination_problems(rule_set_for(6), enrolment) == [
        "grade 6 has no electives or learning topics, yet the enrolment names Vật lí: remove them from the roster row"
    ]
    assert combination_problems(rule_set_for(6), enrolled("s").enrolment) == []


# -- the record: the student's own subjects -----------------------------------------------------


def test_the_record_holds_the_students_own_subjects_and_notes_the_combination():
    document = assemble_record(RULES, STUDENT, snapshot("s"), own_year(STUDENT), homeroom("s")).document()
    assert document["rule_set"] == "circular-22-2021-upper/v1" and document["grade"] == 10
    assert [s["name"] for s in document["subjects"]] == [s.name for s in COMPULSORY] + list(ARTS)
    assert document["combination"] == {"electives": list(ARTS), "learning_topics": ["Toán", "Vật lí", "Âm nhạc"]}
    assert document["complete"] is True and document["missing"] == []
    assert document["learning_result"] == {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"}
    assert document["promotion"] == {"decision": "Được lên lớp"}


def test_the_combination_is_noted_in_the_order_of_the_tables_whatever_order_the_roster_gave():
    student = upper_enrolled("s", tuple(reversed(ARTS)), tuple(reversed(ARTS_TOPICS)))
    document = assemble_record(RULES, student, snapshot("s"), own_year(student)).document()
    assert document["combination"] == {"electives": list(ARTS), "learning_topics": ["Toán", "Vật lí", "Âm nhạc"]}


def test_completeness_is_judged_over_the_students_own_subjects():
    entries = own_year(STUDENT, skip=frozenset({("Âm nhạc", 2), ("Vật lí", 1)}))
    entries += [scored("s", "Sinh học", t, ["8"] * 3, "8", "8") for t in (1, 2)]  # not the student's: not in the record
    document = assemble_record(RULES, STUDENT, snapshot("s"), entries, homeroom("s")).document()
    assert document["complete"] is False
    assert document["missing"] == [{"subject": "Vật lí", "term": 1}, {"subject": "Âm nhạc", "term": 2}]
    assert "Sinh học" not in [s["name"] for s in document["subjects"]]


# -- at least 6 scored subjects, counted over the student's own ---------------------------------


def with_scores(student, scores: dict[str, str]):
    """The student's year with each score-assessed subject at the score given (8.0 when not named)."""
    entries = []
    for entry in own_year(student):
        if entry.subject in scores:
            value = scores[entry.subject]
            entry = scored("s", entry.subject, entry.term, [value] * len(entry.regular), value, value)
        entries.append(entry)
    return assemble_record(RULES, student, snapshot("s"), entries, homeroom("s"))


#: Âm nhạc and Mĩ thuật among the electives: 7 scored subjects.
SEVEN = upper_enrolled(
    "s", ("Địa lí", "Giáo dục kinh tế và pháp luật", "Âm nhạc", "Mĩ thuật"), ("Ngữ văn", "Lịch sử", "Mĩ thuật")
)


@pytest.mark.parametrize(
    ("student", "scores", "level"),
    [
        (SEVEN, {"Ngữ văn": "6.5"}, "Tốt"),  # 6 of 7 at 8.0
        (SEVEN, {"Ngữ văn": "6.5", "Toán": "7.9"}, "Khá"),  # 5 of 7
        (STUDENT, {"Ngữ văn": "6.5", "Toán": "6.5"}, "Tốt"),  # 6 of 8 (Âm nhạc is comment-assessed)
        (STUDENT, {"Ngữ văn": "6.5", "Toán": "6.5", "Lịch sử": "6.5"}, "Khá"),  # 5 of 8
        (upper_enrolled("s"), {"Ngữ văn": "6.5", "Toán": "6.5", "Lịch sử": "6.5"}, "Tốt"),  # 6 of 9
    ],
)
def test_at_least_six_scored_subjects_are_counted_over_the_students_own(student, scores, level):
    assert with_scores(student, scores).document()["learning_result"]["year"] == level


def test_the_count_of_six_is_rule_set_data_marked_unconfirmed():
    assert SCORED_COUNT == 6 and {lv.count for lv in RULES.levels} == {SCORED_COUNT}
    assert all(not lv.clause.confirmed for lv in RULES.levels)
    assert any("whether the count stays 6" in note for note in RULES.unconfirmed(10))
    assert RULES.awards[0].count == SCORED_COUNT
    seven_needed = replace(RULES, levels=tuple(replace(lv, count=7) for lv in RULES.levels))
    record = with_scores(SEVEN, {"Ngữ văn": "6.5"})
    assert record.document()["learning_result"]["year"] == "Tốt"
    assert replace(record, rule_set=seven_needed).document()["learning_result"]["year"] == "Khá"


# -- read back and explained --------------------------------------------------------------------


def stored(document):
    return json.loads(canonical_json(document))


@pytest.mark.parametrize("student", [STUDENT, SEVEN, upper_enrolled("s")])
def test_a_grade_10_record_reads_back_into_the_same_record_and_explanations(student):
    record = with_scores(student, {"Toán": "4.0", "Lịch sử": "9.5"})
    again = record_from_document(stored(record.document()), RULE_SETS)
    assert again.document() == record.document() and again.explanations() == record.explanations()
    assert again.student.enrolment.electives == tuple(record.document()["combination"]["electives"])


def test_a_record_whose_combination_was_altered_is_not_read_back():
    document = stored(with_scores(STUDENT, {}).document())
    swapped = {**document, "combination": {"electives": list(SCIENCES), "learning_topics": list(SCIENCE_TOPICS)}}
    with pytest.raises(UnreadableRecord, match="its Sinh học entries cannot be read"):
        record_from_document(swapped, RULE_SETS)
    with pytest.raises(UnreadableRecord, match="its combination cannot be read"):
        record_from_document({**document, "combination": {"electives": [], "learning_topics": []}}, RULE_SETS)


# -- through the handlers -----------------------------------------------------------------------

TEACHER = subject_teacher({s.name for s in (*COMPULSORY, *ELECTIVES)}, {"10A1"})


def assessments(entries) -> RecordAssessments:
    return TEACHER.signs(RecordAssessments(message_id="cmd-10", school_code=SCHOOL, school_year=YEAR, entries=entries))


async def test_grade_10_entries_are_stored_for_the_students_own_subjects(deps):
    await deps.repo.enrol([STUDENT, upper_enrolled("none", (), ())])
    entries = own_year(STUDENT) + [score_entry("Sinh học", 3), score_entry("Toán", 4, ref="none")]
    outcome = await handlers.record_assessments(assessments(entries), deps)
    [event] = outcome.publish
    assert event.new == len(own_year(STUDENT)) == (8 + 4) * 2
    assert [(r.index, r.code) for r in event.rejected] == [(24, "not-taken"), (25, "combination")]


async def test_closing_the_year_assembles_grade_10_records_by_their_rule_set(deps, registry):
    await deps.repo.enrol([STUDENT, upper_enrolled("none", (), ())])
    await handlers.record_assessments(assessments(own_year(STUDENT)), deps)
    for term in (1, 2):
        close_term = CloseTerm(message_id=f"close-{term}", school_code=SCHOOL, school_year=YEAR, term=term)
        await handlers.close_term(principal().signs(close_term), deps)
    lookup, published = FakeLookup({"s1", "s2", "s3", "s", "none"}), Published()
    close = CloseYear(message_id="close", school_code=SCHOOL, school_year=YEAR, occurred_at=datetime.now(UTC))
    await handlers.close_year(principal().signs(close), replace(deps, lookup=lookup, publish=published))
    assert lookup.asked and all("none" not in asked for asked in lookup.asked), "left out, not looked up"
    records = {r.student_ref: r for m in published if isinstance(m, RecordsReady) for r in m.records}
    assert set(records) == {"s1", "s2", "s3", "s"}
    assert records["s"].document["rule_set"] == "circular-22-2021-upper/v1"
    assert records["s"].document["combination"]["electives"] == list(ARTS)
    assert records["s"].document["missing"] == [{"entry": "homeroom", "term": 1}, {"entry": "homeroom", "term": 2}]
    assert registry.get_sample_value("hocba_records_unassembled_total", {"reason": "combination"}) == 1
    explained = handlers.explanation(records["s"])
    assert explained.rule_set == "circular-22-2021-upper/v1"
    assert any("learning topic" in note for note in explained.unconfirmed)
