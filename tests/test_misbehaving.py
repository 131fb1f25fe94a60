"""Backends that raise, return garbage, hang, leak, flake or kill their process
(tests/bad_backends.py): certification reports the affected properties as errors or failures,
with the reason, runs the others, and still writes a complete report; interrupting it never
leaves a torn report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance import serialize
from conformance.guard import BackendError
from conformance.properties import BY_ID, PropertyFailure
from conformance.result import new_result
from conformance.runner import Target, run_property
from tests import bad_backends
from tests.test_cli import REPO, run_cli

# What bad_backends._Bad declares (float64; lr_schedule, state_readout) makes these properties
# testable, each on one target (float64, cpu); everything else is unsupported.
TESTABLE = {"P1", "P2", "P3", "P4", "P5", "P6", "P11", "P12"}
SCHEDULE_ONLY = TESTABLE - {"P3"}  # properties whose cases never carry a learning-rate schedule


def certify(tmp_path: Path, *names: str, timeout: float = 2, extra: tuple[str, ...] = ()
            ) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "reports"
    proc = run_cli("certify", *names, "--effort", "quick", "--seed", "0", "--report-dir", out,
                   "--example-timeout", timeout, "-n", "1", *extra, cwd=tmp_path, timeout=180)
    return proc, out


def load_complete(path: Path) -> dict:
    """The report at ``path``, checked to be complete and self-consistent."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    from conformance.report import SCHEMA

    assert doc["schema"] == SCHEMA
    counts = {s: sum(r["status"] == s for r in doc["results"])
              for s in ("pass", "fail", "known", "error", "unsupported")}
    assert doc["counts"] == counts
    bad = counts["fail"] + counts["error"]
    assert doc["verdict"] == ("nonconformant" if bad or doc["interrupted"] else "conformant")
    return doc


def statuses(doc: dict) -> dict[str, tuple[str, str]]:
    """Property id → (status, message) of every tested (not unsupported) result."""
    out = {}
    for r in doc["results"]:
        if r["status"] != "unsupported":
            assert r["property"] not in out, "one target per property expected"
            out[r["property"]] = (r["status"], r.get("message", ""))
    return out


# (backend, extra options, {property: (status, words in the message)}, properties that pass)
MISBEHAVIOURS = [
    ("Raises", (), {"P3": ("error", "bad.raises.run raised RuntimeError: this backend cannot")},
     SCHEDULE_ONLY),
    ("WrongShapes", (), {"P3": ("fail", "R14")}, SCHEDULE_ONLY),
    ("WrongDtypes", (), {"P3": ("fail", "returned float32")}, SCHEDULE_ONLY),
    ("NaNs", (), {"P4": ("fail", "R27")}, {"P6", "P12"}),
    ("Sleeps", (), {"P3": ("error", "did not finish within 2 s")}, SCHEDULE_ONLY),
    ("BusyLoops", (), {"P3": ("error", "did not finish within 2 s")}, SCHEDULE_ONLY),
    ("Leaks", ("--memory-limit", "64"), {"P3": ("error", "resident memory grew")},
     SCHEDULE_ONLY),
    ("Flaky", (), {"P12": ("fail", "two runs of the same case differ")},
     TESTABLE - {"P11", "P12"}),
    ("Exits", (), {"P3": ("error", "process died")}, SCHEDULE_ONLY),
]


@pytest.mark.parametrize(("attr", "extra", "affected", "passing"), MISBEHAVIOURS,
                         ids=[m[0] for m in MISBEHAVIOURS])
def test_misbehaviour_is_reported_and_the_run_goes_on(tmp_path, attr, extra, affected, passing):
    proc, out = certify(tmp_path, f"tests.bad_backends:{attr}", extra=extra)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback (most recent call last)" not in proc.stderr
    reports = list(out.glob("bad.*.json"))
    assert len(reports) == 1, reports
    doc = load_complete(reports[0])
    assert doc["verdict"] == "nonconformant" and doc["interrupted"] is False
    found = statuses(doc)
    assert set(found) == TESTABLE  # every testable target has a result: nothing was lost
    for prop, (status, words) in affected.items():
        assert found[prop][0] == status, (prop, found[prop])
        assert words in found[prop][1], (prop, found[prop])
    for prop in passing:
        assert found[prop][0] == "pass", (prop, found[prop])
    summary = (out / "summary.md").read_text()
    assert f"`{doc['backend']['name']}`: failures" in summary
    assert (out / "index.html").read_text().startswith("<!doctype html>")


@pytest.mark.slow
def test_backend_stuck_in_native_code_is_ended_by_the_watchdog(tmp_path):
    """SIGALRM cannot reach it; the watchdog ends the worker (after 2 × limit + 10 s)."""
    proc, out = certify(tmp_path, "tests.bad_backends:StuckInNative", timeout=1)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = statuses(load_complete(out / "bad.stuck_in_native.json"))
    assert found["P3"][0] == "error" and "process died" in found["P3"][1]
    assert all(found[p][0] == "pass" for p in SCHEDULE_ONLY), found


def test_a_segfault_does_not_stop_the_next_backend(tmp_path):
    proc, out = certify(tmp_path, "tests.bad_backends:Segfaults", "seed")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = statuses(load_complete(out / "bad.segfaults.json"))
    assert set(found) == TESTABLE
    assert found["P3"][0] == "error" and "process died" in found["P3"][1], found
    assert all(found[p][0] == "pass" for p in SCHEDULE_ONLY), found
    seed = load_complete(out / "seed.json")
    assert seed["verdict"] == "conformant"
    assert seed["counts"]["pass"] > 0 and seed["counts"]["error"] == 0
    # certify's closing table: one row per backend, its name then its verdict.
    assert re.search(r"^bad\.segfaults +nonconformant ", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^seed +conformant ", proc.stdout, re.MULTILINE), proc.stdout
    summary = (out / "summary.md").read_text()
    assert "`bad.segfaults`" in summary and "`seed`" in summary


@pytest.mark.slow
def test_a_backend_crashing_every_test_still_gets_every_result(tmp_path):
    """Every call of AlwaysExits ends its process: more crashes than pytest-xdist restarts
    workers by default; every target still gets its result."""
    proc, out = certify(tmp_path, "tests.bad_backends:AlwaysExits")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = statuses(load_complete(out / "bad.always_exits.json"))
    assert set(found) == TESTABLE
    assert all(s == "error" and "process died" in m for s, m in found.values()), found


# ---------------------------------------------------------------------------------------------
# Interruptions
# ---------------------------------------------------------------------------------------------
def _start_stuck_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    """certify bad.sleeps with a long example timeout, returning once it is stuck in P3."""
    out = tmp_path / "reports"
    out.mkdir()
    previous = out / "bad.sleeps.json"
    previous.write_text(json.dumps({"schema": "rmsprop-conformance/report/1",
                                    "backend": {"name": "bad.sleeps"}, "verdict": "conformant",
                                    "previous": True}))
    mark = tmp_path / "sleeping"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHONPATH=str(REPO), BAD_BACKENDS_SLEEPING=str(mark))
    # SIGINT handled as in a shell's foreground job: a suite run in the background of a
    # non-interactive shell has SIGINT ignored, which a child inherits (a handler it does not),
    # and the Ctrl-C below would be lost.
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conformance.cli", "certify", "tests.bad_backends:Sleeps",
             "--effort", "quick", "--seed", "0", "--report-dir", str(out), "--example-timeout",
             "600", "-n", "1"], cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)  # its own process group
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    deadline = time.monotonic() + 120
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached P3"
        time.sleep(0.1)
    return proc, out, previous


def _assert_no_torn_files(out: Path) -> None:
    for path in out.glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))


def test_ctrl_c_writes_a_report_marked_interrupted(tmp_path):
    proc, out, previous = _start_stuck_run(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal (or a CI cancel) sends
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted" in stderr
    assert "Traceback (most recent call last)" not in stderr
    _assert_no_torn_files(out)
    doc = load_complete(previous)
    assert doc["interrupted"] is True and doc["verdict"] == "nonconformant"
    found = statuses(doc)
    assert found["P1"][0] == "pass"  # what ran before the interruption is kept
    assert "P3" not in found or found["P3"][0] != "pass"
    assert "(interrupted)" in (out / "summary.md").read_text()


def test_sigterm_leaves_the_previous_report(tmp_path):
    proc, out, previous = _start_stuck_run(tmp_path)
    before = previous.read_bytes()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    _assert_no_torn_files(out)
    assert previous.read_bytes() == before


def test_a_backend_that_kills_its_evidence_leaves_the_reports(tmp_path):
    """The evidence (the seed's trajectory, the counterexamples' series) is computed in a child
    process at certification time: a backend that ends its process there costs the evidence,
    not the reports or this process, and the summaries say what was not recorded."""
    from conformance import evidence, report
    from conformance.result import STATUSES

    found = evidence.collect("tests.bad_backends:AlwaysExits", {})
    assert "ended with code 1" in found["seed"]["not_recorded"], found
    doc = {"schema": report.SCHEMA, "evidence": found,
           "backend": {"name": "bad.always_exits", "spec": "tests.bad_backends:AlwaysExits",
                       "capabilities": {"profile": "seed"}},
           "verdict": "conformant", "interrupted": False, "results": [],
           "counts": dict.fromkeys(STATUSES, 0)}
    report.write_summaries(tmp_path, [doc])
    page = (tmp_path / "index.html").read_text()
    assert page.startswith("<!doctype html>")
    assert "not drawn: bad.always_exits: the evidence process ended with code 1" in page
    assert "`bad.always_exits`" in (tmp_path / "summary.md").read_text()


def test_a_report_left_by_an_earlier_run_does_not_stand_in(tmp_path):
    out = tmp_path / "reports"
    out.mkdir()
    stale = out / "bad.fails_inside_pytest.json"
    stale.write_text(json.dumps({
        "schema": "rmsprop-conformance/report/1", "verdict": "conformant", "interrupted": False,
        "backend": {"name": "bad.fails_inside_pytest", "capabilities": {"profile": "seed"}},
        "counts": {"pass": 1, "fail": 0, "known": 0, "error": 0, "unsupported": 0},
        "results": []}))
    proc, _ = certify(tmp_path, "tests.bad_backends:FailsInsidePytest")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "without writing its report" in proc.stderr
    assert "conformant" not in proc.stdout


class _CountingRaises(bad_backends.Raises):
    """Raises, counting its runs after its first crash (None: it has not crashed)."""

    def __init__(self, compiled: bool) -> None:
        self.compiled, self.runs_after_crash = compiled, None

    def capabilities(self):
        return dataclasses.replace(super().capabilities(), compiled=self.compiled)

    def run(self, case):
        if self.runs_after_crash is not None:
            self.runs_after_crash += 1
        elif bad_backends._scheduled(case):  # Raises raises now, for the first time
            self.runs_after_crash = 0
        return super().run(case)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_a_crash_is_kept_as_a_case_that_replays(tmp_path, compiled):
    """A target whose backend raises is an error with the case it raised on, stored as a
    counterexample whose replay command reproduces the crash. An eager backend's crash is
    shrunk (to one parameter); a compiled backend's ends the search at once (each attempt would
    be another failed compilation)."""
    backend = _CountingRaises(compiled)
    record = new_result(BY_ID["P3"], backend.name, "float64", "cpu")
    target = Target("tests.bad_backends:Raises", backend, backend.capabilities(), "float64",
                    "cpu", "ci", tmp_path, record, nodeid="crash::P3")
    with pytest.raises(BackendError, match="cannot take more than one step"):
        run_property("P3", target)
    assert record["status"] == "error" and "cannot take more than one step" in record["message"]
    assert (backend.runs_after_crash == 0) == compiled, backend.runs_after_crash
    doc = json.loads(Path(record["counterexample"]).read_text(encoding="utf-8"))
    assert doc["label"] == "error" and doc["violation"] is None
    case = serialize.case_from_json(doc["case"])
    assert case.lrs is not None and (compiled or len(case.params) == 1)
    proc = run_cli("repro", record["counterexample"], cwd=tmp_path)
    assert proc.returncode == 1 and "REPRODUCED (backend error)" in proc.stdout, proc.stdout
    assert record["replay"].endswith(f"repro {record['counterexample']}")


class _FailsThenRaises(bad_backends.Raises):
    """Wrong on the first learning-rate schedule it is given (every parameter one too large),
    raising on every other: all a shrinking of that failure tries is a crash."""

    def __init__(self) -> None:
        self.first: str | None = None

    def run(self, case):
        if not bad_backends._scheduled(case):
            return super().run(case)
        key = json.dumps(serialize.case_to_json(case), sort_keys=True)
        self.first = self.first or key
        if key != self.first:
            return super().run(case)  # raises
        traj = bad_backends.SeedBackend.run(self, case)
        wrong = [tuple(p + 1 for p in step) for step in traj.params]
        return dataclasses.replace(traj, params=wrong)


def test_a_crash_while_a_failure_shrinks_does_not_replace_it(tmp_path):
    """A crash on a case the shrinking of a failure tries is not that failure: the failure is
    reported, with its counterexample, and the crashes counted (raised, Hypothesis would report
    the crash instead, with no case to replay)."""
    backend = _FailsThenRaises()
    record = new_result(BY_ID["P3"], backend.name, "float64", "cpu")
    target = Target("tests.bad_backends:Raises", backend, backend.capabilities(), "float64",
                    "cpu", "ci", tmp_path, record, nodeid="fails-then-raises::P3")
    with pytest.raises(PropertyFailure):
        run_property("P3", target)
    assert record["status"] == "fail" and record["rule"].startswith("R"), record
    assert record["figures"]["crashes_while_shrinking"] > 0
    doc = json.loads(Path(record["counterexample"]).read_text(encoding="utf-8"))
    assert doc["label"] != "error" and doc["violation"] is not None
    assert json.dumps(doc["case"], sort_keys=True) == backend.first
