"""Translation between the harness (NumPy, spec names) and JAX, shared by every JAX backend.

Importing this module turns on ``jax_enable_x64`` (JAX's global switch for float64 and
complex128): without it JAX silently computes float64 cases in float32. It also turns on JAX's
persistent compilation cache (``persistent_cache_dir``), so that a second certification of the
same backend loads its compiled steps from disk instead of compiling them again.

Nothing here computes RMSProp: it moves values across the boundary without changing them, and
counts how often a jitted step is traced (``compilations()``).

Shape buckets (``Packing``): the parameters of one dtype travel as one flat, zero-padded buffer of
a power-of-two length (at least ``MIN_BUCKET``), so a jitted step's traced program depends on the
dtypes present and their bucket sizes, not on the number and shapes of the parameters.

Layouts: a JAX array has no strides. A non-contiguous parameter (``case.materialized_params``)
is copied into a device array with the same values, so layout invariance holds trivially; the
feature is declared because the contract (values in, values out) is honoured, not because JAX
sees the layout.
"""

from __future__ import annotations

import collections
import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from conformance.case import Case
from spec.rmsprop import ParamState

jax.config.update("jax_enable_x64", True)

# Where compiled steps persist between runs, unless the user chose a JAX cache directory already.
CACHE_ENV = "RMSPROP_CONFORMANCE_JAX_CACHE"


def persistent_cache_dir() -> str | None:
    """The persistent compilation cache: ``$RMSPROP_CONFORMANCE_JAX_CACHE`` (empty: off), else
    ``$XDG_CACHE_HOME/rmsprop-conformance/jax`` (``~/.cache/...``). Every compiled program is
    kept (JAX's defaults keep only those that took over a second to compile, and a step here
    compiles in a tenth of that)."""
    if jax.config.jax_compilation_cache_dir:  # the user's own setting wins
        return jax.config.jax_compilation_cache_dir
    path = os.environ.get(CACHE_ENV)
    if path is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "rmsprop-conformance", "jax")
    if not path:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


persistent_cache_dir()

__all__ = ["CACHE_ENV", "MIN_BUCKET", "Packing", "compilations", "count_trace", "devices",
           "persistent_cache_dir", "require", "start_steps", "unavailable"]

# The harness's largest total per dtype (4 parameters of at most 64 elements): one bucket for all.
MIN_BUCKET = 256
_TRACES: collections.Counter[str] = collections.Counter()


def count_trace(key: str) -> None:
    """Called inside a jitted function: runs once per trace (= compilation)."""
    _TRACES[key] += 1


def compilations(family: str | None = None) -> int:
    """How many times a jitted step was traced (= compiled).

    ``family`` is "optax" (the optax driver) or "example_libraries"; None counts both.
    """
    return sum(n for key, n in _TRACES.items() if family is None or key.startswith(family))


@functools.cache
def devices() -> dict[str, jax.Device]:
    """Device names of the harness ("cpu", "cuda:N") → JAX devices."""
    out = {"cpu": jax.devices("cpu")[0]}
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU platform in this jaxlib or on this machine
        gpus = []
    out.update({f"cuda:{d.id}": d for d in gpus})
    return out


def unavailable() -> dict[str, str]:
    if any(name.startswith("cuda") for name in devices()):
        return {}
    return {"cuda:0": "JAX sees no GPU on this machine (jax.devices('gpu') fails)"}


class Packing:
    """Moves parameter-shaped arrays to the device and back, as the jitted step's pytree.

    Bucketed (the default): the parameters of each dtype travel as *one* flat buffer, their
    elements concatenated and zero-padded to a power of two (at least 256), in a dict keyed by
    dtype name. The traced program then depends on the dtypes present and their bucket sizes
    only, not on the number, shapes or sizes of the parameters. Every operation of RMSProp is
    element-wise (optax's one cross-element quantity, the step count, is shared by all leaves
    anyway), so an element's result does not depend on its neighbours in the buffer; the padding's
    results are discarded. Unbucketed: a list with one leaf per parameter, in its own shape.
    """

    def __init__(self, params: Sequence[np.ndarray], bucket: bool, device: jax.Device) -> None:
        self.shapes = [p.shape for p in params]
        self.sizes = [p.size for p in params]
        self.dtypes = [p.dtype for p in params]
        self.device = device
        self.bucket = bucket
        # Parameter i lives in leaf slots[i][0] at offset slots[i][1].
        self.slots: list[tuple[Any, int]] = []
        lengths: dict[Any, int] = {}
        self.leaf_dtypes: dict[Any, np.dtype] = {}
        for i, (dtype, size) in enumerate(zip(self.dtypes, self.sizes)):
            key = dtype.name if bucket else i
            self.leaf_dtypes[key] = dtype
            offset = lengths.get(key, 0)
            self.slots.append((key, offset))
            lengths[key] = offset + size
        self.keys = sorted(lengths) if bucket else list(range(len(params)))  # JAX's leaf order
        self.lengths = {k: max(MIN_BUCKET, 1 << max(n - 1, 0).bit_length())
                        for k, n in lengths.items()}

    def tree(self, leaves: Sequence[Any]) -> dict[str, Any] | list[Any]:
        """The step's pytree from its leaves in JAX's order."""
        return dict(zip(self.keys, leaves)) if self.bucket else list(leaves)

    def leaves(self, tree: dict[str, Any] | list[Any]) -> list[Any]:
        return [tree[k] for k in self.keys]

    def put(self, arrays: Sequence[Any], negate: bool = False) -> dict[str, jax.Array] | list:
        """Device arrays in the parameters' dtypes (values exactly converted if they were not)."""
        if not self.bucket:
            out = [np.asarray(a).astype(d, copy=False) for a, d in zip(arrays, self.dtypes)]
            return jax.device_put([-a if negate else a for a in out], self.device)
        buffers = {k: np.zeros(self.lengths[k], self.leaf_dtypes[k]) for k in self.keys}
        for arr, (key, offset), size in zip(arrays, self.slots, self.sizes):
            buffers[key][offset:offset + size] = np.asarray(arr).reshape(-1)
        if negate:
            buffers = {k: -b for k, b in buffers.items()}
        return jax.device_put(buffers, self.device)

    def get(self, host: dict[str, np.ndarray] | list, negate: bool = False) -> list[np.ndarray]:
        """Host copies in the parameters' shapes (``host`` from ``jax.device_get``)."""
        out = []
        for (key, offset), size, shape in zip(self.slots, self.sizes, self.shapes):
            h = np.asarray(host[key])
            h = h.reshape(-1)[offset:offset + size].reshape(shape) if self.bucket else h
            out.append(-h if negate else h.copy())
        return out


def start_steps(case: Case) -> list[int]:
    """Each parameter's step count before the case's first step."""
    if case.initial_state is None:
        return [0] * len(case.params)
    return [int(s.step) for s in case.initial_state]


def require(st: ParamState, field: str, i: int) -> Any:
    value = getattr(st, field)
    if value is None:
        raise ValueError(f"initial_state[{i}] lacks {field}, which this configuration needs")
    return value
