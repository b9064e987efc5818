"""The board: what the gateway has seen announced, counted once, and never taken back by news that comes late."""

from __future__ import annotations

from hocba.web.board import ArchivedView, Board, DeliveredView
from shared.contracts.grades import TermChanged
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


def archived(*ids: str, school: str = SCHOOL) -> ArchivedView:
    return ArchivedView(
        records=[{"record_id": i, "version": 1, "school_code": school, "school_year": YEAR} for i in ids]
    )


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


def test_a_completion_announced_twice_counts_once():
    board = Board()
    board.batch_completed(completed("h1", 13, "homeroom_teacher", "6A1"))
    board.batch_completed(completed("h1", 13, "homeroom_teacher", "6A1"))
    board.batch_completed(completed("p1", 25))
    board.batch_completed(completed("p1", 25))
    year = board.year(SCHOOL, YEAR)
    assert (year.homeroom_signed, year.sealed) == ({"6A1": 13}, 25)


def test_a_request_never_sent_says_so_unless_signing_already_answered():
    board = Board()
    sent = board.expect(RequestSignBatch(school_code=SCHOOL, school_year=YEAR), "ht-79000701")
    board.not_sent(sent.batch_id, "nothing takes signing.batch.requested.v1 here")
    assert (sent.state, sent.finished) == ("unsent", True)
    answered = board.expect(RequestSignBatch(school_code=SCHOOL, school_year=YEAR), "ht-79000701")
    board.batch_completed(completed(answered.batch_id))
    board.not_sent(answered.batch_id, "a late failure")
    assert answered.state == "done"


def test_deliveries_are_counted_for_the_school_year_their_records_were_archived_in():
    board = Board()
    board.records_archived(archived("r1", "r2", "r3"))
    board.records_archived(archived("r1"))  # announced again
    board.records_archived(archived("x1", school="79000702"))
    board.records_delivered(
        DeliveredView(deliveries=[{"record_id": "r1", "version": 1}, {"record_id": "x1", "version": 1}])
    )
    board.records_delivered(DeliveredView(deliveries=[{"record_id": "r1", "version": 1}]))
    board.records_delivered(DeliveredView(deliveries=[{"record_id": "unknown", "version": 1}]))
    assert (board.year(SCHOOL, YEAR).archived, board.year(SCHOOL, YEAR).delivered) == (3, 1)
    assert (board.year("79000702", YEAR).archived, board.year("79000702", YEAR).delivered) == (1, 1)


def test_a_reopened_term_is_no_longer_closed():
    board = Board()
    for term, state in ((1, "closed"), (2, "closed"), (2, "open")):
        board.term_changed(
            TermChanged(school_code=SCHOOL, school_year=YEAR, term=term, state=state, source_message_id="m")
        )
    assert board.year(SCHOOL, YEAR).terms_closed == {1}


def test_a_school_year_nothing_was_announced_for_is_empty():
    assert not Board().year(SCHOOL, YEAR).seen
