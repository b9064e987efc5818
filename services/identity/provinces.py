"""Province codes of the personal identification number (digits 1-3): the table in `shared.provinces`."""

from shared.provinces import PROVINCES

__all__ = ["PROVINCES"]
