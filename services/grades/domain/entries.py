"""Validation of what teachers enter: subject entries by the grade's table, homeroom entries."""

from __future__ import annotations

from dataclasses import dataclass

from services.grades.domain.combination import combination_problems, own_subject
from services.grades.domain.explanation import listing
from services.grades.domain.scores import score_problem
from services.grades.rulesets.model import RuleSet, SubjectRule
from shared.contracts.grades import StudentTermConduct, SubjectTermScores
from shared.contracts.identity import RegisteredStudent

#: What a teacher enters for one student and one term: a subject entry, or the homeroom teacher's.
Entry = SubjectTermScores | StudentTermConduct


@dataclass(frozen=True)
class EntryProblem:
    """Why an entry cannot be stored: a short code and a sentence for the teacher."""

    code: str
    message: str


def score_problems(label: str, value, *, integer: bool = False, allow_zero: bool = True) -> list[EntryProblem]:
    found = score_problem(label, value, integer=integer, allow_zero=allow_zero)
    return [EntryProblem(*found)] if found else []


def enrolled_entry_problems(
    rule_set: RuleSet, school_code: str, student: RegisteredStudent, entry: SubjectTermScores
) -> list[EntryProblem]:
    """An entry checked against the student's enrolment and the subject table of their grade."""
    enrolment = student.enrolment
    if enrolment.school_code != school_code:
        return [EntryProblem("wrong-school", f"the student is enrolled in school {enrolment.school_code}")]
    if rule_set.subjects(enrolment.grade) is None:
        return [EntryProblem("no-rule-set", f"{rule_set.key} has no subject table for grade {enrolment.grade}")]
    if problems := combination_problems(rule_set, enrolment):
        return [EntryProblem("combination", "the student's enrolment cannot take entries: " + "; ".join(problems))]
    rule = own_subject(rule_set, enrolment, entry.subject)
    choices = rule_set.choices(enrolment.grade)
    if rule is None and choices is not None and choices.elective(entry.subject) is not None:
        return [EntryProblem(
            "not-taken",
            f"{entry.subject} is not among the student's electives ({listing(list(enrolment.electives))}): "
            "enter it only for the students who take it",
        )]
    return entry_problems(entry, rule, rule_set)


def entry_problems(entry: SubjectTermScores, rule: SubjectRule | None, rule_set: RuleSet | None = None) -> list[EntryProblem]:
    """Every way one subject-term entry disagrees with its subject's rule (None: unknown subject)."""
    if rule is None:
        return [EntryProblem("unknown-subject", f"'{entry.subject}' is not a subject of this grade")]
    if rule.kind == "level":
        return primary_problems(entry, rule, rule_set.allow_zero if rule_set else True)
    if entry.level is not None or entry.midterm_level is not None:
        return [EntryProblem("primary-only", f"{rule.name} is a secondary subject: no T/H/C level")]
    if not rule.scored:
        return comment_problems(entry, rule)
    return scored_problems(entry, rule)


def comment_problems(entry: SubjectTermScores, rule: SubjectRule) -> list[EntryProblem]:
    """A comment-assessed secondary entry: its level (Đạt / Chưa đạt) and nothing else."""
    problems = []
    if entry.regular or entry.midterm is not None or entry.final is not None:
        problems.append(EntryProblem("comment-only", f"{rule.name} is comment-assessed: only comment_level"))
    if entry.comment_level is None:
        problems.append(EntryProblem("missing-level", f"{rule.name} needs comment_level"))
    return problems


def scored_problems(entry: SubjectTermScores, rule: SubjectRule) -> list[EntryProblem]:
    """A score-assessed secondary entry: as many regular assessments as its periods call for, mid-term and final."""
    problems = []
    if entry.comment_level is not None:
        problems.append(EntryProblem("score-only", f"{rule.name} is score-assessed: no comment_level"))
    if len(entry.regular) != rule.regular_per_term:
        topic = (
            f", and a learning topic counted as {rule.learning_topic.regular_per_term} of them"
            if rule.learning_topic else ""
        )
        problems.append(
            EntryProblem(
                "regular-count",
                f"{rule.name} ({rule.periods_per_year} periods a year{topic}) needs {rule.regular_per_term} "
                f"regular assessments per term, got {len(entry.regular)}",
            )
        )
    for label, value in (("midterm", entry.midterm), ("final", entry.final)):
        if value is None:
            problems.append(EntryProblem("missing-score", f"{rule.name} {label} score is missing"))
    labelled = [(f"regular {n + 1}", v) for n, v in enumerate(entry.regular)]
    labelled += [(label, v) for label, v in (("midterm", entry.midterm), ("final", entry.final)) if v is not None]
    for label, value in labelled:
        problems.extend(score_problems(label, value))
    return problems


def primary_problems(entry: SubjectTermScores, rule: SubjectRule, allow_zero: bool) -> list[EntryProblem]:
    """A primary entry: a T/H/C level; tests (integers) only where the subject is tested."""
    problems = []
    if entry.regular or entry.comment_level is not None:
        problems.append(EntryProblem("secondary-only", f"{rule.name} is a primary subject: level and tests only"))
    if entry.level is None:
        problems.append(EntryProblem("missing-level", f"{rule.name} needs its level (T, H or C)"))
    tests = [("periodic test", entry.final, rule.tested), ("mid-term test", entry.midterm, rule.midterm_tested)]
    for label, value, expected in tests:
        if value is None and expected:
            problems.append(EntryProblem("missing-score", f"{rule.name} {label} score is missing"))
        elif value is not None and not expected:
            problems.append(EntryProblem("not-tested", f"{rule.name} has no {label} in this grade"))
        elif value is not None:
            problems.extend(score_problems(f"{label}", value, integer=True, allow_zero=allow_zero))
    return problems


def conduct_problems(rule_set: RuleSet, entry: StudentTermConduct) -> list[EntryProblem]:
    """A homeroom entry: conduct (secondary) or qualities and competencies (primary), and absences."""
    problems = []
    if entry.absences is None:
        problems.append(EntryProblem("missing-absences", "absences (sessions) are missing"))
    if rule_set.family == "secondary":
        if entry.conduct is None:
            problems.append(EntryProblem("missing-conduct", "conduct (Tốt, Khá, Đạt or Chưa đạt) is missing"))
        if entry.qualities or entry.competencies:
            problems.append(EntryProblem("primary-only", "qualities and competencies are rated in primary school only"))
        return problems
    if entry.conduct is not None:
        problems.append(EntryProblem("secondary-only", "conduct is rated in secondary school; primary rates qualities"))
    for what, expected, given in (
        ("qualities", rule_set.qualities, entry.qualities),
        ("competencies", rule_set.competencies, entry.competencies),
    ):
        if unknown := sorted(set(given) - set(expected)):
            problems.append(EntryProblem(f"unknown-{what}", f"not among the {what}: {', '.join(unknown)}"))
        if missing := [name for name in expected if name not in given]:
            problems.append(EntryProblem(f"missing-{what}", f"{what} not rated: {', '.join(missing)}"))
    return problems
