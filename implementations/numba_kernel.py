"""A fused single-pass RMSProp kernel for the CPU (numba), torch profile.

One pass over the elements of a parameter reads θ, g, square_avg (and grad_avg, momentum_buffer)
once and writes θ and the state once; ``prange`` spreads the elements over numba's threads. Per
element, with constants rounded into the compute dtype (spec.rmsprop, torch profile)::

    g = -g                       if maximize
    g = g + λ·θ                  if weight_decay
    v = α·v + (1-α)·g²
    ḡ = α·ḡ + (1-α)·g            if centered;   d = sqrt(max(v - ḡ², 0)) + ε,  else sqrt(v) + ε
    b = μ·b + g/d;  θ = θ - η·b  if momentum,   else θ = θ - η·(g/d)

float32 and float64 compute in their own dtype. float16 and bfloat16 are loaded into float32,
computed in float32 and rounded once when stored (parameter and state stay in the parameter's
dtype): in float32, ε = 1e-8 does not underflow as it does in float16. The centered variance is
clamped at 0 as the oracle does: exact math never makes it negative (R30), so only rounding could,
and turning that rounding into a NaN would break R27 (PyTorch's centered-NaN defect).

Every flag combination is its own compiled kernel (the flags are compile-time constants), so the
plain update carries no centered or momentum code. Kernels are 1-D: each parameter is viewed as a
1-D strided array in its own memory order, which covers contiguous, transposed, strided and
channels-last parameters without copying them.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from implementations._kernel_common import check_hparams
from spec.rmsprop import HParams, ParamState

__all__ = ["NumbaBackend", "rmsprop_update"]

# Storage formats: a native float array, or 16-bit values held as raw uint16 bits.
NATIVE, FLOAT16, BFLOAT16 = 0, 1, 2
# dtype name -> (storage format, dtype the kernel computes in)
_FORMATS: dict[str, tuple[int, type]] = {
    "float16": (FLOAT16, np.float32),
    "bfloat16": (BFLOAT16, np.float32),
    "float32": (NATIVE, np.float32),
    "float64": (NATIVE, np.float64),
}


# numba has no float16 type on the CPU: conversions are bit casts and LLVM's half conversions.
@intrinsic
def _half_to_float(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(types.uint16), codegen


@intrinsic
def _float_to_half(typingctx, x):
    def codegen(context, builder, sig, args):  # fptrunc rounds to nearest even
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(types.float32), codegen


@intrinsic
def _float_from_bits(typingctx, bits):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@intrinsic
def _bits_of_float(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@njit(inline="always")
def _bfloat16_store(x):
    bits = _bits_of_float(x)
    if math.isnan(x):  # keep it a quiet NaN once truncated
        return np.uint16((bits >> np.uint32(16)) | np.uint32(0x40))
    # round to nearest even on the 16 dropped bits (carries into the exponent give inf)
    rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return np.uint16((bits + rounding) >> np.uint32(16))


@njit(inline="always")
def _load(a, i, fmt):
    if fmt == FLOAT16:
        return _half_to_float(a[i])
    if fmt == BFLOAT16:
        return _float_from_bits(np.uint32(a[i]) << np.uint32(16))
    return a[i]


@njit(inline="always")
def _store(a, i, x, fmt):
    if fmt == FLOAT16:
        a[i] = _float_to_half(x)
    elif fmt == BFLOAT16:
        a[i] = _bfloat16_store(x)
    else:
        a[i] = x


@functools.cache
def _kernel(fmt: int, weight_decay: bool, maximize: bool, centered: bool, momentum: bool):
    """The compiled update for one storage format and flag combination (closure constants)."""

    @njit(parallel=True, fastmath=False, cache=True, error_model="numpy")
    def kernel(param, grad, square_avg, grad_avg, momentum_buffer,
               lr, alpha, one_minus_alpha, eps, wd, mu):
        zero = alpha - alpha  # 0 in the compute dtype (alpha is finite; a literal is float64)
        for i in prange(param.shape[0]):
            theta = _load(param, i, fmt)
            g = _load(grad, i, fmt)
            if maximize:
                g = -g
            if weight_decay:
                g = g + wd * theta
            v = alpha * _load(square_avg, i, fmt) + one_minus_alpha * (g * g)
            _store(square_avg, i, v, fmt)
            if centered:
                ga = alpha * _load(grad_avg, i, fmt) + one_minus_alpha * g
                _store(grad_avg, i, ga, fmt)
                w = v - ga * ga
                # Only rounding makes w negative: exact math has ga² <= v (R30). A comparison
                # keeps a NaN a NaN, which max() need not do.
                if w < zero:  # noqa: PLR1730
                    w = zero
                d = math.sqrt(w) + eps
            else:
                d = math.sqrt(v) + eps
            if momentum:
                b = mu * _load(momentum_buffer, i, fmt) + g / d
                _store(momentum_buffer, i, b, fmt)
                _store(param, i, theta - lr * b, fmt)
            else:
                _store(param, i, theta - lr * (g / d), fmt)

    return kernel


def _memory_order(a: np.ndarray) -> list[int]:
    """The axes of ``a`` from the outermost (largest stride) to the innermost."""
    return sorted(range(a.ndim), key=lambda ax: -abs(a.strides[ax]))


def _flat(a: np.ndarray, order: list[int]) -> np.ndarray | None:
    """``a``'s elements, in the axis order ``order``, as a 1-D view (None if no view exists)."""
    try:
        return np.transpose(a, order).reshape(-1, copy=False)
    except ValueError:
        return None


def _raw(a: np.ndarray, fmt: int) -> np.ndarray:
    return a if fmt == NATIVE else a.view(np.uint16)


def rmsprop_update(param: np.ndarray, grad: np.ndarray, state: ParamState, hp: HParams,
                   lr: float) -> ParamState:
    """One step on ``param`` and the arrays of ``state``, in place; returns the advanced state.

    ``state``'s arrays must have ``param``'s dtype and be laid out in ``param``'s memory order
    (``np.empty_like(param)`` is). ``grad`` is only read; if it is laid out differently it is
    first copied into ``param``'s layout.
    """
    grad = np.asarray(grad)
    fmt, compute = _FORMATS[param.dtype.name]
    order = _memory_order(param)
    flat_param = _flat(param, order)
    # A parameter no 1-D view reaches (never one from conformance.case.materialize) is updated
    # in a copy in its memory order, written back below.
    work = param if flat_param is not None else np.array(param, order="K")
    if flat_param is None:
        flat_param = _flat(work, order)
    flat_grad = _flat(grad, order)
    if flat_grad is None:
        flat_grad = _flat(_like(work, grad), order)
    square_avg, grad_avg, momentum_buffer = (_flat(x, order) if x is not None else None
                                             for x in state[1:])
    if param.size:
        c = compute
        kernel = _kernel(fmt, hp.weight_decay != 0, hp.maximize, hp.centered, hp.momentum > 0)
        # A buffer whose flag is off is never touched: any array of its type stands in.
        stand_in = _raw(square_avg, fmt)
        kernel(_raw(flat_param, fmt), _raw(flat_grad, fmt), stand_in,
               stand_in if grad_avg is None else _raw(grad_avg, fmt),
               stand_in if momentum_buffer is None else _raw(momentum_buffer, fmt),
               c(lr), c(hp.alpha), c(1) - c(hp.alpha), c(hp.eps), c(hp.weight_decay),
               c(hp.momentum))
    if work is not param:
        param[...] = work
    return state._replace(step=state.step + 1)


def _like(a: np.ndarray, values) -> np.ndarray:
    """``values`` in an array of ``a``'s shape, dtype and memory order."""
    out = np.empty_like(a)
    out[...] = values
    return out


def _initial_state(param: np.ndarray, hp: HParams, loaded: ParamState | None) -> ParamState:
    """The state arrays in ``param``'s dtype and memory order: zeros, or a loaded state."""
    def like(values) -> np.ndarray:
        return _like(param, values)

    if loaded is None:
        return ParamState(0, like(hp.initial_square_avg),
                          like(0) if hp.centered else None,
                          like(0) if hp.momentum > 0 else None)
    return ParamState(loaded.step, like(loaded.square_avg),
                      None if loaded.grad_avg is None else like(loaded.grad_avg),
                      None if loaded.momentum_buffer is None else like(loaded.momentum_buffer))


def _copy(state: ParamState) -> ParamState:
    return ParamState(state.step, *(None if x is None else x.copy() for x in state[1:]))


class NumbaBackend:
    """The fused kernel as a conformance backend (torch profile)."""

    name = "numba"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            profile="torch",
            dtypes=frozenset(_FORMATS),
            devices=("cpu",),
            features=frozenset({"weight_decay", "momentum", "centered", "maximize",
                                "lr_schedule", "multi_param", "mixed_dtypes", "state_readout",
                                "state_load", "layouts", "zero_size"}),
            description="fused single-pass numba kernel (parallel, fastmath off); float16 and "
                        "bfloat16 computed in float32 and rounded once when stored",
        )

    def run(self, case: Case) -> Trajectory:
        hp = case.hp
        check_hparams(hp)
        params = case.materialized_params()
        loaded = case.initial_state or (None,) * len(params)
        states = [_initial_state(p, hp, s) for p, s in zip(params, loaded)]
        out = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            lr = case.lr_at(k)
            states = [rmsprop_update(p, g, s, hp, lr) for p, g, s in zip(params, grads, states)]
            out.append(params, [_copy(s) for s in states])
        return out
