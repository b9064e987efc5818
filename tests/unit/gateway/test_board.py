"""The board: the signing batches the gateway has seen announced, counted once, and never taken back by news that
comes late. Nothing else: every other status on the pages is asked of the service that knows it."""

from __future__ import annotations

from hocba.web.board import Board
from shared.contracts.signing import BatchCompleted, BatchProgress, RequestSignBatch

SCHOOL, YEAR = "79000701", "2025-2026"


def progress(batch: str, signed: int, total: int = 10) -> BatchProgress:
    return BatchProgress(
        batch_id=batch, school_code=SCHOOL, school_year=YEAR, chunks_done=1, chunks_total=2,
        records_signed=signed, records_total=total, role="principal",
    )  # fmt: skip


def completed(batch: str, signed: int = 10, role: str = "principal", class_name: str | None = None) -> BatchCompleted:
    return BatchCompleted(
        batch_id=batch, school_code=SCHOOL, school_year=YEAR, records_signed=signed, records_total=signed,
        role=role, class_name=class_name, records_completed=signed if role == "principal" else 0,
    )  # fmt: skip


def test_a_batch_the_gateway_asks_for_has_a_page_before_signing_says_anything():
    board = Board()
    request = RequestSignBatch(school_code=SCHOOL, school_year=YEAR)
    view = board.expect(request, "ht-79000701")
    assert (view.state, view.percent, view.finished, view.requested_by) == ("sent", 0, False, "ht-79000701")
    assert board.batches_of(SCHOOL, YEAR) == [view]


def test_progress_grows_and_a_late_progress_never_takes_a_finished_batch_back():
    board = Board()
    board.batch_progress(progress("b1", 4))
    assert (board.batch("b1").state, board.batch("b1").percent) == ("signing", 40)
    board.batch_completed(completed("b1"))
    board.batch_progress(progress("b1", 8))
    assert (board.batch("b1").state, board.batch("b1").records_signed, board.batch("b1").percent) == ("done", 10, 100)


def test_a_completion_announced_twice_is_the_same_batch_once():
    board = Board()
    board.batch_completed(completed("h1", 13, "homeroom_teacher", "6A1"))
    board.batch_completed(completed("h1", 13, "homeroom_teacher", "6A1"))
    board.batch_completed(completed("p1", 25))
    board.batch_completed(completed("p1", 25))
    class_batch, school_batch = board.batch("h1"), board.batch("p1")
    assert (class_batch.class_name, class_batch.records_signed, class_batch.state) == ("6A1", 13, "done")
    assert (school_batch.records_completed, school_batch.state) == (25, "done")
    assert [b.batch_id for b in board.batches_of(SCHOOL, YEAR, "6A1")] == ["h1"]


def test_a_class_batch_first_seen_by_its_progress_is_named_by_its_completion():
    board = Board()
    board.batch_progress(progress("h1", 4).model_copy(update={"role": "homeroom_teacher"}))
    board.batch_completed(completed("h1", 13, "homeroom_teacher", "6A1"))
    assert board.batch("h1").class_name == "6A1"
    assert [b.batch_id for b in board.batches_of(SCHOOL, YEAR, "6A1")] == ["h1"]


def test_a_request_never_sent_says_so_unless_signing_already_answered():
    board = Board()
    sent = board.expect(RequestSignBatch(school_code=SCHOOL, school_year=YEAR), "ht-79000701")
    board.not_sent(sent.batch_id, "nothing takes signing.batch.requested.v1 here")
    assert (sent.state, sent.finished) == ("unsent", True)
    answered = board.expect(RequestSignBatch(school_code=SCHOOL, school_year=YEAR), "ht-79000701")
    board.batch_completed(completed(answered.batch_id))
    board.not_sent(answered.batch_id, "a late failure")
    assert answered.state == "done"
