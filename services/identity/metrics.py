"""identity's domain metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from shared.observability import from_zero

#: What a personal-ID look-up by a person finds.
FIND_OUTCOMES = ("found", "missing")


class IdentityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registered = Counter("hocba_students_registered_total", "Students newly registered.", registry=registry)
        self.rejected = Counter(
            "hocba_students_rejected_total",
            "Roster rows rejected, by reason.",
            ["reason"],
            registry=registry,
        )
        self.lookups = Counter("hocba_student_lookups_total", "Student identities looked up.", registry=registry)
        self.found = Counter(
            "hocba_student_finds_total",
            "Personal-ID look-ups by people, by outcome (found, missing).",
            ["outcome"],
            registry=registry,
        )
        # Every labelled series whose values are known starts at 0, so that its first increase is seen.
        from_zero(self.found, FIND_OUTCOMES)
