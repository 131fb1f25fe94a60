"""The tolerance model (conformance/tolerance.py, SPEC §8): what it accepts and what it rejects.

Trajectories here are built by hand from the oracle's own float64 results rounded into the case
dtype (a correct implementation's answer up to one rounding), then perturbed in known ways.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance import strategies as S
from conformance.case import Case, Trajectory
from conformance.tolerance import K, _oracle, judge
from spec.rmsprop import HParams, ParamState, init_state, run, step_with_bounds
from tests.test_strategies import DTYPES, FEATURES, PROFILES, caps_with


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


def _same_arrays(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _same_steps(joined, alone) -> bool:
    (jp,), (js,), jb = joined
    (ap,), (as_,), ab = alone
    return (_same_arrays(jp, ap) and js.step == as_.step
            and all(_same_arrays(getattr(js, f), getattr(as_, f))
                    for f in ("square_avg", "grad_avg", "momentum_buffer"))
            and all(_same_arrays(x[0], y[0]) for x, y in zip(jb, ab)))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data(), st.sampled_from(DTYPES), st.sampled_from(PROFILES), st.booleans())
def test_the_oracle_joining_alike_parameters_gives_each_its_own_values_and_bounds(
        data, dtype, profile, nonfinite):
    """One oracle call for the parameters of a step that are alike (tolerance._oracle) gives
    every parameter, bit for bit, what a call of its own gives: values, state, bounds and
    overflow, from a fresh or a drawn state, with chained state errors, with steps stacked on a
    leading axis, for mixed dtypes, shapes (0-d, zero-size), complex parameters and non-finite
    gradients, parameters at different steps."""
    caps = caps_with(profile, FEATURES, DTYPES)
    case = data.draw(S.cases(caps, dtype, multi_param=True, mixed_dtypes=True, min_steps=2,
                             max_steps=2, initial_state=data.draw(st.booleans()),
                             allow_nonfinite=nonfinite, max_size=16))
    hp, params = case.hp, case.params
    state = case.initial_state or init_state(params, hp)
    if data.draw(st.booleans()):  # parameters at different steps (bias correction tells them)
        state = tuple(s._replace(step=s.step + i) for i, s in enumerate(state))

    def alone(ps, gs, sts, errs=None, dtypes=None):
        return [step_with_bounds([p], [g], [s], hp, dtype=np.asarray(p).dtype if dtypes is None
                                 else dtypes[i], lr=case.lr_at(0),
                                 state_err=None if errs is None else [errs[i]])
                for i, (p, g, s) in enumerate(zip(ps, gs, sts))]

    first = alone(params, case.grads[0], state)
    assert all(map(_same_steps, _oracle(hp, case.lr_at(0), params, case.grads[0], state),
                   first))
    # The next step from the exact state, with the first step's bounds as its state errors.
    exact = [es[0] for _, es, _ in first]
    errs = [ParamState(0, K * b.square_avg[0],
                       None if b.grad_avg[0] is None else K * b.grad_avg[0],
                       None if b.momentum_buffer[0] is None else K * b.momentum_buffer[0])
            for _, _, b in first]
    nxt = [ep[0] for ep, _, _ in first]
    assert all(map(_same_steps, _oracle(hp, case.lr_at(0), nxt, case.grads[1], exact, errs),
                   alone(nxt, case.grads[1], exact, errs)))
    # Both steps stacked on a leading axis (in float64/complex128), bounds in each parameter's
    # own dtype, as the judge stacks a trajectory with state read-out.
    wide = [np.complex128 if p.dtype.kind == "c" else np.float64 for p in params]
    rows = [np.stack([np.asarray(a, dtype=w), np.asarray(b, dtype=w)])
            for a, b, w in zip(params, nxt, wide)]
    grads = [np.stack([np.asarray(a, dtype=w), np.asarray(b, dtype=w)])
             for a, b, w in zip(case.grads[0], case.grads[1], wide)]
    sts = [ParamState(s.step, *(None if getattr(s, f) is None else
                                np.stack([getattr(s, f), getattr(e, f)]).astype(
                                    np.result_type(getattr(s, f), getattr(e, f)))
                                for f in ("square_avg", "grad_avg", "momentum_buffer")))
           for s, e in zip(state, exact)]
    dtypes = [p.dtype for p in params]
    assert all(map(_same_steps, _oracle(hp, case.lr_at(0), rows, grads, sts, lead=1,
                                        dtypes=dtypes),
                   alone(rows, grads, sts, dtypes=dtypes)))
