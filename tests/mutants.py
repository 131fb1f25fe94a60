"""The mutant corpus: a correct hand-written PyTorch RMSProp and one-deviation copies of it.

``Reference`` is a torch-profile backend written from torch's ``_single_tensor_rmsprop``: the same
operations in the same order, in the parameter's dtype, with torch ops. Its step is cut into
small hooks; every mutant overrides one hook with one small deviation taken from a bug that
happened in a real implementation (/work/shared/reference/bug-classes.md, "#n" below). A
conformance harness earns its keep by failing every mutant, and ``Reference`` must pass.

Exports:

- ``MUTANTS``: name -> class (``MUTANTS[n].name == "mutant." + n``).
- ``EXPECTED_PROPERTY``: name -> the property (P1..P14) expected to catch it.
- ``EXPECTED_RULE``: name -> the rule of SPEC.md it breaks (what its report must name).
- ``REVEALING``: name -> a hand-picked input that reveals it and how the deviation shows
  (used by tests/test_torch_backends.py to check that each mutant really deviates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory, np_dtype
from implementations._torch_common import (
    ALL_DTYPES,
    check_state_matches,
    grad_tensor,
    like,
    raw_torch_kwargs,
    state_from_torch,
    to_numpy,
    to_torch,
    torch_kwargs,
)
from spec.rmsprop import HParams, ParamState, init_state

Tensor = torch.Tensor
State = dict[str, Tensor]

FEATURES = frozenset({
    "weight_decay", "momentum", "centered", "maximize", "lr_schedule", "multi_param",
    "mixed_dtypes", "state_readout", "state_load", "layouts", "zero_size", "reject_invalid",
    "tensor_lr",
})

# torch.optim.RMSprop's defaults and its constructor's messages, in its order of checks.
DEFAULTS: dict[str, Any] = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                            "momentum": 0.0, "centered": False, "maximize": False}
MESSAGES: dict[str, str] = {
    "lr": "Invalid learning rate: {}",
    "eps": "Invalid epsilon value: {}",
    "momentum": "Invalid momentum value: {}",
    "weight_decay": "Invalid weight_decay value: {}",
    "alpha": "Invalid alpha value: {}",
}


def _real(t: Tensor | None) -> Tensor | None:
    return t if t is None or not torch.is_complex(t) else torch.view_as_real(t)


class Reference:
    """Correct single-tensor RMSProp (torch profile), following torch's own order::

        g = -grad if maximize;  step += 1;  g = g + λθ if λ ≠ 0;  (complex: view as real pairs)
        v.mul_(α).addcmul_(g, g, value=1-α)
        centered: ḡ.lerp_(g, 1-α); d = v.addcmul(ḡ, ḡ, value=-1).sqrt()   else d = v.sqrt()
        d.add_(ε)
        momentum: b.mul_(μ).addcdiv_(g, d); θ.add_(b, alpha=-η)   else θ.addcdiv_(g, d, value=-η)
    """

    name: ClassVar[str] = "mutant.reference"
    validated: ClassVar[tuple[str, ...]] = ("lr", "eps", "momentum", "weight_decay", "alpha")

    # -- the backend contract ------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return Capabilities(profile="torch", dtypes=ALL_DTYPES, devices=("cpu",),
                            features=FEATURES, description=type(self).__doc__ or "")

    def make_optimizer(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        """Validate raw hyperparameters as torch.optim.RMSprop's constructor does."""
        kw = {**DEFAULTS, **raw_torch_kwargs(hparams)}
        self._check_lr(kw["lr"])
        for name in self.validated:
            if name != "lr" and self._invalid(kw[name]):
                raise ValueError(MESSAGES[name].format(kw[name]))
        return kw

    def run(self, case: Case) -> Trajectory:
        hp = case.hp
        torch_kwargs(hp)  # the torch profile's conventions, or ValueError
        if case.device != "cpu":
            raise ValueError(f"{self.name} runs on the CPU only, not {case.device!r}")
        params = [to_torch(a) for a in case.materialized_params()]
        if case.initial_state is None:
            states = [self._init_state(p, hp) for p in params]
        else:
            check_state_matches(hp, case.initial_state)
            states = [self._load_state(st, p) for st, p in zip(case.initial_state, params)]
        traj = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            self._step(params, [self._gradient_in(g) for g in grads], states, hp,
                       self._lr(case, k))
            traj.append([to_numpy(p) for p in params], [state_from_torch(s) for s in states])
        return traj

    # -- validation hooks ----------------------------------------------------------------------
    def _invalid(self, value: Any) -> bool:
        return not 0.0 <= value  # NaN fails the comparison: rejected

    def _check_lr(self, lr: Any) -> None:
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if "lr" in self.validated and self._invalid(lr):
            raise ValueError(MESSAGES["lr"].format(lr))

    # -- state hooks ---------------------------------------------------------------------------
    def _step_tensor(self, step: int) -> Tensor:
        return torch.tensor(float(step), dtype=torch.float32)

    def _initial_square_avg(self, p: Tensor) -> Tensor:
        return torch.zeros_like(p, memory_format=torch.preserve_format)

    def _init_state(self, p: Tensor, hp: HParams) -> State:
        st = {"step": self._step_tensor(0), "square_avg": self._initial_square_avg(p)}
        if hp.centered:
            st["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if hp.momentum > 0:
            st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    def _load_state(self, st: ParamState, p: Tensor) -> State:
        out = {"step": self._step_tensor(st.step), "square_avg": like(p, st.square_avg)}
        for name in ("grad_avg", "momentum_buffer"):
            if getattr(st, name) is not None:
                out[name] = like(p, getattr(st, name))
        return out

    # -- input hooks ---------------------------------------------------------------------------
    def _gradient_in(self, g: np.ndarray) -> Tensor:
        return grad_tensor(g)  # the caller's memory, as p.grad would be

    def _lr(self, case: Case, k: int) -> float:
        return case.lr_at(k)

    # -- the step ------------------------------------------------------------------------------
    def _step(self, params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[State],
              hp: HParams, lr: float) -> None:
        for p, g, st in zip(params, grads, states):
            self._step_one(p, g, st, hp, lr)

    def _step_one(self, p: Tensor, grad: Tensor, st: State, hp: HParams, lr: float) -> None:
        raw = self._maximized(grad, hp)
        st["step"] += 1
        g = self._decayed(raw, p, hp) if hp.weight_decay != 0 else raw
        cplx = torch.is_complex(p)
        p, g, raw = _real(p), _real(g), _real(raw)
        v, gbar, buf = (_real(st.get(n)) for n in ("square_avg", "grad_avg", "momentum_buffer"))
        acc = self._accumulated(g, raw)
        self._accumulate(v, acc, hp.alpha, int(st["step"].item()), cplx)
        if hp.centered:
            gbar.lerp_(acc, 1 - hp.alpha)
            w = self._variance(v, gbar)
        else:
            w = v
        d = self._root_plus_eps(w, hp.eps)
        self._apply(p, self._numerator(g, raw, v), d, buf, self._momentum(hp), lr)

    def _maximized(self, grad: Tensor, hp: HParams) -> Tensor:
        return -grad if hp.maximize else grad

    def _decayed(self, g: Tensor, p: Tensor, hp: HParams) -> Tensor:
        return g.add(p, alpha=hp.weight_decay)

    def _accumulated(self, g: Tensor, raw: Tensor) -> Tensor:
        """The gradient the averages see (raw: before weight decay)."""
        return g

    def _accumulate(self, v: Tensor, g: Tensor, alpha: float, step: int, cplx: bool) -> None:
        v.mul_(alpha).addcmul_(g, g, value=1 - alpha)

    def _variance(self, v: Tensor, gbar: Tensor) -> Tensor:
        return v.addcmul(gbar, gbar, value=-1)

    def _root_plus_eps(self, w: Tensor, eps: float) -> Tensor:
        return w.sqrt().add_(eps)

    def _numerator(self, g: Tensor, raw: Tensor, v: Tensor) -> Tensor:
        return g

    def _momentum(self, hp: HParams) -> float:
        return hp.momentum

    def _apply(self, p: Tensor, num: Tensor, d: Tensor, buf: Tensor | None, momentum: float,
               lr: float) -> None:
        if momentum > 0:
            buf.mul_(momentum).addcdiv_(num, d)
            p.add_(buf, alpha=-lr)
        else:
            p.addcdiv_(num, d, value=-lr)


# ---------------------------------------------------------------------------------------------
# Mutants: one small deviation each.
# ---------------------------------------------------------------------------------------------
class EpsInsideSqrt(Reference):
    """#1 ε inside the root, sqrt(v + ε) (pytorch#23796, optax#532: TF's convention in a torch
    port). Revealed by one step with a large ε (0.1) and small gradients."""

    def _root_plus_eps(self, w: Tensor, eps: float) -> Tensor:
        return w.add(eps).sqrt()


class InitialSquareAvgOne(Reference):
    """#2 square_avg starts at 1 (TF1's ones; torch7 optim#87). Revealed by one step from a fresh
    state."""

    def _initial_square_avg(self, p: Tensor) -> Tensor:
        ones = torch.ones_like(p, memory_format=torch.preserve_format)
        return ones * (1 + 1j) if torch.is_complex(p) else ones


class FirstStepSquareAvgIsG2(Reference):
    """#2 square_avg = g² at the first step instead of (1-α)·g² (jax#975, optax#49). Revealed by
    one step from a fresh state."""

    def _accumulate(self, v: Tensor, g: Tensor, alpha: float, step: int, cplx: bool) -> None:
        if step == 1:
            v.copy_(g * g)
        else:
            super()._accumulate(v, g, alpha, step, cplx)


class CenteredUsesV(Reference):
    """#3 centered denominator uses v instead of v - ḡ² (the centering dropped; mxnet#6235 area).
    Revealed by centered=True with gradients of non-zero mean."""

    def _variance(self, v: Tensor, gbar: Tensor) -> Tensor:
        return v.clone()


class CenteredPlusGbar2(Reference):
    """#3 centered denominator v + ḡ² (sign of the correction flipped). Revealed by centered=True
    with gradients of non-zero mean."""

    def _variance(self, v: Tensor, gbar: Tensor) -> Tensor:
        return v.addcmul(gbar, gbar, value=1)


class NumeratorSquareAvg(Reference):
    """#4 the state in the numerator instead of the gradient (nnstreamer/nntrainer#2587).
    Revealed by any step with |g| ≠ 1."""

    def _numerator(self, g: Tensor, raw: Tensor, v: Tensor) -> Tensor:
        return v


class SignError(Reference):
    """#5 the update added instead of subtracted (PaddlePaddle#4743). Revealed by any step."""

    def _apply(self, p: Tensor, num: Tensor, d: Tensor, buf: Tensor | None, momentum: float,
               lr: float) -> None:
        super()._apply(p, num, d, buf, momentum, -lr)


class MomentumIgnored(Reference):
    """#6 momentum accepted but unused (bitsandbytes RMSprop, tfjs-core#139). Revealed by
    momentum > 0 over two steps (the first step from a fresh state is the same either way)."""

    def _momentum(self, hp: HParams) -> float:
        return 0.0


class WeightDecayNumeratorOnly(Reference):
    """#7 weight decay in the numerator only: the averages see the raw gradient (mxnet#9363).
    Revealed by weight_decay > 0 with parameters far from 0."""

    def _accumulated(self, g: Tensor, raw: Tensor) -> Tensor:
        return raw


class WeightDecayDenominatorOnly(Reference):
    """#7 weight decay in the denominator only: the numerator is the raw gradient (bitsandbytes
    8-bit blockwise kernel). Revealed by weight_decay > 0 with parameters far from 0."""

    def _numerator(self, g: Tensor, raw: Tensor, v: Tensor) -> Tensor:
        return raw


class WeightDecayWrongSign(Reference):
    """#7 g - λθ instead of g + λθ (deeppy#17, chainer#261). Revealed by weight_decay > 0 with
    parameters far from 0."""

    def _decayed(self, g: Tensor, p: Tensor, hp: HParams) -> Tensor:
        return g.add(p, alpha=-hp.weight_decay)


class MaximizeIgnored(Reference):
    """#8 maximize accepted but ignored (pytorch_optimizer#527). Revealed by maximize=True."""

    def _maximized(self, grad: Tensor, hp: HParams) -> Tensor:
        return grad


class MaximizeTwice(Reference):
    """#8 maximize applied twice (pytorch#68579, pytorch_optimizer#528): the gradient is negated
    and the step is also taken as an ascent. Without weight decay that cancels out (maximize is
    ignored); with it, the decay term pushes parameters away from 0. Revealed by maximize=True
    and weight_decay > 0."""

    def _step_one(self, p: Tensor, grad: Tensor, st: State, hp: HParams, lr: float) -> None:
        super()._step_one(p, grad, st, hp, -lr if hp.maximize else lr)


class MaximizeAfterWeightDecay(Reference):
    """#8 maximize applied to the decayed gradient, g <- -(g + λθ) instead of -g + λθ (R12's
    other order, which no surveyed framework uses): with coupled decay, maximize then grows θ
    instead of decaying it. Revealed by maximize=True and weight_decay > 0."""

    def _maximized(self, grad: Tensor, hp: HParams) -> Tensor:
        return -grad if hp.maximize and hp.weight_decay == 0 else grad

    def _decayed(self, g: Tensor, p: Tensor, hp: HParams) -> Tensor:
        g = g.add(p, alpha=hp.weight_decay)
        return -g if hp.maximize else g


class AlphaSwapped(Reference):
    """#9 α and 1-α swapped in the square_avg update (mxnet#5517). Revealed by α far from 0.5."""

    def _accumulate(self, v: Tensor, g: Tensor, alpha: float, step: int, cplx: bool) -> None:
        super()._accumulate(v, g, 1 - alpha, step, cplx)


class ComplexProductSquare(Reference):
    """#10 complex gradients squared as complex numbers, g·g = (a² - b², 2ab), instead of per real
    component (pytorch#59998, optax#279). Revealed by complex parameters."""

    def _accumulate(self, v: Tensor, g: Tensor, alpha: float, step: int, cplx: bool) -> None:
        if not cplx:
            super()._accumulate(v, g, alpha, step, cplx)
            return
        vc, gc = torch.view_as_complex(v), torch.view_as_complex(g)
        vc.mul_(alpha).add_(gc * gc, alpha=1 - alpha)


class LowPrecisionIntermediates(Reference):
    """#11 the update g/d computed in bfloat16 for float32/float64 parameters (a "fast path"
    rounding intermediates to a narrower dtype; pytorch PR#122264, optax#1784). Revealed by one
    float32 step whose update is not negligible next to the parameter."""

    def _apply(self, p: Tensor, num: Tensor, d: Tensor, buf: Tensor | None, momentum: float,
               lr: float) -> None:
        if p.dtype in (torch.float32, torch.float64):
            num = (num.to(torch.bfloat16) / d.to(torch.bfloat16)).to(p.dtype)
            d = torch.ones_like(num)
        super()._apply(p, num, d, buf, momentum, lr)


class StridesIgnoredNoWriteBack(Reference):
    """#12 a non-contiguous parameter is updated through a contiguous copy that is never written
    back (apex#1825, bitsandbytes#1185). Revealed by a transposed or strided parameter."""

    def _step_one(self, p: Tensor, grad: Tensor, st: State, hp: HParams, lr: float) -> None:
        super()._step_one(p if p.is_contiguous() else p.contiguous(), grad, st, hp, lr)


class StridesIgnoredWrongOrder(Reference):
    """#12 a non-contiguous parameter updated on a contiguous copy, written back in memory order
    (ColossalAI#633: indexing by position, not by stride). Revealed by a transposed parameter."""

    def _step_one(self, p: Tensor, grad: Tensor, st: State, hp: HParams, lr: float) -> None:
        if p.is_contiguous():
            super()._step_one(p, grad, st, hp, lr)
            return
        work = p.contiguous()
        super()._step_one(work, grad, st, hp, lr)
        p.as_strided((p.numel(),), (1,)).copy_(work.reshape(-1))


class ZeroSizeBreak(Reference):
    """#13 a multi-tensor loop that stops at an empty tensor, losing the updates of the tensors
    after it (pytorch#100701, ColossalAI#675). Revealed by several parameters, one zero-size."""

    def _step(self, params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[State],
              hp: HParams, lr: float) -> None:
        for p, g, st in zip(params, grads, states):
            if p.numel() == 0:
                break
            self._step_one(p, g, st, hp, lr)


class ZeroDimUpdateDropped(Reference):
    """A compiled step that loses the in-place updates of a 0-d parameter and its averages,
    while its step counter counts (torch.compile's inductor code for a 0-d float64 parameter,
    torch 2.13: docs/findings.md). Revealed by a 0-d parameter; the same values of shape (1,)
    conform."""

    def _step_one(self, p: Tensor, grad: Tensor, st: State, hp: HParams, lr: float) -> None:
        if p.ndim:
            super()._step_one(p, grad, st, hp, lr)
        else:
            st["step"] += 1


class StateLoadLosesStep(Reference):
    """#14 loading a state resets the step count (pytorch#80809). Revealed through the state
    read-out after loading a state with step > 0."""

    def _load_state(self, st: ParamState, p: Tensor) -> State:
        return super()._load_state(st._replace(step=0), p)


class StateLoadCastsFloat32(Reference):
    """#14 loading a state casts it to float32 / complex64 (pytorch#43706 in reverse). Revealed
    by loading a state into float64 parameters: the state read-out's dtype, and a float32-rounded
    square_avg."""

    def _load_state(self, st: ParamState, p: Tensor) -> State:
        narrow = torch.complex64 if torch.is_complex(p) else torch.float32
        out = super()._load_state(st, p)
        return {k: v if k == "step" else v.to(narrow) for k, v in out.items()}


class StepCounterBfloat16(Reference):
    """#15 the step counter kept in bfloat16, which stops counting at 256 (pytorch/ao#4915).
    Only visible through the state read-out: load a state at step 256 and take one step."""

    def _step_tensor(self, step: int) -> Tensor:
        return torch.tensor(float(step), dtype=torch.bfloat16)


class TensorLrUnvalidated(Reference):
    """#16 a Tensor lr bypasses validation: wrong shapes and negative values accepted
    (pytorch#145461, #130980). Revealed by make_optimizer({"lr": torch.tensor([1e-3, 1e-3])})."""

    def _check_lr(self, lr: Any) -> None:
        if not isinstance(lr, Tensor):
            super()._check_lr(lr)


def _accepts(name: str) -> type[Reference]:
    class AcceptsNegative(Reference):
        validated = tuple(n for n in Reference.validated if n != name)

    AcceptsNegative.__name__ = AcceptsNegative.__qualname__ = (
        "AcceptsNegative" + "".join(w.title() for w in name.split("_")))
    AcceptsNegative.__doc__ = (f"#17 {name} is not validated: {name} = -1 accepted silently "
                               f"(several). Revealed by make_optimizer({{{name!r}: -1.0}}).")
    return AcceptsNegative


AcceptsNegativeLr = _accepts("lr")
AcceptsNegativeEps = _accepts("eps")
AcceptsNegativeAlpha = _accepts("alpha")
AcceptsNegativeMomentum = _accepts("momentum")
AcceptsNegativeWeightDecay = _accepts("weight_decay")


class NanAccepted(Reference):
    """#17 validation written as ``x < 0``, so NaN passes every check. Revealed by
    make_optimizer({"lr": nan})."""

    def _invalid(self, value: Any) -> bool:
        return value < 0


class StaleLr(Reference):
    """#19 the first step's learning rate reused for every step (a captured or compiled step
    keeping a host value: pytorch#106802, pytorch/ao#730). Revealed by an lr schedule."""

    def _lr(self, case: Case, k: int) -> float:
        return case.lr_at(0)


class NonFiniteSanitised(Reference):
    """#20 non-finite gradient entries zeroed before the update instead of propagating
    (pytorch#95847 in reverse: an "inf found" guard that silently repairs). Revealed by a NaN or
    inf in a gradient."""

    def _gradient_in(self, g: np.ndarray) -> Tensor:
        t = super()._gradient_in(g)
        return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


class MutatesGradient(Reference):
    """P6: coupled weight decay applied in place to the caller's gradient (grad.add_ instead of
    grad.add). The update is right; the caller's gradient array is changed. Revealed by
    weight_decay > 0, maximize=False."""

    def _decayed(self, g: Tensor, p: Tensor, hp: HParams) -> Tensor:
        return g.add_(p, alpha=hp.weight_decay)


class NonDeterministic(Reference):
    """P12: after each step, the lowest mantissa bit of a random half of the elements flips (an
    unseeded race in a reduction order would look the same). Within every error bound, but two
    runs of the same case differ."""

    def _step(self, params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[State],
              hp: HParams, lr: float) -> None:
        super()._step(params, grads, states, hp, lr)
        rng = np.random.default_rng()  # unseeded on purpose
        for p in params:
            bits = _real(p).view({2: torch.int16, 4: torch.int32, 8: torch.int64}[
                _real(p).element_size()])
            flip = torch.from_numpy(np.asarray(rng.integers(0, 2, size=tuple(bits.shape))))
            bits.bitwise_xor_(flip.to(bits.dtype))


_CLASSES: tuple[type[Reference], ...] = (
    EpsInsideSqrt, InitialSquareAvgOne, FirstStepSquareAvgIsG2, CenteredUsesV, CenteredPlusGbar2,
    NumeratorSquareAvg, SignError, MomentumIgnored, WeightDecayNumeratorOnly,
    WeightDecayDenominatorOnly, WeightDecayWrongSign, MaximizeIgnored, MaximizeTwice,
    MaximizeAfterWeightDecay,
    AlphaSwapped, ComplexProductSquare, LowPrecisionIntermediates, StridesIgnoredNoWriteBack,
    StridesIgnoredWrongOrder, ZeroSizeBreak, ZeroDimUpdateDropped, StateLoadLosesStep,
    StateLoadCastsFloat32,
    StepCounterBfloat16, TensorLrUnvalidated, AcceptsNegativeLr, AcceptsNegativeEps,
    AcceptsNegativeAlpha, AcceptsNegativeMomentum, AcceptsNegativeWeightDecay, NanAccepted,
    StaleLr, NonFiniteSanitised, MutatesGradient, NonDeterministic,
)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


MUTANTS: dict[str, type[Reference]] = {}
for _cls in _CLASSES:
    _cls.name = f"mutant.{_snake(_cls.__name__)}"
    MUTANTS[_snake(_cls.__name__)] = _cls

EXPECTED_PROPERTY: dict[str, str] = {
    "eps_inside_sqrt": "P1",
    "initial_square_avg_one": "P1",
    "first_step_square_avg_is_g2": "P1",
    "centered_uses_v": "P1",
    "centered_plus_gbar2": "P1",
    "numerator_square_avg": "P1",
    "sign_error": "P1",
    "momentum_ignored": "P2",
    "weight_decay_numerator_only": "P1",
    "weight_decay_denominator_only": "P1",
    "weight_decay_wrong_sign": "P1",
    "maximize_ignored": "P9",
    "maximize_twice": "P9",
    "maximize_after_weight_decay": "P9",
    "alpha_swapped": "P1",
    "complex_product_square": "P10",
    "low_precision_intermediates": "P1",
    "strides_ignored_no_write_back": "P8",
    "strides_ignored_wrong_order": "P8",
    "zero_size_break": "P7",
    "zero_dim_update_dropped": "P1",
    "state_load_loses_step": "P11",
    "state_load_casts_float32": "P11",
    "step_counter_bfloat16": "P11",
    "tensor_lr_unvalidated": "P13",
    "accepts_negative_lr": "P13",
    "accepts_negative_eps": "P13",
    "accepts_negative_alpha": "P13",
    "accepts_negative_momentum": "P13",
    "accepts_negative_weight_decay": "P13",
    "nan_accepted": "P13",
    "stale_lr": "P3",
    "non_finite_sanitised": "P5",
    "mutates_gradient": "P6",
    "non_deterministic": "P12",
}

# The rule of SPEC.md each mutant breaks, read off the rule text (not off the harness's output).
EXPECTED_RULE: dict[str, str] = {
    "eps_inside_sqrt": "R7",                  # ε inside the root is R7's other side
    "initial_square_avg_one": "R8",           # the initial state
    "first_step_square_avg_is_g2": "R17",     # v ← αv + (1 − α)g², also at t = 1
    "centered_uses_v": "R20",                 # w = v̂ − |ḡ̂|²: the centering dropped
    "centered_plus_gbar2": "R20",             # w with the wrong sign of |ḡ̂|²
    "numerator_square_avg": "R20",            # s = g/d: v in the numerator
    "sign_error": "R21",                      # θ ← θ − η·s
    "momentum_ignored": "R21",                # b ← μb + s
    "weight_decay_numerator_only": "R16",     # the transformed g feeds every later line
    "weight_decay_denominator_only": "R16",
    "weight_decay_wrong_sign": "R16",         # g + λθ
    "maximize_ignored": "R16",                # g = −g if maximize
    "maximize_twice": "R16",
    "maximize_after_weight_decay": "R12",    # g = −g, then + λθ
    "alpha_swapped": "R17",
    "complex_product_square": "R11",          # sq(g) per real component
    "low_precision_intermediates": "R31",     # rounding beyond a correct float32's
    "strides_ignored_no_write_back": "R25",   # layout invariance
    "strides_ignored_wrong_order": "R25",
    "zero_size_break": "R29",                 # zero-size tensors
    "zero_dim_update_dropped": "R29",         # 0-d tensors are valid parameters
    "state_load_loses_step": "R15",           # save/load exact
    "state_load_casts_float32": "R15",
    "step_counter_bfloat16": "R15",           # the step counts steps
    "tensor_lr_unvalidated": "R6",
    "accepts_negative_lr": "R6",
    "accepts_negative_eps": "R6",
    "accepts_negative_alpha": "R6",
    "accepts_negative_momentum": "R6",
    "accepts_negative_weight_decay": "R6",
    "nan_accepted": "R6",
    "stale_lr": "R22",                        # each step uses its own η
    "non_finite_sanitised": "R26",            # IEEE propagation
    "mutates_gradient": "R24",
    "non_deterministic": "R25",
}


# ---------------------------------------------------------------------------------------------
# Revealing inputs
# ---------------------------------------------------------------------------------------------
class Reveal(NamedTuple):
    """A hand-picked input that reveals a mutant, and where the deviation shows.

    ``observe``: "params" (parameters differ from the oracle), "state" (the state read-out
    differs), "layout" (differs with the case's layouts, agrees with contiguous ones), "inputs"
    (the caller's gradient arrays change), "determinism" (two runs differ), "reject" (the mutant
    accepts ``hparams``, which torch rejects). ``as_if``, when given, maps the case to one whose
    oracle trajectory the mutant's parameters follow: the bug, stated in the spec's terms.
    """

    observe: str
    case: Callable[[], Case] | None = None
    as_if: Callable[[Case], Case] | None = None
    hparams: Mapping[str, Any] | None = None


def make_case(dtype: str = "float64", shapes: Sequence[tuple[int, ...]] = ((2, 3),),
              steps: int = 1, *, seed: int = 0, scale: float = 1.0, mean: float = 0.0,
              param_scale: float = 1.0, lrs: Sequence[float] | None = None,
              layouts: Sequence[str] | None = None, state_step: int | None = None,
              **hp: Any) -> Case:
    """A small seeded case of the torch profile (gradients normal(mean, 1)·scale)."""
    rng = np.random.default_rng(seed)
    dt = np_dtype(dtype)

    def draw(shape: tuple[int, ...], loc: float, s: float) -> np.ndarray:
        a = loc + rng.standard_normal(shape)
        if dt.kind == "c":
            a = a + 1j * (loc + rng.standard_normal(shape))
        return np.asarray(a * s).astype(dt)

    hparams = HParams.from_profile("torch", **hp)
    params = tuple(draw(s, 0.0, param_scale) for s in shapes)
    grads = tuple(tuple(draw(s, mean, scale) for s in shapes) for _ in range(steps))
    state = None
    if state_step is not None:
        # A loaded state: step and square_avg of a run in progress (0.5 per real component).
        state = tuple(st._replace(step=state_step, square_avg=st.square_avg + 0.5 * (
            1 + 1j if np.iscomplexobj(st.square_avg) else 1)) for st in init_state(params, hparams))
    return Case(hp=hparams, params=params, grads=grads,
                lrs=None if lrs is None else tuple(lrs),
                layouts=None if layouts is None else tuple(layouts), initial_state=state)


def _hp(**changes: Any) -> Callable[[Case], Case]:
    return lambda c: c.replace(hp=c.hp.replace(**changes))


REVEALING: dict[str, Reveal] = {
    "eps_inside_sqrt": Reveal("params", lambda: make_case(eps=0.1, scale=1e-2),
                              _hp(eps_in_sqrt=True)),
    "initial_square_avg_one": Reveal("params", make_case,
                                     _hp(initial_square_avg=1.0)),
    "first_step_square_avg_is_g2": Reveal("params", lambda: make_case(alpha=0.9),
                                          _hp(alpha=0.0)),
    "centered_uses_v": Reveal("params", lambda: make_case(centered=True, mean=2.0),
                              _hp(centered=False)),
    "centered_plus_gbar2": Reveal("params", lambda: make_case(centered=True, mean=2.0)),
    "numerator_square_avg": Reveal("params", lambda: make_case(scale=3.0)),
    # Without weight decay, flipping the update's sign is maximising.
    "sign_error": Reveal("params", make_case, _hp(maximize=True)),
    "momentum_ignored": Reveal("params", lambda: make_case(steps=2, momentum=0.9),
                               _hp(momentum=0.0)),
    "weight_decay_numerator_only": Reveal("params", lambda: make_case(weight_decay=0.5,
                                                                      param_scale=5.0)),
    "weight_decay_denominator_only": Reveal("params", lambda: make_case(weight_decay=0.5,
                                                                        param_scale=5.0)),
    "weight_decay_wrong_sign": Reveal("params", lambda: make_case(weight_decay=0.5,
                                                                  param_scale=5.0)),
    "maximize_ignored": Reveal("params", lambda: make_case(maximize=True, weight_decay=0.1),
                               _hp(maximize=False)),
    "maximize_twice": Reveal("params", lambda: make_case(maximize=True, weight_decay=0.5,
                                                         param_scale=5.0)),
    "maximize_after_weight_decay": Reveal(
        "params", lambda: make_case(maximize=True, weight_decay=0.5, param_scale=5.0),
        _hp(maximize_order="after_weight_decay")),
    # Not centered, so only the square_avg update uses α: the bug is α → 1-α.
    "alpha_swapped": Reveal("params", lambda: make_case(steps=2, alpha=0.9), _hp(alpha=0.1)),
    "complex_product_square": Reveal("params", lambda: make_case("complex128")),
    "low_precision_intermediates": Reveal("params", lambda: make_case("float32", lr=0.1)),
    "strides_ignored_no_write_back": Reveal("layout", lambda: make_case(
        shapes=((3, 4), (2, 3, 4, 5)), layouts=("transposed", "strided"))),
    "strides_ignored_wrong_order": Reveal("layout", lambda: make_case(
        shapes=((3, 4),), layouts=("transposed",))),
    "zero_size_break": Reveal("params", lambda: make_case(shapes=((2,), (0, 3), (3,)))),
    "zero_dim_update_dropped": Reveal("params", lambda: make_case(shapes=((),))),
    "state_load_loses_step": Reveal("state", lambda: make_case(state_step=5)),
    "state_load_casts_float32": Reveal("state", lambda: make_case(state_step=3)),
    "step_counter_bfloat16": Reveal("state", lambda: make_case(state_step=256)),
    "tensor_lr_unvalidated": Reveal("reject", hparams={"lr": torch.tensor([1e-3, 1e-3])}),
    "accepts_negative_lr": Reveal("reject", hparams={"lr": -1.0}),
    "accepts_negative_eps": Reveal("reject", hparams={"eps": -1.0}),
    "accepts_negative_alpha": Reveal("reject", hparams={"alpha": -1.0}),
    "accepts_negative_momentum": Reveal("reject", hparams={"momentum": -1.0}),
    "accepts_negative_weight_decay": Reveal("reject", hparams={"weight_decay": -1.0}),
    "nan_accepted": Reveal("reject", hparams={"lr": math.nan}),
    "stale_lr": Reveal("params", lambda: make_case(steps=3, lrs=(0.01, 0.05, 0.2)),
                       lambda c: c.replace(lrs=(c.lrs[0],) * c.n_steps)),
    "non_finite_sanitised": Reveal("params", lambda: _with_nonfinite(make_case(steps=2))),
    "mutates_gradient": Reveal("inputs", lambda: make_case(weight_decay=0.5)),
    "non_deterministic": Reveal("determinism", lambda: make_case(shapes=((4, 8),), steps=2)),
}


def _with_nonfinite(case: Case) -> Case:
    g0 = case.grads[0][0].copy()
    g0.flat[0], g0.flat[1] = np.nan, np.inf
    return case.replace(grads=((g0,), *case.grads[1:]))


assert set(MUTANTS) == set(EXPECTED_PROPERTY) == set(REVEALING), "corpus tables disagree"
