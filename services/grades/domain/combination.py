"""A student's own subjects: the grade's table, and in grades 10-12 the electives and learning topics they chose.

In grades 10-12 (2018 programme) the record holds the student's own subjects: the compulsory ones and their
electives, each subject with a learning topic assessed with it (`Choices`). The combination comes with the
enrolment (`Enrolment.electives`, `Enrolment.learning_topics`); a combination the rule set does not allow keeps
the student's entries out and their record unassembled, saying what was found and what is expected.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.grades.domain.explanation import listing
from services.grades.rulesets.model import Choices, RuleSet, SubjectRule
from shared.contracts.identity import Enrolment


def combination_problems(rule_set: RuleSet, enrolment: Enrolment) -> list[str]:
    """Every way the enrolment's electives and learning topics disagree with what its grade allows, in words."""
    choices = rule_set.choices(enrolment.grade)
    if choices is None:
        chosen = [*enrolment.electives, *enrolment.learning_topics]
        if chosen:
            return [
                f"grade {enrolment.grade} has no electives or learning topics, yet the enrolment names "
                f"{listing(chosen)}: remove them from the roster row"
            ]
        return []
    compulsory = {s.name for s in rule_set.subjects(enrolment.grade) or ()}
    return _elective_problems(choices, enrolment) + _topic_problems(choices, compulsory, enrolment)


def _elective_problems(choices: Choices, enrolment: Enrolment) -> list[str]:
    electives, problems = enrolment.electives, []
    names = [s.name for s in choices.electives]
    what = f"{choices.electives_taken} of {listing(names, limit=len(names))}"
    if not electives:
        return [f"no electives in the enrolment; expected {what}: add the student's electives to the roster row"]
    if unknown := [name for name in electives if choices.elective(name) is None]:
        problems.append(f"{listing(unknown)} {'is' if len(unknown) == 1 else 'are'} not an elective; expected {what}")
    if twice := sorted(name for name, n in Counter(electives).items() if n > 1):
        problems.append(f"electives named twice: {listing(twice)}")
    if len(set(electives)) != choices.electives_taken:
        problems.append(f"{len(set(electives))} electives ({listing(list(electives))}); expected {what}")
    return problems


def _topic_problems(choices: Choices, compulsory: set[str], enrolment: Enrolment) -> list[str]:
    topics, problems = enrolment.learning_topics, []
    expected = f"{choices.topics_taken} learning topics, each in a different subject the student takes"
    if not topics:
        return [f"no learning topics in the enrolment; expected {expected}: add them to the roster row"]
    if unknown := [name for name in topics if name not in choices.topic_subjects]:
        problems.append(
            f"{listing(unknown)} {'has' if len(unknown) == 1 else 'have'} no learning topics; they are in "
            f"{listing(list(choices.topic_subjects), limit=len(choices.topic_subjects))}"
        )
    own = compulsory | {s.name for s in choices.electives if s.name in enrolment.electives}
    if untaken := [name for name in topics if name in choices.topic_subjects and name not in own]:
        problems.append(
            f"learning topic{'s' if len(untaken) > 1 else ''} in {listing(untaken)}, which the student does not take"
        )
    if twice := sorted(name for name, n in Counter(topics).items() if n > 1):
        problems.append(f"learning topics named twice: {listing(twice)}")
    if len(set(topics)) != choices.topics_taken:
        problems.append(f"{len(set(topics))} learning topics ({listing(list(topics))}); expected {expected}")
    return problems


def own_subjects(rule_set: RuleSet, enrolment: Enrolment) -> tuple[SubjectRule, ...] | None:
    """The student's subjects, in the order the record lists them; None when the rule set has no table for the grade.

    Raises ValueError, saying why, for a combination the grade does not allow.
    """
    table = rule_set.subjects(enrolment.grade)
    if table is None:
        return None
    if problems := combination_problems(rule_set, enrolment):
        raise ValueError(f"the student's combination cannot be used: {'; '.join(problems)}")
    choices = rule_set.choices(enrolment.grade)
    if choices is None:
        return table
    return choices.subjects_of(table, enrolment.electives, enrolment.learning_topics)


def own_subject(rule_set: RuleSet, enrolment: Enrolment, name: str) -> SubjectRule | None:
    """One of the student's subjects by name (with its learning topic, if they take one in it)."""
    return next((s for s in own_subjects(rule_set, enrolment) or () if s.name == name), None)


def combination_document(rule_set: RuleSet, enrolment: Enrolment) -> dict[str, Any] | None:
    """What the record notes of the student's choices, in the order of the grade's tables; None where there are none."""
    choices = rule_set.choices(enrolment.grade)
    if choices is None:
        return None
    return {
        "electives": [s.name for s in choices.electives if s.name in enrolment.electives],
        "learning_topics": [name for name in choices.topic_subjects if name in enrolment.learning_topics],
    }
