"""The tolerance model (conformance/tolerance.py, SPEC §8): what it accepts and what it rejects.

Trajectories here are built by hand from the oracle's own float64 results rounded into the case
dtype (a correct implementation's answer up to one rounding), then perturbed in known ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.case import Case, Trajectory
from conformance.tolerance import K, judge
from spec.rmsprop import HParams, ParamState, run


def _case(dtype=np.float32, steps=3, **hp) -> Case:
    rng = np.random.default_rng(7)
    hparams = HParams.from_profile("torch", **hp)
    params = (rng.normal(size=(4,)).astype(dtype),)
    grads = tuple((rng.normal(size=(4,)).astype(dtype),) for _ in range(steps))
    return Case(hparams, params, grads)


def _rounded_trajectory(case: Case, with_state: bool = True) -> Trajectory:
    ps, ss = run(case.params, case.grads, case.hp, case.lrs)
    dt = case.params[0].dtype

    def cast(st: ParamState) -> ParamState:
        conv = lambda a: None if a is None else np.asarray(a).astype(dt)  # noqa: E731
        return ParamState(st.step, conv(st.square_avg), conv(st.grad_avg),
                          conv(st.momentum_buffer))

    return Trajectory([tuple(p.astype(dt) for p in pp) for pp in ps],
                      [tuple(cast(s) for s in st) for st in ss] if with_state else None)


@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("flags", [{}, {"centered": True, "momentum": 0.9, "weight_decay": 0.1}])
def test_correctly_rounded_answer_passes(flags, with_state):
    case = _case(**flags)
    j = judge(case, _rounded_trajectory(case, with_state))
    assert j.ok, [v.describe() for v in j.violations]
    assert 0 < j.max_ratio <= K


def test_an_error_of_a_few_ulps_in_float64_is_a_value_violation_naming_the_field():
    case = _case(np.float64, steps=1)
    traj = _rounded_trajectory(case)
    p = traj.params[0][0].copy()
    p[2] = p[2] * (1 + 1e-9)  # ~ 4.5e6 ulps: far outside any float64 rounding bound
    traj.params[0] = (p,)
    j = judge(case, traj)
    assert not j.ok
    v = j.violations[0]
    assert (v.rule, v.kind, v.field, v.index, v.step) == ("R21", "value", "params", (2,), 0)
    assert abs(v.observed - v.expected) > K * v.bound


def test_wrong_square_avg_names_rule_r17():
    case = _case(steps=1)
    traj = _rounded_trajectory(case)
    st = traj.states[0][0]
    traj.states[0] = (st._replace(square_avg=st.square_avg * np.float32(1.01)),)
    v = judge(case, traj).violations[0]
    assert (v.rule, v.field) == ("R17", "square_avg")


def test_nan_where_exact_math_is_finite_is_a_numerical_r27_violation():
    case = _case(steps=1)
    traj = _rounded_trajectory(case, with_state=False)
    p = traj.params[0][0].copy()
    p[0] = np.nan
    traj.params[0] = (p,)
    v = judge(case, traj).violations[0]
    assert (v.rule, v.kind, v.numerical) == ("R27", "spurious_nonfinite", True)


def test_a_sanitised_nan_gradient_is_an_r26_violation():
    case = _case(steps=1)
    g = case.grads[0][0].copy()
    g[1] = np.nan
    case = case.replace(grads=((g,),))
    traj = _rounded_trajectory(case, with_state=False)
    p = traj.params[0][0].copy()
    p[1] = case.params[0][1]  # the NaN gradient treated as 0: the parameter "stays"
    traj.params[0] = (p,)
    v = judge(case, traj).violations[0]
    assert (v.rule, v.kind, v.index) == ("R26", "sanitised_nonfinite", (1,))
    # Propagating the NaN conforms.
    assert judge(case, _rounded_trajectory(case, with_state=False)).ok


def test_state_structure_missing_field_and_wrong_step_count():
    case = _case(steps=1, centered=True)
    traj = _rounded_trajectory(case)
    st = traj.states[0][0]
    traj.states[0] = (st._replace(grad_avg=None),)
    v = judge(case, traj).violations[0]
    assert (v.rule, v.field) == ("R14", "grad_avg")
    traj = _rounded_trajectory(case)
    traj.states[0] = (st._replace(step=0),)
    v = judge(case, traj).violations[0]
    assert (v.rule, v.field) == ("R15", "step")


def test_wrong_number_of_steps_or_dtype_is_structural():
    case = _case(steps=2)
    traj = _rounded_trajectory(case)
    assert judge(case, Trajectory(traj.params[:1], traj.states[:1])).violations[0].kind == \
        "structure"
    traj.params[0] = (traj.params[0][0].astype(np.float64),)
    v = judge(case, traj).violations[0]
    assert (v.rule, v.kind) == ("R14", "structure")


def test_re_alignment_judges_each_step_from_the_implementations_own_state():
    """An implementation whose state drifts by a rounding error at step 0 is judged at step 1
    from that drifted state, not from the exact trajectory: no compounding false alarm."""
    case = _case(np.float16, steps=2, momentum=0.9)
    traj = _rounded_trajectory(case)
    st = traj.states[0][0]
    nudged = np.nextafter(st.momentum_buffer, np.float16(np.inf))
    traj.states[0] = (st._replace(momentum_buffer=nudged),)
    # Step 1 recomputed from the nudged state (exactly what a correct implementation would do).
    ps, ss = run(traj.params[0], case.grads[1:], case.hp, state=traj.states[0])
    traj.params[1] = tuple(p.astype(np.float16) for p in ps[0])
    traj.states[1] = tuple(ParamState(s.step, s.square_avg.astype(np.float16), None,
                                      s.momentum_buffer.astype(np.float16)) for s in ss[0])
    j = judge(case, traj)
    assert j.ok, [v.describe() for v in j.violations]
