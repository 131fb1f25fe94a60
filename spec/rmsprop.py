"""The RMSProp oracle: the executable form of spec/SPEC.md.

Pure NumPy, float64 (complex128 for complex parameters), no framework import. Every function is
pure: inputs are never mutated. Rule numbers (Rn) refer to spec/SPEC.md.

One step, in exact arithmetic, for one parameter θ with gradient g and learning rate η (R16–R22)::

    t  = step + 1
    g  = -g                      if maximize and maximize_order == "before_weight_decay"
    g  = g + λθ                  if weight_decay_mode == "coupled"
    g  = -g                      if maximize and maximize_order == "after_weight_decay"
    v  = α·v + (1-α)·sq(g)       sq(g) = g² per real component ("real_pairs") or |g|² ("modulus")
    ḡ  = α·ḡ + (1-α)·g           if centered
    v̂, ḡ̂ = v/(1-α^t), ḡ/(1-α^t)  if bias_correction, else v, ḡ
    w  = max(v̂ - |ḡ̂|², 0)        if centered, else v̂   (the max is a no-op on valid states, R30)
    d  = sqrt(w + ε)             if eps_in_sqrt, else sqrt(w) + ε
    s  = g / d
    θ  = θ - ηλθ                 if weight_decay_mode == "decoupled"
    b  = μ·b + s                 (lr_in_momentum=False)   or   b = μ·b + η·s   (True)
    u  = s + μ·b if nesterov else b                        or   u = η·s + μ·b if nesterov else b
    θ  = θ - η·u                                           or   θ = θ - u
    θ  = θ - η·s                 when momentum == 0

The same code also carries, beside every value, a bound on the rounding error that a correct
implementation computing in a lower-precision dtype may make (running error analysis, SPEC §7):
see :func:`step_with_bounds`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "AXIS_CHOICES",
    "CONVENTION_AXES",
    "PROFILES",
    "HParams",
    "ParamState",
    "StepBounds",
    "dtype_info",
    "init_state",
    "run",
    "step",
    "step_with_bounds",
]

WEIGHT_DECAY_MODES = ("coupled", "decoupled")
COMPLEX_MODES = ("real_pairs", "modulus")
MAXIMIZE_ORDERS = ("before_weight_decay", "after_weight_decay")
# The convention axes of SPEC §3 (R7–R12), in SPEC order: the fields of HParams on which
# implementations disagree, every one fixed by a profile. Adapters and the harness read them
# from here; the values a string axis may take are AXIS_CHOICES (R5), a boolean's are both.
CONVENTION_AXES: tuple[str, ...] = ("eps_in_sqrt", "initial_square_avg", "lr_in_momentum",
                                    "weight_decay_mode", "complex_mode", "maximize_order")
AXIS_CHOICES: dict[str, tuple[str, ...]] = {"weight_decay_mode": WEIGHT_DECAY_MODES,
                                            "complex_mode": COMPLEX_MODES,
                                            "maximize_order": MAXIMIZE_ORDERS}

# Every profile fixes every hyperparameter default and every convention axis (SPEC §4): one row
# per profile, the columns SPEC §4's table has (the defaults, then CONVENTION_AXES in order).
_PROFILE_COLUMNS = ("lr", "alpha", "eps", *CONVENTION_AXES)
_PROFILE_ROWS: dict[str, tuple[Any, ...]] = {
    # lr, alpha, eps; eps_in_sqrt, initial_square_avg, lr_in_momentum, weight_decay_mode,
    # complex_mode, maximize_order
    "torch": (1e-2, 0.99, 1e-8, False, 0.0, False, "coupled", "real_pairs", "before_weight_decay"),
    "optax": (1e-2, 0.9, 1e-8, True, 0.0, True, "coupled", "modulus", "before_weight_decay"),
    "keras": (1e-3, 0.9, 1e-7, True, 0.0, True, "decoupled", "modulus", "before_weight_decay"),
    "tf1": (1e-3, 0.9, 1e-10, True, 1.0, True, "coupled", "modulus", "before_weight_decay"),
    "seed": (3.0, 0.9, 1e-6, False, 0.0, False, "coupled", "real_pairs", "before_weight_decay"),
}
_PROFILE_TABLE: dict[str, dict[str, Any]] = {
    name: dict(zip(_PROFILE_COLUMNS, row, strict=True)) for name, row in _PROFILE_ROWS.items()}
PROFILES: tuple[str, ...] = tuple(_PROFILE_TABLE)


def _check_real(name: str, value: Any, lo: float, hi: float | None = None, *,
                hi_open: bool = False, rule: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number, got {value!r} ({rule})")
    v = float(value)
    upper = "" if hi is None else (f", {hi})" if hi_open else f", {hi}]")
    allowed = f"[{lo}{upper}" if hi is not None else f"[{lo}, inf) and finite"
    ok = math.isfinite(v) and v >= lo
    if hi is not None:
        ok = ok and (v < hi if hi_open else v <= hi)
    if not ok:
        raise ValueError(f"invalid {name}: {value!r}; allowed: {allowed} ({rule})")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyperparameters and convention axes of one RMSProp configuration (SPEC §2–§4).

    Invalid values raise ``ValueError`` naming the field, the value and the allowed range (R6).
    """

    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    maximize: bool = False
    nesterov: bool = False
    bias_correction: bool = False
    # convention axes (SPEC §3)
    eps_in_sqrt: bool = False
    initial_square_avg: float = 0.0
    lr_in_momentum: bool = False
    weight_decay_mode: str = "coupled"
    complex_mode: str = "real_pairs"
    maximize_order: str = "before_weight_decay"
    profile: str = "custom"

    def __post_init__(self) -> None:
        _check_real("lr", self.lr, 0.0, rule="R1")
        _check_real("alpha", self.alpha, 0.0, 1.0, rule="R2")
        _check_real("eps", self.eps, 0.0, rule="R3")
        _check_real("weight_decay", self.weight_decay, 0.0, rule="R4")
        _check_real("momentum", self.momentum, 0.0, 1.0, hi_open=True, rule="R4")
        _check_real("initial_square_avg", self.initial_square_avg, 0.0, rule="R8")
        for name in ("centered", "maximize", "nesterov", "bias_correction", "eps_in_sqrt",
                     "lr_in_momentum"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"invalid {name}: {value!r}; allowed: True or False (R5)")
        for name, allowed in AXIS_CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"invalid {name}: {value!r}; allowed: {', '.join(allowed)} (R5)")
        if self.bias_correction and float(self.alpha) == 1.0:
            raise ValueError("invalid alpha: 1.0 with bias_correction=True; allowed: [0, 1) "
                             "(1 - alpha**t would be 0) (R2)")

    @classmethod
    def from_profile(cls, name: str, **overrides: Any) -> HParams:
        """The profile's defaults and conventions, with ``overrides`` (field names) applied."""
        if name not in _PROFILE_TABLE:
            raise ValueError(f"unknown profile {name!r}; allowed: {', '.join(PROFILES)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(sorted(fields - {'profile'}))}")
        return cls(**{**_PROFILE_TABLE[name], "profile": name, **overrides})

    def replace(self, **changes: Any) -> HParams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ParamState(NamedTuple):
    """Optimizer state of one parameter (SPEC §5).

    ``square_avg`` has the parameter's shape; for complex parameters it is complex under
    "real_pairs" (real and imaginary parts hold the two components' averages) and real under
    "modulus". ``grad_avg`` exists iff centered, ``momentum_buffer`` iff momentum > 0. The momentum
    buffer points along the gradient (positive convention) in every profile.
    """

    step: int
    square_avg: np.ndarray
    grad_avg: np.ndarray | None = None
    momentum_buffer: np.ndarray | None = None


State = tuple[ParamState, ...]


class DtypeInfo(NamedTuple):
    unit_roundoff: float  # u = 2**-p: the largest relative error of one correctly rounded operation
    tiny: float           # the smallest positive normal number: absolute error allowance per
                          # operation (covers gradual underflow and flush-to-zero, SPEC R31)
    max: float            # the largest finite value


def dtype_info(dtype: Any) -> DtypeInfo:
    """Rounding parameters of a real or complex dtype (float16, bfloat16, float32, float64)."""
    return _dtype_info(np.dtype(dtype))


@functools.cache  # the judge asks for every parameter of every step
def _dtype_info(dt: np.dtype) -> DtypeInfo:
    if dt.kind == "c":
        dt = np.dtype(np.float32 if dt.itemsize == 8 else np.float64)
    if dt.kind not in "fV" and dt.name != "bfloat16":
        raise ValueError(f"not a floating dtype: {dt}")
    import ml_dtypes  # noqa: PLC0415  (optional at import time: only bounds for bfloat16 need it)

    fi = ml_dtypes.finfo(dt) if dt.name == "bfloat16" else np.finfo(dt)
    # float32/float64 (and bfloat16, which shares float32's range): the smallest *normal*
    # number, because hardware and compilers commonly flush subnormal results to zero (XLA on
    # CPU, GPUs in fast modes). float16 keeps its smallest subnormal: its arithmetic runs in
    # float32, where float16's subnormals are normal numbers and nothing is flushed.
    tiny = fi.smallest_subnormal if dt.name == "float16" else fi.smallest_normal
    return DtypeInfo(float(fi.eps) / 2, float(tiny), float(fi.max))


EXACT = DtypeInfo(0.0, 0.0, math.inf)


# --------------------------------------------------------------------------------------------------
# Values with error bounds. With EXACT, the bounds stay 0 and this is plain float64 arithmetic.
# --------------------------------------------------------------------------------------------------
class _R:
    """A float64 array ``v`` with an absolute error bound ``e`` and an overflow mask ``o``."""

    __slots__ = ("v", "e", "o")

    def __init__(self, v: Any, e: Any = 0.0, o: Any = False) -> None:
        self.v = np.asarray(v, dtype=np.float64)
        self.e = np.asarray(e, dtype=np.float64)
        self.o = np.asarray(o, dtype=bool)


class _Arith:
    """Running error analysis in a target dtype: each operation adds u·|operands| + tiny.

    Its operations run under the step's ``np.errstate(all="ignore")`` (:func:`_step_one`)."""

    def __init__(self, info: DtypeInfo) -> None:
        self.u, self.tiny, self.max = info

    def _round(self, v: np.ndarray, e: np.ndarray, o: np.ndarray, scale: Any) -> _R:
        if self.u == 0.0:
            return _R(v, e, o)
        e = e + self.u * np.abs(scale) + self.tiny
        # An intermediate whose error interval reaches past the largest finite value may
        # overflow in a correct implementation. Unbounded errors (a denominator that may be
        # 0) are not overflow: R27 still judges those elements.
        o = o | (np.abs(v) + np.where(np.isinf(e), 0.0, e) > self.max)
        return _R(v, e, o)

    def const(self, c: float) -> _R:
        """A constant rounded into the dtype: an error of up to u·|c|."""
        return self._round(np.float64(c), np.float64(0.0), np.bool_(False), c)

    def alpha(self, alpha: float) -> _R:
        """alpha as an implementation may hold it: fl(alpha) or 1 - fl(1 - alpha) (lerp with
        weight 1 - alpha); its error is the larger of the two roundings (0 when both are exact).
        """
        return _R(alpha, _alpha_error(self.u, self.tiny, alpha))

    def add(self, x: _R, y: _R, sign: float = 1.0) -> _R:
        v = x.v + sign * y.v
        # Bounding by |x| + |y| rather than |x ± y| keeps the bound valid for any association
        # order an implementation may choose (lerp, addcmul, fused multiply-add).
        return self._round(v, x.e + y.e, x.o | y.o, np.abs(x.v) + np.abs(y.v))

    def sub(self, x: _R, y: _R) -> _R:
        return self.add(x, y, -1.0)

    def neg(self, x: _R) -> _R:
        return _R(-x.v, x.e, x.o)

    def ema(self, a: _R, b: _R, alpha: _R, one_minus_alpha: _R) -> _R:
        """α·a + (1 − α)·b (R17, R18), bounded for every form an implementation may use:

        - α·a + (1 − α)·b: two products and a sum (or an FMA): u·2(|α·a| + |(1 − α)·b|);
        - a + (1 − α)(b − a) (lerp, or an FMA of it), and torch's two-branch ``lerp``, which
          evaluates b − α(b − a) when the weight 1 − α is at least 1/2 (so α ≤ 1 − α there): the
          difference b − a is rounded before it is scaled, so its error u·|b − a| is carried by
          the weight: u·2·(1 − α)·|b − a| + u·|result|.

        The larger of the two is the rounding term; the propagated error is the same for every
        form (the weight's error acts on |a| + |b| ≥ |b − a|). b − a may overflow where the
        spec's form does not: that is flagged as overflow (R26). Not covered: b − α(b − a) for
        α > 1/2, whose error 2α·u·|b − a| on a gradient spike (|b| ≫ |a|) is many times the
        result's own size (SPEC R17).
        """
        v = alpha.v * a.v + one_minus_alpha.v * b.v
        o = a.o | b.o | alpha.o | one_minus_alpha.o
        if self.u == 0.0:
            return _R(v, np.abs(alpha.v) * a.e + np.abs(one_minus_alpha.v) * b.e, o)
        wa, wb = np.abs(alpha.v), np.abs(one_minus_alpha.v)
        e_weight = np.maximum(alpha.e, one_minus_alpha.e)
        propagated = (wa * a.e + wb * b.e + e_weight * (np.abs(a.v) + np.abs(b.v))
                      + e_weight * (a.e + b.e))
        spec_form = 2.0 * (np.abs(alpha.v * a.v) + np.abs(one_minus_alpha.v * b.v))
        lerp_form = 2.0 * wb * np.abs(b.v - a.v) + np.abs(v)
        e = propagated + self.u * np.maximum(spec_form, lerp_form) + 3.0 * self.tiny
        o = o | (np.abs(a.v) + np.abs(b.v) > self.max)
        o = o | (np.abs(v) + np.where(np.isinf(e), 0.0, e) > self.max)
        return _R(v, e, o)

    def mul(self, x: _R, y: _R) -> _R:
        v = x.v * y.v
        e = np.abs(x.v) * y.e + np.abs(y.v) * x.e + x.e * y.e
        # 0 times an unbounded error (lr = 0 with an unbounded step) stays unbounded.
        e = np.where(np.isnan(e) & ~np.isnan(v), np.inf, e)
        return self._round(v, e, x.o | y.o, v)

    def div(self, x: _R, y: _R) -> _R:
        v = x.v / y.v
        if self.u == 0.0:
            return _R(v, 0.0, x.o | y.o)
        margin = np.abs(y.v) - y.e
        # A denominator whose error may reach zero leaves the quotient unbounded.
        e = np.where(margin > 0, (x.e + np.abs(v) * y.e) / np.where(margin > 0, margin, 1.0),
                     np.inf)
        e = np.where(np.isnan(v), 0.0, e)
        # 2·|x/y|: a quotient may be evaluated as x·(1/y) (two roundings), or as x times a
        # reciprocal square root within one ulp where y is a root (R31b).
        return self._round(v, e, x.o | y.o, 2.0 * v)

    def sqrt(self, x: _R) -> _R:
        v = np.sqrt(x.v)
        if self.u == 0.0:
            return _R(v, 0.0, x.o)
        # The largest deviation over [x - e, x + e] (clipped at 0). Below x it is the larger
        # one (sqrt is concave) unless the interval reaches 0; then sqrt(x + e) - sqrt(x) can
        # be larger, e.g. sqrt(e) at an exact x = 0 whose computed value is e.
        low = np.sqrt(np.maximum(x.v - x.e, 0.0))
        high = np.sqrt(x.v + x.e)
        e = np.where(np.isfinite(v), np.maximum(v - low, high - v), 0.0)
        return self._round(v, e, x.o, v)


# --------------------------------------------------------------------------------------------------
# Complex numbers: computed as real pairs on a trailing axis of length 2 (SPEC R11).
# --------------------------------------------------------------------------------------------------
def _as_real(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if np.iscomplexobj(a):
        return np.stack([a.real, a.imag], axis=-1).astype(np.float64)
    return a.astype(np.float64)


@functools.cache  # exact rational arithmetic: computed once per (dtype, value)
def _rounding_error(u: float, c: Fraction) -> float:
    """|fl(c) - c| for an exact ``c`` rounded to nearest into the precision of unit roundoff
    ``u`` (subnormals aside: the per-operation allowance covers them)."""
    if u == 0.0 or c == 0:
        return 0.0
    bits = round(-math.log2(u))  # u = 2**-bits: significand bits, implicit one included
    _, e = math.frexp(float(c))
    ulp = Fraction(2) ** (e - bits)
    return float(abs(round(c / ulp) * ulp - c))


@functools.cache
def _alpha_error(u: float, tiny: float, alpha: float) -> float:
    a = Fraction(alpha)  # exact: 1 - a must not be rounded before it is measured
    return max(_rounding_error(u, a), _rounding_error(u, 1 - a)) + tiny


def _from_real(a: np.ndarray, is_complex: bool) -> np.ndarray:
    if is_complex:
        # Not re + 1j*im: 1j*NaN is NaN+NaNj, which would leak a NaN into the other component.
        out = np.empty(a.shape[:-1], dtype=np.complex128)
        out.real, out.imag = a[..., 0], a[..., 1]
        return out
    return a


def _component_sum(A: _Arith, x: _R) -> _R:
    """|z|² from the squared components of real pairs: re² + im², kept on a trailing axis of 1."""
    e, o = np.broadcast_to(x.e, x.v.shape), np.broadcast_to(x.o, x.v.shape)
    return A.add(_R(x.v[..., :1], e[..., :1], o[..., :1]), _R(x.v[..., 1:], e[..., 1:], o[..., 1:]))


def _square_avg_to_pairs(v: np.ndarray, is_complex: bool, hp: HParams) -> np.ndarray:
    if not is_complex:
        return np.asarray(v, dtype=np.float64)
    if hp.complex_mode == "modulus":
        return np.asarray(v).real.astype(np.float64)[..., None]
    return _as_real(np.asarray(v, dtype=np.complex128))


def _square_avg_from_pairs(v: np.ndarray, is_complex: bool, hp: HParams) -> np.ndarray:
    if is_complex and hp.complex_mode == "modulus":
        return v[..., 0]
    return _from_real(v, is_complex)


# --------------------------------------------------------------------------------------------------
# The public API
# --------------------------------------------------------------------------------------------------
def init_state(params: Sequence[np.ndarray], hp: HParams) -> State:
    """The state before the first step (R8): step 0, square_avg = initial_square_avg, zeros."""
    out = []
    for p_in in params:
        p = np.asarray(p_in)
        cplx = np.iscomplexobj(p)
        if cplx and hp.complex_mode == "real_pairs":
            v = np.full(p.shape, hp.initial_square_avg * (1 + 1j), dtype=np.complex128)
        else:
            v = np.full(p.shape, hp.initial_square_avg, dtype=np.float64)
        zeros = np.zeros(p.shape, dtype=np.complex128 if cplx else np.float64)
        out.append(ParamState(
            step=0,
            square_avg=v,
            grad_avg=zeros.copy() if hp.centered else None,
            momentum_buffer=zeros.copy() if hp.momentum > 0 else None,
        ))
    return tuple(out)


class StepBounds(NamedTuple):
    """Error bounds beside one step's results, in the shapes of the real-pair representation.

    ``params[i]``, ``square_avg[i]`` … are absolute bounds per element (complex: per component,
    bounds of real and imaginary parts on a trailing axis of 2). ``overflow[i]`` marks parameter
    elements where an intermediate of the formula exceeds the target dtype's range (R26).
    """

    params: tuple[np.ndarray, ...]
    square_avg: tuple[np.ndarray, ...]
    grad_avg: tuple[np.ndarray | None, ...]
    momentum_buffer: tuple[np.ndarray | None, ...]
    overflow: tuple[np.ndarray, ...]


def _check_inputs(params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
                  state: Sequence[ParamState], hp: HParams) -> None:
    if not isinstance(hp, HParams):
        raise TypeError(f"hp must be an HParams, got {type(hp).__name__}")
    if not (len(params) == len(grads) == len(state)):
        raise ValueError(f"params, grads and state differ in length: "
                         f"{len(params)}, {len(grads)}, {len(state)}")
    for i, (p, g) in enumerate(zip(params, grads)):
        if np.shape(p) != np.shape(g):
            raise ValueError(f"parameter {i}: gradient shape {np.shape(g)} != parameter shape "
                             f"{np.shape(p)}")


# One error state for the whole step, not one per operation (a tenth of the oracle's time):
# overflow, invalid operations and division by zero are values here, judged by R26 and R27.
@np.errstate(all="ignore")
def _step_one(theta: np.ndarray, grad: np.ndarray, st: ParamState, hp: HParams, lr: float,
              info: DtypeInfo, state_err: ParamState | None) -> tuple[tuple[_R, ...], int]:
    A = _Arith(info)
    cplx = np.iscomplexobj(theta) or np.iscomplexobj(grad)
    t = st.step + 1

    def leaf(x: np.ndarray | None, err: Any) -> _R | None:
        if x is None:
            return None
        return _R(x, 0.0 if err is None else err)

    se = state_err
    p = _R(_as_real(theta))
    g = _R(_as_real(grad))
    v = leaf(_square_avg_to_pairs(st.square_avg, cplx, hp), se and se.square_avg)
    gbar = leaf(None if st.grad_avg is None else _as_real(st.grad_avg), se and se.grad_avg)
    buf = leaf(None if st.momentum_buffer is None else _as_real(st.momentum_buffer),
               se and se.momentum_buffer)
    if hp.centered and gbar is None:
        raise ValueError("centered=True needs grad_avg in the state")
    if hp.momentum > 0 and buf is None:
        raise ValueError("momentum > 0 needs momentum_buffer in the state")

    alpha = A.alpha(float(hp.alpha))
    one_minus_alpha = A.sub(A.const(1.0), alpha)
    eta = A.const(lr)

    if hp.maximize and hp.maximize_order == "before_weight_decay":
        g = A.neg(g)
    if hp.weight_decay != 0 and hp.weight_decay_mode == "coupled":
        g = A.add(g, A.mul(A.const(hp.weight_decay), p))
    if hp.maximize and hp.maximize_order == "after_weight_decay":
        g = A.neg(g)

    gg = A.mul(g, g)
    if cplx and hp.complex_mode == "modulus":
        gg = _component_sum(A, gg)
    v = A.ema(v, gg, alpha, one_minus_alpha)
    if hp.centered:
        gbar = A.ema(gbar, g, alpha, one_minus_alpha)

    v_hat, gbar_hat = v, gbar
    if hp.bias_correction:
        # 1 - α^t: α^t computed by t-1 multiplications in the worst case.
        alpha_t = float(hp.alpha) ** t
        corr = _R(1.0 - alpha_t, (t + 1) * A.u * (alpha_t + 1.0) + A.tiny)
        v_hat = A.div(v, corr)
        if hp.centered:
            gbar_hat = A.div(gbar, corr)

    w = v_hat
    if hp.centered:
        gsq = A.mul(gbar_hat, gbar_hat)
        if cplx and hp.complex_mode == "modulus":
            gsq = _component_sum(A, gsq)
        w = A.sub(v_hat, gsq)
        # Exact math on a valid state has |ḡ|² <= v (R30), so this clamp changes nothing there.
        # It keeps the reference finite when the inputs are an implementation's re-aligned state,
        # whose rounding may break the invariant by a few ulps: the true trajectory is finite,
        # so a NaN from sqrt of a negative variance stays a defect (R27), not allowed behaviour.
        w = _R(np.maximum(w.v, 0.0), w.e, w.o)
    eps = A.const(hp.eps)
    d = A.sqrt(A.add(w, eps)) if hp.eps_in_sqrt else A.add(A.sqrt(w), eps)
    s = A.div(g, d)

    if hp.weight_decay != 0 and hp.weight_decay_mode == "decoupled":
        p = _decay(A, p, A.mul(eta, A.const(hp.weight_decay)))

    if hp.momentum > 0:
        mu = A.const(hp.momentum)
        inc = _lr_times(A, eta, g, d, s) if hp.lr_in_momentum else s
        buf = A.add(A.mul(mu, buf), inc)
        u = A.add(inc, A.mul(mu, buf)) if hp.nesterov else buf
        p = A.sub(p, u) if hp.lr_in_momentum else A.sub(p, A.mul(eta, u))
    else:
        p = A.sub(p, _lr_times(A, eta, g, d, s))
    return (p, v, gbar, buf), t


def _decay(A: _Arith, p: _R, eta_lambda: _R) -> _R:
    """θ − (ηλ)·θ, bounded also for the factor form θ·(1 − ηλ) (as ``p.mul_(1 - lr * wd)``),
    which rounds 1 − ηλ first: that error, u·|θ|, is not in the difference form's bound."""
    first = A.sub(p, A.mul(eta_lambda, p))
    if A.u == 0.0:
        return first
    second = A.mul(p, A.sub(A.const(1.0), eta_lambda))
    return _R(first.v, np.maximum(first.e, second.e), first.o | second.o)


def _lr_times(A: _Arith, eta: _R, g: _R, d: _R, s: _R) -> _R:
    """η·s, bounded for either order an implementation may use: η·(g/d) or (η·g)/d (the latter
    rounds η·g first, which matters when it is subnormal)."""
    first = A.mul(eta, s)
    if A.u == 0.0:
        return first
    second = A.div(A.mul(eta, g), d)
    return _R(first.v, np.maximum(first.e, second.e), first.o | second.o)


def _resolve_lr(hp: HParams, lr: float | None) -> float:
    if lr is None:
        return float(hp.lr)
    _check_real("lr", lr, 0.0, rule="R1")
    return float(lr)


def _step_all(params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
              state: Sequence[ParamState], hp: HParams, lr: float | None, info: DtypeInfo,
              state_err: Sequence[ParamState] | None,
              ) -> tuple[tuple[np.ndarray, ...], State, StepBounds]:
    _check_inputs(params, grads, state, hp)
    eta = _resolve_lr(hp, lr)
    new_params, new_state = [], []
    bp, bv, bg, bb, ov = [], [], [], [], []
    for i, (theta_in, grad_in, st) in enumerate(zip(params, grads, state)):
        theta, grad = np.asarray(theta_in), np.asarray(grad_in)
        cplx = np.iscomplexobj(theta) or np.iscomplexobj(grad)
        err = None if state_err is None else state_err[i]
        (p, v, gbar, buf), t = _step_one(theta, grad, st, hp, eta, info, err)
        new_params.append(_from_real(p.v, cplx))
        new_state.append(ParamState(
            step=t,
            square_avg=_square_avg_from_pairs(v.v, cplx, hp),
            grad_avg=None if gbar is None else _from_real(gbar.v, cplx),
            momentum_buffer=None if buf is None else _from_real(buf.v, cplx),
        ))
        bp.append(p.e)
        bv.append(v.e)
        bg.append(None if gbar is None else gbar.e)
        bb.append(None if buf is None else buf.e)
        ov.append(np.broadcast_to(p.o, p.v.shape).any(axis=-1) if cplx else p.o)
    return (tuple(new_params), tuple(new_state),
            StepBounds(tuple(bp), tuple(bv), tuple(bg), tuple(bb), tuple(ov)))


def step_with_bounds(params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
                     state: Sequence[ParamState], hp: HParams, dtype: Any = None,
                     lr: float | None = None,
                     state_err: Sequence[ParamState] | None = None,
                     ) -> tuple[tuple[np.ndarray, ...], State, StepBounds]:
    """One step (R16–R22) and the rounding-error bound of an implementation in ``dtype`` (§8).

    Returns ``(new_params, new_state, bounds)``. ``new_params``/``new_state`` are exact up to
    float64 rounding; ``bounds`` bound, element by element, |impl - exact| for an implementation
    that computes the same step in ``dtype`` (default: float64) from the same inputs. ``state_err``
    optionally gives error bounds already present in the input state (same structure as
    ``state``, arrays in the real-pair representation), so that bounds can be chained across steps.
    """
    info = dtype_info(np.float64 if dtype is None else dtype)
    return _step_all(params, grads, state, hp, lr, info, state_err)


def step(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], state: Sequence[ParamState],
         hp: HParams, lr: float | None = None) -> tuple[tuple[np.ndarray, ...], State]:
    """One RMSProp step in float64/complex128 (R16–R22). ``lr`` overrides ``hp.lr`` (R22)."""
    new_params, new_state, _ = _step_all(params, grads, state, hp, lr, EXACT, None)
    return new_params, new_state


def run(params: Sequence[np.ndarray], grad_seq: Sequence[Sequence[np.ndarray]], hp: HParams,
        lrs: Sequence[float] | None = None, state: Sequence[ParamState] | None = None,
        ) -> tuple[list[tuple[np.ndarray, ...]], list[State]]:
    """The trajectory: parameters and state after every step of ``grad_seq``."""
    if lrs is not None and len(lrs) != len(grad_seq):
        raise ValueError(f"lrs has {len(lrs)} entries for {len(grad_seq)} steps")
    cur_p = tuple(np.asarray(p) for p in params)
    cur_s = init_state(cur_p, hp) if state is None else tuple(state)
    ps, ss = [], []
    for k, grads in enumerate(grad_seq):
        cur_p, cur_s = step(cur_p, grads, cur_s, hp, None if lrs is None else lrs[k])
        ps.append(cur_p)
        ss.append(cur_s)
    return ps, ss
