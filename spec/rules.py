"""The rules of spec/SPEC.md by number, with their titles read off SPEC.md's own headings.

Every rule is introduced in SPEC.md as ``**Rn (title; `axis`).**``: that heading is the one
source of the rule's title, which failure messages and reports quote.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["RULE_TITLES", "rule_title"]

SPEC_MD = Path(__file__).with_name("SPEC.md")
_HEADING = re.compile(r"\*\*(R\d+[a-z]?) \((.+?)\)\.?\*\*")


def _titles(text: str) -> dict[str, str]:
    """Rule → title, from the headings of ``text``: "ε placement; `eps_in_sqrt`" reads as
    "ε placement (eps_in_sqrt)"."""
    out: dict[str, str] = {}
    for rule, title in _HEADING.findall(text):
        words, _, axis = title.replace("`", "").partition("; ")
        out.setdefault(rule, f"{words} ({axis})" if axis else words)
    return out


RULE_TITLES: dict[str, str] = _titles(SPEC_MD.read_text(encoding="utf-8"))


def rule_title(rule: str) -> str:
    """``"R7: ε placement (eps_in_sqrt)"``; a sub-rule without a heading of its own
    (``R31b``) is titled as written, an unknown rule by its number alone."""
    return f"{rule}: {RULE_TITLES[rule]}" if rule in RULE_TITLES else rule
