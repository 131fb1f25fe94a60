"""What a backend is asked to do (``Case``) and what it answers (``Trajectory``).

Arrays are NumPy arrays in the case dtype (bfloat16 via ``ml_dtypes``). Values are logical: a
layout other than "contiguous" asks the backend to hold the parameter in that memory layout
(``materialize`` builds a NumPy array with the same values in that layout, which a backend may
hand to its framework without copying, e.g. ``torch.from_numpy``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from spec.rmsprop import HParams, ParamState

LAYOUTS = ("contiguous", "transposed", "strided", "channels_last")
DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")


def np_dtype(name: str) -> np.dtype:
    """The NumPy dtype of a dtype name in DTYPES."""
    if name == "bfloat16":
        import ml_dtypes  # noqa: PLC0415

        return np.dtype(ml_dtypes.bfloat16)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; allowed: {', '.join(DTYPES)}")
    return np.dtype(name)


def dtype_name(dtype: np.dtype) -> str:
    return np.dtype(dtype).name


def materialize(a: np.ndarray, layout: str) -> np.ndarray:
    """A fresh copy of ``a``'s values held in ``layout`` (same shape, other strides)."""
    a = np.asarray(a)
    if layout == "contiguous" or a.ndim == 0 or a.size == 0:
        return np.array(a, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    if layout == "transposed":
        # Row-major storage of the reversed axes: the logical array is a transposed view.
        return np.array(a.T, order="C").T
    if layout == "strided":
        # Every other element along the last axis of a twice-as-wide buffer.
        buf = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        view = buf[..., ::2]
        view[...] = a
        return view
    if layout == "channels_last":
        if a.ndim != 4:
            return np.array(a, order="C")
        # NCHW logical shape stored as NHWC.
        return np.array(a.transpose(0, 2, 3, 1), order="C").transpose(0, 3, 1, 2)
    raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")


@dataclasses.dataclass(frozen=True)
class Case:
    """One certification input: hyperparameters, initial parameters, per-step gradients.

    ``grads[k][i]`` is the gradient of parameter ``i`` at step ``k``. ``lrs[k]``, when given, is
    the learning rate of step ``k`` (a schedule); otherwise every step uses ``hp.lr``.
    ``initial_state``, when given, replaces the spec's initial state (a backend needs the
    "state_load" feature to accept it).
    """

    hp: HParams
    params: tuple[np.ndarray, ...]
    grads: tuple[tuple[np.ndarray, ...], ...]
    lrs: tuple[float, ...] | None = None
    device: str = "cpu"
    layouts: tuple[str, ...] | None = None
    initial_state: tuple[ParamState, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.params)
        for k, gs in enumerate(self.grads):
            if len(gs) != n:
                raise ValueError(f"step {k}: {len(gs)} gradients for {n} parameters")
            for i, (p, g) in enumerate(zip(self.params, gs)):
                if p.shape != g.shape or p.dtype != g.dtype:
                    raise ValueError(f"step {k}, parameter {i}: gradient {g.dtype}{list(g.shape)}"
                                     f" does not match parameter {p.dtype}{list(p.shape)}")
        if self.lrs is not None and len(self.lrs) != len(self.grads):
            raise ValueError(f"lrs has {len(self.lrs)} entries for {len(self.grads)} steps")
        if self.layouts is not None:
            if len(self.layouts) != n:
                raise ValueError(f"layouts has {len(self.layouts)} entries for {n} parameters")
            bad = [x for x in self.layouts if x not in LAYOUTS]
            if bad:
                raise ValueError(f"unknown layout {bad[0]!r}; allowed: {', '.join(LAYOUTS)}")
        if self.initial_state is not None and len(self.initial_state) != n:
            raise ValueError(f"initial_state has {len(self.initial_state)} entries for {n} "
                             "parameters")

    @property
    def n_steps(self) -> int:
        return len(self.grads)

    def lr_at(self, k: int) -> float:
        return float(self.hp.lr if self.lrs is None else self.lrs[k])

    def layout_of(self, i: int) -> str:
        return "contiguous" if self.layouts is None else self.layouts[i]

    def materialized_params(self) -> list[np.ndarray]:
        """Fresh copies of the initial parameters, each in its layout."""
        return [materialize(p, self.layout_of(i)) for i, p in enumerate(self.params)]

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(dtype_name(p.dtype) for p in self.params)

    def replace(self, **changes) -> Case:
        return dataclasses.replace(self, **changes)

    def map_arrays(self, fn: Callable[[np.ndarray], np.ndarray]) -> Case:
        """The case with ``fn`` applied to every array: parameters, gradients, initial state
        (a state's missing buffers stay None)."""
        def opt(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else fn(a)

        state = None if self.initial_state is None else tuple(
            ParamState(s.step, opt(s.square_avg), opt(s.grad_avg), opt(s.momentum_buffer))
            for s in self.initial_state)
        return self.replace(params=tuple(fn(p) for p in self.params),
                            grads=tuple(tuple(fn(g) for g in gs) for gs in self.grads),
                            initial_state=state)


@dataclasses.dataclass
class Trajectory:
    """A backend's answer: parameters (and, if declared, state) after every step.

    ``params[k][i]`` is parameter ``i`` after step ``k``, in the parameter's dtype.
    ``states[k][i]`` is its state after step ``k`` (``ParamState`` with arrays in the backend's
    state dtype and ``step`` the backend's step count), or ``states`` is None when the backend does
    not declare "state_readout".
    """

    params: list[tuple[np.ndarray, ...]]
    states: list[tuple[ParamState, ...]] | None = None

    @classmethod
    def empty(cls, with_state: bool) -> Trajectory:
        return cls(params=[], states=[] if with_state else None)

    def append(self, params: Sequence[np.ndarray],
               states: Sequence[ParamState] | None = None) -> None:
        self.params.append(tuple(np.array(p, copy=True) for p in params))
        if self.states is not None:
            if states is None:
                raise ValueError("this trajectory records state: pass states")
            self.states.append(tuple(states))
