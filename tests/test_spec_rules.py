"""SPEC.md's rule headings are the one source of rule titles (spec/rules.py), and its profile
table and convention axes agree with the oracle's (R13)."""

from __future__ import annotations

import re

from conformance.properties import CATALOGUE
from spec import rmsprop
from spec.rules import RULE_TITLES, SPEC_MD, rule_title

TEXT = SPEC_MD.read_text(encoding="utf-8")


def _index_rules() -> list[str]:
    """The rules of Appendix A's rule index, in order."""
    index = TEXT[TEXT.index("## Appendix A"):]
    return re.findall(r"^\| (R\d+) \|", index, flags=re.M)


def test_every_rule_of_the_index_has_a_titled_heading() -> None:
    rules = _index_rules()
    assert rules == [f"R{n}" for n in range(1, 32)]
    assert set(rules) <= set(RULE_TITLES)
    # "**R7 (ε placement; `eps_in_sqrt`).**"
    assert RULE_TITLES["R7"] == "ε placement (eps_in_sqrt)"
    assert rule_title("R17") == "R17: square_avg"
    assert rule_title("R99") == "R99"


def test_every_rule_the_harness_names_has_a_title() -> None:
    from tests.mutants import EXPECTED_RULE

    named = {r for p in CATALOGUE for r in p.rules} | set(EXPECTED_RULE.values())
    assert named <= set(RULE_TITLES), named - set(RULE_TITLES)


def test_convention_axes_are_section_3s_and_every_profile_fixes_them() -> None:
    section = TEXT[TEXT.index("## §3"):TEXT.index("## §4")]
    headed = re.findall(r"\*\*R\d+ \([^;]*; `(\w+)`\)\.\*\*", section)
    assert tuple(headed) == rmsprop.CONVENTION_AXES
    defaults = {"lr", "alpha", "eps"}
    for name in rmsprop.PROFILES:
        assert set(rmsprop._PROFILE_TABLE[name]) == defaults | set(rmsprop.CONVENTION_AXES)
    for axis, choices in rmsprop.AXIS_CHOICES.items():
        assert axis in rmsprop.CONVENTION_AXES
        for value in choices:
            rmsprop.HParams(**{axis: value})  # every listed value is valid (R5)
