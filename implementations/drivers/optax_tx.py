"""The generic optax driver: any ``optax.GradientTransformation`` factory as a backend.

``optax:optax:rmsprop`` (``DRIVER:MODULE:ATTR``) certifies ``optax.rmsprop`` with no adapter
code; the bundled ``optax``, ``optax.eps_outside`` and ``optax.tf1`` are this driver over
``optax.rmsprop`` chained after ``optax.add_decayed_weights`` (implementations/jax_backends.py).

What is read off the implementation:

- **Hyperparameters**: the factory's keywords, matched to the spec's names through
  ``config.SYNONYMS`` (``learning_rate``, ``decay``, ``eps``, ``momentum``, ``centered``,
  ``nesterov``, ``bias_correction``; ``[hyperparameters]`` of a driver file wins). A spec feature
  with no keyword is *unsupported* (``optax.rmsprop`` has no ``weight_decay``: chain
  ``add_decayed_weights`` in a factory of your own to certify it). A numeric keyword whose
  default is ``None`` gets ``None`` for 0 (optax's "off": ``momentum=None``).
- **Convention axes** taken by keyword (``AXIS_KEYWORDS``: ``eps_in_sqrt``, ``initial_scale``
  for initial_square_avg, ...) are passed from each case; one fixed by ``[fixed]`` (or
  ``?eps_in_sqrt=false``) is claimed with that value and cases with another are refused.
- **State**: one probe step (centered, momentum, bias_correction where supported) shows the
  optax state's named fields; those matching SPEC R14's names through ``config.STATE_SYNONYMS``
  (``nu`` square_avg, ``mu`` grad_avg, ``trace`` momentum_buffer, ``count`` step; ``[state]``
  wins) are read and loaded wherever they occur in the state tree. A field whose probe value has
  the opposite sign of the spec's (optax's ``trace`` accumulates the negative update −η·g/d) is
  negated both ways. Without a step field (optax keeps a ``count`` only with bias correction)
  the driver counts the steps itself; a ``count`` is one for all parameters, so a loaded state
  must have one step. Without a square_avg field, "state_readout" and "state_load" are not
  declared and the multi-step properties judge parameters only; parameter-shaped fields that
  match no spec name mean "state_load" is not declared.
- **Profile**: ``config.profile``; ``None`` means "optax" assumed — unless loaded through
  :func:`conformance.registry.load`, which then drives it under what ``identify`` finds (the
  description says which).

The step (``update`` then ``apply_updates``) is jitted once per static structure: the factory,
its non-float keywords (flags, ``None``) and the pytree, whose leaves are one flat zero-padded
buffer per dtype (:class:`implementations._jax_common.Packing`). Float hyperparameters and each
step's learning rate are traced arguments, passed as Python floats (weakly typed: they take the
parameters' dtype, as in ordinary optax code). A factory that branches on a float in Python
(a concretization error under tracing) is re-run with every value static. ``init`` runs eagerly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from conformance.backend import Capabilities
from conformance.case import DTYPES, Case, Trajectory
from implementations._jax_common import (
    Packing,
    count_trace,
    devices,
    require,
    start_steps,
    unavailable,
)
from implementations.drivers._common import (
    DrivenBackend,
    check_keywords,
    features_of,
    gaps,
    off_value,
    package_of,
    qualname,
    resolve,
)
from implementations.drivers.config import (
    STATE_SYNONYMS,
    DriverConfig,
    DriverConfigError,
)
from spec.rmsprop import HParams, ParamState

__all__ = ["AXIS_KEYWORDS", "OptaxTxBackend", "driver"]

# Convention axis (SPEC §3) -> the keywords factories take for it; passed from the case.
AXIS_KEYWORDS: dict[str, tuple[str, ...]] = {
    "eps_in_sqrt": ("eps_in_sqrt",),
    "initial_square_avg": ("initial_square_avg", "initial_scale", "initial_accumulator_value"),
    "lr_in_momentum": ("lr_in_momentum",),
}
_PROBE_VALUES = {"centered": True, "momentum": 0.5, "bias_correction": True}
DEFAULT_PROFILE = "optax"


@functools.partial(jax.jit, static_argnums=(0, 1))
def _step(factory: Callable[..., Any], static: tuple[tuple[str, Any], ...], params: Any,
          grads: Any, state: Any, traced: dict[str, float]) -> tuple[Any, Any]:
    count_trace("optax.step")
    tx = factory(**dict(static), **traced)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def _named_fields(tree: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str,
                                                                            Any]]:
    """``(path, field name, value)`` of every NamedTuple field in an optax state, in tree order."""
    if hasattr(tree, "_fields"):
        for name in tree._fields:
            yield path + (name,), name, getattr(tree, name)
        for name in tree._fields:
            yield from _named_fields(getattr(tree, name), path + (name,))
    elif isinstance(tree, (tuple, list)):
        for i, item in enumerate(tree):
            yield from _named_fields(item, path + (i,))


def _replace(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if hasattr(tree, "_fields"):
        return tree._replace(**{head: _replace(getattr(tree, head), rest, value)})
    items = list(tree)
    items[head] = _replace(items[head], rest, value)
    return type(tree)(items)


class OptaxTxBackend(DrivenBackend):
    """An optax ``GradientTransformation`` factory driven as a conformance backend."""

    def __init__(self, factory: Callable[..., Any], config: DriverConfig, name: str,
                 description: str = "", bucket_shapes: bool = True) -> None:
        if not callable(factory):
            raise DriverConfigError(f"{name}: {type(factory).__name__} object {factory!r} is not "
                                    "a factory of optax.GradientTransformation")
        self._read(name, factory, config)
        self.factory = factory
        self.bucket_shapes = bucket_shapes
        # axis -> keyword, for the axes each case sets; axes fixed in [fixed] are claimed.
        self.axes: dict[str, str] = {}
        fixed_axes: dict[str, Any] = {}
        for axis, names in AXIS_KEYWORDS.items():
            kw = next((n for n in names if n in self.accepted), None)
            if kw is None:
                continue
            if kw in self.flags:
                fixed_axes[axis] = self.flags[kw]
            else:
                self.axes[axis] = kw
        check_keywords(name, factory, self.accepted,
                       set(self.keywords.values()) | set(self.flags) | set(self.axes.values()),
                       self.flags)
        profile = HParams.from_profile(config.profile or DEFAULT_PROFILE)
        self.conventions = {**{a: v for a, v in fixed_axes.items() if getattr(profile, a) != v},
                            **config.conventions}
        self.package = package_of(factory)
        self.state_fields: dict[str, str] = {}
        self.negated: frozenset[str] = frozenset()
        self.state_problem, self.loadable = "", False
        self._probe()
        self._caps = self._capabilities(description)

    # -- loading -------------------------------------------------------------------------------
    def _probe(self) -> None:
        """Construct, init and update once: a transformation, and its state's named fields."""
        hp = self._hparams().replace(
            **{k: v for k, v in _PROBE_VALUES.items() if k in self.keywords})
        pack = Packing([np.zeros(3)], self.bucket_shapes, devices()["cpu"])
        try:
            tx = self.factory(**self._kwargs(hp, hp.lr))
        except Exception as exc:
            raise DriverConfigError(f"{self.name}: constructing {qualname(self.factory)} raised "
                                    f"{type(exc).__name__}: {exc}") from None
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise DriverConfigError(f"{self.name}: {qualname(self.factory)}(...) returned "
                                    f"{type(tx).__name__}, not an optax.GradientTransformation "
                                    "(init and update)")
        params = pack.put([np.zeros(3)])
        try:
            _, state = tx.update(pack.put([np.full(3, 0.5)]), tx.init(params), params)
        except Exception as exc:
            self.state_problem = f"a probe step raised {type(exc).__name__}: {exc}"
            return
        self._match_state(state, jax.tree.structure(params), hp)

    def _match_state(self, state: Any, param_tree: Any, hp: HParams) -> None:
        arrays = {name: value for _, name, value in _named_fields(state)
                  if jax.tree.structure(value) == param_tree}
        scalars = {name for _, name, value in _named_fields(state)
                   if isinstance(value, (jax.Array, np.ndarray, np.generic)) and value.ndim == 0
                   and jnp.issubdtype(value.dtype, jnp.integer)}
        fields: dict[str, str] = {}
        for spec_name, synonyms in STATE_SYNONYMS.items():
            found = arrays if spec_name != "step" else dict.fromkeys(scalars)
            declared = self.config.state.get(spec_name)
            key = declared if declared is not None else next(
                (s for s in synonyms if s in found), None)
            if key is not None and key in found:
                fields[spec_name] = key
        if "square_avg" not in fields:
            self.state_problem = (f"no state field for square_avg among "
                                  f"{sorted(arrays) or 'none'} (name it in [state])")
            return
        if self._state_missing(hp, fields, sorted(arrays), "state field", always=()):
            return
        self.state_fields = fields
        # Every field the probe made is positive in the spec's convention (g > 0, from 0 or 1).
        self.negated = frozenset(n for n, f in fields.items() if n != "step" and float(
            np.sum(jax.tree.leaves(jax.device_get(arrays[f]))[0])) < 0)
        extra = sorted(set(arrays) - set(fields.values()))
        self._unmatched_state("state fields", extra)

    # -- the backend contract ------------------------------------------------------------------
    def _capabilities(self, description: str) -> Capabilities:
        found = {"lr_schedule"} if "lr" in self.keywords else set()
        features = features_of(self.name, self.factory, self.keywords, self.config, found=found,
                               readable=bool(self.state_fields), loadable=self.loadable)
        dtypes = frozenset(self.config.dtypes if self.config.dtypes is not None else DTYPES)
        return self._declare(DEFAULT_PROFILE, dtypes=dtypes, devices=tuple(devices()),
                             features=frozenset(features), conventions=dict(self.conventions),
                             unavailable=unavailable(),
                             description=self._describe(description, features))

    def _describe(self, description: str, features: set[str]) -> str:
        package = self._package_text("optax")
        versions = f"({package}optax {optax.__version__}, jax {jax.__version__})"
        if description:
            return f"{description} {versions}"
        parts = [f"{qualname(self.factory)}, generic optax driver {versions}, jitted once per "
                 "structure, hyperparameters traced"]
        if self.axes:
            parts.append("convention keywords set from each case: "
                         + ", ".join(f"{kw} ({axis})" for axis, kw in self.axes.items()))
        if self.state_fields and "step" not in self.state_fields:
            parts.append("the state keeps no step count: the driver counts steps")
        parts += gaps(self.config, DEFAULT_PROFILE, features, readable=bool(self.state_fields),
                      state_problem=self.state_problem)
        return "; ".join(parts)

    def make_optimizer(self, hparams: Mapping[str, Any]) -> Any:
        """The transformation built from raw spec-named values, initialised and updated once.

        Values go through unvalidated (optax validates nothing by design, so invalid values come
        back as a working transformation, which P13 records as accepted); a spec name with no
        keyword goes through unchanged, and the factory rejects it itself (``TypeError``).
        """
        claimed = self._hparams()
        kwargs: dict[str, Any] = {**self._required_defaults(claimed), **self.flags}
        for name, raw in hparams.items():
            if self._fixed_axis(name, raw):
                continue
            kw = self.axes.get(name) or self.keywords.get(name, name)
            kwargs[kw] = off_value(self.accepted, kw, raw)
        tx = self.factory(**kwargs)
        p = jnp.ones(2)
        tx.update(p, tx.init(p), p)
        return tx

    def run(self, case: Case) -> Trajectory:
        self._check_case(case)
        hp = case.hp
        pack = Packing(case.params, self.bucket_shapes, devices()[case.device])
        params = pack.put(case.materialized_params())
        state = self.factory(**self._kwargs(hp, hp.lr)).init(params)
        if case.initial_state is not None:
            state = self._load(state, case.initial_state, pack)
        steps = start_steps(case)
        traj = Trajectory.empty(with_state=bool(self.state_fields))
        for k, grads in enumerate(case.grads):
            params, state = self._jitted(hp, case.lr_at(k), params, pack.put(grads), state)
            host_params, host_state = jax.device_get((params, state))
            traj.append(pack.get(host_params),
                        self._readout(host_state, hp, pack, [t + k + 1 for t in steps]))
        return traj

    # -- helpers -------------------------------------------------------------------------------
    def _jitted(self, hp: HParams, lr: float, params: Any, grads: Any, state: Any
                ) -> tuple[Any, Any]:
        kwargs = self._kwargs(hp, lr)
        traced = {k: v for k, v in kwargs.items() if type(v) is float}
        static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in traced))
        try:
            return _step(self.factory, static, params, grads, state, traced)
        except jax.errors.ConcretizationTypeError:
            # The factory branches on a float in Python: every value static (one compilation
            # per distinct value).
            return _step(self.factory, tuple(sorted(kwargs.items())), params, grads, state, {})

    def _hparams(self) -> HParams:
        return HParams.from_profile(self.config.profile or DEFAULT_PROFILE, **self.conventions)

    def _required_defaults(self, claimed: HParams) -> dict[str, Any]:
        """Profile defaults for keywords the factory requires (P13 passes one name)."""
        named = {**self.keywords, **self.axes}
        return {kw: getattr(claimed, name) for name, kw in named.items()
                if self.accepted[kw].default is self.accepted[kw].empty}

    def _kwargs(self, hp: HParams, lr: float) -> dict[str, Any]:
        """The factory's keywords for ``hp`` (floats as Python floats: weakly typed)."""
        kwargs: dict[str, Any] = {}
        for name, kw in {**self.keywords, **self.axes}.items():
            value = lr if name == "lr" else getattr(hp, name)
            value = float(value) if isinstance(value, (float, np.floating)) else value
            kwargs[kw] = off_value(self.accepted, kw, value)
        return {**kwargs, **self.flags}

    def _check_case(self, case: Case) -> None:
        """Raise ValueError for a case this implementation has no setting for."""
        hp = case.hp
        wrong = self._settings_missing(hp)
        wrong += [f"dtype {d}" for d in sorted(set(case.dtypes) - self._caps.dtypes)]
        if case.device not in self._caps.devices:
            wrong.append(f"device {case.device!r} ({self._caps.unavailable.get(case.device, '')})")
        if case.initial_state is not None and not self.loadable:
            wrong.append(f"an initial state (state_load not supported: {self.state_problem})")
        if wrong:
            raise ValueError(f"{self.name} cannot run this case: " + ", ".join(wrong))

    def _wanted(self, hp: HParams) -> set[str]:
        """R14: grad_avg iff centered, momentum_buffer iff momentum > 0."""
        return {"square_avg", *(["grad_avg"] if hp.centered else []),
                *(["momentum_buffer"] if hp.momentum > 0 else [])}

    def _readout(self, state: Any, hp: HParams, pack: Packing,
                 own_steps: list[int]) -> tuple[ParamState, ...] | None:
        if not self.state_fields:
            return None
        found: dict[str, Any] = {}
        for _, name, value in _named_fields(state):
            found.setdefault(name, value)
        n = len(pack.shapes)
        values: dict[str, list[Any]] = {}
        for spec_name in ("grad_avg", "momentum_buffer", "square_avg"):
            field = self.state_fields.get(spec_name)
            if spec_name in self._wanted(hp) and field is not None:
                values[spec_name] = pack.get(found[field], negate=spec_name in self.negated)
            else:
                values[spec_name] = [None] * n
        step_field = self.state_fields.get("step")
        steps = [int(found[step_field])] * n if step_field in found else own_steps
        return tuple(ParamState(*fields) for fields in zip(
            steps, values["square_avg"], values["grad_avg"], values["momentum_buffer"]))

    def _load(self, state: Any, initial: Sequence[ParamState], pack: Packing) -> Any:
        for spec_name, field in self.state_fields.items():
            paths = [path for path, name, _ in _named_fields(state) if name == field]
            if spec_name == "step":
                steps = {int(st.step) for st in initial}
                if len(steps) != 1:
                    raise ValueError(f"{self.name} keeps one step count for all parameters; "
                                     f"initial_state has {sorted(steps)}")
                values = [st.step for st in initial]
            elif spec_name == "square_avg":
                values = [st.square_avg for st in initial]
            else:
                present = [getattr(st, spec_name) is not None for st in initial]
                if not any(present):
                    continue  # not part of this configuration's state (R14)
                values = [require(st, spec_name, i) for i, st in enumerate(initial)]
            for path in paths:
                if spec_name == "step":
                    old = _get(state, path)
                    new: Any = jnp.asarray(values[0], dtype=jnp.asarray(old).dtype)
                else:
                    new = pack.put(values, negate=spec_name in self.negated)
                state = _replace(state, path, new)
        return state


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for head in path:
        tree = getattr(tree, head) if hasattr(tree, "_fields") else tree[head]
    return tree


def driver(target: str, config: DriverConfig) -> OptaxTxBackend:
    """The backend for ``MODULE:ATTR``, a factory returning a GradientTransformation."""
    name = config.name or f"optax:{target}"
    return OptaxTxBackend(resolve("optax", target, name), config, name)

