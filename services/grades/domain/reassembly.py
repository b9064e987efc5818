"""A closed year closed again, after a term was reopened: which first versions are assembled anew.

A first version nobody has signed and sealed is not a record yet (signing never signs an incomplete one, and the
school completes it by reopening a term); assembled again with other content, it takes that version's place,
with the replacement noted in its history. A version signed and sealed (signing's RecordsCompleted, noted in the
record's statuses) stays as it is: it is corrected only by an amendment, a later version.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.contracts.grades import SIGNED, RecordVersion


def signed_and_sealed(reached: Iterable[str]) -> bool:
    """Whether signing announced the version with every signature and the school's seal (or a later step)."""
    return any(status in SIGNED for status in reached)


def replaces(kept: RecordVersion, assembled: RecordVersion, reached: Iterable[str]) -> bool:
    """Whether the version `assembled` now takes the place of the version `kept`: its content changed, and the
    kept one was never signed and sealed."""
    return assembled.content != kept.content and not signed_and_sealed(reached)
