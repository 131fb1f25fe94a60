"""No false alarm on correct code that evaluates the formulas differently (tests/variants.py).

Every variant runs the properties that judge values against the oracle, in every dtype, with
the ``ci`` effort, and must pass. (With the bound of the spec form alone — before SPEC R17's
forms were modelled — the lerp variants failed 26 of these 38 targets.) Twenty seeds per
variant: ``python -m benchmarks.false_alarms --variants``.
"""

from __future__ import annotations

import pytest

from conformance.properties import BY_ID
from conformance.result import new_result
from conformance.runner import Target, run_property
from tests.variants import VARIANTS

PROPS = ("P1", "P2", "P7", "P8", "P9", "P10", "P11")
DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")


@pytest.mark.parametrize("prop_id", PROPS)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_conforms(name: str, prop_id: str, tmp_path) -> None:
    backend = VARIANTS[name]()
    for dtype in DTYPES if prop_id != "P10" else ("complex64", "complex128"):
        record = new_result(BY_ID[prop_id], backend.name, dtype, "cpu")
        target = Target(f"tests.variants:{name}", backend, backend.capabilities(), dtype, "cpu",
                        "ci", tmp_path, record, nodeid=f"variant::{name}::{prop_id}::{dtype}")
        run_property(prop_id, target)
        assert record["status"] == "pass", record
        assert record["examples"] >= 10
