"""Delivery rules: what a ministry answer means, how long to wait, when to give up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.sync.domain import (
    PARKED,
    PENDING,
    Attempt,
    DeliveryPolicy,
    Outcome,
    after_failure,
    backoff_seconds,
    classify,
    idempotency_key,
    new_entry,
)
from shared.contracts.archive import ArchivedRecord

NOW = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
POLICY = DeliveryPolicy(max_attempts=4, base_seconds=2.0, cap_seconds=10.0)


def record() -> ArchivedRecord:
    return ArchivedRecord(
        record_id="hb-79000701-0001",
        version=2,
        school_code="79000701",
        school_year="2025-2026",
        student_ref="s-1",
        seq=41,
        entry_hash="ab" * 32,
        digest="cd" * 32,
        document={"student": {"full_name": "Lê Minh Châu"}, "year_result": "Tốt"},
    )


def test_a_new_entry_is_pending_due_now_and_keyed_by_record_version():
    entry = new_entry(record(), NOW)
    assert entry.key == idempotency_key("hb-79000701-0001", 2) == "hb-79000701-0001:2"
    assert (entry.status, entry.attempts, entry.next_attempt_at) == (PENDING, 0, NOW)
    assert entry.payload == {
        "record_id": "hb-79000701-0001",
        "version": 2,
        "school_code": "79000701",
        "school_year": "2025-2026",
        "digest": "cd" * 32,
        "archive_seq": 41,
        "entry_hash": "ab" * 32,
        "document": {"student": {"full_name": "Lê Minh Châu"}, "year_result": "Tốt"},
    }


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED), (201, Outcome.DELIVERED),
        (408, Outcome.RETRY), (429, Outcome.RETRY), (500, Outcome.RETRY), (503, Outcome.RETRY),
        (400, Outcome.PARK), (401, Outcome.PARK), (404, Outcome.PARK), (409, Outcome.PARK), (422, Outcome.PARK),
    ],
)
def test_answers_are_classified(status, outcome):
    assert classify(status) is outcome


def test_backoff_doubles_up_to_the_cap_within_its_upper_half():
    lowest = [backoff_seconds(n, 0.0, POLICY) for n in range(1, 7)]
    highest = [backoff_seconds(n, 0.999999, POLICY) for n in range(1, 7)]
    assert lowest == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert highest == pytest.approx([2.0, 4.0, 8.0, 10.0, 10.0, 10.0])
    assert backoff_seconds(3, 0.5, POLICY) == 6.0


def test_jitter_outside_its_range_is_clamped():
    assert backoff_seconds(1, -3.0, POLICY) == 1.0
    assert backoff_seconds(1, 7.0, POLICY) == 2.0


def test_a_transient_failure_waits_and_counts_the_attempt():
    entry = new_entry(record(), NOW)
    failure = after_failure(entry, Attempt(Outcome.RETRY, 0.1, error="HTTP 503"), NOW, 0.0, POLICY)
    assert (failure.status, failure.attempts, failure.last_error) == (PENDING, 1, "HTTP 503")
    assert failure.next_attempt_at == NOW + timedelta(seconds=1)


def test_the_last_allowed_attempt_parks_the_entry():
    entry = replace(new_entry(record(), NOW), attempts=POLICY.max_attempts - 1)
    failure = after_failure(entry, Attempt(Outcome.RETRY, 0.1, error="ConnectError"), NOW, 0.5, POLICY)
    assert (failure.status, failure.attempts, failure.next_attempt_at) == (PARKED, POLICY.max_attempts, None)
    assert failure.last_error == "ConnectError"


def test_a_permanent_answer_parks_at_once():
    failure = after_failure(
        new_entry(record(), NOW), Attempt(Outcome.PARK, 0.1, error="HTTP 422: missing fields"), NOW, 0.5, POLICY
    )
    assert (failure.status, failure.attempts, failure.last_error) == (PARKED, 1, "HTTP 422: missing fields")
