"""The fused RMSProp update (torch profile) as a Triton kernel, on torch tensors.

The same update as implementations/numba_kernel.py: one program per BLOCK of elements reads θ, g,
square_avg (and grad_avg, momentum_buffer) and writes θ and the state once; the flags are constexpr,
so each combination compiles to its own kernel. float32 and float64 compute in their own dtype
(with correctly rounded division and square root); float16 and bfloat16 are loaded into float32,
computed in float32 and rounded once (to nearest even) when stored. The centered variance is
clamped at 0, as in the oracle: only rounding can make it negative (R30).

On a machine with CUDA the kernel runs on "cuda:N". Without one it runs in Triton's interpreter
(NumPy on the host), reported as the device "cpu-interpreter": slow, for correctness only.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from implementations._kernel_common import check_hparams
from spec.rmsprop import HParams, ParamState

if not torch.cuda.is_available():
    # Without a GPU, Triton can only run kernels in its interpreter. It chooses between compiling
    # and interpreting from TRITON_INTERPRET (this version when @triton.jit wraps a function,
    # older ones when triton is imported), so the variable must be set before both. An explicit
    # setting by the user wins.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

__all__ = ["TritonBackend", "rmsprop_update"]

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
INTERPRETER_DEVICE = "cpu-interpreter"

NATIVE, FLOAT16, BFLOAT16 = 0, 1, 2
# torch dtype -> (storage format, compute dtype, torch dtype the kernel sees)
_FORMATS = {
    torch.float16: (FLOAT16, tl.float32, torch.float16),
    torch.bfloat16: (BFLOAT16, tl.float32, torch.int16),  # raw bits: rounded by hand, see _store
    torch.float32: (NATIVE, tl.float32, torch.float32),
    torch.float64: (NATIVE, tl.float64, torch.float64),
}
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
           "float64": torch.float64}


@triton.jit
def _load(ptr, offs, stride, mask, STORAGE: tl.constexpr, COMPUTE: tl.constexpr):
    x = tl.load(ptr + offs * stride, mask=mask)
    if STORAGE == BFLOAT16:
        bits = x.to(tl.uint16, bitcast=True).to(tl.uint32) << 16
        x = bits.to(tl.float32, bitcast=True)
    return x.to(COMPUTE)


@triton.jit
def _store(ptr, offs, stride, mask, x, STORAGE: tl.constexpr):
    if STORAGE == BFLOAT16:
        # Round to nearest even by hand: the interpreter truncates float32 -> bfloat16.
        bits = x.to(tl.uint32, bitcast=True)
        nearest = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        is_nan = x != x  # noqa: PLR0124
        bits = tl.where(is_nan, (bits >> 16) | 0x40, nearest)  # NaN stays a quiet NaN
        tl.store(ptr + offs * stride, bits.to(tl.uint16).to(tl.int16, bitcast=True), mask=mask)
    else:
        tl.store(ptr + offs * stride, x.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsprop_kernel(param_ptr, grad_ptr, square_avg_ptr, grad_avg_ptr, momentum_buffer_ptr,
                    param_stride, grad_stride, square_avg_stride, grad_avg_stride,
                    momentum_buffer_stride, n, consts_ptr,
                    STORAGE: tl.constexpr, COMPUTE: tl.constexpr, WEIGHT_DECAY: tl.constexpr,
                    MAXIMIZE: tl.constexpr, CENTERED: tl.constexpr, MOMENTUM: tl.constexpr,
                    BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    # constants, rounded into the compute dtype on the host: lr, alpha, 1 - alpha, eps, wd, mu
    lr = tl.load(consts_ptr)
    alpha = tl.load(consts_ptr + 1)
    one_minus_alpha = tl.load(consts_ptr + 2)
    eps = tl.load(consts_ptr + 3)

    theta = _load(param_ptr, offs, param_stride, mask, STORAGE, COMPUTE)
    g = _load(grad_ptr, offs, grad_stride, mask, STORAGE, COMPUTE)
    if MAXIMIZE:
        g = -g
    if WEIGHT_DECAY:
        g = g + tl.load(consts_ptr + 4) * theta
    v = alpha * _load(square_avg_ptr, offs, square_avg_stride, mask, STORAGE, COMPUTE) \
        + one_minus_alpha * (g * g)
    _store(square_avg_ptr, offs, square_avg_stride, mask, v, STORAGE)
    if CENTERED:
        ga = alpha * _load(grad_avg_ptr, offs, grad_avg_stride, mask, STORAGE, COMPUTE) \
            + one_minus_alpha * g
        _store(grad_avg_ptr, offs, grad_avg_stride, mask, ga, STORAGE)
        w = v - ga * ga
        w = tl.where(w < 0, 0.0, w)  # rounding only: exact math has ga² <= v (R30); NaN stays NaN
    else:
        w = v
    # Triton's float32 sqrt and "/" are approximate on GPUs; the _rn forms round correctly.
    if COMPUTE == tl.float32:
        s = tl.div_rn(g, tl.sqrt_rn(w) + eps)
    else:
        s = g / (tl.sqrt(w) + eps)
    if MOMENTUM:
        b = tl.load(consts_ptr + 5) * _load(momentum_buffer_ptr, offs, momentum_buffer_stride, mask,
                                            STORAGE, COMPUTE) + s
        _store(momentum_buffer_ptr, offs, momentum_buffer_stride, mask, b, STORAGE)
        theta = theta - lr * b
    else:
        theta = theta - lr * s
    _store(param_ptr, offs, param_stride, mask, theta, STORAGE)


def _memory_order(t: torch.Tensor) -> list[int]:
    """The axes of ``t`` from the outermost (largest stride) to the innermost."""
    return sorted(range(t.dim()), key=lambda ax: -abs(t.stride(ax)))


def _flat(t: torch.Tensor, order: list[int]) -> torch.Tensor | None:
    """``t``'s elements, in the axis order ``order``, as a 1-D view (None if no view exists)."""
    try:
        return t.permute(order).view(-1)
    except RuntimeError:
        return None


def _empty_in_order(t: torch.Tensor, order: list[int]) -> torch.Tensor:
    """An uninitialised tensor like ``t``, dense, its axes laid out in the order ``order``."""
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return torch.empty([t.shape[ax] for ax in order], dtype=t.dtype,
                       device=t.device).permute(inverse)


def rmsprop_update(param: torch.Tensor, grad: torch.Tensor, state: ParamState, hp: HParams,
                   lr: float) -> ParamState:
    """One step on ``param`` and the tensors of ``state``, in place; returns the advanced state.

    ``state``'s tensors must have ``param``'s dtype and be laid out in ``param``'s memory order.
    ``grad`` is only read; if it is laid out differently it is first copied into that order.
    """
    storage, compute, kernel_dtype = _FORMATS[param.dtype]
    order = _memory_order(param)
    flat_param = _flat(param, order)
    # A parameter no 1-D view reaches (never one from conformance.case.materialize) is updated
    # in a copy in its memory order, written back below.
    work = param if flat_param is not None else _empty_in_order(param, order).copy_(param)
    if flat_param is None:
        flat_param = _flat(work, order)
    flat_grad = _flat(grad, order)
    if flat_grad is None:
        flat_grad = _flat(_empty_in_order(work, order).copy_(grad), order)
    square_avg, grad_avg, momentum_buffer = (_flat(x, order) if x is not None else None
                                             for x in state[1:])
    n = flat_param.numel()
    if n:
        consts = torch.tensor([lr, hp.alpha, 1.0, hp.eps, hp.weight_decay, hp.momentum],
                              dtype=torch.float32 if compute == tl.float32 else torch.float64)
        consts[2] -= consts[1]  # 1 - alpha, in the compute dtype
        # A buffer whose flag is off is never touched: any tensor of its type stands in.
        arrays = [flat_param, flat_grad, square_avg,
                  square_avg if grad_avg is None else grad_avg,
                  square_avg if momentum_buffer is None else momentum_buffer]
        arrays = [a.view(kernel_dtype) for a in arrays]
        # The interpreter runs each program as NumPy operations: one program for a small case.
        block = triton.next_power_of_2(min(n, 1 << 16)) if INTERPRETED else 1024
        with np.errstate(all="ignore"):  # the interpreter's NumPy: IEEE results are the answer
            _rmsprop_kernel[(triton.cdiv(n, block),)](
                *arrays, *(a.stride(0) for a in arrays), n, consts.to(param.device),
                STORAGE=storage, COMPUTE=compute, WEIGHT_DECAY=hp.weight_decay != 0,
                MAXIMIZE=hp.maximize, CENTERED=hp.centered, MOMENTUM=hp.momentum > 0,
                BLOCK=block)
    if work is not param:
        param.copy_(work)
    return state._replace(step=state.step + 1)


def _to_torch(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """``a``'s values in a tensor on ``device`` with ``a``'s strides (on the CPU: its memory)."""
    a = np.asarray(a)
    bf16 = a.dtype.name == "bfloat16"
    raw = a.view(np.int16) if bf16 else a
    t = torch.from_numpy(raw if raw.flags.writeable else raw.copy(order="K"))
    if bf16:
        t = t.view(torch.bfloat16)
    if device.type == "cpu":
        return t
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device).copy_(t)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes  # noqa: PLC0415

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return t.numpy().copy()


def _initial_state(param: torch.Tensor, hp: HParams, loaded: ParamState | None) -> ParamState:
    """The state tensors in ``param``'s dtype, device and memory order: zeros, or a loaded state."""
    order = _memory_order(param)

    def like(values) -> torch.Tensor:
        out = _empty_in_order(param, order)
        out[...] = torch.as_tensor(np.asarray(values, dtype=np.float64))  # exact, then rounded
        return out

    if loaded is None:
        return ParamState(0, like(hp.initial_square_avg), like(0) if hp.centered else None,
                          like(0) if hp.momentum > 0 else None)
    return ParamState(loaded.step, like(loaded.square_avg),
                      None if loaded.grad_avg is None else like(loaded.grad_avg),
                      None if loaded.momentum_buffer is None else like(loaded.momentum_buffer))


def _readout(state: ParamState) -> ParamState:
    return ParamState(state.step, *(None if x is None else _to_numpy(x) for x in state[1:]))


class TritonBackend:
    """The Triton kernel as a conformance backend (torch profile)."""

    name = "triton"

    def capabilities(self) -> Capabilities:
        if INTERPRETED:
            devices = (INTERPRETER_DEVICE,)
            unavailable = {"cuda": "no CUDA device on this machine"}
        else:
            devices = tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
            unavailable = {INTERPRETER_DEVICE: "Triton compiles for CUDA in this process "
                                               "(TRITON_INTERPRET is not set)"}
        return Capabilities(
            profile="torch",
            dtypes=frozenset(_DTYPES),
            devices=devices,
            features=frozenset({"weight_decay", "momentum", "centered", "maximize",
                                "lr_schedule", "multi_param", "mixed_dtypes", "state_readout",
                                "state_load", "layouts", "zero_size"}),
            unavailable=unavailable,
            description="fused Triton kernel (constexpr flags, one program per block); float16 "
                        "and bfloat16 computed in float32 and rounded once when stored",
        )

    def run(self, case: Case) -> Trajectory:
        hp = case.hp
        check_hparams(hp)
        device = torch.device("cpu" if case.device == INTERPRETER_DEVICE else case.device)
        params = [_to_torch(p, device) for p in case.materialized_params()]
        loaded = case.initial_state or (None,) * len(params)
        states = [_initial_state(p, hp, s) for p, s in zip(params, loaded)]
        out = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            lr = case.lr_at(k)
            states = [rmsprop_update(p, _to_torch(g, device), s, hp, lr)
                      for p, g, s in zip(params, grads, states)]
            out.append([_to_numpy(p) for p in params], [_readout(s) for s in states])
        return out
