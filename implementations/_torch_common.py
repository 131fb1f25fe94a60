"""Translation between the harness (NumPy, spec names) and PyTorch, shared by every torch backend.

Nothing here computes RMSProp: it moves values across the boundary without changing them.

- Parameters keep their memory layout: a NumPy array with element strides ``s`` becomes a tensor
  from ``torch.empty_strided(shape, s)`` (transposed, strided and channels-last layouts survive).
- Gradients are handed to torch *without copying* on the CPU (``torch.from_numpy``), so that an
  implementation writing into ``p.grad`` writes into the caller's array, which is what property P6
  checks (R24). On other devices they are copied.
- bfloat16 crosses as its bit pattern (int16 views), because NumPy's bfloat16 comes from
  ``ml_dtypes`` and ``torch.from_numpy`` does not know it; no value is rounded on the way.
- State: torch keeps ``step`` (a float32 0-d tensor), ``square_avg``, ``grad_avg`` (centered) and
  ``momentum_buffer`` (momentum > 0) per parameter: the spec's names (R14), the same positive
  momentum convention, and complex ``square_avg`` holding the real and imaginary components'
  averages ("real_pairs", R11).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from conformance.case import np_dtype
from spec.rmsprop import HParams, ParamState

ALL_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64", "complex64", "complex128"})

# The convention axes of the torch profile (SPEC §4) and the values torch has no switch for.
TORCH_CONVENTIONS: dict[str, Any] = {
    **{k: v for k, v in HParams.from_profile("torch").to_dict().items()
       if k in ("eps_in_sqrt", "initial_square_avg", "lr_in_momentum", "weight_decay_mode",
                "complex_mode", "maximize_order")},
    "nesterov": False,
    "bias_correction": False,
}

# Spec hyperparameter name -> torch.optim.RMSprop keyword (the same words, by design of the spec).
TORCH_NAMES: dict[str, str] = {name: name for name in (
    "lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")}

_TORCH_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64, "complex64": torch.complex64, "complex128": torch.complex128,
}
# The NumPy dtype of a torch dtype, by name (conformance.case.np_dtype: bfloat16 from ml_dtypes,
# imported only when a bfloat16 array is met: it takes ~0.6 s, in every process).
_DTYPE_NAMES: dict[torch.dtype, str] = {t: name for name, t in _TORCH_DTYPES.items()}


def torch_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a NumPy dtype (bfloat16 from ml_dtypes included)."""
    name = np.dtype(dtype).name
    if name not in _TORCH_DTYPES:
        raise ValueError(f"no torch dtype for {name}; supported: {', '.join(sorted(ALL_DTYPES))}")
    return _TORCH_DTYPES[name]


def available_devices() -> tuple[tuple[str, ...], dict[str, str]]:
    """(devices usable here, {device: reason} for those torch supports but this machine lacks)."""
    if torch.cuda.is_available():
        return ("cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))), {}
    return ("cpu",), {"cuda": "no CUDA device on this machine"}


def check_torch_profile(hp: HParams) -> None:
    """Raise ValueError unless ``hp`` uses the torch profile's conventions (torch has no others)."""
    wrong = [f"{k}={getattr(hp, k)!r} (torch: {v!r})" for k, v in TORCH_CONVENTIONS.items()
             if getattr(hp, k) != v]
    if wrong:
        raise ValueError("torch.optim.RMSprop implements the torch profile only; this case has "
                         + ", ".join(wrong))


def torch_kwargs(hp: HParams) -> dict[str, Any]:
    """``torch.optim.RMSprop`` keywords of ``hp`` (validated against the torch profile)."""
    check_torch_profile(hp)
    return {TORCH_NAMES[k]: getattr(hp, k) for k in TORCH_NAMES}


def raw_torch_kwargs(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Raw hyperparameter values (spec names) as torch keywords, for property P13.

    Values are passed unvalidated so that torch's own checks are what gets tested. A spec axis that
    torch lacks is accepted only at torch's fixed value; unknown names go through unchanged (torch
    then rejects them itself).
    """
    out: dict[str, Any] = {}
    for name, raw in hparams.items():
        # An array hyperparameter is torch's Tensor form of it.
        value = torch.from_numpy(raw) if isinstance(raw, np.ndarray) else raw
        if name in TORCH_NAMES:
            out[TORCH_NAMES[name]] = value
        elif name in TORCH_CONVENTIONS:
            if value != TORCH_CONVENTIONS[name]:
                raise ValueError(f"torch.optim.RMSprop has no {name} setting: it is fixed to "
                                 f"{TORCH_CONVENTIONS[name]!r}, got {value!r}")
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------
def _bits(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """``a`` itself, or its int16 bit pattern for bfloat16 (a view: no copy, no rounding)."""
    if a.dtype.name == "bfloat16":
        return a.view(np.int16), True
    return a, False


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``a``'s memory (read-only arrays included: the caller's P6 decides)."""
    a, is_bf16 = _bits(a)
    if a.flags.writeable:
        t = torch.from_numpy(a)
    else:  # catching warnings costs more than the conversion: only where torch warns
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if is_bf16 else t


def _contiguous(a: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray turns a 0-d array into shape (1,); keep the shape.
    return np.ascontiguousarray(a).reshape(a.shape)


def element_strides(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s // a.itemsize for s in a.strides)


def to_torch(a: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """A fresh tensor with ``a``'s values, dtype and element strides (its layout)."""
    a = np.asarray(a)
    dtype = torch_dtype(a.dtype)
    strides = element_strides(a)
    if a.size == 0 or min(strides, default=0) < 0 or any(
            s * a.itemsize != b for s, b in zip(strides, a.strides)):
        a = _contiguous(a)
        strides = element_strides(a)
    out = torch.empty_strided(a.shape, strides, dtype=dtype, device=device)
    out.copy_(_from_numpy(_contiguous(a)))
    return out


def grad_tensor(g: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """The gradient as torch sees it: the caller's own memory on the CPU, a copy elsewhere."""
    t = _from_numpy(np.asarray(g))
    return t if device == "cpu" or torch.device(device).type == "cpu" else t.to(device)


def like(p: torch.Tensor, a: np.ndarray | None) -> torch.Tensor | None:
    """A state tensor for ``p``: ``p``'s dtype, device and memory format, holding ``a``'s values
    rounded to ``p``'s dtype (what torch.optim's load_state_dict does for real dtypes)."""
    if a is None:
        return None
    a = np.asarray(a)
    if a.shape != tuple(p.shape):
        raise ValueError(f"state array of shape {a.shape} for a parameter of shape "
                         f"{tuple(p.shape)}")
    values = _contiguous(a.astype(np_dtype(_DTYPE_NAMES[p.dtype])))
    out = torch.empty_like(p, memory_format=torch.preserve_format, requires_grad=False)
    with torch.no_grad():
        out.copy_(_from_numpy(values))
    return out


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy copy of ``t``'s values in ``t``'s dtype (bfloat16 via ml_dtypes)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.to("cpu")
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np_dtype("bfloat16")).copy()
    return t.numpy().copy()


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------
def step_tensor(step: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """torch's step counter: a float32 0-d tensor (on the CPU unless capturable)."""
    return torch.tensor(float(step), dtype=torch.float32, device=device)


def state_to_torch(st: ParamState, p: torch.Tensor, step_device: str | torch.device = "cpu"
                   ) -> dict[str, torch.Tensor]:
    """One parameter's ``ParamState`` as torch.optim.RMSprop state."""
    out = {"step": step_tensor(st.step, step_device), "square_avg": like(p, st.square_avg)}
    if st.grad_avg is not None:
        out["grad_avg"] = like(p, st.grad_avg)
    if st.momentum_buffer is not None:
        out["momentum_buffer"] = like(p, st.momentum_buffer)
    return out


def state_from_torch(state: Mapping[str, torch.Tensor]) -> ParamState:
    """torch.optim.RMSprop state of one parameter as a ``ParamState`` (arrays in torch's dtype)."""
    def get(name: str) -> np.ndarray | None:
        return None if name not in state else to_numpy(state[name])

    step = state["step"]
    return ParamState(
        step=int(step.item()) if isinstance(step, torch.Tensor) else int(step),
        square_avg=to_numpy(state["square_avg"]),
        grad_avg=get("grad_avg"),
        momentum_buffer=get("momentum_buffer"),
    )


def check_state_matches(hp: HParams, states: tuple[ParamState, ...]) -> None:
    """grad_avg iff centered, momentum_buffer iff momentum > 0 (R14): torch would fail obscurely."""
    for i, st in enumerate(states):
        if (st.grad_avg is not None) != bool(hp.centered):
            raise ValueError(f"initial state {i}: grad_avg must be present iff centered")
        if (st.momentum_buffer is not None) != (hp.momentum > 0):
            raise ValueError(f"initial state {i}: momentum_buffer must be present iff "
                             "momentum > 0")
