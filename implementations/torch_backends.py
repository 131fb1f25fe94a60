"""``torch.optim.RMSprop`` as conformance backends (profile "torch"), one class per code path.

===================  =====================================================================
backend              code path
===================  =====================================================================
torch.forloop        ``foreach=False``: ``_single_tensor_rmsprop``
torch.foreach        ``foreach=True``: ``_multi_tensor_rmsprop`` (grouped by device/dtype)
torch.compile        ``torch.compile(dynamic=True)`` of the functional step
torch.differentiable ``differentiable=True``: the step runs under autograd, on parameters that
                     require grad (as torch's own differentiable tests do)
torch.tensor_lr      ``lr`` a 1-element float64 tensor, updated in place between steps
torch.capturable     ``capturable=True`` with a device tensor lr: CUDA only
===================  =====================================================================

Every one but ``torch.compile`` is the generic torch driver
(:mod:`implementations.drivers.torch_optim`, what ``torch:torch.optim:RMSprop?foreach=true``
names) over ``torch.optim.RMSprop`` with its flags: the bundled paths are driven exactly as a
user's optimizer is. What is specific to a path stays here: a tensor learning rate
(``torch.tensor_lr``, ``torch.capturable``) and the compiled functional step (``torch.compile``).
Everything crossing the NumPy/torch boundary goes through :mod:`implementations._torch_common`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch.optim.rmsprop import rmsprop

from conformance.case import Case, Trajectory
from implementations._torch_common import (
    check_state_matches,
    grad_tensor,
    state_from_torch,
    state_to_torch,
    to_numpy,
    to_torch,
    torch_kwargs,
)
from implementations.drivers.config import DriverConfig
from implementations.drivers.torch_optim import TorchOptimBackend
from spec.rmsprop import init_state

__all__ = ["Capturable", "Compiled", "Differentiable", "ForLoop", "Foreach", "TensorLR"]


class _TorchRMSprop(TorchOptimBackend):
    """``torch.optim.RMSprop`` through the generic driver; subclasses pick the code path."""

    name: ClassVar[str]  # type: ignore[misc]
    description: ClassVar[str]
    path_flags: ClassVar[dict[str, Any]] = {}  # foreach / differentiable / capturable

    def __init__(self) -> None:
        super().__init__(torch.optim.RMSprop, DriverConfig(profile="torch",
                                                           fixed=self.path_flags),
                         self.name, self.description)


class ForLoop(_TorchRMSprop):
    name = "torch.forloop"
    description = "torch.optim.RMSprop, foreach=False (single-tensor for-loop)"
    path_flags = {"foreach": False}


class Foreach(_TorchRMSprop):
    name = "torch.foreach"
    description = "torch.optim.RMSprop, foreach=True (multi-tensor _foreach_* ops)"
    path_flags = {"foreach": True}


class Differentiable(_TorchRMSprop):
    name = "torch.differentiable"
    description = ("torch.optim.RMSprop, differentiable=True, stepping under autograd on "
                   "parameters that require grad")
    path_flags = {"foreach": False, "differentiable": True}


class _TensorLrMixin:
    """lr as a 1-element float64 tensor (exact for any float lr), updated in place per step.

    The (1,)-shaped tensor exercises torch's squeeze of non-0-d tensor learning rates.
    """

    lr_shape: ClassVar[tuple[int, ...]] = (1,)

    def _lr_argument(self, lr: Any, device: torch.device) -> Any:
        if isinstance(lr, torch.Tensor):
            return lr
        return torch.full(self.lr_shape, lr, dtype=torch.float64, device=device)

    def _set_lr(self, opt: torch.optim.Optimizer, lr: float) -> None:
        opt.param_groups[0]["lr"].fill_(lr)


class TensorLR(_TensorLrMixin, _TorchRMSprop):
    name = "torch.tensor_lr"
    description = "torch.optim.RMSprop, foreach=False, lr a float64 tensor of shape (1,)"
    path_flags = {"foreach": False}


class Capturable(_TensorLrMixin, _TorchRMSprop):
    name = "torch.capturable"
    description = ("torch.optim.RMSprop, capturable=True, foreach=True, lr a device tensor "
                   "(CUDA only)")
    path_flags = {"foreach": True, "capturable": True}


# ---------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------
def _functional_step(params: list[torch.Tensor], grads: list[torch.Tensor],
                     square_avgs: list[torch.Tensor], grad_avgs: list[torch.Tensor],
                     momentum_buffers: list[torch.Tensor], state_steps: list[torch.Tensor],
                     lr: torch.Tensor, alpha: float | torch.Tensor, eps: float,
                     weight_decay: float | torch.Tensor,
                     momentum: float, centered: bool, maximize: bool, has_complex: bool) -> None:
    """One ``RMSprop.step`` after its state gathering: the functional ``rmsprop`` it calls."""
    rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers, state_steps, foreach=False,
            maximize=maximize, differentiable=False, capturable=False, has_complex=has_complex,
            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered)


class Compiled(ForLoop):
    """``torch.compile(dynamic=True, fullgraph=True)`` of the step ``RMSprop.step`` runs
    (foreach=False).

    What is compiled: ``torch.optim.rmsprop.rmsprop``, the function ``RMSprop.step`` hands its
    gathered state to (the same ``_single_tensor_rmsprop`` code), with the hyperparameters as
    arguments and dynamic shapes. ``fullgraph=True`` makes a graph break an error: without it,
    a break inside torch's per-parameter loop makes dynamo run the whole step eagerly, and the
    certification would judge eager torch, not inductor's code (a 0-d ``weight_decay`` tensor did
    exactly that: ``if weight_decay != 0`` on a tensor breaks the graph, and not one operation
    was compiled — docs/findings.md). lr and alpha are 0-d float64 tensors (torch's advice for
    compiled optimizers; ``rmsprop`` accepts them, they only meet tensor ops and Scalar
    arguments), so new values compile nothing; eps and momentum are Python floats that dynamo
    keeps symbolic (new values compile nothing either). weight_decay stays a Python float, as
    ``RMSprop``'s param_groups hold it: torch specialises it (``add(alpha=)`` takes no symbolic
    float), so each new nonzero value compiles once more, as does each new structure (number of
    parameters, dtypes, ranks, layouts, centered, maximize, momentum > 0, weight_decay ≠ 0):
    ``compilations()`` and ``benchmarks/torch_compilations.py`` count them.

    Inductor's FX graph cache stays off for these compilations, so that no result can depend
    on a graph compiled for an earlier example (with it on, a specialised float is served the
    graph of the first value: ``tests/test_torch_backends.py``).
    """

    name = "torch.compile"
    description = ("torch.compile(dynamic=True, fullgraph=True) of torch.optim.rmsprop.rmsprop "
                   "(the step RMSprop.step runs, foreach=False), lr and alpha 0-d float64 "
                   "tensors, weight_decay a Python float (each new value compiles); inductor's "
                   "FX graph cache off")
    # Every structure is one more compiled entry; dynamo's default
    # limit (8) would silently fall back to eager execution, which would certify the wrong thing.
    dynamo_config: ClassVar[dict[str, Any]] = {
        "recompile_limit": 100_000, "accumulated_recompile_limit": 100_000,
        "fail_on_recompile_limit_hit": True,
    }
    inductor_config: ClassVar[dict[str, Any]] = {"fx_graph_cache": False}
    # Passed as 0-d tensors (lr always is); benchmarks/torch_compilations.py empties it to count
    # what Python floats cost. Not weight_decay: as a tensor it breaks the graph (see above).
    tensor_hyperparameters: ClassVar[tuple[str, ...]] = ("alpha",)
    _compiled: ClassVar[Any] = None

    def __init__(self) -> None:
        super().__init__()
        # ForLoop's capabilities, compiled: a structure or a weight_decay value torch has not
        # seen yet costs a compilation (see above).
        self._caps = dataclasses.replace(self._caps, compiled=True,
                                         specialised=frozenset({"weight_decay"}))

    @classmethod
    def compiled_step(cls) -> Any:
        if cls._compiled is None:
            cls._compiled = torch.compile(_functional_step, dynamic=True, fullgraph=True)
        return cls._compiled

    @staticmethod
    def compilations() -> int:
        """Graphs compiled in this process so far (dynamo's count, every compiled function)."""
        from torch._dynamo.utils import counters  # noqa: PLC0415 (1 s; only this backend)

        return int(counters["stats"]["unique_graphs"])

    @staticmethod
    def captured_operations() -> int:
        """Operations dynamo captured into those graphs so far (0: the step ran eagerly)."""
        from torch._dynamo.utils import counters  # noqa: PLC0415

        return int(counters["stats"]["calls_captured"])

    def run(self, case: Case) -> Trajectory:
        kwargs = torch_kwargs(case.hp)
        device = self._device(case)
        states = case.initial_state
        if states is not None:
            check_state_matches(case.hp, states)
        else:
            states = init_state(case.params, case.hp)
        params = [to_torch(a, device) for a in case.materialized_params()]
        torch_states = [state_to_torch(st, p) for st, p in zip(states, params)]
        lr = torch.zeros((), dtype=torch.float64, device=device)
        hp = {k: float(kwargs[k]) for k in ("alpha", "eps", "weight_decay", "momentum")}
        hp.update({k: torch.tensor(hp[k], dtype=torch.float64, device=device)
                   for k in self.tensor_hyperparameters})
        fields = {name: [s[name] for s in torch_states if name in s]
                  for name in ("square_avg", "grad_avg", "momentum_buffer", "step")}
        step = self.compiled_step()
        traj = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            lr.fill_(case.lr_at(k))
            with (torch._dynamo.config.patch(**self.dynamo_config),
                  torch._inductor.config.patch(**self.inductor_config)):
                step(params, [grad_tensor(g, device) for g in grads], fields["square_avg"],
                     fields["grad_avg"], fields["momentum_buffer"], fields["step"], lr,
                     hp["alpha"], hp["eps"], hp["weight_decay"], hp["momentum"],
                     bool(kwargs["centered"]), bool(kwargs["maximize"]),
                     any(p.is_complex() for p in params))
            traj.append([to_numpy(p) for p in params],
                        [state_from_torch(s) for s in torch_states])
        return traj
