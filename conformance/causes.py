"""Why an implementation returned a non-finite value where exact math is finite (R27).

A spurious NaN or infinity is classified by the mechanism that explains it, computed from the
exact values of the failing step: the implementation's own inputs (its parameters and state after
the previous step, re-aligned), the exact step on them, and the state it returned. A mechanism
that needs the returned state is accepted only when that state itself conforms (every element of
square_avg and grad_avg within its bound): a wrong state is a wrong formula, not a mechanism.

- ``centered-negative``: centered, and the variance v̂ − |ḡ̂|² of the returned state is negative,
  exactly or as the dtype rounds it (fl(v̂) − fl(ḡ̂·ḡ̂)), or exactly so close to 0 that the
  rounding of a correct computation in the dtype reaches below it (``_rounding_reach``), so an
  unclamped sqrt gives NaN (R30);
- ``eps-underflow``: eps rounds to 0 in the dtype and that variance is 0 there, so the
  denominator d = sqrt(w) + eps (or sqrt(w + eps)) is 0: 0/0 or x/0;
- ``overflow``: an intermediate of some permitted form of the step (η·g, g/d, α·v, (1 − α)·g²,
  μ·buf, ...) exceeds the dtype's largest finite value;
- ``unexplained``: none of these; a known-deviations entry cannot excuse it.

A known-deviations entry excuses a non-finite failure only when it names the failure's cause
(conformance/deviations.py), so a new way to make NaN is never excused by an old entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from spec.rmsprop import HParams, ParamState, dtype_info

CAUSES = {
    "centered-negative": "the centered variance v - |g_avg|^2 of the implementation's own state "
                         "is negative, and sqrt of it is NaN",
    "eps-underflow": "eps rounds to 0 in this dtype and the variance is 0, so the denominator "
                     "is 0 (0/0 or x/0)",
    "overflow": "an intermediate of the step exceeds the dtype's largest finite value",
    "unexplained": "no known mechanism explains it (the formula itself makes it)",
}
EXCUSABLE = tuple(c for c in CAUSES if c != "unexplained")


def _components(a: np.ndarray | None, at: tuple[int, ...]) -> np.ndarray:
    """The element ``at`` of ``a`` as float64 components: (re, im) for complex, (x,) for real."""
    x = np.asarray(a)[at]
    if np.iscomplexobj(x):
        return np.array([x.real, x.imag], dtype=np.float64)
    return np.atleast_1d(np.asarray(x, dtype=np.float64))


def _square_avg(a: np.ndarray, at: tuple[int, ...], cplx: bool, hp: HParams) -> np.ndarray:
    """square_avg's components at ``at``: one real value under "modulus" (whatever dtype holds
    it), the two components' averages under "real_pairs"."""
    if cplx and hp.complex_mode == "modulus":
        return np.atleast_1d(np.asarray(np.asarray(a)[at]).real.astype(np.float64))
    return _components(a, at)


def _sum_if_modulus(x: np.ndarray, cplx: bool, hp: HParams) -> np.ndarray:
    return x.sum(keepdims=True) if cplx and hp.complex_mode == "modulus" else x


def _variance(hp: HParams, st: ParamState, at: tuple[int, ...], cplx: bool, corr: float,
              rdt: np.dtype | None) -> np.ndarray:
    """w = v̂ − |ḡ̂|² (v̂ when not centered) of state ``st``: its sign exact (``rdt`` None:
    rational arithmetic, as a fused multiply-add sees it), or with every operation rounded into
    ``rdt``, as an implementation in that dtype computes it."""
    v = _square_avg(st.square_avg, at, cplx, hp)
    gbar = _components(st.grad_avg, at) if hp.centered else None
    if not (np.isfinite(v).all() and (gbar is None or np.isfinite(gbar).all())):
        return np.full(v.shape, np.nan)  # a non-finite state explains nothing
    if rdt is None:
        # v/c − ḡ²/c² has the sign of v·c − ḡ² (c = 1 − α^t > 0): exact in rationals.
        c = Fraction(corr)
        gsq = [Fraction(0)] * len(v) if gbar is None else [Fraction(x) ** 2 for x in gbar]
        if gbar is not None and len(v) < len(gsq):  # modulus: |ḡ|² = re² + im²
            gsq = [sum(gsq)]
        return np.array([float(Fraction(x) * c - q) for x, q in zip(v, gsq)])
    with np.errstate(all="ignore"):
        c = np.asarray(corr).astype(rdt)
        w = v.astype(rdt) / c
        if gbar is not None:
            gbar = gbar.astype(rdt) / c
            w = w - _sum_if_modulus(gbar * gbar, cplx, hp)
    return np.asarray(w, dtype=np.float64)


def _rounding_reach(hp: HParams, st: ParamState, at: tuple[int, ...], cplx: bool, corr: float,
                    t: int, rdt: np.dtype) -> np.ndarray:
    """How far a correct implementation in ``rdt`` can compute v̂ − |ḡ̂|² from its exact value,
    to first order in the unit roundoff u: c = 1 − α^t computed in the dtype is off by up to
    ε_c = (t + 2)·u·α^t/c relative (α rounded, t multiplications, the subtraction, which
    amplifies by α^t/c), v̂ = v/c by ε_c + u, ḡ̂² by 2(ε_c + u) + u, the subtraction by u of each
    term: (ε_c + 2u)·v̂ + (2ε_c + 4u)·|ḡ̂|². An exact variance within that reach of 0 can come out
    negative however carefully it is computed (optax, centered with bias correction, float32:
    nearly constant gradients make v̂ − ḡ̂² a difference of two equal numbers ~1300 apart)."""
    u = dtype_info(rdt).unit_roundoff
    a = float(hp.alpha) ** t if hp.bias_correction else 0.0
    eps_c = (t + 2) * u * a / corr
    v = _square_avg(st.square_avg, at, cplx, hp) / corr
    gsq = _sum_if_modulus(_components(st.grad_avg, at) ** 2, cplx, hp) / corr ** 2
    return (eps_c + 2 * u) * np.abs(v) + (2 * eps_c + 4 * u) * gsq


def classify(hp: HParams, lr: float, param: np.ndarray, grad: np.ndarray, state_in: ParamState,
             exact_out: ParamState, returned_out: ParamState | None,
             index: Sequence[int]) -> str:
    """The cause (a key of ``CAUSES``) of a non-finite value at element ``index`` of a parameter.

    ``param``, ``grad``, ``state_in``: the implementation's inputs to the step (``param`` in the
    case dtype); ``exact_out``: the exact state after the step on those inputs; ``returned_out``:
    the state the implementation returned, or None when it returned none that conforms. Without
    a state read-out, pass the exact state rounded into the dtype: what a correct one holds.
    """
    dtype = np.asarray(param).dtype
    rdt = np.empty(0, dtype).real.dtype
    cplx = np.iscomplexobj(param)
    at = tuple(int(i) for i in index)[:np.ndim(param)]
    t = int(state_in.step) + 1
    corr = 1.0 - float(hp.alpha) ** t if hp.bias_correction else 1.0

    if returned_out is not None:
        exact, rounded = (_variance(hp, returned_out, at, cplx, corr, r) for r in (None, rdt))
        # The reach is never negative, so an exactly negative variance is within it too.
        reach = _rounding_reach(hp, returned_out, at, cplx, corr, t, rdt) if hp.centered else 0
        if hp.centered and ((rounded < 0).any() or (exact / corr ** 2 < reach).any()):
            return "centered-negative"
        if hp.eps > 0 and rdt.type(hp.eps) == 0 and ((exact == 0).any() or (rounded == 0).any()):
            return "eps-underflow"
    if _overflows(hp, lr, param, grad, state_in, exact_out, at, corr):
        return "overflow"
    return "unexplained"


def _overflows(hp: HParams, lr: float, param: np.ndarray, grad: np.ndarray,
               state_in: ParamState, exact_out: ParamState, at: tuple[int, ...],
               corr: float) -> bool:
    """Whether an intermediate of a permitted form of the exact step exceeds the dtype's range."""
    cplx = np.iscomplexobj(param)
    p, g = _components(param, at), _components(grad, at)
    wd, alpha, mu = float(hp.weight_decay), float(hp.alpha), float(hp.momentum)
    steps: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        if hp.maximize and hp.maximize_order == "before_weight_decay":
            g = -g
        if wd and hp.weight_decay_mode == "coupled":
            steps += [wd * p]
            g = g + wd * p
        if hp.maximize and hp.maximize_order == "after_weight_decay":
            g = -g
        gg = _sum_if_modulus(g * g, cplx, hp)
        v_in = _square_avg(state_in.square_avg, at, cplx, hp)
        steps += [g, gg, alpha * v_in, (1 - alpha) * gg, gg - v_in]
        w = _square_avg(exact_out.square_avg, at, cplx, hp) / corr
        steps += [w]
        if hp.centered:
            gbar = _components(exact_out.grad_avg, at) / corr
            gsq = _sum_if_modulus(gbar * gbar, cplx, hp)
            w = np.maximum(w - gsq, 0.0)
            steps += [gsq, g - _components(state_in.grad_avg, at)]
        d = np.sqrt(w + hp.eps) if hp.eps_in_sqrt else np.sqrt(w) + hp.eps
        s = g / d
        steps += [d, 1 / d, s, lr * g, lr * s]
        if wd and hp.weight_decay_mode == "decoupled":
            steps += [lr * wd * p]
        if mu > 0:
            inc = lr * s if hp.lr_in_momentum else s
            buf = mu * _components(state_in.momentum_buffer, at) + inc
            steps += [mu * buf, buf, lr * buf, inc + mu * buf]
    top = dtype_info(np.asarray(param).dtype).max
    return any(bool((np.isfinite(x) & (np.abs(x) > top)).any()) for x in steps)
