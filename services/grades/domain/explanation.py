"""Why a result is what it is: rule set, clause, rule, inputs and the result, in data and in words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Explanation:
    """One computed result, with everything a verifier needs to compute it again.

    `about` names the result in the record ("subjects/Toán/term_1/average", "learning/year");
    `rule` is the rule-set entry applied and `clause` where the regulation says it; `inputs`
    holds JSON values only; `text` says it in words for a teacher.
    """

    about: str
    result: Any
    rule: str
    clause: str
    inputs: dict[str, Any]
    text: str

    def document(self, rule_set: str) -> dict[str, Any]:
        return {
            "about": self.about,
            "result": self.result,
            "rule_set": rule_set,
            "rule": self.rule,
            "clause": self.clause,
            "inputs": self.inputs,
            "text": self.text,
        }


def listing(items: list[str], limit: int = 6) -> str:
    """"a, b and c" (at most `limit` named, then "and N more")."""
    if not items:
        return "none"
    shown = items[:limit]
    rest = len(items) - len(shown)
    if rest:
        return ", ".join(shown) + f" and {rest} more"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
