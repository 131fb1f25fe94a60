"""A correct low-precision RMSProp and the gradient families that exercise it (test helper).

``step`` computes one step of the spec's update (R16–R22) for real arrays in one NumPy dtype
(float16, bfloat16 via ml_dtypes, float32, float64): every operation is a NumPy ufunc on arrays of
that dtype, so each result is correctly rounded to it, and the operations come in the order of the
oracle's docstring. Hyperparameters are rounded into the dtype first, as a framework does when it
builds a constant. It is written from the spec rules, not from the oracle's code, and is the
"implementation" whose error the oracle's bounds (spec.rmsprop.step_with_bounds) must cover.

One deliberate difference from a naive transcription: the centered variance v - ḡ² is clamped at
0 before the root. In exact arithmetic it is never negative (R30), so clamping never moves the
result away from exact math, and a conforming implementation must not turn rounding into a NaN
(R27). Without the clamp this would be PyTorch's centered-NaN defect, not a correct implementation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from spec.rmsprop import (
    COMPLEX_MODES,
    MAXIMIZE_ORDERS,
    PROFILES,
    WEIGHT_DECAY_MODES,
    HParams,
    ParamState,
    step_with_bounds,
)

DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}

# name -> what the family models; every family draws from a seeded NumPy generator.
GRADIENT_FAMILIES: dict[str, str] = {
    "normal": "i.i.d. standard normal, scaled",
    "heavy_tailed": "Student t with 1.5 degrees of freedom (occasional huge values), scaled",
    "nearly_constant": "one value per element plus relative noise of 1e-3",
    "tiny": "normal of scale 1e-4 (g² falls towards the subnormal range)",
    "sign_flipping": "a fixed magnitude whose sign alternates between steps",
    "near_limit": "magnitudes in [0.9, 1] times scale (give sqrt(dtype max): g² near overflow)",
}


def gradient_sequence(rng: np.random.Generator, family: str, shape: tuple[int, ...],
                      n_steps: int, scale: float = 1.0) -> np.ndarray:
    """``n_steps`` float64 gradients of ``shape`` from ``family``, stacked on axis 0."""
    full = (n_steps, *shape)
    if family == "normal":
        g = rng.standard_normal(full)
    elif family == "heavy_tailed":
        g = rng.standard_t(1.5, full)
    elif family == "nearly_constant":
        base = rng.standard_normal(shape) + np.sign(rng.standard_normal(shape))
        g = base * (1.0 + 1e-3 * rng.standard_normal(full))
    elif family == "tiny":
        g = 1e-4 * rng.standard_normal(full)
    elif family == "sign_flipping":
        mag = np.abs(rng.standard_normal(shape)) + 0.1
        signs = np.where(np.arange(n_steps) % 2 == 0, 1.0, -1.0)
        g = signs.reshape((n_steps,) + (1,) * len(shape)) * mag
    elif family == "near_limit":
        g = rng.uniform(0.9, 1.0, full) * np.where(rng.integers(0, 2, full) == 1, 1.0, -1.0)
    else:
        raise ValueError(f"unknown gradient family {family!r}; "
                         f"allowed: {', '.join(GRADIENT_FAMILIES)}")
    return g * scale


def rounded(x: Any, dtype: np.dtype) -> np.ndarray:
    """``x`` rounded to ``dtype`` (round to nearest even, through float64)."""
    return np.asarray(np.asarray(x, dtype=np.float64).astype(dtype))


def init_state(shape: tuple[int, ...], hp: HParams, dtype: np.dtype) -> ParamState:
    """R8: square_avg starts at initial_square_avg, grad_avg and momentum_buffer at 0."""
    zeros = np.zeros(shape, dtype=dtype)
    return ParamState(
        step=0,
        square_avg=np.full(shape, hp.initial_square_avg, dtype=np.float64).astype(dtype),
        grad_avg=zeros.copy() if hp.centered else None,
        momentum_buffer=zeros.copy() if hp.momentum > 0 else None,
    )


class Forms(NamedTuple):
    """How a correct implementation evaluates the formulas: every form SPEC R17/R31b permits.

    - ``ema`` (square_avg and grad_avg): "spec" α·a + (1 − α)·b; "fma_spec" fma(α, a, (1 − α)·b);
      "lerp" a + (1 − α)(b − a); "fma_lerp" fma(1 − α, b − a, a); "two_branch" torch's
      ``lerp``: the lerp for weights < 1/2, else b − (b − a)·(1 − weight).
    - ``quotient`` (s = g/d): "divide"; "reciprocal" g·(1/d); "rsqrt" g·r with r a faithfully
      rounded 1/sqrt(w + ε) (the neighbour of the exact value farther from it: within one ulp;
      only where eps_in_sqrt, otherwise it divides).
    - ``lr_times``: "eta_s" η·(g/d) or "eta_g_over_d" (η·g)/d.
    - ``decay`` (decoupled weight decay): "difference" θ − (ηλ)·θ or "factor" θ·(1 − ηλ).
    - ``accumulate``: None (every operation in the dtype) or "float32": float16/bfloat16 inputs
      computed in float32, the results rounded to the dtype.
    """

    ema: str = "spec"
    quotient: str = "divide"
    lr_times: str = "eta_s"
    decay: str = "difference"
    accumulate: str | None = None


SPEC_FORMS = Forms()


def step(theta: np.ndarray, grad: np.ndarray, state: ParamState, hp: HParams,
         dtype: np.dtype, lr: float | None = None, forms: Forms = SPEC_FORMS,
         ) -> tuple[np.ndarray, ParamState]:
    """One step for one real parameter, every operation rounded to ``dtype`` (in ``forms``)."""
    dt = np.dtype(dtype)
    with np.errstate(all="ignore"):  # IEEE results (inf, NaN) are the point, not a warning
        if forms.accumulate is None or dt.itemsize >= 4:
            return _step(theta, grad, state, hp, dt, lr, forms)
        wide = np.dtype(forms.accumulate)
        up = lambda a: None if a is None else np.asarray(a).astype(wide)  # noqa: E731
        down = lambda a: None if a is None else np.asarray(a).astype(dt)  # noqa: E731
        t, s = _step(up(theta), up(grad), ParamState(state.step, up(state.square_avg),
                                                     up(state.grad_avg),
                                                     up(state.momentum_buffer)),
                     hp, wide, lr, forms)
        return down(t), ParamState(s.step, down(s.square_avg), down(s.grad_avg),
                                   down(s.momentum_buffer))


def _ulp(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    """The spacing of ``dt``'s numbers at |x| (normal range)."""
    u = dtype_unit_roundoff(dt)
    _, e = np.frexp(np.abs(x.astype(np.float64)))
    return np.ldexp(2.0 * u, e - 1)


def dtype_unit_roundoff(dt: np.dtype) -> float:
    fi = ml_dtypes.finfo(dt) if dt == DTYPES["bfloat16"] else np.finfo(dt)
    return float(fi.eps) / 2


def _fused(x: np.ndarray, y: np.ndarray, z: np.ndarray, dt: np.dtype) -> np.ndarray:
    """fma(x, y, z) = x·y + z rounded once to ``dt`` (float64 holds x·y exactly for dt < 64)."""
    return rounded(x.astype(np.float64) * y.astype(np.float64) + z.astype(np.float64), dt)


def ema(a: np.ndarray, b: np.ndarray, alpha: np.ndarray, one_minus_alpha: np.ndarray,
        dt: np.dtype, form: str) -> np.ndarray:
    """α·a + (1 − α)·b in ``form`` (see ``Forms``), every operation rounded to ``dt``."""
    if form == "spec":
        return alpha * a + one_minus_alpha * b
    if form == "fma_spec":
        return _fused(alpha, a, one_minus_alpha * b, dt)
    if form == "lerp":
        return a + one_minus_alpha * (b - a)
    if form == "fma_lerp":
        return _fused(one_minus_alpha, b - a, a, dt)
    if form == "two_branch":
        weight = one_minus_alpha
        if float(weight) < 0.5:
            return a + weight * (b - a)
        return b - (b - a) * (rounded(1.0, dt) - weight)
    raise ValueError(f"unknown ema form {form!r}")


def quotient(g: np.ndarray, w_eps: np.ndarray | None, d: np.ndarray, dt: np.dtype,
             form: str) -> np.ndarray:
    """g/d in ``form``; ``w_eps`` is w + ε when d = sqrt(w + ε) (for "rsqrt")."""
    if form == "divide" or (form == "rsqrt" and w_eps is None):
        return g / d
    if form == "reciprocal":
        return g * (rounded(1.0, dt) / d)
    if form == "rsqrt":
        exact = 1.0 / np.sqrt(w_eps.astype(np.float64))
        near = rounded(exact, dt)
        with np.errstate(invalid="ignore"):
            step_ = np.where(near.astype(np.float64) > exact, -1.0, 1.0) * _ulp(near, dt)
            far = rounded(near.astype(np.float64) + step_, dt)
        ok = np.isfinite(exact) & (exact != near.astype(np.float64)) & (exact > 0)
        return g * np.where(ok, far, near)
    raise ValueError(f"unknown quotient form {form!r}")


def _step(theta: np.ndarray, grad: np.ndarray, state: ParamState, hp: HParams,
          dt: np.dtype, lr: float | None, forms: Forms = SPEC_FORMS
          ) -> tuple[np.ndarray, ParamState]:

    def c(x: float) -> np.ndarray:  # a hyperparameter as a constant of the dtype
        return rounded(x, dt)

    theta = np.asarray(theta, dtype=dt)
    g = np.asarray(grad, dtype=dt)
    t = state.step + 1
    alpha = c(hp.alpha)
    one_minus_alpha = c(1.0) - alpha
    eta = c(hp.lr if lr is None else lr)

    if hp.maximize and hp.maximize_order == "before_weight_decay":
        g = -g
    if hp.weight_decay != 0 and hp.weight_decay_mode == "coupled":
        g = g + c(hp.weight_decay) * theta
    if hp.maximize and hp.maximize_order == "after_weight_decay":
        g = -g

    v = ema(np.asarray(state.square_avg, dtype=dt), g * g, alpha, one_minus_alpha, dt,
            forms.ema)
    gbar = None
    if hp.centered:
        gbar = ema(np.asarray(state.grad_avg, dtype=dt), g, alpha, one_minus_alpha, dt,
                   forms.ema)

    v_hat, gbar_hat = v, gbar
    if hp.bias_correction:
        # alpha**t by t - 1 multiplications of the rounded alpha: the least accurate way a
        # straightforward implementation may take.
        alpha_t = alpha
        for _ in range(t - 1):
            alpha_t = alpha_t * alpha
        correction = c(1.0) - alpha_t
        v_hat = v / correction
        if hp.centered:
            gbar_hat = gbar / correction

    w = v_hat
    if hp.centered:
        w = np.maximum(v_hat - gbar_hat * gbar_hat, c(0.0))
    w_eps = w + c(hp.eps) if hp.eps_in_sqrt else None
    d = np.sqrt(w_eps) if hp.eps_in_sqrt else np.sqrt(w) + c(hp.eps)
    s = quotient(g, w_eps, d, dt, forms.quotient)

    def eta_s() -> np.ndarray:
        if forms.lr_times == "eta_g_over_d":
            return (eta * g) / d
        return eta * s

    if hp.weight_decay != 0 and hp.weight_decay_mode == "decoupled":
        if forms.decay == "factor":
            theta = theta * (c(1.0) - eta * c(hp.weight_decay))
        else:
            theta = theta - (eta * c(hp.weight_decay)) * theta

    buf = None
    if hp.momentum > 0:
        mu = c(hp.momentum)
        inc = eta_s() if hp.lr_in_momentum else s
        buf = mu * np.asarray(state.momentum_buffer, dtype=dt) + inc
        u = inc + mu * buf if hp.nesterov else buf
        theta = theta - u if hp.lr_in_momentum else theta - eta * u
    else:
        theta = theta - eta_s()
    return theta, ParamState(step=t, square_avg=v, grad_avg=gbar, momentum_buffer=buf)


def as_float64(state: ParamState) -> ParamState:
    """The state with its arrays converted (exactly) to float64, for the oracle."""
    def f(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a).astype(np.float64)

    return ParamState(state.step, f(state.square_avg), f(state.grad_avg), f(state.momentum_buffer))


FIELDS = ("params", "square_avg", "grad_avg", "momentum_buffer")


class Judged(NamedTuple):
    """One array of one step: |impl - exact|, the oracle's bound, and where the bound applies."""

    field: str
    impl: np.ndarray
    exact: np.ndarray
    err: np.ndarray
    bound: np.ndarray
    judged: np.ndarray  # exact finite, no overflow flagged, bound finite

    def violations(self, tiny: float) -> np.ndarray:
        """Judged elements outside ``bound + tiny`` (K = 1); NaN errors count as outside."""
        return self.judged & ~(self.err <= self.bound + tiny)

    def ratios(self) -> np.ndarray:
        """err / bound over the judged elements with a non-zero bound."""
        keep = self.judged & (self.bound > 0)
        return self.err[keep] / self.bound[keep]


def judged_step(theta: np.ndarray, grad: np.ndarray, state: ParamState, hp: HParams,
                dtype: np.dtype, lr: float | None = None, forms: Forms = SPEC_FORMS,
                ) -> tuple[np.ndarray, ParamState, list[Judged]]:
    """This module's step beside the oracle's exact step and bounds, from the same inputs.

    ``theta``, ``grad`` and ``state`` are arrays in ``dtype``; the oracle gets them converted
    (exactly) to float64. Returns the low-precision result (to re-align the next step on) and the
    comparison of every array the step produces.
    """
    new_theta, new_state = step(theta, grad, state, hp, dtype, lr, forms)
    (p64,), (s64,), bounds = step_with_bounds(
        (np.asarray(theta).astype(np.float64),), (np.asarray(grad).astype(np.float64),),
        (as_float64(state),), hp, dtype, lr)
    overflow = bounds.overflow[0]
    out = []
    for name in FIELDS:
        impl = new_theta if name == "params" else getattr(new_state, name)
        if impl is None:
            continue
        exact = p64 if name == "params" else getattr(s64, name)
        bound = getattr(bounds, name)[0]
        impl = np.asarray(impl).astype(np.float64)
        with np.errstate(invalid="ignore"):
            err = np.abs(impl - exact)
        judged = np.isfinite(exact) & ~overflow & np.isfinite(bound)
        out.append(Judged(name, impl, exact, err, bound, judged))
    return new_theta, new_state, out


# --------------------------------------------------------------------------------------------------
# Hypothesis strategies shared by the spec tests.
# --------------------------------------------------------------------------------------------------
def log_uniform(lo_exp: float, hi_exp: float) -> st.SearchStrategy[float]:
    return st.floats(lo_exp, hi_exp).map(lambda e: float(10.0**e))


@st.composite
def hparams(draw: st.DrawFn, *, plain: bool = False, min_eps: float = 0.0,
            min_alpha: float = 0.0, max_alpha: float = 1.0) -> HParams:
    """Any valid configuration: every profile, every flag, every convention axis.

    Axes are either left at the profile's value or overridden. ``plain`` draws the
    well-conditioned family only (no centering, momentum, weight decay or bias correction,
    alpha <= max_alpha). ``min_eps`` keeps eps away from 0.
    """
    profile = draw(st.sampled_from(PROFILES), label="profile")
    alpha_choices = [a for a in (0.0, 0.5, 0.9, 0.99, 0.999, 1.0)
                     if min_alpha <= a <= max_alpha]
    o: dict[str, Any] = {
        "lr": draw(st.just(0.0) | log_uniform(-4, 0.5) if not plain else log_uniform(-4, 0),
                   label="lr"),
        "alpha": draw(st.sampled_from(alpha_choices) | st.floats(min_alpha, max_alpha),
                      label="alpha"),
        "eps": draw((st.just(0.0) if min_eps == 0 else st.nothing())
                    | log_uniform(max(-10, np.log10(min_eps or 1e-10)), -1), label="eps"),
        "maximize": draw(st.booleans(), label="maximize"),
    }
    if not plain:
        o["centered"] = draw(st.booleans(), label="centered")
        o["momentum"] = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99]) | st.floats(0.0, 0.99),
                             label="momentum")
        o["nesterov"] = draw(st.booleans(), label="nesterov")
        o["weight_decay"] = draw(st.just(0.0) | log_uniform(-4, 0), label="weight_decay")
        if o["alpha"] < 1.0:
            o["bias_correction"] = draw(st.booleans(), label="bias_correction")
    axes = {
        "eps_in_sqrt": st.booleans(),
        "initial_square_avg": st.sampled_from([0.0, 1.0]),
        "lr_in_momentum": st.booleans(),
        "weight_decay_mode": st.sampled_from(WEIGHT_DECAY_MODES),
        "maximize_order": st.sampled_from(MAXIMIZE_ORDERS),
        "complex_mode": st.sampled_from(COMPLEX_MODES),
    }
    for name, strategy in axes.items():
        if draw(st.booleans(), label=f"override {name}"):
            o[name] = draw(strategy, label=name)
    return HParams.from_profile(profile, **o)
