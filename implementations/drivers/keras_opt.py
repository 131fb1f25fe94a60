"""The generic Keras driver: any Keras 3 optimizer class as a backend.

``keras:keras.optimizers:RMSprop`` (``DRIVER:MODULE:ATTR``) certifies Keras's ``RMSprop`` with no
adapter code, on the Keras backend the user selected (``KERAS_BACKEND`` or
``~/.keras/keras.json``; Keras's default, TensorFlow, must then be installed). The numpy, jax
and torch backends work as they are.

What is read off the implementation:

- **Hyperparameters**: the constructor's keywords, matched to the spec's names through
  ``config.SYNONYMS`` (``learning_rate``, ``rho``, ``epsilon``, ``momentum``, ``centered``,
  ``weight_decay``; ``[hyperparameters]`` of a driver file wins). A spec feature with no keyword
  (``maximize``, ``nesterov``, ...) is *unsupported*. A numeric keyword whose default is
  ``None`` gets ``None`` for 0 (Keras's "off": ``weight_decay=None``). ``[fixed]`` keywords are
  passed on every construction.
- **Learning rate per step**: assigned to ``optimizer.learning_rate`` before each step (a Keras
  variable, of ``keras.config.floatx()``): "lr_schedule" is declared when that assignment works.
- **State**: Keras keeps per-variable state in lists of optimizer variables on private
  attributes (``_velocities``, ``_momentums``, ``_average_gradients`` for RMSprop) and one
  ``iterations`` counter. After one probe step (centered and with momentum where supported),
  every attribute holding one variable per model variable, shaped like it, is matched to SPEC
  R14's names by its name without the underscore (``config.STATE_SYNONYMS``; ``[state]`` names an
  attribute and wins), the step by ``iterations``. A field whose probe value has the opposite
  sign of the spec's is negated both ways. ``iterations`` is one for all parameters: a loaded
  state must have one step. Without a square_avg list, "state_readout" and "state_load" are not
  declared and the multi-step properties judge parameters only; per-variable lists matching no
  spec name mean "state_load" is not declared.
- **dtypes**: those the selected backend can create a variable in and step (probed), or
  ``dtypes`` of a driver file.
- **Profile**: ``config.profile``; ``None`` means "keras" assumed — unless loaded through
  :func:`conformance.registry.load`, which then drives it under what ``identify`` finds (the
  description says which).

Parameters become ``keras.Variable``s (copies: Keras owns its variables). Gradients are handed in
the caller's own memory where the backend takes NumPy arrays as its tensors (numpy), so that a
write into them is visible to property P6; other backends get ``keras.ops.convert_to_tensor``
copies (the torch backend rejects NumPy arrays), where such a write cannot be seen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conformance.backend import Capabilities
from conformance.case import DTYPES, Case, Trajectory, np_dtype
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

__all__ = ["KerasOptimizerBackend", "driver"]

_PROBE_VALUES = {"centered": True, "momentum": 0.5}
DEFAULT_PROFILE = "keras"


def _keras() -> Any:
    """The ``keras`` module, or a usage error naming the backend that failed to load."""
    try:
        return importlib.import_module("keras")
    except ModuleNotFoundError as exc:
        if exc.name == "keras":
            raise DriverConfigError("the keras driver needs Keras 3: pip install "
                                    "'rmsprop-conformance[keras]'") from None
        raise DriverConfigError(f"Keras cannot load its backend ({exc}): select an installed "
                                "one with KERAS_BACKEND=numpy (or jax, torch)") from None


class KerasOptimizerBackend(DrivenBackend):
    """A Keras 3 optimizer class driven as a conformance backend."""

    def __init__(self, cls: Callable[..., Any], config: DriverConfig, name: str) -> None:
        self.keras = _keras()
        base = self.keras.optimizers.Optimizer
        if not (isinstance(cls, type) and issubclass(cls, base)):
            what = qualname(cls) if isinstance(cls, type) else \
                f"{type(cls).__name__} object {cls!r}"
            raise DriverConfigError(f"{name}: {what} is not a keras.optimizers.Optimizer "
                                    "subclass")
        self._read(name, cls, config)
        self.cls = cls
        check_keywords(name, cls, self.accepted, set(self.keywords.values()) | set(self.flags),
                       self.flags)
        self.package = package_of(cls)
        self.backend_name = self.keras.backend.backend()
        self.state_attrs: dict[str, str] = {}
        self.negated: frozenset[str] = frozenset()
        self.state_problem, self.loadable, self.schedulable = "", False, False
        self._probe()
        self.dtypes = self._probe_dtypes()
        self._caps = self._capabilities()

    # -- loading -------------------------------------------------------------------------------
    def _construct(self, kwargs: Mapping[str, Any]) -> Any:
        return self.cls(**kwargs)

    def _probe(self) -> None:
        """Construct, build and step once: the optimizer works, its state lists, the lr."""
        hp = self._hparams().replace(
            **{k: v for k, v in _PROBE_VALUES.items() if k in self.keywords})
        try:
            opt = self._construct(self._kwargs(hp))
        except Exception as exc:
            raise DriverConfigError(f"{self.name}: constructing {qualname(self.cls)} raised "
                                    f"{type(exc).__name__}: {exc}") from None
        variables = [self.keras.Variable(np.zeros(3, np.float32), dtype="float32")]
        try:
            if "lr" in self.keywords:
                opt.learning_rate = float(hp.lr)
                self.schedulable = True
        except Exception as exc:
            self.state_problem = f"the learning rate cannot be set ({type(exc).__name__})"
        try:
            opt.apply([self._grad(np.full(3, 0.5, np.float32))], variables)
        except Exception as exc:
            raise DriverConfigError(f"{self.name}: a first step of {qualname(self.cls)} raised "
                                    f"{type(exc).__name__}: {exc}") from None
        self._match_state(opt, variables, hp)

    def _per_variable(self, opt: Any, variables: Sequence[Any]) -> dict[str, list[Any]]:
        """Attributes holding one optimizer variable per model variable, shaped like it."""
        out = {}
        for attr, value in vars(opt).items():
            if attr in ("_variables", "_trainable_variables") or not isinstance(value, list):
                continue
            if len(value) == len(variables) and all(
                    isinstance(v, self.keras.Variable) and tuple(v.shape) == tuple(m.shape)
                    and v is not m for v, m in zip(value, variables)):
                out[attr] = list(value)
        return out

    def _match_state(self, opt: Any, variables: Sequence[Any], hp: HParams) -> None:
        lists = self._per_variable(opt, variables)
        by_word = {attr.lstrip("_"): attr for attr in lists}
        attrs: dict[str, str] = {}
        for spec_name, synonyms in STATE_SYNONYMS.items():
            if spec_name == "step":
                continue
            declared = self.config.state.get(spec_name)
            if declared is not None:
                attr = declared if declared in lists else by_word.get(declared)
            else:
                attr = next((by_word[s] for s in synonyms if s in by_word), None)
            if attr is not None:
                attrs[spec_name] = attr
        if self._state_missing(hp, attrs, sorted(lists), "per-variable list"):
            return
        step_attr = self.config.state.get("step", "iterations")
        if not isinstance(getattr(opt, step_attr, None), self.keras.Variable):
            self.state_problem = f"no step counter {step_attr!r} (name it in [state])"
            return
        attrs["step"] = step_attr
        self.state_attrs = attrs
        self.negated = frozenset(
            n for n, a in attrs.items() if n != "step"
            and float(np.sum(self._host(getattr(opt, a)[0].value, np.float32))) < 0)
        extra = sorted(set(lists) - set(attrs.values()))
        self._unmatched_state("per-variable state lists", extra)

    def _probe_dtypes(self) -> frozenset[str]:
        if self.config.dtypes is not None:
            return frozenset(self.config.dtypes)
        out = set()
        for dtype in DTYPES:
            try:
                var = self._variable(np.ones(2, np_dtype(dtype)))
                opt = self._construct(self._kwargs(self._hparams()))
                opt.apply([self._grad(np.ones(2, np_dtype(dtype)))], [var])
                self._host(var.value, np_dtype(dtype))
            except Exception:
                continue
            out.add(dtype)
        return frozenset(out)

    # -- the backend contract ------------------------------------------------------------------
    def _capabilities(self) -> Capabilities:
        found = {"lr_schedule"} if self.schedulable else set()
        features = features_of(self.name, self.cls, self.keywords, self.config, found=found,
                               readable=bool(self.state_attrs), loadable=self.loadable)
        return self._declare(DEFAULT_PROFILE, dtypes=self.dtypes, devices=("cpu",),
                             features=frozenset(features),
                             conventions=dict(self.config.conventions),
                             description=self._describe(features))

    def _describe(self, features: set[str]) -> str:
        package = self._package_text("keras")
        parts = [f"{qualname(self.cls)}, generic Keras driver ({package}keras "
                 f"{self.keras.__version__}, backend {self.backend_name}, floatx "
                 f"{self.keras.config.floatx()})"]
        parts += gaps(self.config, DEFAULT_PROFILE, features, readable=bool(self.state_attrs),
                      state_problem=self.state_problem)
        return "; ".join(parts)

    def make_optimizer(self, hparams: Mapping[str, Any]) -> Any:
        """The optimizer built from raw spec-named values, built and stepped once.

        Values go through unvalidated; a spec name with no keyword goes through unchanged (the
        constructor then rejects it itself).
        """
        kwargs: dict[str, Any] = dict(self.flags)
        for name, raw in hparams.items():
            if self._fixed_axis(name, raw):
                continue
            kw = self.keywords.get(name, name)
            kwargs[kw] = off_value(self.accepted, kw, raw)
        opt = self._construct(kwargs)
        var = self._variable(np.ones(2, np.float32))
        opt.apply([self._grad(np.ones(2, np.float32))], [var])
        return opt

    def run(self, case: Case) -> Trajectory:
        self._check_case(case)
        dtypes = [p.dtype for p in case.params]
        variables = [self._variable(p) for p in case.materialized_params()]
        opt = self._construct(self._kwargs(case.hp))
        opt.build(variables)
        if case.initial_state is not None:
            self._load(opt, case.initial_state)
        traj = Trajectory.empty(with_state=bool(self.state_attrs))
        for k, grads in enumerate(case.grads):
            if self.schedulable:
                opt.learning_rate = float(case.lr_at(k))
            opt.apply([self._grad(g) for g in grads], variables)
            traj.append([self._host(v.value, d) for v, d in zip(variables, dtypes)],
                        self._readout(opt, case.hp, dtypes))
        return traj

    # -- helpers -------------------------------------------------------------------------------
    def _hparams(self) -> HParams:
        return HParams.from_profile(self.config.profile or DEFAULT_PROFILE,
                                    **self.config.conventions)

    def _kwargs(self, hp: HParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, kw in self.keywords.items():
            value = getattr(hp, name)
            value = float(value) if isinstance(value, (float, np.floating)) else value
            kwargs[kw] = off_value(self.accepted, kw, value)
        return {**kwargs, **self.flags}

    def _variable(self, value: np.ndarray) -> Any:
        return self.keras.Variable(np.array(value), dtype=value.dtype.name)

    def _grad(self, g: np.ndarray) -> Any:
        """The caller's array itself where NumPy arrays are this backend's tensors."""
        ops = self.keras.ops
        return g if ops.is_tensor(g) else ops.convert_to_tensor(g, dtype=g.dtype.name)

    def _host(self, value: Any, dtype: np.dtype) -> np.ndarray:
        """A host copy in ``dtype`` (exact: a bfloat16 may come back as float32)."""
        return np.array(self.keras.ops.convert_to_numpy(value)).astype(dtype, copy=False)

    def _check_case(self, case: Case) -> None:
        """Raise ValueError for a case this implementation has no setting for."""
        wrong = self._settings_missing(case.hp)
        wrong += [f"dtype {d}" for d in sorted(set(case.dtypes) - self._caps.dtypes)]
        if case.device != "cpu":
            wrong.append(f"device {case.device!r} (the driver runs Keras on the CPU)")
        if case.initial_state is not None and not self.loadable:
            wrong.append(f"an initial state (state_load not supported: {self.state_problem})")
        if wrong:
            raise ValueError(f"{self.name} cannot run this case: " + ", ".join(wrong))

    def _readout(self, opt: Any, hp: HParams, dtypes: Sequence[np.dtype]
                 ) -> list[ParamState] | None:
        if not self.state_attrs:
            return None
        wanted = {"square_avg", *(["grad_avg"] if hp.centered else []),
                  *(["momentum_buffer"] if hp.momentum > 0 else [])}
        step = int(self._host(getattr(opt, self.state_attrs["step"]).value, np.int64))
        out = []
        for i, dtype in enumerate(dtypes):
            fields = {}
            for name in ("square_avg", "grad_avg", "momentum_buffer"):
                attr = self.state_attrs.get(name)
                if name in wanted and attr is not None:
                    value = self._host(getattr(opt, attr)[i].value, dtype)
                    fields[name] = -value if name in self.negated else value
            out.append(ParamState(step, **fields))
        return out

    def _load(self, opt: Any, initial: Sequence[ParamState]) -> None:
        steps = {int(st.step) for st in initial}
        if len(steps) != 1:
            raise ValueError(f"{self.name} keeps one step count (iterations) for all "
                             f"parameters; initial_state has {sorted(steps)}")
        counter = getattr(opt, self.state_attrs["step"])
        counter.assign(np.asarray(steps.pop(), dtype=counter.dtype))
        for name, attr in self.state_attrs.items():
            if name == "step":
                continue
            targets = getattr(opt, attr)
            for i, (st, target) in enumerate(zip(initial, targets)):
                value = getattr(st, name)
                if value is None:
                    if name == "square_avg":
                        raise ValueError(f"initial_state[{i}] lacks square_avg")
                    continue  # not part of this configuration's state (R14)
                value = np.asarray(value)
                target.assign(self._grad(-value if name in self.negated else value))


def driver(target: str, config: DriverConfig) -> KerasOptimizerBackend:
    """The backend for ``MODULE:ATTR``, a Keras 3 optimizer class."""
    name = config.name or f"keras:{target}"
    _keras()  # a missing Keras backend is named before the module import fails on it
    return KerasOptimizerBackend(resolve("keras", target, name), config, name)
