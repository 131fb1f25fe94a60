"""``torch.optim.RMSprop`` as conformance backends (profile "torch"), one class per code path.

===================  =====================================================================
backend              code path
===================  =====================================================================
torch.forloop        ``foreach=False``: ``_single_tensor_rmsprop``
torch.foreach        ``foreach=True``: ``_multi_tensor_rmsprop`` (grouped by device/dtype)
torch.compile        ``optimizer.step`` wrapped in ``torch.compile(dynamic=True)``
torch.differentiable ``differentiable=True``: the step runs under autograd, on parameters that
                     require grad (as torch's own differentiable tests do)
torch.tensor_lr      ``lr`` a 1-element float64 tensor, updated in place between steps
torch.capturable     ``capturable=True`` with a device tensor lr: CUDA only
===================  =====================================================================

The classes differ only in constructor flags and in a few hooks (how parameters, the learning
rate and the step are prepared). Everything crossing the NumPy/torch boundary goes through
:mod:`implementations._torch_common`.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from implementations._torch_common import (
    ALL_DTYPES,
    available_devices,
    check_state_matches,
    element_strides,
    grad_tensor,
    like,
    raw_torch_kwargs,
    state_from_torch,
    state_to_torch,
    step_tensor,
    to_numpy,
    to_torch,
    torch_kwargs,
)
from spec.rmsprop import ParamState, init_state

__all__ = ["Capturable", "Compiled", "Differentiable", "ForLoop", "Foreach", "TensorLR"]

FEATURES = frozenset({
    "weight_decay", "momentum", "centered", "maximize", "lr_schedule", "multi_param",
    "mixed_dtypes", "state_readout", "state_load", "layouts", "zero_size", "reject_invalid",
    "tensor_lr",
})


class _TorchRMSprop:
    """``torch.optim.RMSprop`` driven step by step; subclasses pick the code path."""

    name: ClassVar[str]
    description: ClassVar[str]
    flags: ClassVar[dict[str, Any]] = {}  # foreach / differentiable / capturable

    # -- the backend contract ------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        devices, unavailable = available_devices()
        return Capabilities(profile="torch", dtypes=ALL_DTYPES, devices=devices,
                            features=FEATURES, unavailable=unavailable,
                            description=f"{self.description} (torch {torch.__version__})")

    def make_optimizer(self, hparams: Mapping[str, Any]) -> torch.optim.RMSprop:
        """torch.optim.RMSprop built from raw spec-named values (P13: torch validates)."""
        kwargs = raw_torch_kwargs(hparams)
        if "lr" in kwargs:
            kwargs["lr"] = self._lr_argument(kwargs["lr"], torch.device("cpu"))
        return torch.optim.RMSprop([torch.zeros(2, requires_grad=True)], **kwargs, **self.flags)

    def run(self, case: Case) -> Trajectory:
        kwargs = torch_kwargs(case.hp)
        device = self._device(case)
        if case.initial_state is not None:
            check_state_matches(case.hp, case.initial_state)
        opt, params = self._session(case, kwargs, device)
        traj = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            for p, g in zip(params, grads):
                p.grad = grad_tensor(g, device)
            self._set_lr(opt, case.lr_at(k))
            self._step(opt)
            state = opt.state_dict()["state"]
            traj.append([to_numpy(p) for p in params],
                        [state_from_torch(state[i]) for i in range(len(params))])
        return traj

    # -- hooks ---------------------------------------------------------------------------------
    def _device(self, case: Case) -> torch.device:
        caps = self.capabilities()
        if case.device not in caps.devices:
            reason = caps.unavailable.get(case.device.split(":")[0], "not supported")
            raise ValueError(f"{self.name}: device {case.device!r} unavailable: {reason}")
        return torch.device(case.device)

    def _param(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def _lr_argument(self, lr: Any, device: torch.device) -> Any:
        return lr

    def _set_lr(self, opt: torch.optim.RMSprop, lr: float) -> None:
        opt.param_groups[0]["lr"] = lr

    def _step(self, opt: torch.optim.RMSprop) -> None:
        opt.step()

    def _step_device(self, device: torch.device) -> torch.device:
        return torch.device("cpu")

    def _session(self, case: Case, kwargs: dict[str, Any], device: torch.device
                 ) -> tuple[torch.optim.RMSprop, list[torch.Tensor]]:
        """A fresh optimizer over fresh parameters holding the case's values and state."""
        params = [self._param(to_torch(a, device)) for a in case.materialized_params()]
        kwargs = {**kwargs, "lr": self._lr_argument(kwargs["lr"], device)}
        opt = torch.optim.RMSprop(params, **kwargs, **self.flags)
        if case.initial_state is not None:
            sd = opt.state_dict()
            sd["state"] = {i: state_to_torch(st, p, self._step_device(device))
                           for i, (st, p) in enumerate(zip(case.initial_state, params))}
            opt.load_state_dict(sd)
        return opt, params


class ForLoop(_TorchRMSprop):
    name = "torch.forloop"
    description = "torch.optim.RMSprop, foreach=False (single-tensor for-loop)"
    flags = {"foreach": False}


class Foreach(_TorchRMSprop):
    name = "torch.foreach"
    description = "torch.optim.RMSprop, foreach=True (multi-tensor _foreach_* ops)"
    flags = {"foreach": True}


class Differentiable(_TorchRMSprop):
    name = "torch.differentiable"
    description = ("torch.optim.RMSprop, differentiable=True, stepping under autograd on "
                   "parameters that require grad")
    flags = {"foreach": False, "differentiable": True}

    def _param(self, t: torch.Tensor) -> torch.Tensor:
        # A non-leaf that requires grad and keeps t's strides: torch allows in-place updates of
        # it, and the step is recorded by autograd (a leaf would refuse the in-place update).
        leaf = t.detach().clone().requires_grad_(True)
        out = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
        with torch.enable_grad():
            out.copy_(leaf)
        return out


class _TensorLrMixin:
    """lr as a 1-element float64 tensor (exact for any float lr), updated in place per step.

    The (1,)-shaped tensor exercises torch's squeeze of non-0-d tensor learning rates.
    """

    lr_shape: ClassVar[tuple[int, ...]] = (1,)

    def _lr_argument(self, lr: Any, device: torch.device) -> Any:
        if isinstance(lr, torch.Tensor):
            return lr
        return torch.full(self.lr_shape, lr, dtype=torch.float64, device=device)

    def _set_lr(self, opt: torch.optim.RMSprop, lr: float) -> None:
        opt.param_groups[0]["lr"].fill_(lr)


class TensorLR(_TensorLrMixin, _TorchRMSprop):
    name = "torch.tensor_lr"
    description = "torch.optim.RMSprop, foreach=False, lr a float64 tensor of shape (1,)"
    flags = {"foreach": False}


class Capturable(_TensorLrMixin, _TorchRMSprop):
    name = "torch.capturable"
    description = ("torch.optim.RMSprop, capturable=True, foreach=True, lr a device tensor "
                   "(CUDA only)")
    flags = {"foreach": True, "capturable": True}

    def capabilities(self) -> Capabilities:
        devices, _ = available_devices()
        cuda = tuple(d for d in devices if d.startswith("cuda"))
        unavailable = {} if cuda else {
            "cuda": "capturable=True needs a CUDA device; none on this machine"}
        return Capabilities(profile="torch", dtypes=ALL_DTYPES, devices=cuda, features=FEATURES,
                            unavailable=unavailable,
                            description=f"{self.description} (torch {torch.__version__})")

    def _step_device(self, device: torch.device) -> torch.device:
        return device


# ---------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------
class _Slot:
    """A persistent optimizer for one structure, with its compiled step.

    Dynamo guards on the identity of the optimizer and of its state tensors, so a new optimizer
    per case would recompile per case. A slot keeps parameters and state alive and refills them
    in place; only a new structure (dtypes, shapes, strides, centered, momentum) or new float
    hyperparameter values (which torch.compile specialises on) compile again.
    """

    def __init__(self, case: Case, kwargs: dict[str, Any], device: torch.device) -> None:
        self.params = [to_torch(a, device) for a in case.materialized_params()]
        self.lr = torch.zeros((), dtype=torch.float64, device=device)
        self.opt = torch.optim.RMSprop(self.params, **{**kwargs, "lr": self.lr}, foreach=False)
        for p in self.params:
            st = {"step": step_tensor(0), "square_avg": torch.zeros_like(p)}
            if kwargs["centered"]:
                st["grad_avg"] = torch.zeros_like(p)
            if kwargs["momentum"] > 0:
                st["momentum_buffer"] = torch.zeros_like(p)
            self.opt.state[p] = st
        self.step = torch.compile(self.opt.step, dynamic=True)

    def load(self, case: Case, kwargs: dict[str, Any]) -> None:
        group = self.opt.param_groups[0]
        group.update({k: v for k, v in kwargs.items() if k != "lr"})
        states = case.initial_state or init_state(case.params, case.hp)
        with torch.no_grad():
            for p, a, st in zip(self.params, case.materialized_params(), states):
                p.copy_(to_torch(a, p.device))
                self._fill(self.opt.state[p], st, p)

    @staticmethod
    def _fill(target: dict[str, torch.Tensor], st: ParamState, p: torch.Tensor) -> None:
        target["step"].fill_(float(st.step))
        for name in ("square_avg", "grad_avg", "momentum_buffer"):
            if name in target:
                target[name].copy_(like(p, getattr(st, name)))


class Compiled(_TorchRMSprop):
    name = "torch.compile"
    description = ("torch.optim.RMSprop (foreach=False) with optimizer.step wrapped in "
                   "torch.compile(dynamic=True), lr a float64 0-d tensor; one compiled optimizer "
                   "per structure, refilled in place")
    flags = {"foreach": False}
    max_slots: ClassVar[int] = 64
    # Every slot and every new float hyperparameter value is one more compiled entry of
    # RMSprop.step; dynamo's default limit (8) would silently fall back to eager execution.
    dynamo_config: ClassVar[dict[str, Any]] = {
        "recompile_limit": 100_000, "accumulated_recompile_limit": 100_000,
        "fail_on_recompile_limit_hit": True,
    }

    def __init__(self) -> None:
        self._slots: collections.OrderedDict[tuple, _Slot] = collections.OrderedDict()
        self._current: _Slot | None = None  # the slot of the case being run

    def _session(self, case: Case, kwargs: dict[str, Any], device: torch.device
                 ) -> tuple[torch.optim.RMSprop, list[torch.Tensor]]:
        arrays = case.materialized_params()
        key = (str(device), bool(kwargs["centered"]), kwargs["momentum"] > 0,
               tuple((a.dtype.name, a.shape, element_strides(a)) for a in arrays))
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= self.max_slots:
                # Compiled entries guard on dead optimizers; drop them all at once.
                self._slots.clear()
                torch._dynamo.reset()
            slot = self._slots[key] = _Slot(case, kwargs, device)
        self._slots.move_to_end(key)
        slot.load(case, kwargs)
        self._current = slot
        return slot.opt, slot.params

    def _set_lr(self, opt: torch.optim.RMSprop, lr: float) -> None:
        self._current.lr.fill_(lr)

    def _step(self, opt: torch.optim.RMSprop) -> None:
        with torch._dynamo.config.patch(**self.dynamo_config):
            self._current.step()
