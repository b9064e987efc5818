"""grades' domain metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class GradesMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.enrolled = Counter(
            "hocba_students_enrolled_total", "Student enrolments newly stored.", registry=registry
        )
        self.recorded = Counter(
            "hocba_assessments_recorded_total", "Assessment entries newly stored.", registry=registry
        )
        self.rejected = Counter(
            "hocba_assessments_rejected_total",
            "Assessment entries rejected, by reason.",
            ["reason"],
            registry=registry,
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
