"""The result record (conformance/result.py): one status enum, one order, one serialiser."""

from __future__ import annotations

import json

import pytest

from conformance.properties import BY_ID
from conformance.result import SEVERITY, STATUSES, Status, counts, dump, load, new_result, worst


def test_statuses_are_one_enum_in_one_order() -> None:
    assert STATUSES == ("pass", "fail", "known", "error", "unsupported")
    assert set(SEVERITY) == set(Status)
    assert worst(["pass", "unsupported", "known"]) is Status.KNOWN
    assert worst(["pass", "fail", "error"]) is Status.ERROR
    assert Status.FAIL == "fail" and json.dumps(Status.FAIL) == '"fail"'


def test_a_result_round_trips_and_bad_ones_are_refused() -> None:
    r = new_result(BY_ID["P4"], "seed", "float32", "cpu")
    assert r["status"] == "error" and r["property"] == "P4" and r["rules"] == ["R27", "R30"]
    r.update(status=Status.PASS.value, examples=3, max_ratio=0.5)
    assert load(dump(r)) == r
    assert counts([r, r]) == {"pass": 2, "fail": 0, "known": 0, "error": 0, "unsupported": 0}
    with pytest.raises(ValueError, match="status 'passed'; allowed: pass, fail"):
        load({**r, "status": "passed"})
    with pytest.raises(ValueError, match="no 'backend'"):
        load({k: v for k, v in r.items() if k != "backend"})
