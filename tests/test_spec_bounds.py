"""The oracle's error bound (spec.rmsprop.step_with_bounds, SPEC R31) is sound and useful.

Sound: a correct implementation computing in float32, float16 or bfloat16 (tests/lowprec.py: the
spec rules, every operation rounded to the dtype) stays, step by step and from the same inputs,
within the bound with K = 1: |impl - exact| <= bound + smallest subnormal, for the parameters and
every state array, wherever the exact result is finite and no overflow is flagged. Each step is
re-aligned on the implementation's own previous state, as the harness judges backends.

Useful: on well-conditioned inputs the bound is finite and a small multiple of the unit roundoff.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec.rmsprop import HParams, dtype_info, step_with_bounds
from tests import lowprec

LOW_DTYPES = ("float32", "float16", "bfloat16")


@st.composite
def runs(draw: st.DrawFn, max_steps: int = 6) -> dict:
    """A generated multi-step run: hyperparameters, gradient family, sizes, optional schedule."""
    hp = draw(lowprec.hparams(), label="hp")
    n_steps = draw(st.integers(1, max_steps), label="n_steps")
    lrs = None
    if draw(st.booleans(), label="lr schedule"):
        lrs = draw(st.lists(st.just(0.0) | lowprec.log_uniform(-4, 0.5), min_size=n_steps,
                            max_size=n_steps), label="lrs")
    return dict(
        hp=hp,
        family=draw(st.sampled_from(sorted(lowprec.GRADIENT_FAMILIES)), label="family"),
        size=draw(st.integers(1, 8), label="size"),
        n_steps=n_steps,
        lrs=lrs,
        grad_scale=draw(st.sampled_from([1.0, 1e-2, 10.0]), label="grad_scale"),
        param_scale=draw(st.sampled_from([1.0, 1e-3, 100.0]), label="param_scale"),
        seed=draw(st.integers(0, 2**32 - 1), label="seed"),
    )


def check_run(run: dict, dtype_name: str, forms: lowprec.Forms = lowprec.SPEC_FORMS) -> float:
    """Re-aligned steps of lowprec.step against the oracle; the largest err/bound seen.

    Fails with the exact input of the first violating step (state, gradient, lr, element).
    """
    dtype = lowprec.DTYPES[dtype_name]
    hp: HParams = run["hp"]
    rng = np.random.default_rng(run["seed"])
    shape = (run["size"],)
    info = dtype_info(dtype)
    # near_limit gradients are scaled so that g² approaches the dtype's largest finite value.
    scale = np.sqrt(info.max) if run["family"] == "near_limit" else run["grad_scale"]
    grads = lowprec.gradient_sequence(rng, run["family"], shape, run["n_steps"], scale)
    theta = lowprec.rounded(run["param_scale"] * rng.standard_normal(shape), dtype)
    state = lowprec.init_state(shape, hp, dtype)
    tiny = info.tiny
    worst = 0.0
    for k in range(run["n_steps"]):
        g = lowprec.rounded(grads[k], dtype)
        lr = None if run["lrs"] is None else run["lrs"][k]
        new_theta, new_state, judged = lowprec.judged_step(theta, g, state, hp, dtype, lr,
                                                           forms)
        for j in judged:
            bad = np.flatnonzero(j.violations(tiny))
            if bad.size:
                i = int(bad[0])
                pytest.fail(
                    f"bound unsound for {j.field}[{i}] in {dtype_name} at step {k + 1} "
                    f"({forms}): "
                    f"impl={j.impl[i]!r} exact={j.exact[i]!r} |err|={j.err[i]!r} "
                    f"bound={j.bound[i]!r}\n  hp={hp}\n  lr={lr!r}\n"
                    f"  theta={theta.astype(np.float64)[i]!r} grad={g.astype(np.float64)[i]!r}\n"
                    f"  state={lowprec.as_float64(state)}")
            if j.ratios().size:
                worst = max(worst, float(j.ratios().max()))
        theta, state = new_theta, new_state
    return worst


@pytest.mark.parametrize("dtype_name", LOW_DTYPES)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
def test_bound_is_sound(dtype_name: str, run: dict) -> None:
    check_run(run, dtype_name)


@pytest.mark.slow
@pytest.mark.parametrize("dtype_name", LOW_DTYPES)
@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs(max_steps=12))
def test_bound_is_sound_thorough(dtype_name: str, run: dict) -> None:
    check_run(run, dtype_name)


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
@pytest.mark.parametrize("profile", ["torch", "optax", "keras"])
def test_bound_is_sound_for_centered_nearly_constant_gradients(profile: str,
                                                               eps_in_sqrt: bool) -> None:
    """The centered hazard (conventions.md): v - ḡ² cancels over hundreds of steps at alpha=0.9.

    256 elements, 400 steps in float32: the variance shrinks towards the rounding error of v and
    ḡ², which is where the bound must widen (and may become infinite) rather than understate.
    """
    run = dict(hp=HParams.from_profile(profile, alpha=0.9, centered=True,
                                       eps_in_sqrt=eps_in_sqrt),
               family="nearly_constant", size=256, n_steps=400, lrs=None, grad_scale=1.0,
               param_scale=1.0, seed=20240 + eps_in_sqrt)
    check_run(run, "float32")


def assert_sound(theta: np.ndarray, grad: np.ndarray, state: lowprec.ParamState, hp: HParams,
                 dtype: np.dtype) -> None:
    _, _, judged = lowprec.judged_step(theta, grad, state, hp, dtype)
    for j in judged:
        assert not j.violations(dtype_info(dtype).tiny).any(), (
            f"{j.field}: impl={j.impl} exact={j.exact} |err|={j.err} bound={j.bound}")


def test_bound_is_sound_where_the_centered_variance_is_exactly_zero() -> None:
    """From a state with v = ḡ² = g² (exact in float32) and gradient g, exact math gives w = 0.

    A float32 implementation computes w from rounded alpha·v + (1-alpha)·g² and ḡ², so it may
    find w of the order of u·g² > 0, whose root (~sqrt(u)·|g|) dwarfs eps = 1e-8: the update
    shrinks by orders of magnitude. The bound of a root must allow for this upward deviation
    (sqrt(w + e) - sqrt(w) exceeds sqrt(w) - sqrt(max(w - e, 0)) when e > 3w).
    """
    dtype = np.dtype(np.float32)
    hp = HParams.from_profile("torch", alpha=0.9, centered=True)
    g = np.array([4091 / 2048], dtype=dtype)  # 12 significant bits: g² is exact in float32
    assert_sound(np.ones(1, dtype), g, lowprec.ParamState(10, g * g, g.copy(), None), hp, dtype)


def test_overflow_flag_covers_intermediates_whose_error_reaches_the_limit() -> None:
    """float16, bias correction at step 1 with alpha = 0.99: v̂ = v / (1 - alpha).

    Exact math gives v̂ = 65502.46, just below float16's largest value 65504, so no overflow is
    flagged; but v's error bound (1 - alpha rounded to float16 is 0.009766, not 0.01) reaches
    past the limit, and the float16 quotient 640 / 0.009766 = 65536 rounds to inf, which makes
    the update 0. Either the bound covers that or the element is flagged as overflowing (R26).
    """
    dtype = np.dtype(np.float16)
    hp = HParams.from_profile("tf1", alpha=0.99, bias_correction=True, weight_decay=0.01)
    assert_sound(np.array([0.89892578125], dtype), np.array([-255.75], dtype),
                 lowprec.init_state((1,), hp, dtype), hp, dtype)


def well_conditioned_grads(rng: np.random.Generator, n: int) -> np.ndarray:
    """Normal gradients kept at least 0.1 away from 0 (no underflow of g² in any dtype)."""
    z = rng.standard_normal(n)
    return np.sign(z) * (0.1 + np.abs(z))


@pytest.mark.parametrize("dtype_name", LOW_DTYPES)
@settings(max_examples=100, deadline=None)
@given(hp=lowprec.hparams(plain=True, min_alpha=0.5, max_alpha=0.9),
       seed=st.integers(0, 2**32 - 1), n_steps=st.integers(1, 3))
def test_bound_is_not_vacuous(dtype_name: str, hp: HParams, seed: int, n_steps: int) -> None:
    """Plain RMSProp, well-conditioned: bound <= 100·u·(|θ| + |update|) for the parameters.

    For alpha >= 1/2. Below, the lerp form R17 permits loses u·|v_old| on v, which at alpha = 0
    after a large gradient is many times v itself: the bound is as wide as that form's real
    error there (test_spec_forms.py shows a lerp implementation using most of it)."""
    dtype = lowprec.DTYPES[dtype_name]
    info = dtype_info(dtype)
    rng = np.random.default_rng(seed)
    theta = lowprec.rounded(rng.standard_normal(4), dtype)
    state = lowprec.init_state((4,), hp, dtype)
    for _ in range(n_steps):
        g = lowprec.rounded(well_conditioned_grads(rng, 4), dtype)
        theta64 = theta.astype(np.float64)
        (new,), _, bounds = step_with_bounds((theta64,), (g.astype(np.float64),),
                                             (lowprec.as_float64(state),), hp, dtype)
        budget = 100 * info.unit_roundoff * (np.abs(theta64) + np.abs(new - theta64))
        assert np.all(np.isfinite(bounds.params[0]))
        assert np.all(bounds.params[0] <= budget + 20 * info.tiny), (
            f"bound {bounds.params[0]} > 100·u·(|θ|+|update|) = {budget}")
        theta, state = lowprec.step(theta, g, state, hp, dtype)
