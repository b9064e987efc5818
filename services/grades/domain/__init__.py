"""grades' rules, pure: entries, averages, results by rule set, authority, term locks, the year record."""

from services.grades.domain.entries import EntryProblem, conduct_problems, enrolled_entry_problems, entry_problems
from services.grades.domain.record import YearRecord, assemble_record, record_id
from services.grades.domain.scores import round_half_up, term_average, year_average

__all__ = [
    "EntryProblem",
    "YearRecord",
    "assemble_record",
    "conduct_problems",
    "enrolled_entry_problems",
    "entry_problems",
    "record_id",
    "round_half_up",
    "term_average",
    "year_average",
]
