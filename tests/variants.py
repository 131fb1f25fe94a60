"""The corpus of correct variants: RMSProp implementations that differ from the spec's own
evaluation only in *form* — the roundings SPEC R17/R31b permit — and so must certify conformant.

Beside the mutant corpus (tests/mutants.py: one bug each, every one must fail), this is the
other half of judging the judge: a harness whose bound covers only its own evaluation order
raises false alarms on correct code written elsewhere (TensorFlow's and timm's lerp of
square_avg, a GPU kernel's fma, optax's reciprocal-multiply, float32 accumulation in a
float16/bfloat16 path).

Each variant is a NumPy backend over ``tests.lowprec.step`` with its ``Forms``: every operation
rounded to the parameter's dtype (float32 for float16/bfloat16 with ``accumulate``), complex
parameters as real pairs (torch profile), several parameters, state read-out and load.

    rmsprop-conformance certify tests.variants:Lerp        (from the repository root)
    python -m benchmarks.false_alarms --variants --seeds 20
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from spec.rmsprop import HParams, ParamState, init_state
from tests import lowprec

_REAL = {np.dtype(np.complex64): np.dtype(np.float32),
         np.dtype(np.complex128): np.dtype(np.float64)}
FEATURES = frozenset({
    "weight_decay", "momentum", "nesterov", "centered", "maximize", "bias_correction",
    "lr_schedule", "multi_param", "mixed_dtypes", "state_readout", "state_load", "layouts",
    "zero_size",
})
DTYPES = frozenset({"float16", "bfloat16", "float32", "float64", "complex64", "complex128"})


def _pairs(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    """A complex array as real pairs on a trailing axis (a real one unchanged), in ``dtype``."""
    if a is None:
        return None
    a = np.asarray(a)
    if np.iscomplexobj(a):
        return np.stack([a.real, a.imag], axis=-1).astype(_REAL[a.dtype])
    return a.astype(dtype)


def _unpairs(a: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    if a is None:
        return None
    if dtype in _REAL:
        out = np.empty(a.shape[:-1], dtype=dtype)
        out.real, out.imag = a[..., 0], a[..., 1]
        return out
    return np.asarray(a, dtype=dtype)


class Variant:
    """A correct torch-profile RMSProp evaluated in ``forms`` (see ``tests.lowprec.Forms``)."""

    name: ClassVar[str] = "variant.spec_form"
    forms: ClassVar[lowprec.Forms] = lowprec.SPEC_FORMS
    conventions: ClassVar[dict[str, object]] = {}  # where a form needs another axis to show

    def capabilities(self) -> Capabilities:
        return Capabilities(profile="torch", dtypes=DTYPES, features=FEATURES,
                            conventions=self.conventions,
                            description=f"correct NumPy RMSProp in the forms {self.forms}")

    def run(self, case: Case) -> Trajectory:
        hp: HParams = case.hp
        params = [np.asarray(p) for p in case.materialized_params()]
        states = list(case.initial_state or init_state(params, hp))
        dtypes = [p.dtype for p in params]
        real = [_REAL.get(d, d) for d in dtypes]
        cur = [_pairs(p, r) for p, r in zip(params, real)]
        st = [ParamState(s.step, *(_pairs(a, r) for a in s[1:])) for s, r in zip(states, real)]
        out = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            for i, g in enumerate(grads):
                cur[i], st[i] = lowprec.step(cur[i], _pairs(g, real[i]), st[i], hp, real[i],
                                             case.lr_at(k), self.forms)
            out.append([_unpairs(p, d) for p, d in zip(cur, dtypes)],
                       [ParamState(s.step, *(_unpairs(a, d) for a in s[1:]))
                        for s, d in zip(st, dtypes)])
        return out


def _variant(name: str, doc: str, conventions: dict[str, object] | None = None,
             **forms: str) -> type[Variant]:
    return type(name, (Variant,), {"name": f"variant.{name.lower()}", "__doc__": doc,
                                   "forms": lowprec.Forms(**forms),
                                   "conventions": conventions or {}})


_EPS_IN_SQRT = {"eps_in_sqrt": True}
_DECOUPLED = {"weight_decay_mode": "decoupled"}


SpecForm = Variant
Lerp = _variant("Lerp", "square_avg and grad_avg as a + (1 − α)(b − a) (TF ApplyRMSProp, timm).",
                ema="lerp")
FmaLerp = _variant("FmaLerp", "the lerp as fma(1 − α, b − a, a) (a GPU kernel's form).",
                   ema="fma_lerp")
FmaSpec = _variant("FmaSpec", "α·a + (1 − α)·b as fma(α, a, (1 − α)·b).", ema="fma_spec")
TwoBranch = _variant("TwoBranch", "torch's two-branch lerp for both averages.", ema="two_branch")
Reciprocal = _variant("Reciprocal", "s = g·(1/d) (optax's order).", quotient="reciprocal")
Rsqrt = _variant("Rsqrt", "s = g·rsqrt(w + ε), the rsqrt faithfully rounded (one ulp).",
                 _EPS_IN_SQRT, quotient="rsqrt")
EtaGOverD = _variant("EtaGOverD", "η·s as (η·g)/d.", lr_times="eta_g_over_d")
DecayFactor = _variant("DecayFactor", "decoupled weight decay as θ·(1 − ηλ).", _DECOUPLED,
                       decay="factor")
Float32Accumulate = _variant("Float32Accumulate", "float16/bfloat16 computed in float32, the "
                             "results rounded to the dtype.", accumulate="float32")
AllAtOnce = _variant("AllAtOnce", "every non-spec form at once.",
                     {**_EPS_IN_SQRT, **_DECOUPLED}, ema="fma_lerp",
                     quotient="rsqrt", lr_times="eta_g_over_d", decay="factor")

VARIANTS: dict[str, type[Variant]] = {c.name: c for c in (
    SpecForm, Lerp, FmaLerp, FmaSpec, TwoBranch, Reciprocal, Rsqrt, EtaGOverD, DecayFactor,
    Float32Accumulate, AllAtOnce)}
