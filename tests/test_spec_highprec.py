"""The oracle against a separate high-precision evaluation of the spec rules (mpmath, 60 digits).

``reference_step`` is written from the rules (SPEC R16–R22, the oracle's docstring) one scalar at
a time, sharing no code with spec/rmsprop.py. Each step both start from the same float64 inputs
(the reference's previous results rounded to float64); the oracle's float64 result must lie within
4 × its own float64 error bound (step_with_bounds(..., dtype=np.float64)) of the reference, for
the parameters and every state array. Cases keep eps >= 1e-6 so no denominator comes near 0, and
the bound is finite except where a trajectory grows huge (such examples are rejected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np
from hypothesis import HealthCheck, event, example, given, reject, settings
from hypothesis import strategies as st

from spec.rmsprop import HParams, ParamState, init_state, step, step_with_bounds
from tests import lowprec

DIGITS = 60
K = 4
TINY64 = float(np.finfo(np.float64).smallest_subnormal)


@dataclass
class Element:
    """One scalar parameter element: components (1 real, or re/im) and their state."""

    p: list    # parameter components
    v: list    # square_avg: one per component, or one per element under "modulus"
    gbar: list  # grad_avg components (centered)
    buf: list   # momentum_buffer components (momentum > 0)


def root(x: Fraction) -> Fraction:
    """sqrt of a non-negative exact rational, to DIGITS significant digits."""
    with mpmath.workdps(DIGITS):
        r = mpmath.sqrt(mpmath.mpf(x.numerator) / x.denominator)
    man, exp = r.man_exp
    return Fraction(int(man)) * Fraction(2) ** int(exp)


def reference_step(el: Element, g: list, t: int, hp: HParams, lr: float,
                   modulus: bool) -> Element:
    """One step of the spec rules for one element; t is the new step count.

    Exact rational arithmetic (``fractions``) except for the square root, which mpmath
    evaluates to DIGITS digits: differences such as v - ḡ² are exact, so an exact 0 stays 0.
    """
    a, eta, lam, mu, eps = (Fraction(x) for x in (hp.alpha, lr, hp.weight_decay, hp.momentum,
                                                  hp.eps))
    p, g = list(el.p), list(g)
    if hp.maximize and hp.maximize_order == "before_weight_decay":
        g = [-x for x in g]
    if hp.weight_decay_mode == "coupled":
        g = [x + lam * y for x, y in zip(g, p)]
    if hp.maximize and hp.maximize_order == "after_weight_decay":
        g = [-x for x in g]
    sq = [sum(x * x for x in g)] if modulus else [x * x for x in g]
    v = [a * x + (1 - a) * y for x, y in zip(el.v, sq)]
    gbar = [a * x + (1 - a) * y for x, y in zip(el.gbar, g)] if hp.centered else []
    corr = 1 - a**t if hp.bias_correction else Fraction(1)
    v_hat = [x / corr for x in v]
    w = list(v_hat)
    if hp.centered:
        gbar_hat = [x / corr for x in gbar]
        gsq = [sum(x * x for x in gbar_hat)] if modulus else [x * x for x in gbar_hat]
        # max(·, 0): a no-op on valid states (R30); a float64-rounded state may hold v a hair
        # below ḡ², and the rule (R20) then takes the nearest valid state's w = 0.
        w = [max(x - y, Fraction(0)) for x, y in zip(v_hat, gsq)]
    d = [root(x + eps) if hp.eps_in_sqrt else root(x) + eps for x in w]
    s = [x / (d[0] if modulus else d[i]) for i, x in enumerate(g)]
    if hp.weight_decay_mode == "decoupled":
        p = [x - eta * lam * x for x in p]
    buf: list = []
    if hp.momentum > 0:
        inc = [eta * x for x in s] if hp.lr_in_momentum else s
        buf = [mu * b + x for b, x in zip(el.buf, inc)]
        u = [x + mu * b for x, b in zip(inc, buf)] if hp.nesterov else buf
        p = [x - y for x, y in zip(p, u)] if hp.lr_in_momentum else [
            x - eta * y for x, y in zip(p, u)]
    else:
        p = [x - eta * y for x, y in zip(p, s)]
    return Element(p, v, gbar, buf)


def components(a: np.ndarray, i: int) -> list[float]:
    x = np.asarray(a).reshape(-1)[i]
    return [float(x.real), float(x.imag)] if np.iscomplexobj(a) else [float(x)]


def to_elements(theta: np.ndarray, st_: ParamState, modulus: bool) -> list[Element]:
    out = []
    for i in range(theta.size):
        v = components(st_.square_avg, i)
        out.append(Element(
            p=[Fraction(x) for x in components(theta, i)],
            v=[Fraction(x) for x in (v[:1] if modulus else v)],
            gbar=[] if st_.grad_avg is None else [Fraction(x) for x in
                                                  components(st_.grad_avg, i)],
            buf=[] if st_.momentum_buffer is None else [Fraction(x) for x in
                                                        components(st_.momentum_buffer, i)],
        ))
    return out


def from_elements(els: list[Element], shape: tuple, is_complex: bool, modulus: bool,
                  t: int, hp: HParams) -> tuple[np.ndarray, ParamState]:
    """The reference's results rounded to float64 (complex128), in the oracle's layout."""
    def arr(vals: list[list], cplx: bool) -> np.ndarray:
        if cplx:
            return np.array([complex(float(c[0]), float(c[1])) for c in vals],
                            dtype=np.complex128).reshape(shape)
        return np.array([float(c[0]) for c in vals], dtype=np.float64).reshape(shape)

    return arr([e.p for e in els], is_complex), ParamState(
        step=t,
        square_avg=arr([e.v for e in els], is_complex and not modulus),
        grad_avg=arr([e.gbar for e in els], is_complex) if hp.centered else None,
        momentum_buffer=arr([e.buf for e in els], is_complex) if hp.momentum > 0 else None,
    )


def as_pairs(a: np.ndarray) -> np.ndarray:
    """Real components on a trailing axis (the layout of the oracle's bounds)."""
    a = np.asarray(a)
    return np.stack([a.real, a.imag], axis=-1) if np.iscomplexobj(a) else a


values = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)


@st.composite
def cases(draw: st.DrawFn) -> dict:
    hp = draw(lowprec.hparams(min_eps=1e-6), label="hp")
    is_complex = draw(st.booleans(), label="complex")
    size = draw(st.integers(1, 3), label="size")
    n_steps = draw(st.integers(1, 4), label="n_steps")

    def array() -> np.ndarray:
        re = np.array(draw(st.lists(values, min_size=size, max_size=size)))
        if not is_complex:
            return re
        return re + 1j * np.array(draw(st.lists(values, min_size=size, max_size=size)))

    theta = array()
    grads = [array() for _ in range(n_steps)]
    lrs = None
    if draw(st.booleans(), label="lr schedule"):
        lrs = draw(st.lists(st.just(0.0) | lowprec.log_uniform(-4, 0.5), min_size=n_steps,
                            max_size=n_steps), label="lrs")
    return dict(hp=hp, theta=theta, grads=grads, lrs=lrs)


def check_close(name: str, oracle: np.ndarray | None, ref: np.ndarray | None,
                bound: np.ndarray | None, k: int, case: dict) -> None:
    assert (oracle is None) == (ref is None), name
    if oracle is None:
        return
    o, r = as_pairs(oracle), as_pairs(ref)
    b = np.reshape(bound, o.shape)  # square_avg under "modulus": bounds carry an axis of 1
    if not np.all(np.isfinite(b)):
        # Only where a trajectory has grown so large that float64 rounding of v - ḡ² may
        # reach eps (e.g. alpha = 0, weight decay 1, lr 1): no claim to compare with.
        event("infinite float64 bound")
        reject()
    err = np.abs(o - r)
    ok = (err <= K * b + TINY64) | (np.isnan(o) & np.isnan(r))
    assert np.all(ok), (f"{name} at step {k + 1}: oracle {o} vs mpmath {r}: |err| {err} > "
                        f"{K} x bound {b}\n  {case}")


# Exact w = 0 after one bias-corrected centered step; float64 rounding leaves w ~ 1e-15, whose
# root is not negligible beside eps = 1e-6: the oracle is 6% off exact math here, and its own
# float64 bound must say so.
CANCELLING = dict(hp=HParams.from_profile("torch", alpha=0.9, centered=True,
                                          bias_correction=True, eps=1e-6),
                  theta=np.zeros(2), grads=[np.array([-4.604265724722594, -3.0])], lrs=None)

# Exact w = alpha·(1 - alpha) = 1e-30 after one centered step, but float64 computes 1 - alpha = 1
# and w = 0: the oracle's root is below the exact one by 1e-15, relative 1e-14 of d = 0.1, far
# more than u; the bound of a root must cover a deviation upwards from the computed value.
TINY_ALPHA = dict(hp=HParams.from_profile("torch", alpha=1e-30, centered=True, eps=0.1, lr=1.0),
                  theta=np.zeros(1), grads=[np.ones(1)], lrs=None)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
@example(case=CANCELLING)
@example(case=TINY_ALPHA)
def test_oracle_matches_high_precision(case: dict) -> None:
    hp: HParams = case["hp"]
    theta = case["theta"]
    is_complex = np.iscomplexobj(theta)
    modulus = is_complex and hp.complex_mode == "modulus"
    state = init_state((theta,), hp)[0]
    for k, g in enumerate(case["grads"]):
        lr = None if case["lrs"] is None else case["lrs"][k]
        (p_o,), (s_o,) = step((theta,), (g,), (state,), hp, lr=lr)
        (p_b,), (s_b,), bounds = step_with_bounds((theta,), (g,), (state,), hp,
                                                  dtype=np.float64, lr=lr)
        # step and step_with_bounds are one computation: identical values.
        np.testing.assert_array_equal(p_o, p_b)
        np.testing.assert_array_equal(s_o.square_avg, s_b.square_avg)

        t = state.step + 1
        eta = hp.lr if lr is None else lr
        els = [reference_step(e, [Fraction(x) for x in components(g, i)], t, hp, eta, modulus)
               for i, e in enumerate(to_elements(theta, state, modulus))]
        p_r, s_r = from_elements(els, theta.shape, is_complex, modulus, t, hp)

        assert s_o.step == t
        check_close("params", p_o, p_r, bounds.params[0], k, case)
        check_close("square_avg", s_o.square_avg, s_r.square_avg, bounds.square_avg[0], k,
                    case)
        check_close("grad_avg", s_o.grad_avg, s_r.grad_avg, bounds.grad_avg[0], k, case)
        check_close("momentum_buffer", s_o.momentum_buffer, s_r.momentum_buffer,
                    bounds.momentum_buffer[0], k, case)
        theta, state = p_r, s_r  # both sides continue from the same float64 inputs


def test_reference_reproduces_the_seed() -> None:
    """The reference itself, on the seed's worked example (reference/seed.md)."""
    hp = HParams.from_profile("seed")
    # x and y as two components with their own square_avg (as real pairs are treated).
    el = Element([Fraction(40), Fraction(20)], [Fraction(0)] * 2, [], [])
    for t in range(1, 11):
        el = reference_step(el, [2 * el.p[0], 20 * el.p[1]], t, hp, hp.lr, False)
    # The seed's figures are float64 results: close to the exact ones, not equal.
    assert math.isclose(float(el.p[0]), 4.631545619435174, rel_tol=1e-12)
    assert math.isclose(float(el.p[1]), 0.013535081737891329, rel_tol=1e-12)
