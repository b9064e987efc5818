"""A closed year closed again, after a term was reopened: which first versions are assembled anew.

A first version nobody has signed is not a record yet (signing never signs an incomplete one, and the
school completes it by reopening a term); assembled again with other content, it takes that version's place,
with the replacement noted in its history. A version that carries any signature stays as it is: one signed and
sealed (signing's RecordsCompleted, noted in the record's statuses), and one its homeroom teacher (or anyone) has
signed already (signing's answer when grades asks, before replacing). It is corrected only by an amendment, a later
version, once it is signed and sealed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from shared.contracts.grades import SIGNED, RecordVersion


def signed_and_sealed(reached: Iterable[str]) -> bool:
    """Whether signing announced the version with every signature and the school's seal (or a later step)."""
    return any(status in SIGNED for status in reached)


def replaces(
    kept: RecordVersion, assembled: RecordVersion, reached: Iterable[str], signed_by: Collection[str] = ()
) -> bool:
    """Whether the version `assembled` now takes the place of the version `kept`: its content changed, and the
    kept one carries no signature: never signed and sealed (`reached`), and no role signed it (`signed_by`, as
    signing holds it)."""
    return assembled.content != kept.content and not signed_and_sealed(reached) and not signed_by


def kept_as_signed(kept: RecordVersion, assembled: RecordVersion, signed_by: Collection[str]) -> bool:
    """Whether the version `kept` stays as it is though assembled again with other content, because a role signed it
    (its homeroom teacher, before the principal and the seal): what the close reports, for an amendment later."""
    return assembled.content != kept.content and bool(signed_by)
