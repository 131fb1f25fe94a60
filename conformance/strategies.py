"""Hypothesis strategies for certification inputs (docs/architecture.md §6).

Small composable pieces with validated arguments, in the manner of ``hypothesis.extra.numpy``:

- :func:`shapes`, :func:`layouts`: parameter shapes (0-d, zero-size, 1-d … 4-d) and memory layouts;
- :func:`gradient_families`, :func:`gradient_sequence`: per-step gradients of one parameter;
- :func:`hparams`, :func:`lr_schedules`: hyperparameters of a backend's profile, per-step lr;
- :func:`states`: valid starting states (R14, R30);
- :func:`cases`: a whole :class:`~conformance.case.Case` for a backend's capabilities;
- :data:`SETTINGS_PROFILES`, :func:`settings_for`: how hard to search.

Magnitudes are bounded per dtype: every generated gradient, parameter, grad_avg and momentum
buffer satisfies ``|x| ≤ gradient_bound(dtype) < sqrt(max)/8`` per real component, and every
square_avg ``0 ≤ v ≤ gradient_bound(dtype)²``; so ``g²``, ``|g|²`` and the square average stay
below ``max/16`` and cannot overflow, even after coupled weight decay (λ ≤ 1) adds a parameter
to a gradient.

Values are computed in float64 and rounded into the case dtype at the end: the arrays hold exactly
what the implementation sees. Small arrays take their values from Hypothesis bytes (one draw per
array: shrinking turns them into zeros and multiples of 1/32, which read well in a
counterexample); large ones from a NumPy generator seeded by a drawn integer (fast).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import InvalidArgument

from conformance.backend import FEATURES, SPECIALISABLE, Capabilities
from conformance.case import DTYPES, LAYOUTS, Case, np_dtype
from spec.rmsprop import HParams, ParamState, dtype_info

__all__ = [
    "FAMILIES",
    "HPARAM_FEATURES",
    "SCHEDULES",
    "SETTINGS_PROFILES",
    "SPECIALISED_VALUES",
    "STRUCTURES",
    "Flags",
    "ParamStructure",
    "Structure",
    "cases",
    "gradient_bound",
    "gradient_families",
    "gradient_sequence",
    "hparams",
    "layouts",
    "lr_schedules",
    "settings_for",
    "shapes",
    "shrink_seconds_for",
    "states",
    "structures",
]

FAMILIES = ("normal", "heavy_tailed", "nearly_constant", "sign_flipping", "sparse", "tiny", "huge")
# Families whose magnitude is a free ``scale``; "tiny" and "huge" are defined by their magnitude.
_SCALED_FAMILIES = FAMILIES[:5]
# Features that switch on a hyperparameter (the rest of FEATURES are harness abilities).
HPARAM_FEATURES = ("weight_decay", "momentum", "nesterov", "centered", "maximize",
                   "bias_correction")
SCHEDULES = ("constant", "step_decay", "cosine", "random")

# Magnitude ranges [lo, hi] of the "tiny" family, per real component dtype: float16 goes into its
# subnormal range (below 6.1e-5), float32 stays normal while g² underflows, float64 stays normal
# while g² approaches its subnormal range.
_TINY_RANGE = {"float16": (1e-6, 1e-4), "bfloat16": (1e-6, 1e-4), "float32": (1e-20, 1e-4),
               "float64": (1e-150, 1e-4)}
_BYTES_MAX = 64   # requests of at most this many values come from Hypothesis bytes
_MAX_PARAMS = 4   # parameters per case when multi_param
_SEEDS = st.integers(0, 2**32 - 1)
_UNIT_BYTES = 1 / 32  # a byte b (as int8) stands for b/32 in [-4, 4)


# --------------------------------------------------------------------------------------------------
# Argument validation (InvalidArgument, naming the value and what is allowed)
# --------------------------------------------------------------------------------------------------
def _check_int(value: Any, name: str, lo: int, hi: int | None = None, lo_name: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{name}={value!r} must be an integer")
    if value < lo or (hi is not None and value > hi):
        lo_text = f"{lo_name}={lo}" if lo_name else str(lo)
        allowed = f">= {lo_text}" if hi is None else f"in [{lo_text}, {hi}]"
        raise InvalidArgument(f"{name}={value!r}; allowed: an integer {allowed}")
    return int(value)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgument(f"{name}={value!r} must be True or False")
    return bool(value)


def _check_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in shape):
        raise InvalidArgument(f"shape={shape!r}; allowed: a tuple of non-negative integers")
    return tuple(int(s) for s in shape)


def _check_dtype(dtype: Any) -> str:
    if dtype not in DTYPES:
        raise InvalidArgument(f"dtype={dtype!r}; allowed: {', '.join(DTYPES)}")
    return dtype


def _check_caps(caps: Any) -> Capabilities:
    if not isinstance(caps, Capabilities):
        raise InvalidArgument(f"caps={caps!r} must be a conformance.backend.Capabilities")
    return caps


def _check_features(caps: Capabilities, features: Iterable[str] | None,
                    require: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    if features is None:
        features = caps.features
    if isinstance(features, str) or isinstance(require, str):
        raise InvalidArgument(f"features={features!r}, require={require!r} must be sets of "
                              "feature names, not strings")
    features, require = frozenset(features), frozenset(require)
    unknown = sorted((features | require) - set(FEATURES))
    if unknown:
        raise InvalidArgument(f"unknown feature {unknown[0]!r}; allowed: {', '.join(FEATURES)}")
    undeclared = sorted(features - caps.features)
    if undeclared:
        raise InvalidArgument(f"features={sorted(features)!r} includes {undeclared[0]!r}, which "
                              f"the backend does not declare; declared: {sorted(caps.features)}")
    bad = sorted(require - (features & set(HPARAM_FEATURES)))
    if bad:
        raise InvalidArgument(f"require={sorted(require)!r} includes {bad[0]!r}; allowed: "
                              f"hyperparameter features in features: "
                              f"{sorted(features & set(HPARAM_FEATURES))}")
    if "nesterov" in require and "momentum" not in features:
        raise InvalidArgument("require includes 'nesterov', which needs momentum > 0, but "
                              "'momentum' is not in features")
    return features, require


# --------------------------------------------------------------------------------------------------
# Magnitudes
# --------------------------------------------------------------------------------------------------
def _component(dtype: np.dtype) -> np.dtype:
    """The real dtype of one component (float32 for complex64)."""
    if dtype.kind == "c":
        return np.dtype(np.float32 if dtype.itemsize == 8 else np.float64)
    return dtype


@functools.cache
def gradient_bound(dtype: str) -> float:
    """The largest |value| per real component the strategies generate in ``dtype``.

    Just below sqrt(max)/8, so that squares, sums of two squares and averages of squares of values
    up to twice this bound stay below max/8 (no overflow).
    """
    info = dtype_info(np_dtype(_check_dtype(dtype)))
    # Shrunk by 4u: rounding a value <= this bound into the dtype cannot carry it past sqrt(max)/8.
    return math.sqrt(info.max) / 8 * (1 - 4 * info.unit_roundoff)


def _exponent_range(lo: float, hi_value: float) -> tuple[float, float]:
    """[lo, log10(hi_value)] clipped so that the range is never empty."""
    return lo, max(lo, math.log10(hi_value))


# Strategy objects are built once and reused: building and validating them on every draw would
# cost more than the draw itself.
@functools.cache
def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


@functools.cache
def _floats(lo: float, hi: float, open_interval: bool = False) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, exclude_min=open_interval, exclude_max=open_interval)


@functools.cache
def _choice(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


@functools.cache
def _binary(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


_BOOLEANS = st.booleans()


def _log_uniform(draw: st.DrawFn, lo_exp: float, hi_exp: float) -> float:
    """10**e for e in [lo_exp, hi_exp]; shrinks towards 10**0 (or the nearer end)."""
    return 10.0 ** draw(_floats(lo_exp, hi_exp))


def _with_specials(draw: st.DrawFn, continuous: Callable[[], float],
                   specials: Sequence[float], weight: int) -> float:
    """Mostly ``continuous``; each special value about 1 in (weight + len(specials)) draws.

    The continuous branch has the lowest indices, so shrinking prefers it over the specials: a
    minimal counterexample keeps a special value only when the failure needs it.
    """
    if not specials:
        return continuous()
    i = draw(_integers(0, weight + len(specials) - 1))
    return continuous() if i < weight else float(specials[i - weight])


def _label(name: str, value: Any, *, count: bool = False) -> None:
    """Name a draw in the counterexample (``note``) and, for categories, in the statistics."""
    try:
        note(f"{name}: {value}")
        if count:
            event(f"{name}: {value}")
    except InvalidArgument:  # drawn outside a test (e.g. .example()): nothing to label
        pass


# --------------------------------------------------------------------------------------------------
# Unit-scale values: Hypothesis bytes for small requests, a seeded NumPy generator for large ones
# --------------------------------------------------------------------------------------------------
class _Units:
    """Unit-scale values for one array (or array sequence).

    Requests of at most ``_BYTES_MAX`` values take one Hypothesis byte per value (one draw for the
    whole request); larger ones come from ``np.random.default_rng(seed)`` with a drawn seed.
    """

    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw
        self._rng: np.random.Generator | None = None

    def _bytes(self, n: int) -> np.ndarray | None:
        if n > _BYTES_MAX:
            return None
        return np.frombuffer(self._draw(_binary(n)), dtype=np.int8)

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self._draw(_SEEDS))
        return self._rng

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """About standard normal, within [-4, 4]."""
        b = self._bytes(math.prod(shape))
        if b is not None:
            return b.reshape(shape) * _UNIT_BYTES
        return np.clip(self.rng.standard_normal(shape), -4.0, 4.0)

    def nonzero(self, shape: tuple[int, ...]) -> np.ndarray:
        """Magnitudes in [1, 5], random signs: a normal value moved away from 0 (shrinks to 1)."""
        z = self.normal(shape)
        return np.where(z < 0, -1.0, 1.0) * (1.0 + np.abs(z))

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform in [-1, 1)."""
        b = self._bytes(math.prod(shape))
        if b is not None:
            return b.reshape(shape) / 128.0
        return self.rng.uniform(-1.0, 1.0, shape)

    def heavy(self, shape: tuple[int, ...]) -> np.ndarray:
        """Heavy-tailed: Student-t with 1–3 degrees of freedom (1 = Cauchy), or its byte analogue
        (a normal value over a uniform one in (0, 1])."""
        n = math.prod(shape)
        if n <= _BYTES_MAX:
            den = (self._bytes(n).view(np.uint8).astype(np.float64) + 1.0) / 256.0
            return self.normal(shape) / den.reshape(shape)
        df = self._draw(_choice((1, 2, 3)))
        return self.rng.standard_t(df, shape)

    def sparse_mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """A boolean mask (True = keep): at most half of the entries True, and at least one when
        there are two entries or more."""
        n = math.prod(shape)
        b = self._bytes(n)
        if b is not None:
            keep = b.view(np.uint8) >= 192  # about 1 in 4
            kept = np.flatnonzero(keep)
            keep[kept[n // 2:]] = False
        else:
            keep = np.zeros(n, dtype=bool)
            keep[self.rng.permutation(n)[:int(n * self.rng.uniform(0.0, 0.5))]] = True
        if n >= 2 and not keep.any():
            keep[-1] = True
        return keep.reshape(shape)


def _into_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round float64 values into ``dtype``; complex dtypes take a trailing axis of 2 components.

    (Built by viewing, not by ``re + 1j*im``, which would turn an infinite component into NaN.)
    """
    if dtype.kind == "c":
        pairs = np.ascontiguousarray(values, dtype=np.float64)
        return pairs.view(np.complex128)[..., 0].astype(dtype)
    return np.asarray(values, dtype=np.float64).astype(dtype)  # 0-d stays an array


def _full_shape(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    return shape + (2,) if dtype.kind == "c" else shape


# --------------------------------------------------------------------------------------------------
# Shapes and layouts
# --------------------------------------------------------------------------------------------------
def shapes(*, min_dims: int = 0, max_dims: int = 4, max_side: int = 6, max_size: int = 64,
           allow_zero_size: bool = True) -> st.SearchStrategy[tuple[int, ...]]:
    """Parameter shapes with ``min_dims`` … ``max_dims`` axes and at most ``max_size`` elements.

    Sides are in [1, max_side]; when ``allow_zero_size``, about one shape in ten (with at least
    one axis) has a zero side. Shrinks towards ``min_dims`` axes of side 1.
    """
    min_dims = _check_int(min_dims, "min_dims", 0, 32)
    max_dims = _check_int(max_dims, "max_dims", min_dims, 32, "min_dims")
    max_side = _check_int(max_side, "max_side", 1)
    max_size = _check_int(max_size, "max_size", 1)
    allow_zero_size = _check_bool(allow_zero_size, "allow_zero_size")
    return _SHAPES(min_dims, max_dims, max_side, max_size, allow_zero_size)


def _draw_shape(draw: st.DrawFn, min_dims: int, max_dims: int, max_side: int, max_size: int,
                allow_zero_size: bool) -> tuple[int, ...]:
    # min_dims (often 0-d, a weak test for most properties) half as likely as each other count
    ndim = min_dims + (draw(_integers(0, 2 * (max_dims - min_dims))) + 1) // 2
    sides = [draw(_integers(1, max_side)) for _ in range(ndim)]
    while math.prod(sides) > max_size:  # halve the longest side until within budget
        i = sides.index(max(sides))
        sides[i] = max(1, sides[i] // 2)
    # Index 9 (not 0) means zero-size, so that shrinking moves away from empty shapes.
    if allow_zero_size and ndim > 0 and draw(_integers(0, 9)) == 9:
        sides[draw(_integers(0, ndim - 1))] = 0
    return tuple(sides)


def layouts(shape: Sequence[int]) -> st.SearchStrategy[str]:
    """A memory layout (``conformance.case.LAYOUTS``) that changes the strides of ``shape``.

    "strided" needs an axis, "transposed" two, "channels_last" exactly four; a zero-size or 0-d
    array only has "contiguous". Shrinks towards "contiguous".
    """
    return _layouts(_check_shape(shape))


def _layouts(shape: tuple[int, ...]) -> st.SearchStrategy[str]:
    return _choice(_allowed_layouts(len(shape), math.prod(shape) > 0))


def _allowed_layouts(ndim: int, nonempty: bool) -> tuple[str, ...]:
    ok = {"contiguous": True, "transposed": ndim >= 2 and nonempty,
          "strided": ndim >= 1 and nonempty, "channels_last": ndim == 4 and nonempty}
    return tuple(x for x in LAYOUTS if ok[x])


# --------------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------------
def gradient_families() -> st.SearchStrategy[str]:
    """One of :data:`FAMILIES`; shrinks towards "normal"."""
    return _choice(FAMILIES)


def gradient_sequence(shape: Sequence[int], dtype: str, n_steps: int, *,
                      family: str | None = None, allow_nonfinite: bool = False,
                      scale: float | None = None) -> st.SearchStrategy[tuple[np.ndarray, ...]]:
    """``n_steps`` gradients of one parameter, NumPy arrays in ``np_dtype(dtype)``.

    Families (each value then clipped to ±``gradient_bound(dtype)``), with s = ``scale`` (default:
    log-uniform over 1e-3 … 1e3, capped so that 5·s fits the bound), z ≈ N(0, 1) in [-4, 4] and
    y = sign(z)·(1 + |z|) (never 0):

    - "normal": g_k = s·z_k;
    - "heavy_tailed": g_k = s·t_k, t Student-t (1–3 degrees of freedom);
    - "nearly_constant": g_k = c·(1 + r·z_k), c = s·y fixed per element, r log-uniform in
      1e-7 … 1e-3 (makes the centered variance v − ḡ² cancel);
    - "sign_flipping": g_k = (-1)^k·c, c = s·y fixed per element;
    - "sparse": g_k = s·y_k or exactly 0: at least half of all values are 0, and at least one is
      not (given two values or more);
    - "tiny": |g| log-uniform in a tiny range (float16/bfloat16: 1e-6 … 1e-4; float32: 1e-20 …
      1e-4, normal numbers; float64: 1e-150 … 1e-4), random signs; ``scale`` not allowed;
    - "huge": |g| log-uniform in [bound/8, bound], random signs; ``scale`` not allowed.

    Complex dtypes draw real and imaginary parts alike. With ``allow_nonfinite``, one to three
    values (at least one whenever the shape is not empty) become NaN, +inf or -inf.
    """
    shape = _check_shape(shape)
    dtype = _check_dtype(dtype)
    n_steps = _check_int(n_steps, "n_steps", 1)
    allow_nonfinite = _check_bool(allow_nonfinite, "allow_nonfinite")
    if family is not None and family not in FAMILIES:
        raise InvalidArgument(f"family={family!r}; allowed: None or one of {', '.join(FAMILIES)}")
    if scale is not None:
        bound = gradient_bound(dtype)
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) or not (
                0 < scale <= bound):
            raise InvalidArgument(f"scale={scale!r}; allowed: None or a number in (0, {bound:.4g}]"
                                  f" (gradient_bound({dtype!r}))")
        if family in ("tiny", "huge"):
            raise InvalidArgument(f"scale={scale!r} with family={family!r}: the tiny and huge "
                                  "families fix their own magnitude; allowed families with a "
                                  f"scale: {', '.join(_SCALED_FAMILIES)}")
    return _GRADIENTS(shape, dtype, n_steps, family, allow_nonfinite,
                      None if scale is None else float(scale))


def _draw_gradients(draw: st.DrawFn, shape: tuple[int, ...], dtype: str, n_steps: int,
                    family: str | None, allow_nonfinite: bool,
                    scale: float | None) -> tuple[np.ndarray, ...]:
    if family is None:
        family = draw(_choice(FAMILIES if scale is None else _SCALED_FAMILIES))
        _label("gradient family", family, count=True)
    dt = np_dtype(dtype)
    full = _full_shape(shape, dt)
    values = np.zeros((n_steps, *full))
    if values.size:
        values = _family_values(draw, family, dtype, n_steps, shape, scale)
    values = np.clip(values, -gradient_bound(dtype), gradient_bound(dtype))
    if allow_nonfinite and values.size:
        _inject_nonfinite(draw, values)
    out = _into_dtype(values, dt)
    return tuple(np.array(out[k, ...]) for k in range(n_steps))


def _family_values(draw: st.DrawFn, family: str, dtype: str, n_steps: int,
                   shape: tuple[int, ...], scale: float | None) -> np.ndarray:
    """float64 values of shape (n_steps, *shape[, 2]) for ``family`` (unclipped)."""
    units = _Units(draw)
    full = _full_shape(shape, np_dtype(dtype))
    seq = (n_steps, *full)
    if family == "tiny":
        lo, hi = _TINY_RANGE[_component(np_dtype(dtype)).name]
        return _log_magnitudes(units.uniform(seq), lo, hi)
    if family == "huge":
        bound = gradient_bound(dtype)
        return _log_magnitudes(units.uniform(seq), bound / 8, bound)
    if scale is None:
        scale = _log_uniform(draw, *_exponent_range(-3.0, min(1e3, gradient_bound(dtype) / 5)))
        _label("gradient scale", f"{scale:.3g}")
    if family == "normal":
        return scale * units.normal(seq)
    if family == "heavy_tailed":
        return scale * units.heavy(seq)
    if family == "nearly_constant":
        rel = _log_uniform(draw, -7.0, -3.0)
        _label("relative noise", f"{rel:.3g}")
        return scale * units.nonzero(full) * (1.0 + rel * units.normal(seq))
    if family == "sign_flipping":
        signs = (-1.0) ** np.arange(n_steps)
        return signs.reshape((n_steps,) + (1,) * len(full)) * (scale * units.nonzero(full))
    if family == "sparse":
        # One mask per element (not per component): a complex zero is zero in both parts.
        mask = units.sparse_mask((n_steps, *shape))
        values = scale * units.nonzero(seq)
        return np.where(mask[..., None] if len(full) > len(shape) else mask, values, 0.0)
    raise AssertionError(family)


def _log_magnitudes(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """sign(u)·lo·(hi/lo)^|u| for u in [-1, 1): magnitudes log-uniform in [lo, hi]."""
    return np.where(u < 0, -1.0, 1.0) * lo * (hi / lo) ** np.abs(u)


def _inject_nonfinite(draw: st.DrawFn, values: np.ndarray) -> None:
    """Set one to three values of the (n_steps, ...) float64 array to NaN or ±inf, in place (for
    complex dtypes, real or imaginary parts)."""
    n_steps = values.shape[0]
    flat = values.reshape(n_steps, -1)  # a view: values is a fresh contiguous array
    for _ in range(draw(_integers(1, 3))):
        k = draw(_integers(0, n_steps - 1))
        i = draw(_integers(0, flat.shape[1] - 1))
        flat[k, i] = draw(_choice((math.nan, math.inf, -math.inf)))


# --------------------------------------------------------------------------------------------------
# Hyperparameters and learning-rate schedules
# --------------------------------------------------------------------------------------------------
def hparams(caps: Capabilities, *, features: Iterable[str] | None = None, edge: bool = True,
            require: Iterable[str] = frozenset()) -> st.SearchStrategy[HParams]:
    """Hyperparameters in the backend's profile and conventions (``caps.hparams``).

    ``features`` (default: ``caps.features``, and never beyond them) are the hyperparameter
    features the draw may switch on; ``require`` (a subset) must be on: weight_decay > 0,
    momentum > 0, nesterov, centered, maximize, bias_correction. A feature not in ``features``
    stays off (0 or False). nesterov is only drawn with momentum > 0.

    - lr: log-uniform in 1e-6 … 1, or 0 (``edge``);
    - alpha: 0 and 1 (``edge``; 1 only without bias_correction), 0.5, 0.9, 0.99, 0.999, or
      uniform in (0, 1);
    - eps: log-uniform in 1e-12 … 1, or 0 when ``edge`` and the square average is known to stay
      positive (R28's domain note): initial_square_avg > 0 and alpha > 0, since then
      v_t ≥ alpha^t·initial_square_avg > 0 (and the centered v_t − |ḡ_t|² too) whatever the
      gradients;
    - weight_decay: 0 or log-uniform in 1e-5 … 1; momentum: 0, 0.5, 0.9, 0.99 or uniform in
      [0, 0.999].

    For a compiled backend (``caps.compiled``) the flags and the specialised values come from one
    of :data:`STRUCTURES` fixed combinations (:func:`structures`).
    """
    caps = _check_caps(caps)
    features, require = _check_features(caps, features, require)
    edge = _check_bool(edge, "edge")
    pool = _flag_pool(caps, features, require) if caps.compiled else None
    return _HPARAMS(caps, features, require, edge, _state_stays_positive(caps, False), pool)


def _state_stays_positive(caps: Capabilities, positive_state: bool) -> bool:
    """Whether v − |ḡ|² > 0 at the start of a case, whatever its gradients: true with a positive
    initial_square_avg (and grad_avg = 0), or with a state from :func:`states` when eps = 0."""
    return caps.hparams().initial_square_avg > 0 or positive_state


def _draw_hparams(draw: st.DrawFn, caps: Capabilities, features: frozenset[str],
                  require: frozenset[str], edge: bool, positive_start: bool,
                  pool: tuple[Flags, ...] | None = None) -> HParams:
    """``positive_start``: see :func:`_state_stays_positive`; with alpha > 0 it makes eps = 0
    valid, since then v_t − |ḡ_t|² ≥ alpha^t·(v_0 − |ḡ_0|²) > 0 (R30's recurrence).
    ``pool``: flag combinations of a compiled backend, one drawn."""
    if pool is not None:
        return _with_flags(draw, caps, pool[draw(_integers(0, len(pool) - 1))], edge,
                           positive_start)

    def flag(name: str) -> bool:
        return name in require or (name in features and draw(_BOOLEANS))

    bias_correction = flag("bias_correction")
    lr = _with_specials(draw, lambda: _log_uniform(draw, -6.0, 0.0), (0.0,) if edge else (),
                        weight=9)
    alpha_specials = (0.5, 0.9, 0.99, 0.999) + ((0.0,) + ((1.0,) if not bias_correction else ())
                                                 if edge else ())
    alpha = _with_specials(draw, lambda: draw(_floats(0.0, 1.0, True)), alpha_specials,
                           weight=6)
    v_positive = positive_start and alpha > 0
    eps = _with_specials(draw, lambda: _log_uniform(draw, -12.0, 0.0),
                         (0.0,) if edge and v_positive else (), weight=9)
    weight_decay = 0.0
    if "weight_decay" in features:
        weight_decay = _with_specials(draw, lambda: _log_uniform(draw, -5.0, 0.0),
                                      () if "weight_decay" in require else (0.0,), weight=3)
    momentum = 0.0
    if "momentum" in features:
        required = bool({"momentum", "nesterov"} & require)
        momentum = _with_specials(
            draw, lambda: draw(_floats(0.0, 0.999, required)),
            (0.5, 0.9, 0.99) + (() if required else (0.0,)), weight=3)
    nesterov = momentum > 0 and flag("nesterov")
    return caps.hparams(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, nesterov=nesterov, centered=flag("centered"),
                        maximize=flag("maximize"), bias_correction=bias_correction)


def lr_schedules(n_steps: int, base_lr: float) -> st.SearchStrategy[tuple[float, ...]]:
    """``n_steps`` learning rates, all finite and ≥ 0 (R1, R22), following one of SCHEDULES:

    - "constant": base_lr every step;
    - "step_decay": base_lr·γ^(k // period), γ in {0.5, 0.1, 0} (0: exact zeros after a period);
    - "cosine": base_lr·(1 + cos(πk/(n−1)))/2, exactly 0 at the last step (n > 1);
    - "random": base_lr·10^e per step, e uniform in [-3, 0], or exactly 0 about one step in six.
    """
    n_steps = _check_int(n_steps, "n_steps", 1)
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(base_lr) and base_lr >= 0):
        raise InvalidArgument(f"base_lr={base_lr!r}; allowed: a finite number >= 0 (R1)")
    return _SCHEDULES(n_steps, float(base_lr))


def _draw_schedule(draw: st.DrawFn, n: int, base: float) -> tuple[float, ...]:
    kind = draw(_choice(SCHEDULES))
    _label("lr schedule", kind, count=True)
    if kind == "constant":
        lrs = [base] * n
    elif kind == "step_decay":
        gamma = draw(_choice((0.5, 0.1, 0.0)))
        period = draw(_integers(1, max(1, n - 1)))
        lrs = [base * gamma ** (k // period) for k in range(n)]
    elif kind == "cosine":
        lrs = [base] if n == 1 else [base * (1 + math.cos(math.pi * k / (n - 1))) / 2
                                     for k in range(n)]
    else:
        lrs = [base * _with_specials(draw, lambda: _log_uniform(draw, -3.0, 0.0), (0.0,), weight=5)
               for _ in range(n)]
    return tuple(float(x) for x in lrs)


# --------------------------------------------------------------------------------------------------
# Starting states
# --------------------------------------------------------------------------------------------------
def states(params: Sequence[np.ndarray], hp: HParams, *,
           max_step: int = 4096) -> st.SearchStrategy[tuple[ParamState, ...]]:
    """Valid starting states for ``params`` under ``hp`` (R14, R30), one per parameter.

    - ``step``: one count for all parameters (optax keeps a single count), in 0 … max_step;
    - ``square_avg`` ≥ 0, in the parameter's dtype (complex under "real_pairs": real and imaginary
      parts hold the two components' averages; real under "modulus");
    - ``grad_avg`` (iff centered) with |grad_avg|² ≤ square_avg exactly for the stored values (per
      component under "real_pairs"): square_avg is built from the rounded grad_avg and rounded
      upwards into the dtype;
    - ``momentum_buffer`` (iff momentum > 0): finite, log-uniform scale 1e-3 … 10;
    - with bias_correction the averages are those of a run of ``step`` steps: the observed part is
      weighted by 1 − alpha^step and square_avg also holds alpha^step·initial_square_avg (so v̂
      and the bias-corrected variance stay bounded and non-negative);
    - with eps = 0, square_avg − |grad_avg|² > 0 strictly (and square_avg > 0 when not centered);
      with bias_correction and initial_square_avg = 0 this needs step ≥ 1.
    """
    if not isinstance(hp, HParams):
        raise InvalidArgument(f"hp={hp!r} must be a spec.rmsprop.HParams")
    if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
        raise InvalidArgument(f"params must be a sequence of NumPy arrays, got {type(params)}")
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray) or np.dtype(p.dtype).name not in DTYPES:
            raise InvalidArgument(f"params[{i}]={p!r}; allowed: NumPy arrays of a dtype in "
                                  f"{', '.join(DTYPES)}")
    max_step = _check_int(max_step, "max_step", _min_step(hp))
    return _STATES(tuple(params), hp, _min_step(hp), max_step)


def _min_step(hp: HParams) -> int:
    """With bias correction, eps = 0 and initial_square_avg = 0, a state at step 0 has v = 0."""
    return int(hp.bias_correction and hp.eps == 0 and hp.initial_square_avg == 0)


def _draw_states(draw: st.DrawFn, params: tuple[np.ndarray, ...], hp: HParams, min_step: int,
                 max_step: int) -> tuple[ParamState, ...]:
    # Counts at the precision edges of low-precision step counters (bfloat16 counts exactly up
    # to 256, float16 up to 2048) reveal a saturating counter (bug class 15) in one step.
    edges = [k for k in (255, 256, 257, 2047, 2048, 2049) if min_step <= k <= max_step]
    step = draw(st.one_of(_integers(min_step, max_step), st.sampled_from(edges))
                if edges else _integers(min_step, max_step))
    _label("state step", step)
    if hp.bias_correction:
        prior = float(hp.alpha) ** step
        weight, base = 1.0 - prior, prior * float(hp.initial_square_avg)
    else:
        weight, base = 1.0, 0.0
    return tuple(_param_state(draw, p.shape, np.dtype(p.dtype), hp, step, weight, base)
                 for p in params)


def _param_state(draw: st.DrawFn, shape: tuple[int, ...], dt: np.dtype, hp: HParams, step: int,
                 weight: float, base: float) -> ParamState:
    comp = _component(dt)
    full = _full_shape(shape, dt)
    modulus = dt.kind == "c" and hp.complex_mode == "modulus"
    units = _Units(draw)
    bound = gradient_bound(dt.name)
    # |grad_avg| ≤ 4σ ≤ bound/2 and square_avg ≤ 2·(4σ)² + 10σ² ≤ bound²·42/64 (+ initial v).
    sigma = _log_uniform(draw, *_exponent_range(-3.0, min(100.0, bound / 8)))
    grad_avg = (weight * sigma * units.normal(full)).astype(comp).astype(np.float64)
    sq = grad_avg**2
    if modulus:
        sq = sq.sum(axis=-1)
    v_shape = sq.shape
    # Strictly positive when eps = 0, so that the denominator is never sqrt(0) + 0.
    u = np.abs(units.uniform(v_shape))
    extra = sigma**2 * _log_uniform(draw, -8.0, 1.0) * ((0.5 + u / 2) if hp.eps == 0 else u)
    with np.errstate(divide="ignore", invalid="ignore"):
        # (1 + 8·2^-53) covers the float64 rounding of sq/weight: the target is ≥ the exact value.
        lower = np.where(sq > 0, sq / weight * (1 + 8 * 2.0**-53), 0.0)
    square_avg = _round_up(base + lower + weight * extra, comp)
    momentum_buffer = None
    if hp.momentum > 0:
        b_scale = _log_uniform(draw, -3.0, 1.0)
        momentum_buffer = _into_dtype(np.clip(b_scale * units.normal(full), -bound, bound), dt)
    return ParamState(
        step=step,
        square_avg=square_avg if (modulus or dt.kind != "c") else
        _into_dtype(square_avg.astype(np.float64), dt),
        grad_avg=_into_dtype(grad_avg, dt) if hp.centered else None,
        momentum_buffer=momentum_buffer,
    )


def _round_up(target: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``target`` rounded into ``dtype`` upwards: every result r has float(r) ≥ target."""
    info = dtype_info(dtype)
    r = np.asarray(target, dtype=np.float64).astype(dtype)
    for _ in range(4):
        rf = r.astype(np.float64)
        low = rf < target
        if not low.any():
            return r
        # Adding 2u·|r| (or the smallest subnormal) moves past at least one ulp.
        up = (rf + np.maximum(np.abs(rf) * 2 * info.unit_roundoff, info.tiny)).astype(dtype)
        r = np.where(low, up, r).astype(dtype)
    raise AssertionError("rounding upwards did not converge")


# --------------------------------------------------------------------------------------------------
# Structures of compiled backends (Capabilities.compiled)
# --------------------------------------------------------------------------------------------------
# Structures per target of a compiled backend. A compilation costs seconds where an example
# costs milliseconds (torch.compile: 1.5–4 s, benchmarks/torch_compilations.py): with a new
# structure per example a certification at ci would spend nearly all its time compiling. With a
# few fixed structures per target — shared by every target with the same options and dtype —
# the search spends its examples on values, which a compiled program must get right for every
# input, while the structures still cover every rank, sides 0 and 1, each declared dtype among
# several parameters, each layout and each flag on and off.
STRUCTURES = 6
# The values a specialised hyperparameter (Capabilities.specialised) takes: spread over the
# range :func:`hparams` draws from, edges included (0 and alpha = 1 excepted: their validity
# depends on other draws).
SPECIALISED_VALUES: dict[str, tuple[float, ...]] = {
    "lr": (1e-6, 1e-3, 1e-1, 1.0), "alpha": (0.0, 0.5, 0.9, 0.99, 0.999),
    "eps": (1e-12, 1e-8, 1e-4, 1.0), "weight_decay": (1e-5, 1e-3, 1e-1, 1.0),
    "momentum": (0.5, 0.9, 0.99)}
assert set(SPECIALISED_VALUES) == set(SPECIALISABLE), "a specialisable hyperparameter lacks values"


@dataclasses.dataclass(frozen=True)
class Flags:
    """The hyperparameter features a case switches on, and the specialised values."""

    on: frozenset[str]
    values: tuple[tuple[str, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class ParamStructure:
    """One parameter of a :class:`Structure`: its dtype, its sides (0 and 1 fixed, None: drawn
    in 2 … max_side) and its layout."""

    dtype: str
    sides: tuple[int | None, ...]
    layout: str = "contiguous"


@dataclasses.dataclass(frozen=True)
class Structure:
    """What a compiled backend compiles a program for: flags, specialised values, parameters."""

    flags: Flags
    params: tuple[ParamStructure, ...]


def _flag_pool(caps: Capabilities, features: frozenset[str], require: frozenset[str],
               n: int = STRUCTURES) -> tuple[Flags, ...]:
    """``n`` flag combinations: the first with only ``require``, the second with every
    feature, the others each optional feature on or off at random (a fixed seed); specialised
    values from :data:`SPECIALISED_VALUES`, in turn."""
    optional = sorted((features & set(HPARAM_FEATURES)) - require)
    specialised = sorted(caps.specialised)
    out = []
    for k in range(n):
        rng = np.random.default_rng(k)
        on = set(require) | {f for f in optional if k == 1 or (k > 1 and rng.random() < 0.5)}
        if "nesterov" in on:
            on.add("momentum")
        values = tuple((h, SPECIALISED_VALUES[h][k % len(SPECIALISED_VALUES[h])])
                       for h in specialised)
        out.append(Flags(frozenset(on), values))
    return tuple(out)


def structures(caps: Capabilities, dtype: str, n: int = STRUCTURES, *, multi_param: bool = False,
               mixed_dtypes: bool = False, layouts: bool = False, allow_nonfinite: bool = False,
               features: Iterable[str] | None = None,
               require: Iterable[str] = frozenset()) -> tuple[Structure, ...]:
    """The ``n`` structures a compiled backend's cases take for these :func:`cases` options.

    Structure k has flags ``_flag_pool(...)[k]`` and 1 (2 … 4 with ``multi_param``: 2 + k mod 3)
    parameters; parameter i has rank (k + 2i + 1) mod 5, one side 1 when (k + i) mod 3 = 2 and
    one side 0 when (k + i) mod 4 = 2 (with "zero_size"; never for the non-finite first
    parameter), the case dtype (with ``mixed_dtypes``, the other non-empty ones rotate through
    the declared dtypes) and a layout rotating through those its sides allow (with
    ``layouts``). Structure 0 is the simplest (one or two contiguous parameters of the case
    dtype, rank 1 and 3, only the required flags): the one a failure shrinks towards.
    Deterministic: every target with the same options shares them, and a worker compiles each
    once.
    """
    caps = _check_caps(caps)
    dtype = _check_dtype(dtype)
    n = _check_int(n, "n", 1)
    features, require = _check_features(caps, features, require)
    zero_ok = caps.supports("zero_size")
    all_dtypes = tuple(sorted(caps.dtypes))
    out = []
    for k, flags in enumerate(_flag_pool(caps, features, require, n)):
        params = []
        for i in range(2 + k % 3 if multi_param else 1):
            rank = (k + 2 * i + 1) % 5
            if rank == 0 and not zero_ok:
                rank = 1
            sides: list[int | None] = [None] * rank
            if rank and (k + i) % 3 == 2:
                sides[(k + i) % rank] = 1
            if rank and zero_ok and (k + i) % 4 == 2 and not (allow_nonfinite and i == 0):
                sides[(k + i + 1) % rank] = 0
            # Mixed dtypes on the non-empty ones: a zero-size parameter has the case dtype.
            mixed = mixed_dtypes and i * k and 0 not in sides
            dt = all_dtypes[(k + i) % len(all_dtypes)] if mixed else dtype
            allowed = _allowed_layouts(rank, 0 not in sides) if layouts and k else ("contiguous",)
            params.append(ParamStructure(dt, tuple(sides), allowed[(k + 2 * i) % len(allowed)]))
        out.append(Structure(flags, tuple(params)))
    return tuple(out)


def _draw_sides(draw: st.DrawFn, sides: tuple[int | None, ...], max_side: int,
                max_size: int) -> tuple[int, ...]:
    """A shape with ``sides``: the None ones drawn in 2 … max_side (halved, not below 2,
    until the shape has at most ``max_size`` elements, where it can)."""
    out = [draw(_integers(2, max(2, max_side))) if s is None else s for s in sides]
    free = [i for i, s in enumerate(sides) if s is None]
    while free and math.prod(out) > max_size and max(out[i] for i in free) > 2:
        i = max(free, key=lambda j: out[j])
        out[i] = max(2, out[i] // 2)
    return tuple(out)


def _with_flags(draw: st.DrawFn, caps: Capabilities, flags: Flags, edge: bool,
                positive_start: bool) -> HParams:
    """Hyperparameters with exactly ``flags.on`` and its specialised values, the rest drawn."""
    hp = _draw_hparams(draw, caps, flags.on, flags.on & set(HPARAM_FEATURES), edge,
                       positive_start)
    values = {h: v for h, v in flags.values
              if (h != "weight_decay" or hp.weight_decay > 0) and (h != "momentum"
                                                                    or hp.momentum > 0)}
    return hp.replace(**values) if values else hp


# --------------------------------------------------------------------------------------------------
# Whole cases
# --------------------------------------------------------------------------------------------------
def _draw_initial_params(draw: st.DrawFn, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    """θ = s·(z + m): s log-uniform in 0.1 … 10, a common offset m in [-4, 4] that moves some
    parameters far from 0 (so that weight decay matters), |θ| ≤ bound/2."""
    full = _full_shape(shape, dt)
    if math.prod(full) == 0:
        return np.zeros(shape, dtype=dt)
    bound = gradient_bound(dt.name)
    s = _log_uniform(draw, *_exponent_range(-1.0, min(10.0, bound / 16)))
    offset = draw(_floats(-4.0, 4.0))
    theta = s * (_Units(draw).normal(full) + offset)
    return _into_dtype(np.clip(theta, -bound / 2, bound / 2), dt)


def cases(caps: Capabilities, dtype: str, device: str = "cpu", *, min_steps: int = 1,
          max_steps: int = 4, multi_param: bool = False, mixed_dtypes: bool = False,
          schedule: bool = False, layouts: bool = False, initial_state: bool = False,
          allow_nonfinite: bool = False, features: Iterable[str] | None = None,
          require: Iterable[str] = frozenset(), max_size: int = 64) -> st.SearchStrategy[Case]:
    """A :class:`~conformance.case.Case` within the backend's capabilities.

    Hyperparameters from :func:`hparams` (``features``/``require`` as there), ``min_steps`` …
    ``max_steps`` steps, one gradient family for the whole case. Each flag asks for something the
    backend must declare (else InvalidArgument): ``multi_param`` ("multi_param": 1 … 4 parameters
    of independent shapes), ``mixed_dtypes`` ("mixed_dtypes", with multi_param: extra parameters
    in any of caps.dtypes), ``schedule`` ("lr_schedule": ``lrs`` from :func:`lr_schedules`),
    ``layouts`` ("layouts": one per parameter from :func:`layouts`), ``initial_state``
    ("state_load": from :func:`states`; also lets eps be 0). Zero-size and 0-d parameters appear
    only if the backend declares "zero_size". ``allow_nonfinite``: the first parameter is
    non-empty and has NaN/±inf gradient values; each other parameter has some or none.

    For a compiled backend (``caps.compiled``) each case has one of the :data:`STRUCTURES`
    structures :func:`structures` gives for these options, and draws everything else.
    """
    caps = _check_caps(caps)
    dtype = _check_dtype(dtype)
    if dtype not in caps.dtypes:
        raise InvalidArgument(f"dtype={dtype!r} is not declared by the backend; declared: "
                              f"{sorted(caps.dtypes)}")
    if device not in caps.devices:
        raise InvalidArgument(f"device={device!r} is not available to the backend; available: "
                              f"{list(caps.devices)}")
    min_steps = _check_int(min_steps, "min_steps", 1)
    max_steps = _check_int(max_steps, "max_steps", min_steps, lo_name="min_steps")
    max_size = _check_int(max_size, "max_size", 1)
    flags = {"multi_param": multi_param, "mixed_dtypes": mixed_dtypes, "schedule": schedule,
             "layouts": layouts, "initial_state": initial_state,
             "allow_nonfinite": allow_nonfinite}
    needs = {"multi_param": "multi_param", "mixed_dtypes": "mixed_dtypes",
             "schedule": "lr_schedule", "layouts": "layouts", "initial_state": "state_load"}
    for name, value in flags.items():
        if _check_bool(value, name) and name in needs and not caps.supports(needs[name]):
            raise InvalidArgument(f"{name}=True needs the feature {needs[name]!r}, which the "
                                  f"backend does not declare; declared: {sorted(caps.features)}")
    if mixed_dtypes and not multi_param:
        raise InvalidArgument("mixed_dtypes=True needs multi_param=True (one parameter has one "
                              "dtype)")
    features, require = _check_features(caps, features, require)
    pool = structures(caps, dtype, multi_param=multi_param, mixed_dtypes=mixed_dtypes,
                      layouts=layouts, allow_nonfinite=allow_nonfinite, features=features,
                      require=require) if caps.compiled else None
    return _CASES(caps, dtype, device, min_steps, max_steps, max_size, features, require,
                  _state_stays_positive(caps, initial_state),
                  multi_param=multi_param, mixed_dtypes=mixed_dtypes, schedule=schedule,
                  with_layouts=layouts, initial_state=initial_state,
                  allow_nonfinite=allow_nonfinite, pool=pool)


def _draw_case(draw: st.DrawFn, caps: Capabilities, dtype: str, device: str, min_steps: int,
               max_steps: int, max_size: int, features: frozenset[str], require: frozenset[str],
               positive_start: bool, *, multi_param: bool, mixed_dtypes: bool, schedule: bool,
               with_layouts: bool, initial_state: bool, allow_nonfinite: bool,
               pool: tuple[Structure, ...] | None = None) -> Case:
    if pool is None:
        hp = _draw_hparams(draw, caps, features, require, True, positive_start)
    else:
        structure = pool[draw(_integers(0, len(pool) - 1))]
        hp = _with_flags(draw, caps, structure.flags, True, positive_start)
    n_steps = draw(_integers(min_steps, max_steps))
    # The structure's parameters, or (None) one drawn per parameter.
    given: tuple[ParamStructure | None, ...] = structure.params if pool is not None else (
        (None,) * (draw(_integers(1, _MAX_PARAMS)) if multi_param else 1))
    family = draw(_choice(FAMILIES))
    _label("gradient family", family, count=True)
    zero_ok = caps.supports("zero_size")
    all_dtypes = tuple(sorted(caps.dtypes))
    params, seqs, shapes_ = [], [], []
    for i, ps in enumerate(given):
        dt_name = ps.dtype if ps else (
            draw(_choice(all_dtypes)) if (mixed_dtypes and i > 0) else dtype)
        dt = np_dtype(dt_name)
        nonfinite = allow_nonfinite and (i == 0 or draw(_BOOLEANS))
        shape = _draw_sides(draw, ps.sides, 6, max_size) if ps else _draw_shape(
            draw, 0 if zero_ok else 1, 4, 6, max_size, zero_ok and not (allow_nonfinite and i == 0))
        shapes_.append(shape)
        params.append(_draw_initial_params(draw, shape, dt))
        seqs.append(_draw_gradients(draw, shape, dt_name, n_steps, family, nonfinite, None))
    layouts_ = None if not with_layouts else tuple(
        ps.layout if ps else draw(_layouts(sh)) for ps, sh in zip(given, shapes_))
    return Case(
        hp=hp,
        params=tuple(params),
        grads=tuple(tuple(seq[k] for seq in seqs) for k in range(n_steps)),
        lrs=_draw_schedule(draw, n_steps, float(hp.lr)) if schedule else None,
        device=device,
        layouts=layouts_,
        initial_state=_draw_states(draw, tuple(params), hp, _min_step(hp), 1000)
        if initial_state else None,
    )


# The public strategies: each draw function as a composite strategy.
_SHAPES = st.composite(_draw_shape)
_GRADIENTS = st.composite(_draw_gradients)
_HPARAMS = st.composite(_draw_hparams)
_SCHEDULES = st.composite(_draw_schedule)
_STATES = st.composite(_draw_states)
_CASES = st.composite(_draw_case)


# --------------------------------------------------------------------------------------------------
# Settings profiles
# --------------------------------------------------------------------------------------------------
def _without_local_constants() -> None:
    """Hypothesis (6.131+) mixes into generation the literals it reads off every local module
    loaded at the time: a test worker, a certify run and a repro load different modules, and
    any literal added anywhere in the code changes the set, so the derandomised ci search
    found different examples for the same strategies (a mutant caught in one process, missed
    in another). Off: what is searched depends on the strategies and the seed alone."""
    from hypothesis.internal.conjecture import providers  # noqa: PLC0415

    if hasattr(providers, "_get_local_constants"):  # an internal: older versions lack it
        sets = providers._local_constants
        none = type(sets)(integers=type(sets.integers)(),
                          floats=type(sets.floats)(key=providers.float_to_int),
                          bytes=type(sets.bytes)(), strings=type(sets.strings)())
        providers._get_local_constants = lambda: none


_without_local_constants()
_SUPPRESS = (HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much)

# quick and thorough keep an example database, so a counterexample found once is replayed first
# next time (the CI recipe caches it). Stated explicitly: Hypothesis's own defaults turn the
# database off and derandomise whenever a CI environment variable is set.
_DATABASE = DirectoryBasedExampleDatabase(
    os.path.join(os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY", ".hypothesis"), "examples"))

SETTINGS_PROFILES: dict[str, settings] = {
    "rmsprop-quick": settings(max_examples=10, deadline=None, derandomize=False,
                              database=_DATABASE, suppress_health_check=_SUPPRESS),
    "rmsprop-ci": settings(max_examples=40, deadline=None, derandomize=True, print_blob=True,
                           database=None, suppress_health_check=_SUPPRESS),
    "rmsprop-thorough": settings(max_examples=400, deadline=None, derandomize=False,
                                 database=_DATABASE, suppress_health_check=_SUPPRESS),
}
for _name, _profile in SETTINGS_PROFILES.items():
    settings.register_profile(_name, _profile)

# How long Hypothesis may shrink one target's failure, per effort (seconds, counted from the
# start of shrinking): a cut-short shrink still reports the smallest failing case found so far.
# ci's 2 s: `python -m benchmarks.shrink_box` finds the same counterexample and rule as a 5 s
# box for 33 of the 34 mutants (the other, non_deterministic, differs between runs at any box),
# in 53 s instead of 75 s; a 1 s box leaves 4 larger (maximize_twice: 3 steps of 4 parameters,
# not 1 of 1), which quick, the effort for seconds, accepts (28.5 s for all 34).
SHRINK_SECONDS: dict[str, float] = {"rmsprop-quick": 1.0, "rmsprop-ci": 2.0,
                                    "rmsprop-thorough": 60.0}


def _settings_key(effort: str) -> str:
    name = effort if isinstance(effort, str) and effort.startswith("rmsprop-") \
        else f"rmsprop-{effort}"
    if not isinstance(effort, str) or name not in SETTINGS_PROFILES:
        short = [n.removeprefix("rmsprop-") for n in SETTINGS_PROFILES]
        raise ValueError(f"unknown search effort {effort!r}; allowed: "
                         f"{', '.join(short + list(SETTINGS_PROFILES))}")
    return name


def settings_for(effort: str) -> settings:
    """The Hypothesis settings of a search effort: "quick", "ci", "thorough", or the name of
    its registered Hypothesis settings profile ("rmsprop-quick", "rmsprop-ci", ...)."""
    return SETTINGS_PROFILES[_settings_key(effort)]


def shrink_seconds_for(effort: str) -> float:
    """The shrinking time box of a search effort (names as in :func:`settings_for`)."""
    return SHRINK_SECONDS[_settings_key(effort)]
