"""The review before signing as a school does it, over a bus: each class reviewed by its homeroom teacher, who
confirms what the review shows (what `hocba review confirm` does). signing signs a class only once it is confirmed."""

from __future__ import annotations

from collections.abc import Iterable

from hocba.staff import Staff
from shared.contracts.signing import ClassReviews, ConfirmReview, ReviewClasses, ReviewConfirmed
from shared.messaging import Bus


async def confirm_reviews(bus: Bus, staff: Staff, school: str, year: str, classes: Iterable[str]) -> None:
    for class_name in classes:
        teacher = staff.homeroom_teacher(school, class_name)
        asked = ReviewClasses(school_code=school, school_year=year, class_name=class_name)
        for shown in (await bus.request(teacher.signs(asked), ClassReviews)).classes:
            seen = ConfirmReview(
                school_code=school, school_year=year, class_name=class_name, reviewed=shown.fingerprint
            )
            await bus.request(teacher.signs(seen), ReviewConfirmed)
