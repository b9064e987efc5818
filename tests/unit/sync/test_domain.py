"""Delivery rules: what leaves the system, what a ministry answer means, how long to wait, when to give up, what differs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.sync.domain import (
    CHECKPOINT,
    DELIVERED,
    PARKED,
    PENDING,
    RECORD,
    RECORD_FIELDS,
    Acknowledged,
    Answer,
    Attempt,
    DeliveryPolicy,
    Held,
    Reconciliation,
    after_failure,
    authorise_operator,
    backoff_seconds,
    checkpoint_key,
    classify,
    ministry_payload,
    missing_ranges,
    new_checkpoint_entry,
    new_entry,
    record_key,
)
from shared.auth import Actor
from shared.contracts.archive import ArchivedRecord, Checkpoint
from shared.contracts.record import content_of
from shared.errors import Forbidden

NOW = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
POLICY = DeliveryPolicy(max_attempts=4, base_seconds=2.0, cap_seconds=10.0)


#: A record document as grades assembles it: the student's full identity snapshot and the results.
DOCUMENT = {
    "record_id": "hb-79000701-0001",
    "version": 2,
    "rule_set": "tt22-2021",
    "school": {"code": "79000701"},
    "school_year": "2025-2026",
    "grade": 6,
    "class_name": "6A1",
    "student": {
        "student_ref": "s-1",
        "identity": {
            "personal_id": "079212000123",
            "full_name": "Lê Minh Châu",
            "date_of_birth": "2014-03-02",
            "sex": "F",
            "place_of_birth": "Thành phố Hồ Chí Minh",
            "ethnicity": "Kinh",
            "guardian_name": "Lê Văn Hùng",
        },
    },
    "subjects": [{"name": "Toán", "kind": "scored", "year": {"average": "8.5"}}],
    "learning_result": {"term_1": "Tốt", "term_2": "Tốt", "year": "Tốt"},
    "comments": {"homeroom": {"term_1": "Em chăm ngoan, bố mẹ đang đi làm xa"}},
    "explanations": [{"rule": "tt22-2021", "result": "Tốt"}],
    "complete": True,
    "missing": [],
}
PERSONAL = ("Lê Minh Châu", "2014-03-02", "Thành phố Hồ Chí Minh", "Kinh", "Lê Văn Hùng", "s-1", "bố mẹ")


def record(document: dict | None = None) -> ArchivedRecord:
    return ArchivedRecord(
        record_id="hb-79000701-0001",
        version=2,
        school_code="79000701",
        school_year="2025-2026",
        student_ref="s-1",
        seq=41,
        entry_hash="ab" * 32,
        digest="cd" * 32,
        content=content_of(DOCUMENT if document is None else document),
    )


def checkpoint(tree_size: int = 120) -> Checkpoint:
    return Checkpoint(
        origin="hocba.example/archive",
        tree_size=tree_size,
        root_hash="ef" * 32,
        issued_at=NOW,
        signature="eyJhbGciOiJFUzI1NiJ9..c2ln",
    )


def test_a_new_entry_is_pending_due_now_and_keyed_by_record_version():
    entry = new_entry(record(), NOW)
    assert entry.key == record_key("hb-79000701-0001", 2) == "hb-79000701-0001:2"
    assert (entry.kind, entry.subject, entry.number, entry.seq) == (RECORD, "hb-79000701-0001", 2, 41)
    assert (entry.status, entry.attempts, entry.next_attempt_at) == (PENDING, 0, NOW)
    assert entry.digest == "cd" * 32


def test_the_ministry_gets_the_personal_id_and_the_results_and_nothing_else_personal():
    payload = new_entry(record(), NOW).payload
    assert payload == {
        "record_id": "hb-79000701-0001",
        "version": 2,
        "school_code": "79000701",
        "school_year": "2025-2026",
        "personal_id": "079212000123",
        "supersedes": None,
        "record": {
            "rule_set": "tt22-2021",
            "grade": 6,
            "class_name": "6A1",
            "subjects": DOCUMENT["subjects"],
            "learning_result": DOCUMENT["learning_result"],
            "complete": True,
            "missing": [],
        },
        "digest": "cd" * 32,
        "archive": {"seq": 41, "entry_hash": "ab" * 32},
    }
    text = json.dumps(payload, ensure_ascii=False)
    assert not [value for value in PERSONAL if value in text]


def test_fields_the_allow_list_does_not_name_stay_in_the_system():
    document = {**DOCUMENT, "teacher_notes": "private", "learning_result": {"year": "Khá"}}
    payload = ministry_payload(record(document))
    assert "teacher_notes" not in json.dumps(payload)
    assert payload["record"]["learning_result"] == {"year": "Khá"}
    assert set(payload["record"]) <= set(RECORD_FIELDS)


def test_a_checkpoint_entry_is_keyed_by_origin_and_tree_size_and_goes_out_whole():
    entry = new_checkpoint_entry(checkpoint(), NOW)
    assert entry.key == checkpoint_key("hocba.example/archive", 120) == "checkpoint:hocba.example/archive:120"
    assert (entry.kind, entry.subject, entry.number, entry.seq) == (CHECKPOINT, "hocba.example/archive", 120, None)
    assert entry.payload == {
        "origin": "hocba.example/archive",
        "tree_size": 120,
        "root_hash": "ef" * 32,
        "issued_at": "2026-05-20T08:00:00.000Z",
        "signature": "eyJhbGciOiJFUzI1NiJ9..c2ln",
    }
    assert entry.digest == "ef" * 32


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, Answer.DELIVERED), (201, Answer.DELIVERED),
        (408, Answer.RETRY), (429, Answer.RETRY), (500, Answer.RETRY), (503, Answer.RETRY),
        (400, Answer.PARK), (401, Answer.PARK), (404, Answer.PARK), (409, Answer.PARK), (422, Answer.PARK),
    ],
)
def test_answers_are_classified(status, answer):
    assert classify(status) is answer


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
    failure = after_failure(entry, Attempt(Answer.RETRY, 0.1, error="HTTP 503"), NOW, 0.0, POLICY)
    assert (failure.status, failure.attempts, failure.last_error) == (PENDING, 1, "HTTP 503")
    assert failure.next_attempt_at == NOW + timedelta(seconds=1)


def test_the_last_allowed_attempt_parks_the_entry():
    entry = replace(new_entry(record(), NOW), attempts=POLICY.max_attempts - 1)
    failure = after_failure(entry, Attempt(Answer.RETRY, 0.1, error="ConnectError"), NOW, 0.5, POLICY)
    assert (failure.status, failure.attempts, failure.next_attempt_at) == (PARKED, POLICY.max_attempts, None)
    assert failure.last_error == "ConnectError"


def test_a_permanent_answer_parks_at_once():
    failure = after_failure(
        new_entry(record(), NOW), Attempt(Answer.PARK, 0.1, error="HTTP 422: missing fields"), NOW, 0.5, POLICY
    )
    assert (failure.status, failure.attempts, failure.last_error) == (PARKED, 1, "HTTP 422: missing fields")


# -- operators --------------------------------------------------------------------------------


def actor(*roles: str) -> Actor:
    return Actor(subject="ops-1", roles=frozenset(roles), school_code="", expires_at=NOW + timedelta(hours=1))


def test_only_an_operator_hands_entries_back_to_the_relay():
    authorise_operator(actor("operator"))
    with pytest.raises(Forbidden, match="ops-1 is not an operator") as refused:
        authorise_operator(actor("principal", "school_admin"))
    assert refused.value.reason == "not-an-operator"


# -- reconciliation ---------------------------------------------------------------------------


def held(
    key: str, status: str = DELIVERED, receipt: str | None = "r-1", digest: str = "d", seq: int | None = None,
    kept: str | None = "same",
) -> Held:
    """What sync holds for `key`; a delivered entry's receipt document is the same receipt unless `kept` says."""
    receipt = receipt if status == DELIVERED else None
    return Held(key, RECORD, status, digest, receipt, seq, receipt if kept == "same" else kept)


def ack(key: str, receipt: str = "r-1", digest: str = "d") -> Acknowledged:
    return Acknowledged(key, receipt, digest)


def reconciled(*pairs: tuple[str, Held | None, list[Acknowledged]], size: int | None = None) -> Reconciliation:
    report = Reconciliation(limit=10)
    for key, mine, theirs in pairs:
        report.compare(key, mine, theirs)
    report.finish(size)
    return report


def test_a_delivered_entry_the_ministry_acknowledges_with_the_same_receipt_matches():
    report = reconciled(("k:1", held("k:1"), [ack("k:1")]))
    assert (report.held, report.acknowledged, report.matched, report.differences) == (1, 1, 1, 0)


@pytest.mark.parametrize(
    ("mine", "theirs", "difference"),
    [
        (held("k:1"), [], "missing_at_ministry"),
        (None, [ack("k:1")], "unknown_to_sync"),
        (held("k:1", status=PENDING), [ack("k:1")], "acknowledged_not_recorded"),
        (held("k:1", status=PARKED), [ack("k:1")], "acknowledged_not_recorded"),
        (held("k:1"), [ack("k:1", receipt="r-2")], "receipt_mismatch"),
        (held("k:1"), [ack("k:1", digest="other")], "digest_mismatch"),
        (held("k:1", kept=None), [ack("k:1")], "receipt_not_kept"),
        (held("k:1", kept="r-0"), [ack("k:1")], "receipt_not_kept"),
    ],
)
def test_each_kind_of_difference_is_named_with_its_key(mine, theirs, difference):
    report = reconciled(("k:1", mine, theirs))
    assert report.counts[difference] == 1 and report.examples[difference] == ["k:1"]
    assert report.differences == 1


def test_two_acknowledgements_of_one_key_are_a_difference_even_when_one_matches():
    report = reconciled(("k:1", held("k:1"), [ack("k:1"), ack("k:1", receipt="r-2")]))
    assert report.counts["acknowledged_twice"] == 1
    assert report.matched == 1 and report.differences == 1


def test_a_receipt_document_missing_is_named_even_when_the_ministry_agrees_with_the_entry():
    """The entry's copy of the receipt matches the ministry; the receipts collection lacks it all the same."""
    report = reconciled(("k:1", held("k:1", kept=None), [ack("k:1")]))
    assert report.matched == 1
    assert report.counts["receipt_not_kept"] == 1 and report.examples["receipt_not_kept"] == ["k:1"]


def test_a_receipt_not_kept_yet_is_a_difference_only_once_the_step_recording_it_had_time_to_finish():
    """Recorded delivered, then its receipt kept and its delivery announced: between the two writes it is settling."""
    settling = replace(held("k:1", kept=None), recorded_at=NOW)
    stalled = replace(held("k:2", kept=None), recorded_at=NOW - timedelta(seconds=31))
    report = Reconciliation(limit=10, settling_since=NOW - timedelta(seconds=30))
    report.compare("k:1", settling, [ack("k:1")])
    report.compare("k:2", stalled, [ack("k:2")])
    assert report.matched == 2
    assert report.counts["receipt_not_kept"] == 1 and report.examples["receipt_not_kept"] == ["k:2"]


def test_an_entry_not_delivered_needs_no_receipt_document():
    report = reconciled(("k:1", held("k:1", status=PENDING, kept=None), []))
    assert report.differences == 0


def test_entries_still_on_their_way_are_the_backlog_not_differences():
    report = reconciled(
        ("a:1", held("a:1", status=PENDING), []),
        ("b:1", held("b:1", status=PARKED), []),
    )
    assert report.differences == 0
    assert report.waiting == {PENDING: 1, "sending": 0, PARKED: 1}


def test_log_positions_below_the_checkpoint_that_sync_never_received_are_listed_as_ranges():
    pairs = [(f"k{s}:1", held(f"k{s}:1", seq=s), [ack(f"k{s}:1")]) for s in (0, 1, 4, 5, 7)]
    report = reconciled(*pairs, size=10)
    assert report.counts["not_in_outbox"] == 5
    assert report.examples["not_in_outbox"] == ["seq 2-3", "seq 6", "seq 8-9"]


def test_without_a_checkpoint_no_gap_can_be_judged():
    assert reconciled(("k:1", held("k:1", seq=5), [ack("k:1")])).counts["not_in_outbox"] == 0


def test_counts_are_complete_while_examples_stop_at_the_limit():
    report = Reconciliation(limit=2)
    for i in range(5):
        report.compare(f"k{i}:1", held(f"k{i}:1"), [])
    assert report.counts["missing_at_ministry"] == 5
    assert report.examples["missing_at_ministry"] == ["k0:1", "k1:1"]


def test_missing_ranges():
    assert missing_ranges([], 3) == [(0, 2)]
    assert missing_ranges([0, 1, 2], 3) == []
    assert missing_ranges([2, 0, 9], 4) == [(1, 1), (3, 3)]
