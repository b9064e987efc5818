"""The signing batches as the gateway has followed them on the bus: each one's progress, from the click to its end
or refusal.

Pure: the announcements go in (`hocba.web.link` feeds them), the pages read it. It holds only what no service
answers when asked: a batch's progress, which signing announces and answers no question about. It knows what it has
seen since the gateway started, no more; every other status on the pages is asked of the service that knows it when
a page loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from shared.contracts.signing import BatchCompleted, BatchProgress, BatchRefused, RequestSignBatch, Role

#: Where a batch is: asked for and not yet begun, signing, done, refused by signing, or never sent.
BatchState = Literal["sent", "signing", "done", "refused", "unsent"]


@dataclass
class BatchView:
    """One "sign all" the gateway sent or saw, as far as signing has announced it."""

    batch_id: str
    school_code: str
    school_year: str
    role: Role
    class_name: str | None
    #: The subject of whoever clicked (the gateway's own clicks; "" for a batch only seen on the bus).
    requested_by: str = ""
    state: BatchState = "sent"
    records_signed: int = 0
    records_total: int | None = None
    records_completed: int = 0
    records_waiting: int = 0
    #: Records of the scope signing does not sign as they are (incomplete).
    records_refused: int = 0
    #: Classes whose records wait for their homeroom teacher's review: (class, records, why).
    classes_waiting: tuple[tuple[str, int, str], ...] = ()
    #: Signing's code and sentence when it refused the batch, or why the request could not be sent.
    code: str = ""
    reason: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def finished(self) -> bool:
        return self.state in ("done", "refused", "unsent")

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        if not self.records_total:
            return 0
        return min(100, self.records_signed * 100 // self.records_total)


class Board:
    """Every batch the announcements have told of, from `since` on."""

    def __init__(self, now: datetime | None = None) -> None:
        self.since = now or datetime.now(UTC)
        self.batches: dict[str, BatchView] = {}

    # --- what the pages read ------------------------------------------------------------------

    def batch(self, batch_id: str) -> BatchView | None:
        return self.batches.get(batch_id)

    def batches_of(self, school_code: str, school_year: str, class_name: str | None = None) -> list[BatchView]:
        """The school year's batches, the latest first; of one class's homeroom teacher when `class_name` is given."""
        found = [
            b
            for b in self.batches.values()
            if (b.school_code, b.school_year) == (school_code, school_year)
            and (class_name is None or b.class_name == class_name)
        ]
        return sorted(found, key=lambda b: b.started_at, reverse=True)

    # --- what the gateway did -----------------------------------------------------------------

    def expect(self, request: RequestSignBatch, requested_by: str) -> BatchView:
        """A batch the gateway is about to ask for: its page exists before signing says anything."""
        view = BatchView(
            request.batch_id,
            request.school_code,
            request.school_year,
            request.role,
            request.class_name if request.role == "homeroom_teacher" else None,
            requested_by,
        )
        self.batches.setdefault(request.batch_id, view)
        return self.batches[request.batch_id]

    def not_sent(self, batch_id: str, why: str) -> None:
        """The request for `batch_id` never reached signing."""
        if (view := self.batches.get(batch_id)) is not None and not view.finished:
            view.state, view.reason = "unsent", why

    # --- what the services announced ----------------------------------------------------------

    def _seen(
        self, batch_id: str, school_code: str, school_year: str, role: Role | None, class_name: str | None
    ) -> BatchView:
        if batch_id not in self.batches:
            self.batches[batch_id] = BatchView(batch_id, school_code, school_year, role or "principal", class_name)
        return self.batches[batch_id]

    def batch_progress(self, event: BatchProgress) -> None:
        view = self._seen(event.batch_id, event.school_code, event.school_year, event.role, None)
        if view.finished:
            return  # progress can arrive after the batch's end: it never takes a batch back
        view.state = "signing"
        view.records_signed = max(view.records_signed, event.records_signed)
        view.records_total = event.records_total

    def batch_completed(self, event: BatchCompleted) -> None:
        view = self._seen(event.batch_id, event.school_code, event.school_year, event.role, event.class_name)
        if view.state == "done":
            return  # a redelivered announcement counts once
        view.state = "done"
        view.class_name = view.class_name or event.class_name  # progress, seen first, does not name the class
        view.records_signed, view.records_total = event.records_signed, event.records_total
        view.records_completed, view.records_waiting = event.records_completed, event.records_waiting
        view.records_refused = len(event.refused)
        view.classes_waiting = tuple((c.class_name, c.records, c.reason) for c in event.classes_waiting)

    def batch_refused(self, event: BatchRefused) -> None:
        view = self._seen(event.batch_id, event.school_code, event.school_year, event.role, None)
        view.state, view.code, view.reason = "refused", event.code, event.reason
