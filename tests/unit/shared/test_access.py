"""The access log's entries and counts, and unusual volume by one reader."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from shared.access import AccessRecorder
from shared.auth import Actor

AT = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


def admin(subject: str = "admin-79000701") -> Actor:
    return Actor(subject=subject, roles=frozenset({"school_admin"}), school_code="79000701")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def recorder(registry: CollectorRegistry, clock: Clock) -> AccessRecorder:
    return AccessRecorder("identity", registry, unusual_reads=10, window_seconds=60, clock=lambda: AT, monotonic=clock)


def sample(registry, name: str, role: str) -> float:
    return registry.get_sample_value(name, {"role": role}) or 0.0


def test_each_student_read_is_one_entry_saying_who_what_when_and_why():
    registry = CollectorRegistry()
    [entry] = recorder(registry, Clock()).entries(admin(), "find", ["s1"], purpose="chuyển trường")
    assert (entry.at, entry.service, entry.subject, entry.roles, entry.school_code) == (
        AT, "identity", "admin-79000701", ["school_admin"], "79000701"
    )
    assert (entry.action, entry.student_ref, entry.purpose) == ("find", "s1", "chuyển trường")
    assert sample(registry, "hocba_personal_data_reads_total", "school_admin") == 1


def test_every_role_is_counted_from_zero_so_a_first_read_shows_as_an_increase():
    registry = CollectorRegistry()
    recorder(registry, Clock())
    assert registry.get_sample_value("hocba_personal_data_reads_total", {"role": "operator"}) == 0
    assert registry.get_sample_value("hocba_personal_data_unusual_reads_total", {"role": "principal"}) == 0


def test_reads_beyond_the_limit_within_the_window_are_unusual():
    registry, clock = CollectorRegistry(), Clock()
    log = recorder(registry, clock)
    log.entries(admin(), "find", [f"s{n}" for n in range(8)])
    assert sample(registry, "hocba_personal_data_unusual_reads_total", "school_admin") == 0
    log.entries(admin(), "find", [f"s{n}" for n in range(5)])
    assert sample(registry, "hocba_personal_data_unusual_reads_total", "school_admin") == 3
    log.entries(admin("admin-79000702"), "find", ["t1"])
    assert sample(registry, "hocba_personal_data_unusual_reads_total", "school_admin") == 3, "another reader is not"
    clock.now = 120
    log.entries(admin(), "find", ["s1"])
    assert sample(registry, "hocba_personal_data_unusual_reads_total", "school_admin") == 3, "the window moved on"


def test_a_service_reading_a_whole_school_is_not_unusual():
    registry = CollectorRegistry()
    grades = Actor(subject="svc-grades", roles=frozenset({"service"}), school_code="")
    recorder(registry, Clock()).entries(grades, "lookup", [f"s{n}" for n in range(100)])
    assert sample(registry, "hocba_personal_data_reads_total", "service") == 100
    assert sample(registry, "hocba_personal_data_unusual_reads_total", "service") == 0
