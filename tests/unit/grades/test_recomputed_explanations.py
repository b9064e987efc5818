"""A record's document keeps the entries and the results, not how one follows from the other: read back under
the rule set it names, it gives the same record again, and the explanations computed from it are the ones of the
record as it was assembled and signed."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hocba import demo_data
from services.grades.domain import assemble_record
from services.grades.domain.combination import own_subjects
from services.grades.domain.entries import conduct_problems, entry_problems
from services.grades.domain.reading import UnknownRuleSet, UnreadableRecord, record_from_document
from services.grades.domain.record import YearRecord
from services.grades.rulesets import RULE_SETS, RuleSet, rule_set_for
from services.grades.rulesets.model import SubjectRule
from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import RegisteredStudent
from shared.crypto.canonical import canonical_json
from tests.unit.grades.builders import enrolled, scored, snapshot, upper_enrolled

#: A class of the demo's gradebook: enough students for held-back, adjusted and award-winning ones.
CLASS = [f"s{n:02d}" for n in range(40)]


def stored(document: dict[str, Any]) -> dict[str, Any]:
    """The document as it is signed, archived and delivered: parsed back from its canonical bytes."""
    return json.loads(canonical_json(document))


def demo_records(
    grade: int, without: frozenset[tuple[str, int]] = frozenset(), homeroom_terms: tuple[int, ...] = (1, 2)
) -> list[YearRecord]:
    """The year records of a class of `grade` from the demo's entries (grade 6: Circular 22/2021, grade 1:
    Circular 27/2020, grade 10: Circular 22/2021 with the demo's combinations), less the subject entries `without` (subject, term) and the homeroom entries of the terms
    not in `homeroom_terms`."""
    students = [
        upper_enrolled(ref, *demo_data.COMBINATIONS[n % len(demo_data.COMBINATIONS)], grade=grade)
        if grade >= demo_data.UPPER_GRADE
        else enrolled(ref, grade=grade, class_name=f"{grade}A1")
        for n, ref in enumerate(CLASS)
    ]
    entries = (
        demo_data.upper_gradebook(students)
        if grade >= demo_data.UPPER_GRADE
        else demo_data.gradebook(CLASS)
        if grade == 6
        else demo_data.primary_gradebook(CLASS)
    )
    by_student: dict[str, list[SubjectTermScores]] = {ref: [] for ref in CLASS}
    for entry in entries:
        if (entry.subject, entry.term) not in without:
            by_student[entry.student_ref].append(entry)
    homeroom: dict[str, list[StudentTermConduct]] = {ref: [] for ref in CLASS}
    for conduct in demo_data.homeroom(CLASS, grade=grade):
        if conduct.term in homeroom_terms:
            homeroom[conduct.student_ref].append(conduct)
    return [
        assemble_record(
            rule_set_for(grade),
            student,
            snapshot(student.student_ref),
            by_student[student.student_ref],
            homeroom[student.student_ref],
        )
        for student in students
    ]


CASES = {
    "grade 6, complete": (6, frozenset(), (1, 2)),
    "grade 6, no term I entry in Toán": (6, frozenset({("Toán", 1)}), (1, 2)),
    "grade 6, no term I entry in a comment-assessed subject": (6, frozenset({("Nghệ thuật", 1)}), (1, 2)),
    "grade 6, no homeroom entry": (6, frozenset(), ()),
    "grade 1, complete": (1, frozenset(), (1, 2)),
    "grade 1, no term I entry in Tiếng Việt": (1, frozenset({("Tiếng Việt", 1)}), (1, 2)),
    "grade 1, no homeroom entry": (1, frozenset(), ()),
    "grade 10, complete": (10, frozenset(), (1, 2)),
    "grade 10, no term I entry in Toán": (10, frozenset({("Toán", 1)}), (1, 2)),
    "grade 10, no term II entry in a comment-assessed subject": (10, frozenset({("Giáo dục thể chất", 2)}), (1, 2)),
    "grade 10, no homeroom entry": (10, frozenset(), ()),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def records(request) -> list[YearRecord]:
    grade, without, homeroom_terms = CASES[request.param]
    found = demo_records(grade, without, homeroom_terms)
    missing = len(without) * len(CLASS) + (2 - len(homeroom_terms)) * len(CLASS)
    assert sum(len(r.missing()) for r in found) == missing, "the case leaves out what it says"
    return found


def test_a_record_read_back_from_its_document_writes_the_same_document(records):
    for record in records:
        document = stored(record.document())
        assert record_from_document(document, RULE_SETS).document() == document


def test_what_explain_computes_from_the_document_is_what_was_decided_when_the_record_was_assembled(records):
    for record in records:
        again = record_from_document(stored(record.document()), RULE_SETS)
        assert again.explanations() == record.explanations()
        assert again.explanations(), "every record explains something"


def test_the_demo_class_has_adjusted_levels_and_pending_promotions_besides_the_usual_results():
    """So the two tests above read back every kind of result but the absence limit (the last test reaches it)."""
    secondary = {e.rule for r in demo_records(6) for e in r.explanations()}
    assert secondary == {"term-average", "year-average", "year-is-term-2", "learning-level", "learning-level-adjusted",
                         "conduct-year-table", "promotion", "promotion-pending", "award"}
    assert {e.rule for r in demo_records(1) for e in r.explanations()} == {"year-is-term-2", "primary-outcome", "award"}


# -- what the document holds --------------------------------------------------------------------


@pytest.mark.parametrize("grade", [6, 1, 10])
def test_the_document_holds_no_explanation_sentences(grade):
    record = demo_records(grade)[0]
    canonical = canonical_json(record.document())
    assert "explanations" not in json.loads(canonical)
    assert b'"explanations"' not in canonical
    assert not [e.text for e in record.explanations() if e.text.encode() in canonical]


@pytest.mark.parametrize("grade", [6, 1, 10])
def test_the_document_is_smaller_than_one_that_carried_its_explanations(grade):
    record = demo_records(grade)[0]
    document = record.document()
    carried = {**document, "explanations": [e.document(record.rule_set.key) for e in record.explanations()]}
    assert len(canonical_json(document)) < len(canonical_json(carried))


# -- versions and releases ------------------------------------------------------------------------


def test_an_amended_version_reads_back_with_its_amendment_and_explains_its_corrected_results():
    first = demo_records(6)[0]
    ref = first.student.student_ref
    toan = next(s for s in first.subjects if s.rule.name == "Toán").entries[2]
    assert toan.final is not None
    corrected = toan.model_copy(update={"final": Decimal("10") if toan.final < 5 else Decimal("0")})
    entries = [corrected if e is toan else e for s in first.subjects for e in s.entries.values()]
    second = assemble_record(first.rule_set, first.student, first.snapshot, entries, first.homeroom.values(), version=2)
    amendment = {"supersedes": 1, "reason": "score-correction", "note": "Sửa điểm cuối kì II môn Toán",
                 "requested_by": f"ht-{ref}"}
    document = stored({**second.document(), "amendment": amendment})

    again = record_from_document(document, RULE_SETS)
    assert again.document() == document and (again.version, again.amendment) == (2, amendment)
    assert again.explanations() == second.explanations()
    about = "subjects/Toán/term_2/average"
    [before] = [e for e in first.explanations() if e.about == about]
    [after] = [e for e in again.explanations() if e.about == about]
    assert after.inputs["final"] == str(corrected.final) and after.result != before.result


def test_a_document_of_an_earlier_release_is_read_the_same_and_its_kept_explanations_are_not_used():
    record = demo_records(6)[0]
    document = stored(record.document())
    kept = [e.document(record.rule_set.key) for e in record.explanations()]
    kept[0] = {**kept[0], "text": "a sentence that no rule set writes", "result": "11.0"}
    again = record_from_document({**document, "explanations": kept}, RULE_SETS)
    assert again.document() == document
    assert again.explanations() == record.explanations()


# -- exact decimals -------------------------------------------------------------------------------


def test_scores_read_back_exactly_however_they_were_entered():
    """"8", "8.0" and "8.00" are the same score: the document writes "8.0", the explanations "8", both again."""
    rule_set = rule_set_for(6)
    entries = []
    for rule in rule_set.subjects(6) or ():
        for term, writing in ((1, ["8", "7.50", "10.0", "0"]), (2, ["0.0", "9.9", "6.5", "10"])):
            if rule.scored:
                regular = writing[: rule.regular_per_term]
                entries.append(scored("s1", rule.name, term, regular, writing[1], writing[2]))
            else:
                entries.append(SubjectTermScores(student_ref="s1", subject=rule.name, term=term, comment_level="Đ"))
    record = assemble_record(rule_set, enrolled("s1"), snapshot("s1"), entries)
    document = stored(record.document())
    toan = next(s for s in document["subjects"] if s["name"] == "Toán")
    assert toan["term_1"]["regular"] == ["8.0", "7.5", "10.0", "0.0"] and toan["term_2"]["final"] == "6.5"
    again = record_from_document(document, RULE_SETS)
    assert again.document() == document
    assert again.explanations() == record.explanations()
    [average] = [e for e in again.explanations() if e.about == "subjects/Toán/term_1/average"]
    assert average.inputs == {"regular": ["8", "7.5", "10", "0"], "midterm": "7.5", "final": "10"}


# -- documents that cannot be read ------------------------------------------------------------------


@pytest.fixture
def document() -> dict[str, Any]:
    return stored(demo_records(6)[0].document())


def test_a_document_computed_by_a_rule_set_this_release_does_not_hold_is_refused_in_words(document):
    with pytest.raises(UnknownRuleSet, match="rule set 'circular-22-2021/v9', which this release does not hold"):
        record_from_document({**document, "rule_set": "circular-22-2021/v9"}, RULE_SETS)
    with pytest.raises(UnknownRuleSet, match="rule set None"):
        record_from_document({k: v for k, v in document.items() if k != "rule_set"}, RULE_SETS)


def test_a_document_missing_a_part_is_refused_in_words_not_with_a_key_error(document):
    subjects = [dict(s) for s in document["subjects"]]
    toan = next(s for s in subjects if s["name"] == "Toán")
    toan["term_1"] = {k: v for k, v in toan["term_1"].items() if k != "final"}
    with pytest.raises(UnreadableRecord, match=r"its Toán entries cannot be read \(no 'final'\)") as raised:
        record_from_document({**document, "subjects": subjects}, RULE_SETS)
    assert not isinstance(raised.value, KeyError) and isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(f"record {document['record_id']} v1: ")
    with pytest.raises(UnreadableRecord, match="its enrolment and student cannot be read"):
        record_from_document({k: v for k, v in document.items() if k != "student"}, RULE_SETS)
    with pytest.raises(UnreadableRecord, match="is not a JSON object"):
        record_from_document(["not", "a", "record"], RULE_SETS)  # type: ignore[arg-type]


@pytest.mark.parametrize("score", [8.5, "8,5", "NaN", None])
def test_a_score_not_written_as_a_decimal_is_refused(document, score):
    subjects = [dict(s) for s in document["subjects"]]
    toan = next(s for s in subjects if s["name"] == "Toán")
    toan["term_1"] = {**toan["term_1"], "midterm": score}
    with pytest.raises(UnreadableRecord, match="its Toán entries cannot be read"):
        record_from_document({**document, "subjects": subjects}, RULE_SETS)


def test_a_document_whose_results_do_not_follow_from_its_entries_is_refused_naming_them(document):
    year = document["learning_result"]["year"]
    other = "Chưa đạt" if year != "Chưa đạt" else "Tốt"
    changed = {**document, "learning_result": {**document["learning_result"], "year": other}, "awards": ["Giải nhất"]}
    with pytest.raises(UnreadableRecord, match="do not give the record it is: awards, learning_result differ"):
        record_from_document(changed, RULE_SETS)
    with pytest.raises(UnreadableRecord, match="signed_by differ"):
        record_from_document({**document, "signed_by": "someone"}, RULE_SETS)


# -- any entries -----------------------------------------------------------------------------------



def written(value: Decimal, places: int) -> Decimal:
    """`value` written with `places` decimals, or as short as it goes (0): 8, 8.0, 8.00 are one score."""
    return value.quantize(Decimal(1).scaleb(-places)) if places else value


#: A score as entered (0 to 10 in tenths), in any of the writings of the same value: "8", "8.0", "8.00".
scores = st.builds(written, st.integers(0, 100).map(lambda n: Decimal(n) / 10), st.integers(0, 2))
#: A primary test score (whole points), as "9" or "9.0".
whole_scores = st.builds(written, st.integers(0, 10).map(Decimal), st.integers(0, 1))
comments = st.sampled_from(["", "", "Chăm ngoan, tích cực phát biểu.", "Cần cẩn thận hơn khi làm bài."])


@st.composite
def subject_entry(draw, rule_set: RuleSet, rule: SubjectRule, term: int) -> SubjectTermScores:
    subject = rule.name
    values: dict[str, Any] = {}
    if rule.scored:
        values = {"regular": tuple(draw(scores) for _ in range(rule.regular_per_term)),
                  "midterm": draw(scores), "final": draw(scores)}
    elif rule.kind == "comment":
        values = {"comment_level": draw(st.sampled_from(["Đ", "Đ", "CĐ"]))}
    else:
        values = {"level": draw(st.sampled_from("THC")), "midterm_level": draw(st.none() | st.sampled_from("THC")),
                  "final": draw(whole_scores) if rule.tested else None,
                  "midterm": draw(whole_scores) if rule.midterm_tested else None}
    entry = SubjectTermScores(student_ref="s1", subject=subject, term=term, comment=draw(comments), **values)
    assert entry_problems(entry, rule, rule_set) == []
    return entry


@st.composite
def homeroom_entry(draw, rule_set: RuleSet, term: int) -> StudentTermConduct:
    ratings = st.sampled_from(["T", "Đ", "C"])
    values: dict[str, Any] = (
        {"conduct": draw(st.sampled_from(["Tốt", "Khá", "Đạt", "Chưa đạt"]))}
        if rule_set.family == "secondary"
        else {"qualities": {q: draw(ratings) for q in rule_set.qualities},
              "competencies": {c: draw(ratings) for c in rule_set.competencies}}
    )
    entry = StudentTermConduct(student_ref="s1", term=term, absences=draw(st.integers(0, 40)), comment=draw(comments),
                               **values)
    assert conduct_problems(rule_set, entry) == []
    return entry


@st.composite
def any_record(draw) -> YearRecord:
    """A record of any grade with a rule set (grades 10-12: with any combination), from any valid entries, any of
    them possibly missing."""
    grade = draw(st.sampled_from(range(1, 13)))
    rule_set = rule_set_for(grade)
    student = (
        draw(any_combination(rule_set, grade))
        if rule_set.choices(grade)
        else enrolled("s1", grade=grade, class_name=f"{grade}A1")
    )
    entries = [
        draw(subject_entry(rule_set, rule, term))
        for rule in own_subjects(rule_set, student.enrolment) or ()
        for term in (1, 2)
        if draw(st.integers(0, 19))  # one entry in twenty missing
    ]
    homeroom = [draw(homeroom_entry(rule_set, term)) for term in (1, 2) if draw(st.integers(0, 4))]
    version = draw(st.integers(1, 3))
    return assemble_record(rule_set, student, snapshot("s1"), entries, homeroom, version)


@st.composite
def any_combination(draw, rule_set: RuleSet, grade: int) -> RegisteredStudent:
    """A student of grades 10-12 with any electives the grade allows and learning topics in any of their subjects."""
    choices = rule_set.choices(grade)
    assert choices is not None
    names = [s.name for s in choices.electives]
    electives = draw(
        st.lists(
            st.sampled_from(names), min_size=choices.electives_taken, max_size=choices.electives_taken, unique=True
        )
    )
    own = {s.name for s in rule_set.subjects(grade) or ()} | set(electives)
    topics = draw(
        st.lists(
            st.sampled_from([n for n in choices.topic_subjects if n in own]),
            min_size=choices.topics_taken,
            max_size=choices.topics_taken,
            unique=True,
        )
    )
    return upper_enrolled("s1", tuple(electives), tuple(topics), grade=grade, class_name=f"{grade}A1")


@settings(max_examples=150, deadline=None)
@given(any_record())
def test_any_record_reads_back_to_the_same_document_and_the_same_explanations(record):
    document = stored(record.document())
    again = record_from_document(document, RULE_SETS)
    assert again.document() == document
    assert again.explanations() == record.explanations()


def test_the_outcome_names_ratings_in_the_rule_sets_order_whatever_order_they_were_entered_in():
    """The document's ratings come back in the canonical form's key order; the outcome's words do not depend on it."""
    rule_set = rule_set_for(1)
    effort = {"Trung thực", "Khoa học", "Công nghệ"}
    qualities = {q: "C" if q in effort else "T" for q in reversed(rule_set.qualities)}
    competencies = {c: "C" if c in effort else "T" for c in reversed(rule_set.competencies)}
    end = StudentTermConduct(student_ref="s1", term=2, absences=0, qualities=qualities, competencies=competencies)
    entries = [SubjectTermScores(student_ref="s1", subject=rule.name, term=term, level="T",
                                 final=Decimal(9) if rule.tested else None)
               for rule in rule_set.subjects(1) or () for term in (1, 2)]
    record = assemble_record(rule_set, enrolled("s1", grade=1, class_name="1A1"), snapshot("s1"), entries, [end])
    [outcome] = [e for e in record.explanations() if e.about == "outcome"]
    assert "Trung thực, Khoa học and Công nghệ need more effort" in outcome.text
    again = record_from_document(stored(record.document()), RULE_SETS)
    assert again.explanations() == record.explanations()
