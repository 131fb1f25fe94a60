"""The evidence a report stores beside its verdicts (conformance.evidence): the counterexample's
inputs as a reader sees them."""

from __future__ import annotations

import numpy as np

from conformance import evidence, html_report
from conformance.case import Case
from spec.rmsprop import HParams

C128 = np.complex128


def _violation(field: str, index: list[int]) -> dict:
    return {"rule": "R17", "kind": "value", "step": 1, "param": 1, "field": field,
            "index": index, "expected": 1.0, "observed": 2.0, "bound": 0.1}


def _complex_case() -> Case:
    hp = HParams.from_profile("torch")
    params = (np.array([1.0, 2.0]), np.array(1.5 - 0.25j, C128))
    grads = ((np.zeros(2), np.array(3.0 + 4.0j, C128)),
             (np.ones(2), np.array(-0.5 - 0.0j, C128)))
    return Case(hp=hp, params=params, grads=grads)


def test_a_complex_parameter_with_a_real_state_violation_shows_its_complex_element():
    """square_avg of a complex parameter is real (complex_mode "modulus"): the violation's index
    has no real/imaginary axis, and the element's start and gradients are the complex values
    (the timm one-liner's reports lost these inputs to a TypeError)."""
    inputs = evidence.case_inputs(_complex_case(), _violation("square_avg", []))
    assert inputs["element"] == {"param": 1, "index": [], "start": [1.5, -0.25],
                                 "grads": [[3.0, 4.0], [-0.5, -0.0]]}
    assert html_report._fmt(inputs["element"]["start"]) == "1.5-0.25j"
    assert html_report._fmt(inputs["element"]["grads"][0]) == "3+4j"


def test_a_complex_parameter_violation_names_one_real_part():
    """A violation of a complex params field names the real (0) or imaginary (1) part, as the
    judge compares them; the element shown is that part."""
    inputs = evidence.case_inputs(_complex_case(), _violation("params", [1]))
    assert inputs["element"]["start"] == -0.25
    assert inputs["element"]["grads"] == [4.0, -0.0]
    inputs = evidence.case_inputs(_complex_case(), _violation("params", [0]))
    assert inputs["element"]["start"] == 1.5


def test_a_real_parameter_element():
    case = _complex_case()
    inputs = evidence.case_inputs(case, {**_violation("params", [1]), "param": 0})
    assert inputs["element"] == {"param": 0, "index": [1], "start": 2.0, "grads": [0.0, 1.0]}
