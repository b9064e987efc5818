"""identity's domain metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
        self.reencrypted = Counter(
            "hocba_identity_reencrypted_total", "Student documents re-encrypted under a new key.", registry=registry
        )
        self.key_rotations = Counter(
            "hocba_identity_key_rotations_total", "Key rotations completed.", registry=registry
        )
        self.keys = Gauge("hocba_identity_keys", "Data keys in identity's key ring.", registry=registry)
