"""JAX backends: ``optax.rmsprop`` in three configurations and ``jax.example_libraries``.

The three ``optax*`` backends are the generic optax driver
(:mod:`implementations.drivers.optax_tx`, what ``optax:optax:rmsprop`` names) over
``rmsprop_with_decay``: ``optax.rmsprop`` chained after ``optax.add_decayed_weights`` when weight
decay is on (the optax profile's coupled convention; ``optax.rmsprop`` itself has no weight
decay keyword, so ``optax:optax:rmsprop`` certifies it without), with its convention keywords
fixed (``eps_in_sqrt``, ``initial_scale``). The bundled paths are driven exactly as a user's
transformation is: jitted once per structure, hyperparameters traced, one zero-padded buffer per
dtype (:mod:`implementations._jax_common`, which also turns on ``jax_enable_x64``).

``jax.example_libraries.optimizers`` is an ``(init, update, get_params)`` triple, not a
GradientTransformation: it keeps its own jitted step here. Hyperparameter *values* (lr, alpha,
eps, momentum) are traced arguments passed as Python floats (weakly typed), so a certification run
compiles once per structure (momentum or not, the dtypes and their bucket sizes).
``compilations()`` counts the traces of both families.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.example_libraries import optimizers

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from implementations._jax_common import (
    Packing,
    compilations,
    count_trace,
    devices,
    start_steps,
    unavailable,
)
from implementations.drivers.config import DriverConfig
from implementations.drivers.optax_tx import OptaxTxBackend
from spec.rmsprop import CONVENTION_AXES, ParamState

__all__ = [
    "ExampleLibraries",
    "ExampleLibrariesMomentum",
    "Optax",
    "OptaxEpsOutside",
    "OptaxTF1",
    "compilations",
    "rmsprop_with_decay",
]


# --------------------------------------------------------------------------------------------------
# optax
# --------------------------------------------------------------------------------------------------
def rmsprop_with_decay(learning_rate: Any, decay: Any = 0.9, eps: Any = 1e-8,
                       initial_scale: Any = 0.0, eps_in_sqrt: bool = True,
                       centered: bool = False, momentum: Any = None, nesterov: bool = False,
                       bias_correction: bool = False,
                       weight_decay: Any = None) -> optax.GradientTransformation:
    """``optax.rmsprop``, after ``optax.add_decayed_weights`` when ``weight_decay`` is given."""
    tx = optax.rmsprop(learning_rate, decay=decay, eps=eps, initial_scale=initial_scale,
                       eps_in_sqrt=eps_in_sqrt, centered=centered, momentum=momentum,
                       nesterov=nesterov, bias_correction=bias_correction)
    if weight_decay is None:
        return tx
    return optax.chain(optax.add_decayed_weights(weight_decay), tx)


class Optax(OptaxTxBackend):
    """``optax.rmsprop`` with its defaults (ε inside the root, ν starts at 0).

    State translation (optax → spec ``ParamState``, found by the driver): ``nu`` → square_avg,
    ``mu`` → grad_avg (centered), ``trace`` → momentum_buffer *negated* (optax's trace
    accumulates −η·g/d; the spec's buffer points along the gradient), ``count`` → step when the
    state has one (bias_correction); otherwise optax keeps no step count and the driver counts
    the steps itself. For complex parameters optax keeps ν in the *complex* dtype (imaginary part
    0): it is read out as it is, so the report shows what optax holds. The learning rate of each
    step is passed to that step as a scalar (optax's constant-lr path: a step's lr scales that
    step's update, earlier ones stay inside the trace); optax's schedule machinery (step k uses
    schedule(k)) is checked against the spec in tests/test_spec_vs_optax.py. optax validates no
    hyperparameter: ``make_optimizer`` builds and runs it with whatever it is given.
    """

    name: ClassVar[str] = "optax"  # type: ignore[misc]
    profile: ClassVar[str] = "optax"
    fixed: ClassVar[dict[str, Any]] = {"eps_in_sqrt": True, "initial_scale": 0.0}
    description: ClassVar[str] = ("optax.rmsprop (chained after optax.add_decayed_weights for "
                                  "weight decay), jitted, hyperparameters traced")

    def __init__(self, bucket_shapes: bool = True) -> None:
        super().__init__(rmsprop_with_decay, DriverConfig(profile=self.profile, fixed=self.fixed),
                         self.name, self.description, bucket_shapes=bucket_shapes)
        # The optimizer under test is optax's (rmsprop_with_decay only chains it after
        # optax.add_decayed_weights), not this module's.
        self.package = ("optax", optax.__version__)
        self._caps = self._capabilities(self.description)  # described with that package


class OptaxEpsOutside(Optax):
    """``optax.rmsprop(eps_in_sqrt=False)``: d = sqrt(ν) + ε, the PyTorch placement."""

    name = "optax.eps_outside"
    fixed = {"eps_in_sqrt": False, "initial_scale": 0.0}
    description = "optax.rmsprop(eps_in_sqrt=False), jitted, hyperparameters traced"


class OptaxTF1(Optax):
    """``optax.rmsprop(initial_scale=1.0)``: TF1's RMSPropOptimizer (ν starts at 1)."""

    name = "optax.tf1"
    profile = "tf1"
    fixed = {"eps_in_sqrt": True, "initial_scale": 1.0}
    description = "optax.rmsprop(initial_scale=1.0) (TF1 semantics), jitted, hyperparameters traced"


# --------------------------------------------------------------------------------------------------
# jax.example_libraries.optimizers
# --------------------------------------------------------------------------------------------------
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
    wrong = [f"{a}={getattr(case.hp, a)!r} (backend: {getattr(declared, a)!r})"
             for a in CONVENTION_AXES if getattr(case.hp, a) != getattr(declared, a)]
    if wrong:
        raise ValueError(f"{name} implements profile {caps.profile!r} with "
                         f"{dict(caps.conventions)}; the case has {', '.join(wrong)}")
    missing = sorted(_features_used(case) - caps.features)
    missing += [f"dtype {d}" for d in sorted(set(case.dtypes) - caps.dtypes)]
    if case.device not in caps.devices:
        missing.append(f"device {case.device}")
    if missing:
        raise NotImplementedError(f"{name} does not support {', '.join(missing)}")


def _example_optimizer(with_momentum: bool, lr: Any, alpha: Any, eps: Any,
                       momentum: Any) -> optimizers.Optimizer:
    if with_momentum:
        return optimizers.rmsprop_momentum(lr, gamma=alpha, eps=eps, momentum=momentum)
    return optimizers.rmsprop(lr, gamma=alpha, eps=eps)


@functools.partial(jax.jit, static_argnums=0)
def _example_step(with_momentum: bool, i: int, grads: list[jax.Array],
                  state: optimizers.OptimizerState, lr: float, alpha: float, eps: float,
                  momentum: float) -> optimizers.OptimizerState:
    count_trace("example_libraries.step")
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
        self.package = ("jax", jax.__version__)  # jax.example_libraries is part of jax

    def capabilities(self) -> Capabilities:
        features = {"lr_schedule", "multi_param", "mixed_dtypes", "state_readout", "state_load",
                    "layouts", "zero_size", "reject_invalid"}
        return Capabilities(
            profile="optax",
            dtypes=frozenset({"float16", "bfloat16", "float32", "float64"}),
            devices=tuple(devices()),
            unavailable=unavailable(),
            features=frozenset(features | ({"momentum"} if self.with_momentum else set())),
            description=self.description,
        )

    def run(self, case: Case) -> Trajectory:
        _check_case(self.name, self.capabilities(), case)
        hp = case.hp
        pack = Packing(case.params, self.bucket_shapes, devices()[case.device])
        init = _example_optimizer(self.with_momentum, 0.0, 0.0, 0.0, 0.0).init_fn
        state = init(pack.put(case.materialized_params()))
        if case.initial_state is not None:
            state = self._load(state, case.initial_state, pack)
        steps = start_steps(case)
        traj = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            state = _example_step(self.with_momentum, steps[0] + k, pack.put(grads), state,
                                  case.lr_at(k), float(hp.alpha), float(hp.eps),
                                  float(hp.momentum))
            traj.append(*self._readout(jax.device_get(state.packed_state), pack,
                                       [t + k + 1 for t in steps], hp.momentum > 0))
        return traj

    def _readout(self, packed: Sequence[Sequence[np.ndarray]], pack: Packing,
                 steps: list[int], momentum: bool) -> tuple[list[np.ndarray],
                                                            tuple[ParamState, ...]]:
        """packed_state[i] is [x, v] (rmsprop) or [x, v, mom] (rmsprop_momentum, η inside)."""
        x = pack.get(pack.tree([leaves[0] for leaves in packed]))
        v = pack.get(pack.tree([leaves[1] for leaves in packed]))
        buf = (pack.get(pack.tree([leaves[2] for leaves in packed])) if momentum
               else [None] * len(x))
        return x, tuple(ParamState(t, vi, None, bi) for t, vi, bi in zip(steps, v, buf))

    def _load(self, state: optimizers.OptimizerState, initial: Sequence[ParamState],
              pack: Packing) -> optimizers.OptimizerState:
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
