"""JAX backends: ``optax.rmsprop`` in three configurations and ``jax.example_libraries``.

Importing this module turns on ``jax_enable_x64`` (JAX's global switch for float64 and
complex128): without it JAX silently computes float64 cases in float32.

Every per-step update (``update`` then ``apply_updates``) is one jitted function. ``init`` runs
eagerly: it is a few broadcasts, which JAX compiles once per leaf shape and dtype and shares
between all structures, where a jitted ``init`` would cost one more compilation per structure.
Hyperparameter *values* (lr, alpha, eps, weight_decay, momentum) are traced arguments, so a
certification run compiles once per structure, not once per example. They are passed as Python
floats, which JAX traces as *weakly typed* scalars: they take the dtype of the array they meet,
exactly as the Python floats of ordinary optax code do (a strongly typed float64 scalar would
silently promote float32 parameters to float64). The learning rate of each step is passed to
that step (a traced scalar), so a schedule costs no compilation either. The structure is what
changes the traced program: the flags (centered, momentum > 0, nesterov, bias_correction,
weight_decay > 0) and the pytree of arrays. That pytree is bucketed (``_Packing``): the
parameters of one dtype travel as one flat, zero-padded buffer of a power-of-two length, so a
structure is the flags, the dtypes present and their bucket sizes, whatever the number and
shapes of the parameters. ``compilations()`` counts the traces (each trace is one compilation).

Layouts: a JAX array has no strides. A non-contiguous parameter (``case.materialized_params``)
is copied into a device array with the same values, so layout invariance holds trivially; the
feature is declared because the contract (values in, values out) is honoured, not because JAX
sees the layout.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.example_libraries import optimizers

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from spec.rmsprop import ParamState

jax.config.update("jax_enable_x64", True)

__all__ = [
    "ExampleLibraries",
    "ExampleLibrariesMomentum",
    "Optax",
    "OptaxEpsOutside",
    "OptaxTF1",
    "compilations",
]

_AXES = ("eps_in_sqrt", "initial_square_avg", "lr_in_momentum", "weight_decay_mode",
         "complex_mode", "maximize_order")
# The harness's largest total per dtype (4 parameters of at most 64 elements): one bucket for all.
_MIN_BUCKET = 256
_TRACES: collections.Counter[str] = collections.Counter()


def compilations(family: str | None = None) -> int:
    """How many times a jitted function of this module was traced (= compiled).

    ``family`` is "optax" or "example_libraries"; None counts both.
    """
    return sum(n for key, n in _TRACES.items() if family is None or key.startswith(family))


# --------------------------------------------------------------------------------------------------
# Devices, checks, shape buckets
# --------------------------------------------------------------------------------------------------
@functools.cache
def _devices() -> dict[str, jax.Device]:
    """Device names of the harness ("cpu", "cuda:N") → JAX devices."""
    out = {"cpu": jax.devices("cpu")[0]}
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU platform in this jaxlib or on this machine
        gpus = []
    out.update({f"cuda:{d.id}": d for d in gpus})
    return out


def _unavailable() -> dict[str, str]:
    if any(name.startswith("cuda") for name in _devices()):
        return {}
    return {"cuda:0": "JAX sees no GPU on this machine (jax.devices('gpu') fails)"}


def _features_used(case: Case) -> set[str]:
    hp = case.hp
    return {name for name, on in (
        ("weight_decay", hp.weight_decay > 0),
        ("momentum", hp.momentum > 0),
        ("nesterov", hp.nesterov and hp.momentum > 0),  # no effect without momentum (spec)
        ("centered", hp.centered),
        ("maximize", hp.maximize),
        ("bias_correction", hp.bias_correction),
        ("lr_schedule", case.lrs is not None),
        ("multi_param", len(case.params) > 1),
        ("mixed_dtypes", len(set(case.dtypes)) > 1),
        ("state_load", case.initial_state is not None),
        ("layouts", any(case.layout_of(i) != "contiguous" for i in range(len(case.params)))),
        ("zero_size", any(p.ndim == 0 or p.size == 0 for p in case.params)),
    ) if on}


def _check_case(name: str, caps: Capabilities, case: Case) -> None:
    """Refuse a case this backend does not claim, rather than compute something else."""
    declared = caps.hparams()
    wrong = [f"{a}={getattr(case.hp, a)!r} (backend: {getattr(declared, a)!r})" for a in _AXES
             if getattr(case.hp, a) != getattr(declared, a)]
    if wrong:
        raise ValueError(f"{name} implements profile {caps.profile!r} with "
                         f"{dict(caps.conventions)}; the case has {', '.join(wrong)}")
    missing = sorted(_features_used(case) - caps.features)
    missing += [f"dtype {d}" for d in sorted(set(case.dtypes) - caps.dtypes)]
    if case.device not in caps.devices:
        missing.append(f"device {case.device}")
    if missing:
        raise NotImplementedError(f"{name} does not support {', '.join(missing)}")


class _Packing:
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
        self.lengths = {k: max(_MIN_BUCKET, 1 << max(n - 1, 0).bit_length())
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


def _start_steps(case: Case) -> list[int]:
    if case.initial_state is None:
        return [0] * len(case.params)
    return [int(s.step) for s in case.initial_state]


def _require(st: ParamState, field: str, i: int) -> Any:
    value = getattr(st, field)
    if value is None:
        raise ValueError(f"initial_state[{i}] lacks {field}, which this configuration needs")
    return value


# --------------------------------------------------------------------------------------------------
# optax
# --------------------------------------------------------------------------------------------------
class _OptaxStructure(NamedTuple):
    """What changes the traced program (hyperparameter values do not)."""

    eps_in_sqrt: bool
    centered: bool
    momentum: bool
    nesterov: bool
    bias_correction: bool
    weight_decay: bool


def _optax_transform(s: _OptaxStructure, lr: Any, alpha: Any, eps: Any, weight_decay: Any,
                     momentum: Any, initial_scale: Any) -> optax.GradientTransformation:
    """``optax.rmsprop`` (after ``optax.add_decayed_weights`` when weight_decay > 0)."""
    tx = optax.rmsprop(lr, decay=alpha, eps=eps, initial_scale=initial_scale,
                       eps_in_sqrt=s.eps_in_sqrt, centered=s.centered,
                       momentum=momentum if s.momentum else None, nesterov=s.nesterov,
                       bias_correction=s.bias_correction)
    return optax.chain(optax.add_decayed_weights(weight_decay), tx) if s.weight_decay else tx


@functools.partial(jax.jit, static_argnums=0)
def _optax_step(s: _OptaxStructure, params: list[jax.Array], grads: list[jax.Array], state: Any,
                lr: float, alpha: float, eps: float, weight_decay: float,
                momentum: float) -> tuple[list[jax.Array], Any]:
    _TRACES["optax.step"] += 1
    tx = _optax_transform(s, lr, alpha, eps, weight_decay, momentum, 0.0)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def _optax_parts(state: Any, s: _OptaxStructure) -> tuple[Any, Any]:
    """rmsprop's chain is (scale_by_rms or scale_by_stddev, learning rate, trace or identity)."""
    chain = state[1] if s.weight_decay else state
    return chain[0], chain[2]


def _optax_with_parts(state: Any, s: _OptaxStructure, scale: Any, trace: Any) -> Any:
    chain = state[1] if s.weight_decay else state
    chain = (scale, chain[1], trace)
    return (state[0], chain) if s.weight_decay else chain


class Optax:
    """``optax.rmsprop`` with its defaults (ε inside the root, ν starts at 0).

    State translation (optax → spec ``ParamState``): ``nu`` → square_avg, ``mu`` → grad_avg
    (centered), ``trace`` → momentum_buffer *negated* (optax's trace accumulates −η·g/d; the spec's
    buffer points along the gradient), ``count`` → step when the state has one (bias_correction);
    otherwise optax keeps no step count and the adapter counts the steps itself. For complex
    parameters optax keeps ν in the *complex* dtype (imaginary part 0): it is read out as it is,
    so the report shows what optax holds. Weight decay: ``optax.add_decayed_weights`` chained
    before rmsprop (g ← g + λθ, the optax profile's "coupled" convention). The learning rate of
    each step is passed to that step as a scalar (optax's constant-lr path: a step's lr scales
    that step's update, earlier ones stay inside the trace); optax's schedule machinery (step k
    uses schedule(k)) is checked against the spec in tests/test_spec_vs_optax.py. optax validates
    no hyperparameter: ``make_optimizer`` builds and runs it with whatever it is given.
    """

    name = "optax"
    profile = "optax"
    conventions: dict[str, Any] = {}
    description = ("optax.rmsprop (chained after optax.add_decayed_weights for weight decay), "
                   "jitted, hyperparameters traced")

    def __init__(self, bucket_shapes: bool = True) -> None:
        self.bucket_shapes = bucket_shapes

    def capabilities(self) -> Capabilities:
        return Capabilities(
            profile=self.profile,
            conventions=dict(self.conventions),
            dtypes=frozenset({"float16", "bfloat16", "float32", "float64", "complex64",
                              "complex128"}),
            devices=tuple(_devices()),
            unavailable=_unavailable(),
            features=frozenset({"weight_decay", "momentum", "nesterov", "centered",
                                "bias_correction", "lr_schedule", "multi_param", "mixed_dtypes",
                                "state_readout", "state_load", "layouts", "zero_size",
                                "reject_invalid"}),
            description=self.description,
        )

    def _structure(self, case: Case) -> _OptaxStructure:
        hp = case.hp
        return _OptaxStructure(
            eps_in_sqrt=bool(hp.eps_in_sqrt), centered=bool(hp.centered),
            momentum=hp.momentum > 0, nesterov=bool(hp.nesterov) and hp.momentum > 0,
            bias_correction=bool(hp.bias_correction), weight_decay=hp.weight_decay > 0)

    def run(self, case: Case) -> Trajectory:
        _check_case(self.name, self.capabilities(), case)
        hp, s = case.hp, self._structure(case)
        pack = _Packing(case.params, self.bucket_shapes, _devices()[case.device])
        params = pack.put(case.materialized_params())
        state = _optax_transform(s, 0.0, 0.0, 0.0, 0.0, 0.0,
                                 float(hp.initial_square_avg)).init(params)
        if case.initial_state is not None:
            state = self._load(state, s, case.initial_state, pack)
        steps = _start_steps(case)
        traj = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            params, state = _optax_step(s, params, pack.put(grads), state, case.lr_at(k),
                                        float(hp.alpha), float(hp.eps), float(hp.weight_decay),
                                        float(hp.momentum))
            host_params, (scale, trace) = jax.device_get((params, _optax_parts(state, s)))
            traj.append(pack.get(host_params),
                        self._readout(s, scale, trace, pack, [t + k + 1 for t in steps]))
        return traj

    @staticmethod
    def _readout(s: _OptaxStructure, scale: Any, trace: Any, pack: _Packing,
                 own_steps: list[int]) -> tuple[ParamState, ...]:
        n = len(pack.shapes)
        steps = [int(scale.count)] * n if s.bias_correction else own_steps
        nu = pack.get(scale.nu)
        mu = pack.get(scale.mu) if s.centered else [None] * n
        buf = pack.get(trace.trace, negate=True) if s.momentum else [None] * n
        return tuple(ParamState(*fields) for fields in zip(steps, nu, mu, buf))

    @staticmethod
    def _load(state: Any, s: _OptaxStructure, initial: Sequence[ParamState],
              pack: _Packing) -> Any:
        scale, trace = _optax_parts(state, s)
        scale = scale._replace(nu=pack.put([st.square_avg for st in initial]))
        if s.centered:
            scale = scale._replace(
                mu=pack.put([_require(st, "grad_avg", i) for i, st in enumerate(initial)]))
        if s.bias_correction:
            steps = {int(st.step) for st in initial}
            if len(steps) != 1:
                raise ValueError(f"optax keeps one step count for all parameters; "
                                 f"initial_state has {sorted(steps)}")
            scale = scale._replace(count=jnp.asarray(steps.pop(), dtype=jnp.int32))
        if s.momentum:
            trace = trace._replace(trace=pack.put(
                [_require(st, "momentum_buffer", i) for i, st in enumerate(initial)],
                negate=True))
        return _optax_with_parts(state, s, scale, trace)

    def make_optimizer(self, hparams: dict[str, Any]) -> optax.GradientTransformation:
        """``optax.rmsprop`` with raw values (spec names), initialised and stepped once.

        optax checks nothing, so invalid values come back as a working optimizer (which P13
        records as accepted). A name optax has no parameter for raises ``TypeError``.
        """
        unknown = sorted(set(hparams) - {"lr", "alpha", "eps", "momentum", "weight_decay",
                                         "centered", "nesterov", "bias_correction"})
        if unknown:
            raise TypeError(f"{self.name} has no hyperparameter {', '.join(unknown)}")
        hp = {**self.capabilities().hparams().to_dict(), **hparams}
        momentum = hp["momentum"]
        tx = optax.rmsprop(hp["lr"], decay=hp["alpha"], eps=hp["eps"],
                           initial_scale=hp["initial_square_avg"], eps_in_sqrt=hp["eps_in_sqrt"],
                           centered=hp["centered"], momentum=None if momentum == 0 else momentum,
                           nesterov=hp["nesterov"], bias_correction=hp["bias_correction"])
        if hp["weight_decay"] != 0:
            tx = optax.chain(optax.add_decayed_weights(hp["weight_decay"]), tx)
        p = jnp.ones(2)
        tx.update(p, tx.init(p), p)
        return tx


class OptaxEpsOutside(Optax):
    """``optax.rmsprop(eps_in_sqrt=False)``: d = sqrt(ν) + ε, the PyTorch placement."""

    name = "optax.eps_outside"
    conventions = {"eps_in_sqrt": False}
    description = "optax.rmsprop(eps_in_sqrt=False), jitted, hyperparameters traced"


class OptaxTF1(Optax):
    """``optax.rmsprop(initial_scale=1.0)``: TF1's RMSPropOptimizer (ν starts at 1)."""

    name = "optax.tf1"
    profile = "tf1"
    description = "optax.rmsprop(initial_scale=1.0) (TF1 semantics), jitted, hyperparameters traced"


# --------------------------------------------------------------------------------------------------
# jax.example_libraries.optimizers
# --------------------------------------------------------------------------------------------------
def _example_optimizer(with_momentum: bool, lr: Any, alpha: Any, eps: Any,
                       momentum: Any) -> optimizers.Optimizer:
    if with_momentum:
        return optimizers.rmsprop_momentum(lr, gamma=alpha, eps=eps, momentum=momentum)
    return optimizers.rmsprop(lr, gamma=alpha, eps=eps)


@functools.partial(jax.jit, static_argnums=0)
def _example_step(with_momentum: bool, i: int, grads: list[jax.Array],
                  state: optimizers.OptimizerState, lr: float, alpha: float, eps: float,
                  momentum: float) -> optimizers.OptimizerState:
    _TRACES["example_libraries.step"] += 1
    return _example_optimizer(with_momentum, lr, alpha, eps, momentum).update_fn(i, grads, state)


class ExampleLibraries:
    """``jax.example_libraries.optimizers.rmsprop``: the optax profile without its options.

    Its update, read from the source: v ← γ·v + (1−γ)·g²; x ← x − η_i·g / sqrt(v + ε), v starts
    at 0, defaults γ = 0.9, ε = 1e-8: the optax profile's conventions exactly (ε inside the root,
    initial 0). No weight decay, centered, nesterov, bias correction or maximize. Complex
    parameters are not declared: ``jnp.square(g)`` is the complex square g², not |g|² (neither
    "modulus" nor "real_pairs"). The learning rate of each step is passed as a traced scalar
    (a constant schedule per step), so a schedule does not recompile. The state holds no step
    count: the adapter counts. It validates no hyperparameter either.
    """

    name = "jax.example_libraries"
    with_momentum = False
    description = "jax.example_libraries.optimizers.rmsprop, jitted, hyperparameters traced"

    def __init__(self, bucket_shapes: bool = True) -> None:
        self.bucket_shapes = bucket_shapes

    def capabilities(self) -> Capabilities:
        features = {"lr_schedule", "multi_param", "mixed_dtypes", "state_readout", "state_load",
                    "layouts", "zero_size", "reject_invalid"}
        return Capabilities(
            profile="optax",
            dtypes=frozenset({"float16", "bfloat16", "float32", "float64"}),
            devices=tuple(_devices()),
            unavailable=_unavailable(),
            features=frozenset(features | ({"momentum"} if self.with_momentum else set())),
            description=self.description,
        )

    def run(self, case: Case) -> Trajectory:
        _check_case(self.name, self.capabilities(), case)
        hp = case.hp
        pack = _Packing(case.params, self.bucket_shapes, _devices()[case.device])
        init = _example_optimizer(self.with_momentum, 0.0, 0.0, 0.0, 0.0).init_fn
        state = init(pack.put(case.materialized_params()))
        if case.initial_state is not None:
            state = self._load(state, case.initial_state, pack)
        steps = _start_steps(case)
        traj = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            state = _example_step(self.with_momentum, steps[0] + k, pack.put(grads), state,
                                  case.lr_at(k), float(hp.alpha), float(hp.eps),
                                  float(hp.momentum))
            traj.append(*self._readout(jax.device_get(state.packed_state), pack,
                                       [t + k + 1 for t in steps], hp.momentum > 0))
        return traj

    def _readout(self, packed: Sequence[Sequence[np.ndarray]], pack: _Packing,
                 steps: list[int], momentum: bool) -> tuple[list[np.ndarray],
                                                            tuple[ParamState, ...]]:
        """packed_state[i] is [x, v] (rmsprop) or [x, v, mom] (rmsprop_momentum, η inside)."""
        x = pack.get(pack.tree([leaves[0] for leaves in packed]))
        v = pack.get(pack.tree([leaves[1] for leaves in packed]))
        buf = (pack.get(pack.tree([leaves[2] for leaves in packed])) if momentum
               else [None] * len(x))
        return x, tuple(ParamState(t, vi, None, bi) for t, vi, bi in zip(steps, v, buf))

    def _load(self, state: optimizers.OptimizerState, initial: Sequence[ParamState],
              pack: _Packing) -> optimizers.OptimizerState:
        leaves = [list(p) for p in state.packed_state]
        for i, v in enumerate(pack.leaves(pack.put([st.square_avg for st in initial]))):
            leaves[i][1] = v
        if self.with_momentum:
            # rmsprop_momentum always keeps a buffer; with momentum 0 the spec has none and
            # the buffer's start value is multiplied by 0.
            bufs = [np.zeros(shape, dtype) if st.momentum_buffer is None else st.momentum_buffer
                    for shape, dtype, st in zip(pack.shapes, pack.dtypes, initial)]
            for i, b in enumerate(pack.leaves(pack.put(bufs))):
                leaves[i][2] = b
        flat = [leaf for p in leaves for leaf in p]
        return jax.tree.unflatten(jax.tree.structure(state), flat)

    def make_optimizer(self, hparams: dict[str, Any]) -> optimizers.Optimizer:
        """``rmsprop``/``rmsprop_momentum`` with raw values, initialised and stepped once."""
        names = {"lr", "alpha", "eps"} | ({"momentum"} if self.with_momentum else set())
        unknown = sorted(set(hparams) - names)
        if unknown:
            raise TypeError(f"{self.name} has no hyperparameter {', '.join(unknown)}")
        hp = {**self.capabilities().hparams(momentum=0.9 if self.with_momentum else 0.0)
              .to_dict(), **hparams}
        opt = _example_optimizer(self.with_momentum, hp["lr"], hp["alpha"], hp["eps"],
                                 hp["momentum"])
        p = jnp.ones(2)
        opt.update_fn(0, p, opt.init_fn(p))
        return opt


class ExampleLibrariesMomentum(ExampleLibraries):
    """``jax.example_libraries.optimizers.rmsprop_momentum``: mom ← μ·mom + η_i·g/sqrt(v + ε);
    x ← x − mom (η inside the buffer, the optax profile's convention; the buffer already points
    along the gradient). With momentum 0 it still keeps a buffer, which the spec does not have:
    it is then not read out."""

    name = "jax.example_libraries.momentum"
    with_momentum = True
    description = ("jax.example_libraries.optimizers.rmsprop_momentum, jitted, hyperparameters "
                   "traced")
