"""The result record (conformance/result.py): one status enum, one order, one serialiser."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from conformance import guard
from conformance.case import Case
from conformance.properties import BY_ID, CATALOGUE, PropertyFailure
from conformance.result import SEVERITY, STATUSES, Status, counts, dump, load, new_result, worst
from implementations.seed import SeedBackend
from spec.rmsprop import HParams
from tests.mutants import MUTANTS


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


def test_the_guard_takes_its_limits_from_the_caller() -> None:
    """conformance/guard.py: limits hold inside ``limited`` only; no module setting."""
    class Slow:
        name = "slow"

        def capabilities(self):  # pragma: no cover - not called by call_backend
            raise AssertionError

        def run(self, case):
            time.sleep(0.5)
            raise RuntimeError("finished")

    caps = SeedBackend().capabilities()
    case = Case(hp=HParams.from_profile("seed"), params=(np.zeros(1),), grads=((np.ones(1),),))
    with guard.limited(0.1, None), pytest.raises(guard.BackendTimeout, match="within 0.1 s"):
        guard.call_backend(Slow(), caps, case)
    with pytest.raises(guard.BackendError, match="raised RuntimeError: finished"):
        guard.call_backend(Slow(), caps, case)  # no limit outside: it runs to its end


def test_calls_under_a_time_limit_share_one_watchdog_thread(monkeypatch) -> None:
    """The watchdog for runs stuck in native code is one thread per process, not one per call
    (a thread per call cost more than a small run; test_misbehaving shows that it ends one)."""
    import threading

    started = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda t: (started.append(t), start(t))[1])
    caps = SeedBackend().capabilities()
    case = Case(hp=HParams.from_profile("seed"), params=(np.zeros(3),), grads=((np.ones(3),),))
    with guard.limited(30.0, 1 << 40):
        for _ in range(50):
            guard.call_backend(SeedBackend(), caps, case)
    assert len(started) <= 1 and all(t.is_alive() for t in started)
    assert guard.resident_bytes() > 1 << 20  # read off /proc: this process's pages, in bytes


def test_each_property_fails_with_its_own_id() -> None:
    backend = MUTANTS["sign_error"]()
    caps = backend.capabilities()
    case = Case(hp=HParams.from_profile("torch", lr=0.1), params=(np.ones(2),),
                grads=((np.ones(2),), (np.ones(2),)))
    for p in CATALOGUE:
        if p.id in ("P1", "P2", "P3", "P4", "P5"):
            with pytest.raises(PropertyFailure) as info:
                p.check(backend, caps, case)
            assert info.value.prop == p.id
