"""Running one property on one (backend, dtype, device) target with Hypothesis, and recording
its :class:`conformance.result.Result`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, reject, seed, settings
from hypothesis.errors import Flaky
from hypothesis.internal.conjecture import engine
from hypothesis.reporting import current_reporter, with_reporter

from conformance import diagnosis, guard, serialize
from conformance.backend import Backend, Capabilities
from conformance.case import Case
from conformance.deviations import NONFINITE_RULE
from conformance.guard import BackendError, BackendTimeout
from conformance.properties import (
    BY_ID,
    Outcome,
    Property,
    PropertyFailure,
    label_of,
    unsupported_reason,
)
from conformance.result import Result, Status
from conformance.strategies import settings_for, shrink_seconds_for
from conformance.tolerance import Violation

RECORD_KEY = "rmsprop_conformance"
NONFINITE_OWNER = "P4"  # the property that reports spurious non-finite values (R27)
_MAX_SAMPLES = 200  # per-example ratios kept for the distribution plot


def deferred_to_nonfinite_owner(prop_id: str, violation: Violation) -> bool:
    """Whether a failure of ``prop_id`` is left to P4: a spurious non-finite value (R27) is
    P4's finding, so that the other properties keep testing their own rules."""
    return violation.rule == NONFINITE_RULE and prop_id != NONFINITE_OWNER


@dataclasses.dataclass
class Target:
    backend_spec: str  # as the user named it: replays with the same words
    backend: Backend
    caps: Capabilities
    dtype: str | None
    device: str
    effort: str  # quick / ci / thorough: how hard to search
    counterexample_dir: Path
    record: Result
    nodeid: str = ""
    seed: int | None = None
    example_timeout: float | None = None
    memory_limit: int | None = None
    aborted: BackendError | None = None  # a limit exceeded, or a compiled backend's crash
    last_failure: PropertyFailure | None = None
    crashed_on: Case | None = None  # the last case the backend raised on (before any failure)
    # Whether a known deviation excuses a violation (set by the plugin from --known-deviations).
    excused: Callable[[Violation], bool] | None = None
    excused_failure: PropertyFailure | None = None


def _absorb(record: Result, outcome: Outcome) -> None:
    record["examples"] += 1
    record["max_ratio"] = max(record["max_ratio"], outcome.max_ratio)
    if len(record["ratio_samples"]) < _MAX_SAMPLES:
        record["ratio_samples"].append(outcome.max_ratio)
    record["elements"] += outcome.elements
    record["exempt"] += outcome.exempt
    for key, value in outcome.figures.items():
        record["figures"][key] = max(record["figures"].get(key, 0.0), value)


def _count(record: Result, figure: str) -> None:
    """One more of the examples a record's ``figure`` counts."""
    record["figures"][figure] = record["figures"].get(figure, 0) + 1


def _case_for_target(case: Case, target: Target) -> Case:
    return case if case.device == target.device else case.replace(device=target.device)


def save_counterexample(target: Target, prop: Property, failure: PropertyFailure) -> Path:
    return _save_case(target, prop, failure.case, failure.label, failure.violation.describe(),
                      failure.violation.to_dict())


def _save_case(target: Target, prop: Property, case: Case | None, label: str, message: str,
               violation: dict | None) -> Path:
    """The counterexample file of a failure (its violation) or a crash (``label`` "error", no
    violation): what ``repro`` replays."""
    safe = target.backend.name.replace("/", "_").replace(":", "_")
    path = target.counterexample_dir / safe / f"{prop.id}-{target.dtype}-{target.device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": "rmsprop-conformance/counterexample/1",
        "backend": target.backend_spec,
        "property": prop.id,
        "dtype": target.dtype,
        "device": target.device,
        "label": label,
        "violation": violation,
        "message": message,
        "case": None if case is None else serialize.case_to_json(case),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


# Environment that decides which implementation a backend name loads, kept in the replay
# command when set: the Keras backend, and the path a user's module was imported from.
_REPLAY_ENV = ("KERAS_BACKEND", "PYTHONPATH")


def replay_command(path: Path) -> str:
    env = []
    for name in _REPLAY_ENV:
        value = os.environ.get(name)
        if value:
            if name == "PYTHONPATH":
                value = os.pathsep.join(_relative(p) for p in value.split(os.pathsep) if p)
            env.append(f"{name}={shlex.quote(value)} ")
    return f"{''.join(env)}rmsprop-conformance repro {shlex.quote(str(path))}"


def _relative(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it (a replay runs from
    the same directory as the certification, on another machine too)."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else path
    except ValueError:
        return path


def run_property(prop_id: str, target: Target) -> None:
    """Test property ``prop_id`` on ``target``: skip as unsupported, pass, or raise a failure."""
    prop = BY_ID[prop_id]
    record = target.record
    start = time.perf_counter()
    reason = unsupported_reason(prop, target.caps, target.dtype, target.device)
    if reason is not None:
        record["status"] = Status.UNSUPPORTED.value
        record["reason"] = reason
        pytest.skip(f"unsupported: {reason}")
    backend_start = guard.usage.backend_seconds
    try:
        with guard.limited(target.example_timeout, target.memory_limit):
            if prop.strategy is None:
                _absorb(record, prop.check(target.backend, target.caps, None))
            else:
                _search(prop, target)
            if target.aborted is not None:
                raise target.aborted
    except BackendTimeout as exc:
        record.update(status=Status.ERROR.value, message=str(exc))
        raise BackendTimeout(str(exc)) from None
    except PropertyFailure as failure:
        if failure.case is not None:
            # Once per failing target, on the final counterexample: the rule it breaks, from
            # follow-up cases (conformance/diagnosis.py).
            failure.violation = diagnosis.name_rule(target.backend, target.caps, failure.case,
                                                    failure.violation)
            failure.label = label_of(target.backend, target.caps, failure.case,
                                     failure.violation, prop.check)
        path = save_counterexample(target, prop, failure)
        record.update(status=Status.FAIL.value, label=failure.label, rule=failure.violation.rule,
                      message=failure.violation.describe(), counterexample=str(path),
                      replay=replay_command(path))
        if failure.violation.cause is not None:
            record["cause"] = failure.violation.cause
        raise PropertyFailure(prop.id, failure.violation, failure.case, failure.label) from None
    except BackendError as exc:
        record.update(status=Status.ERROR.value, message=str(exc))
        if target.crashed_on is not None:
            path = _save_case(target, prop, target.crashed_on, "error", str(exc), None)
            record.update(counterexample=str(path), replay=replay_command(path))
        raise
    except Flaky as exc:
        if target.aborted is not None:  # Hypothesis complains that the failure went away
            record.update(status=Status.ERROR.value, message=str(target.aborted))
            raise target.aborted from None
        # The same case failed once and passed when tried again: not deterministic (R25).
        seen = target.last_failure
        violation = Violation("R25", "value", "the same case gave different results on "
                              "different runs (Hypothesis could not reproduce its failure: "
                              f"{str(exc).splitlines()[0]}); first failure: "
                              + (seen.violation.describe() if seen else "-"))
        failure = PropertyFailure(prop.id, violation, seen.case if seen else None, "semantic")
        path = save_counterexample(target, prop, failure)
        record.update(status=Status.FAIL.value, label="semantic", rule="R25",
                      message=violation.describe(), counterexample=str(path),
                      replay=replay_command(path))
        raise failure from None
    finally:
        record["seconds"] = round(time.perf_counter() - start, 3)
        record["backend_seconds"] = round(guard.usage.backend_seconds - backend_start, 3)
    record["status"] = Status.PASS.value


def _without_shrink_warning(report: Callable[[object], None]) -> Callable[[object], None]:
    """Hypothesis's reporter, less the warning it prints when the shrink time box runs out: it
    says "more than five minutes" (its own default box) and that shrinking resumes next run,
    neither true of a time-boxed target, whose record says how long it shrank and whether the
    box cut it short."""
    def filtered(text: object) -> None:
        if not str(text).startswith("WARNING: Hypothesis has spent more than five minutes"):
            report(text)
    return filtered


def _search(prop: Property, target: Target) -> None:
    strategy = prop.strategy(target.caps, target.dtype, target.device)
    started = time.perf_counter()
    failed_at: list[float] = []  # when the first failure that is shrunk was found

    def example(case: Case) -> None:
        if target.aborted is not None:
            return
        case = _case_for_target(case, target)
        try:
            _absorb(target.record, prop.check(target.backend, target.caps, case))
        except BackendTimeout as exc:
            target.aborted = exc
        except BackendError as exc:
            if target.last_failure is not None:
                # While a failure is shrunk, a crash on a smaller case is not that failure:
                # raised, Hypothesis would report it instead (the smaller of two bugs), with
                # no case to replay and the failure lost, or not, as the time box fell.
                _count(target.record, "crashes_while_shrinking")
                reject()
            target.crashed_on = case  # shrinking calls again: the smallest crash is kept
            if not target.caps.compiled:
                raise
            # A compiled backend's crash ends the search at its first case: a failed
            # compilation is not cached, so each shrinking attempt would compile again, for a
            # verdict (error) that no smaller case changes.
            target.aborted = exc
        except PropertyFailure as failure:
            if not deferred_to_nonfinite_owner(prop.id, failure.violation):
                # Before shrinking: how much search it took to find the first failure.
                target.record.setdefault("first_failure", {
                    "examples": target.record["examples"] + 1,
                    "seconds": round(time.perf_counter() - started, 3)})
                if target.excused is not None and target.excused(failure.violation):
                    # A known deviation: its first case is reported as found (shrinking it
                    # again on every run would teach nothing), and the search goes on for
                    # failures the deviation does not excuse.
                    target.excused_failure = target.excused_failure or failure
                    _count(target.record, "excused_examples")
                    return
                if target.last_failure is None:
                    failed_at.append(time.perf_counter())
                target.last_failure = failure
                raise
            # A spurious non-finite value is P4's finding (R27); counting it here instead of
            # failing keeps this property testing its own rules on the remaining examples.
            _count(target.record, "r27_deferred_to_P4")
            reject()

    # One database key per target, so a stored counterexample replays for the right one.
    example._hypothesis_internal_add_digest = target.nodeid.encode()  # type: ignore[attr-defined]
    test = settings(settings_for(target.effort), report_multiple_bugs=False)(
        given(case=strategy)(example))
    if target.seed is not None:
        test = seed(target.seed)(test)
    elif settings_for(target.effort).derandomize:
        # Hypothesis derandomises from a digest of the test function's source, which is this
        # closure: an edit to it would change every ci search. Seeded from the target instead,
        # what is searched depends on the strategies and the target alone.
        test = seed(int.from_bytes(hashlib.sha256(target.nodeid.encode()).digest()[:8], "big"))(
            test)
    # Shrinking is time-boxed (Hypothesis reads this module constant when shrinking starts); a
    # cut-short shrink reports the smallest failing case found until then.
    limit = shrink_seconds_for(target.effort)
    target.record["shrink_limit_seconds"] = limit
    previous, engine.MAX_SHRINKING_SECONDS = engine.MAX_SHRINKING_SECONDS, limit
    try:
        with with_reporter(_without_shrink_warning(current_reporter())):
            test()
    finally:
        engine.MAX_SHRINKING_SECONDS = previous
        if failed_at:
            shrinking = time.perf_counter() - failed_at[0]
            target.record["shrink_seconds"] = round(shrinking, 3)
            target.record["shrink_cut_short"] = shrinking >= limit
    if target.excused_failure is not None:
        raise target.excused_failure
