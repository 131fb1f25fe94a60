"""The generic torch driver: any ``torch.optim.Optimizer`` class or factory as a backend.

``torch:timm.optim:RMSpropTF`` (``DRIVER:MODULE:ATTR``) certifies ``RMSpropTF`` with no adapter
code; the bundled ``torch.forloop``, ``torch.foreach``, ``torch.differentiable`` and
``torch.tensor_lr`` are this driver over ``torch.optim.RMSprop`` with their flags.

What is read off the implementation:

- **Hyperparameters**: the constructor's keywords, matched to the spec's names through
  ``config.SYNONYMS`` (``[hyperparameters]`` of a driver file wins). A spec feature with no keyword
  (``maximize``, ``nesterov``, ...) is *unsupported*: not declared, never passed. A convention
  axis that the constructor takes under its spec name (``lr_in_momentum``, ``eps_in_sqrt``) is
  passed from the case. ``[fixed]`` keywords are passed on every construction.
- **Code paths**: a constructor keyword among ``CODE_PATH_FLAGS`` (``foreach``,
  ``differentiable``, ``capturable``) selects another code path. The backend certifies the path
  its ``[fixed]`` values pick, the constructor's defaults otherwise (``foreach=None`` is the
  for-loop on a CPU); one backend per path, each named by its flags:
  ``torch:torch.optim:RMSprop?foreach=true`` (the registry puts ``?KEY=VALUE&...`` into
  ``[fixed]``). The description lists the paths the constructor offers.
- **State**: one probe step (centered and with momentum where supported) shows the keys the
  optimizer keeps per parameter (``optimizer.state_dict()["state"]``); they are matched to SPEC
  R14's names through ``config.STATE_SYNONYMS`` (``[state]`` wins). Without a ``step`` and a
  ``square_avg`` key, "state_readout" and "state_load" are not declared and the multi-step
  properties judge parameters only (the description says so); with keys that match no spec name,
  "state_load" is not declared (a loaded state would miss them).
- **Tensor learning rate**: "tensor_lr" is declared when the constructor accepts a 0-d tensor lr.
- **Profile**: ``config.profile``; ``None`` means "torch" assumed — unless loaded through
  :func:`conformance.registry.load`, which then drives it under what ``identify`` finds (the
  description says which).

Every NumPy/torch crossing goes through :mod:`implementations._torch_common` (bfloat16 as int16
views, layouts through ``empty_strided``, gradients in the caller's memory on the CPU).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from implementations._torch_common import (
    ALL_DTYPES,
    available_devices,
    check_state_matches,
    grad_tensor,
    state_from_torch,
    state_to_torch,
    to_numpy,
    to_torch,
)
from implementations.drivers._common import (
    DrivenBackend,
    check_keywords,
    features_of,
    gaps,
    package_of,
    resolve,
)
from implementations.drivers._common import keywords_of as _keywords_of
from implementations.drivers._common import qualname as _qualname
from implementations.drivers.config import (
    STATE_SYNONYMS,
    DriverConfig,
    DriverConfigError,
)
from spec.rmsprop import HParams, ParamState

__all__ = ["CODE_PATH_FLAGS", "TorchOptimBackend", "driver", "package_of"]

# Constructor keywords that select another code path of the same algorithm.
CODE_PATH_FLAGS = ("foreach", "differentiable", "capturable")
# Convention axes (SPEC §3); those in AXIS_KEYWORDS are passed from the case when the constructor
# takes a keyword of that name, the others are fixed by the claimed profile and conventions.
AXIS_KEYWORDS = ("eps_in_sqrt", "lr_in_momentum")
# The probe's hyperparameters (spec names): valid, with every state-creating feature on.
_PROBE_VALUES = {"centered": True, "momentum": 0.5}
_REQUIRED_STATE = ("step", "square_avg")
DEFAULT_PROFILE = "torch"


def _is_optimizer_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)


class TorchOptimBackend(DrivenBackend):
    """A ``torch.optim.Optimizer`` class or factory driven as a conformance backend."""

    def __init__(self, factory: Callable[..., Any], config: DriverConfig, name: str,
                 description: str = "") -> None:
        if isinstance(factory, type) and not _is_optimizer_class(factory):
            raise DriverConfigError(f"{name}: {_qualname(factory)} is not a torch.optim.Optimizer "
                                    "subclass (nor a factory returning one)")
        if not callable(factory):
            raise DriverConfigError(f"{name}: {type(factory).__name__} object {factory!r} is not "
                                    "a torch.optim.Optimizer class or factory")
        self._read(name, factory, config)
        self.factory = factory
        accepted = self.accepted
        self.axes = tuple(a for a in AXIS_KEYWORDS if a in accepted and a not in self.flags)
        self.paths = tuple(f for f in CODE_PATH_FLAGS if f in accepted)
        check_keywords(name, factory, accepted,
                       set(self.keywords.values()) | set(self.flags) | set(self.axes),
                       self.flags, skip=1)
        self.package = package_of(factory)
        self._probe()
        self._caps = self._capabilities(description)

    # -- loading -------------------------------------------------------------------------------
    def _probe(self) -> None:
        """Construct and step once: the optimizer works, its state keys, a tensor lr."""
        hp = self._hparams().replace(
            **{k: v for k, v in _PROBE_VALUES.items() if k in self.keywords})
        device = self._devices()[0] if self._devices() else "cpu"
        p = self._param(torch.ones(3, dtype=torch.float32, device=device))
        try:
            opt = self._construct([p], self._kwargs(hp, torch.device(device)))
        except Exception as exc:
            hint = "" if isinstance(self.factory, type) else (
                " (a factory must take the parameters first and return a torch.optim.Optimizer)")
            raise DriverConfigError(f"{self.name}: constructing {_qualname(self.factory)} "
                                    f"raised {type(exc).__name__}: {exc}{hint}") from None
        if not isinstance(opt, torch.optim.Optimizer):
            raise DriverConfigError(f"{self.name}: {_qualname(self.factory)}(...) returned "
                                    f"{type(opt).__name__}, not a torch.optim.Optimizer")
        self.lr_key = self.keywords.get("lr")
        self.schedulable = self.lr_key is not None and all(
            self.lr_key in g for g in opt.param_groups)
        self.tensor_lr = self.lr_key is not None and _accepts(
            lambda: self._construct([torch.zeros(2, requires_grad=True)], {
                **self._kwargs(hp, torch.device("cpu")),
                self.lr_key: torch.tensor(hp.lr, dtype=torch.float64)}))
        self.state_keys: dict[str, str] = {}
        self.state_problem, self.loadable, self.step_dtype = "", False, None
        if not self._devices():
            self.state_problem = "not probed: no usable device here"
            return
        try:
            p.grad = torch.full_like(p, 0.5)
            opt.step()
            found = opt.state_dict()["state"].get(0, {})
        except Exception as exc:
            self.state_problem = f"a probe step raised {type(exc).__name__}: {exc}"
        else:
            self._match_state(found, hp)

    def _match_state(self, found: Mapping[str, Any], hp: HParams) -> None:
        keys: dict[str, str] = {}
        for spec_name, synonyms in STATE_SYNONYMS.items():
            declared = self.config.state.get(spec_name)
            key = declared if declared is not None else next(
                (s for s in synonyms if s in found), None)
            if key is not None and key in found:
                keys[spec_name] = key
        if self._state_missing(hp, keys, sorted(found), "state key", always=_REQUIRED_STATE):
            return
        self.state_keys = keys
        step = found[keys["step"]]
        self.step_dtype = step.dtype if isinstance(step, torch.Tensor) else None
        extra = sorted(set(found) - set(keys.values()))
        self._unmatched_state("state keys", extra)

    # -- the backend contract ------------------------------------------------------------------
    def _devices(self) -> tuple[str, ...]:
        devices, _ = available_devices()
        if self.flags.get("capturable"):
            return tuple(d for d in devices if d.startswith("cuda"))
        return devices

    def _capabilities(self, description: str) -> Capabilities:
        found = {f for f, on in (("lr_schedule", self.schedulable),
                                 ("tensor_lr", self.tensor_lr)) if on}
        features = features_of(self.name, self.factory, self.keywords, self.config, found=found,
                               readable=bool(self.state_keys), loadable=self.loadable)
        _, unavailable = available_devices()
        if self.flags.get("capturable") and not self._devices():
            unavailable = {"cuda": "capturable=True needs a CUDA device; none on this machine"}
        conventions = dict(self.config.conventions)
        dtypes = frozenset(self.config.dtypes) if self.config.dtypes is not None else ALL_DTYPES
        return self._declare(DEFAULT_PROFILE, dtypes=dtypes, devices=self._devices(),
                             features=frozenset(features), conventions=conventions,
                             unavailable=unavailable,
                             description=self._describe(description, features))

    def _describe(self, description: str, features: set[str]) -> str:
        package = self._package_text("torch")
        if description:
            parts = [f"{description} ({package}torch {torch.__version__})"]
        else:
            parts = [f"{_qualname(self.factory)}, generic torch driver ({package}torch "
                     f"{torch.__version__})"]
            if self.paths:
                chosen = ", ".join(f"{f}={self.flags[f]!r}" for f in self.paths
                                   if f in self.flags)
                parts.append(f"code path: {chosen or 'the constructor defaults'} (others through "
                             f"{', '.join(self.paths)}, one backend each: "
                             f"?{self.paths[0]}=true or [fixed] in a driver file)")
        parts += gaps(self.config, DEFAULT_PROFILE, features, readable=bool(self.state_keys),
                      state_problem=self.state_problem)
        return "; ".join(parts)

    def make_optimizer(self, hparams: Mapping[str, Any]) -> torch.optim.Optimizer:
        """The optimizer built from raw spec-named values (P13: the implementation validates).

        Values go through unvalidated; a spec name with no keyword goes through unchanged (the
        constructor then rejects it itself). An array is the framework's tensor form of it.
        """
        kwargs: dict[str, Any] = {**self._required_defaults(), **self.flags}
        for name, raw in hparams.items():
            if self._fixed_axis(name, raw):
                continue
            value = torch.from_numpy(raw) if isinstance(raw, np.ndarray) else raw
            if name == "lr":
                value = self._lr_argument(value, torch.device("cpu"))
            kwargs[self.keywords.get(name, name)] = value
        return self._construct([torch.zeros(2, requires_grad=True)], kwargs)

    def run(self, case: Case) -> Trajectory:
        self._check_case(case.hp)
        device = self._device(case)
        opt, params = self._session(case, device)
        traj = Trajectory.empty(with_state=bool(self.state_keys))
        for k, grads in enumerate(case.grads):
            for p, g in zip(params, grads):
                p.grad = grad_tensor(g, device)
            if self.schedulable:
                self._set_lr(opt, case.lr_at(k))
            opt.step()
            traj.append([to_numpy(p) for p in params], self._read_state(opt, case.hp, params))
        return traj

    # -- hooks (the bundled paths override some) -----------------------------------------------
    def _construct(self, params: list[torch.Tensor], kwargs: dict[str, Any]) -> Any:
        return self.factory(params, **kwargs)

    def _param(self, t: torch.Tensor) -> torch.Tensor:
        if not self.flags.get("differentiable"):
            return t
        # A non-leaf that requires grad and keeps t's strides: torch allows in-place updates of
        # it, and the step is recorded by autograd (a leaf would refuse the in-place update).
        leaf = t.detach().clone().requires_grad_(True)
        out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
        with torch.enable_grad():
            out.copy_(leaf)
        return out

    def _lr_argument(self, lr: Any, device: torch.device) -> Any:
        return lr

    def _set_lr(self, opt: torch.optim.Optimizer, lr: float) -> None:
        for group in opt.param_groups:
            group[self.lr_key] = lr

    def _step_device(self, device: torch.device) -> torch.device:
        return device if self.flags.get("capturable") else torch.device("cpu")

    # -- helpers -------------------------------------------------------------------------------
    def _check_case(self, hp: HParams) -> None:
        """Raise ValueError for a case this implementation has no setting for (never run it
        under other conventions or features than it has)."""
        wrong = self._settings_missing(hp)
        if wrong:
            raise ValueError(f"{self.name} cannot run this case: " + ", ".join(wrong))

    def _hparams(self) -> HParams:
        return HParams.from_profile(self.config.profile or DEFAULT_PROFILE,
                                    **self.config.conventions)

    def _required_defaults(self) -> dict[str, Any]:
        """Profile defaults for mapped keywords the constructor requires (P13 passes one name)."""
        hp = self._hparams()
        accepted = _keywords_of(self.factory)
        return {kw: getattr(hp, name) for name, kw in self.keywords.items()
                if kw in accepted and accepted[kw].default is inspect.Parameter.empty}

    def _kwargs(self, hp: HParams, device: torch.device) -> dict[str, Any]:
        kwargs = {kw: getattr(hp, name) for name, kw in self.keywords.items()}
        kwargs.update({axis: getattr(hp, axis) for axis in self.axes})
        if "lr" in self.keywords:
            kwargs[self.keywords["lr"]] = self._lr_argument(hp.lr, device)
        return {**kwargs, **self.flags}

    def _device(self, case: Case) -> torch.device:
        if case.device not in self._caps.devices:
            reason = self._caps.unavailable.get(case.device.split(":")[0], "not supported")
            raise ValueError(f"{self.name}: device {case.device!r} unavailable: {reason}")
        return torch.device(case.device)

    def _session(self, case: Case, device: torch.device
                 ) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
        """A fresh optimizer over fresh parameters holding the case's values and state."""
        params = [self._param(to_torch(a, device)) for a in case.materialized_params()]
        opt = self._construct(params, self._kwargs(case.hp, device))
        if case.initial_state is not None:
            if not self.loadable:
                raise ValueError(f"{self.name}: state_load is not supported "
                                 f"({self.state_problem})")
            check_state_matches(case.hp, case.initial_state)
            sd = opt.state_dict()
            sd["state"] = {i: self._state_to_impl(st, p, device)
                           for i, (st, p) in enumerate(zip(case.initial_state, params))}
            opt.load_state_dict(sd)
        return opt, params

    def _state_to_impl(self, st: ParamState, p: torch.Tensor, device: torch.device
                       ) -> dict[str, Any]:
        spec_named = state_to_torch(st, p, self._step_device(device))
        if self.step_dtype is None:
            spec_named["step"] = int(st.step)
        else:
            spec_named["step"] = spec_named["step"].to(self.step_dtype)
        return {self.state_keys[name]: value for name, value in spec_named.items()}

    def _read_state(self, opt: torch.optim.Optimizer, hp: HParams,
                    params: list[torch.Tensor]) -> list[ParamState] | None:
        if not self.state_keys:
            return None
        # The read-out follows R14 (grad_avg iff centered, momentum_buffer iff momentum > 0)
        # whatever else the implementation keeps.
        wanted = {"step", "square_avg", *(["grad_avg"] if hp.centered else []),
                  *(["momentum_buffer"] if hp.momentum > 0 else [])}
        state = opt.state_dict()["state"]
        out = []
        for i in range(len(params)):
            found = state.get(i, {})
            out.append(state_from_torch({name: found[key] for name, key in self.state_keys.items()
                                         if name in wanted and key in found}))
        return out


def _accepts(construct: Callable[[], Any]) -> bool:
    try:
        construct()
    except Exception:
        return False
    return True


def driver(target: str, config: DriverConfig) -> TorchOptimBackend:
    """The backend for ``MODULE:ATTR``, an Optimizer class or a factory returning one."""
    name = config.name or f"torch:{target}"
    return TorchOptimBackend(resolve("torch", target, name), config, name)
