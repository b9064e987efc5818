"""grades' domain metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shared.observability import from_zero

#: Kinds of entry (`hocba_entries_changed_total{kind}`).
ENTRY_KINDS = ("subject", "homeroom")
#: What is done to a term (`hocba_terms_changed_total{action}`).
TERM_ACTIONS = ("close", "reopen")
#: How a record explanation is answered (`hocba_records_explained_total{outcome}`).
EXPLAIN_OUTCOMES = ("answered", "refused", "not-found", "unreadable")


class GradesMetrics:
    """What grades did with entries, terms and records.

    Commands refused whole (no valid actor token, or an actor who may not) are counted at the
    edge, as `hocba_messages_refused_total` by queue and reason.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.enrolled = Counter(
            "hocba_students_enrolled_total", "Student enrolments newly stored.", registry=registry
        )
        self.recorded = Counter(
            "hocba_assessments_recorded_total", "Assessment entries newly stored.", registry=registry
        )
        self.changed = Counter(
            "hocba_entries_changed_total",
            "Stored entries changed (each change logged with who, when, old and new value, reason), by kind.",
            ["kind"],
            registry=registry,
        )
        self.rejected = Counter(
            "hocba_assessments_rejected_total",
            "Entries rejected (subject and homeroom entries), by reason.",
            ["reason"],
            registry=registry,
        )
        self.homeroom_recorded = Counter(
            "hocba_homeroom_entries_recorded_total",
            "Homeroom entries (conduct, absences, qualities, comments) newly stored.",
            registry=registry,
        )
        self.terms = Counter(
            "hocba_terms_changed_total", "Terms closed or reopened, by action.", ["action"], registry=registry
        )
        self.assembled = Counter(
            "hocba_records_assembled_total", "Year records newly assembled and stored.", registry=registry
        )
        self.unassembled = Counter(
            "hocba_records_unassembled_total",
            "Enrolled students whose year record could not be assembled, by reason.",
            ["reason"],
            registry=registry,
        )
        self.amendments = Counter(
            "hocba_record_amendments_total",
            "Amendments of signed records asked of grades, by outcome: amended, or why not.",
            ["outcome"],
            registry=registry,
        )
        self.explained = Counter(
            "hocba_records_explained_total", "Record explanations answered, by outcome.", ["outcome"], registry=registry
        )
        # Every labelled series whose values are known starts at 0, so that its first increase is seen; reasons
        # (of rejections, of records not assembled, of amendments refused) appear when they first happen.
        from_zero(self.changed, ENTRY_KINDS)
        from_zero(self.terms, TERM_ACTIONS)
        from_zero(self.explained, EXPLAIN_OUTCOMES)
        from_zero(self.amendments, ["amended"])
