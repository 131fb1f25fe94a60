"""Which rule a failure breaks, decided from more evidence than one counterexample.

A shrunk counterexample is small — often one 0-d step — and one number fits many readings: a
wrong ε placement, a wrong initial ``square_avg`` and a swapped α may all reproduce it. So the
rule is named once per failing target, after the search, from follow-up cases (``probes``):
a few deterministic, well-conditioned three-step runs of one parameter with the counterexample's
hyperparameters and dtype, run on the backend itself. With them, in this order:

0. **0-d.** A failure on a 0-d parameter that the same values as a 1-element parameter (shape
   (1,)) do not show is R29's (0-d arrays are valid parameters): the formula is right, the
   shape is not handled (torch.compile drops the update of a 0-d float64 parameter).
1. **Precision.** A value error of a low-precision case that the same case in float64 does not
   show is numerical: R31 (the formula is right, its rounding is not a correct one's).
2. **Another convention or a known slip** (:func:`alternatives`: ε inside/outside the root,
   initial square_avg, α swapped, lr inside/outside the momentum buffer, the weight-decay mode,
   the maximize order, a feature ignored, the update's sign, the first learning rate reused):
   a reading that fits the counterexample *and* every probe, judged on everything the backend
   returned (its state included), names its rule — an order's reading (R12, maximize before or
   after weight decay) only if the backend also conforms where the order is irrelevant
   (maximize off): ``g − λθ`` with maximize on reads exactly as the other order, but it is the
   weight decay's sign that is wrong, and it shows with maximize off. Several readings that
   fit everything are indistinguishable here and are all named, ranked by fit (the smallest
   error/bound ratio).
3. **Ablation.** Each feature the case switches on (weight decay, maximize, centered,
   momentum, bias correction, a learning-rate schedule) is switched off in the probes: when the
   failure goes away with exactly that feature, the rule of that feature is named.
4. **Localisation.** Otherwise the earliest departing quantity of the formula, upstream first
   (square_avg R17, grad_avg R18, momentum_buffer R21; the parameters alone with a conforming
   state: R20, the step s = g/d). A wrong s reaches the buffer b ← μ·b + η·s before the
   parameters, so a departing buffer is R21 only if the failure goes with momentum; when it
   stays with momentum off, the probes without momentum are localised instead (R20 for v in
   the numerator, whether or not the counterexample shrank to momentum = 0).
5. Otherwise the judge's rule stands.

Rules a property owns (P6's R24, P7's R23/R29, P8's R25, P9's R16, P10's R11, P11's R14/R15,
P12's R25, R26/R27 of non-finite values) keep priority: they were named by the property's own
follow-up (the same case alone, contiguous, negated, as real pairs), which is already the better
evidence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from conformance.backend import Backend, Capabilities
from conformance.case import Case, Trajectory, dtype_name, np_dtype
from conformance.guard import BackendError, call_backend
from conformance.properties import other_maximize_order, widen
from conformance.tolerance import Judgement, Violation, judge
from spec.rmsprop import HParams

# The rules the judge gives a value that departs, per field (tolerance._FIELD_RULE): a failure
# carrying one of them is the formula's, and this module may name it more precisely.
_FORMULA_RULES = frozenset({"R17", "R18", "R20", "R21"})
_UPSTREAM = ("square_avg", "grad_avg", "momentum_buffer", "params")
_FIELD_RULE = {"square_avg": "R17", "grad_avg": "R18", "momentum_buffer": "R21", "params": "R20"}
_WIDE = ("float64", "complex128")
N_PROBES = 4
N_STEPS = 3


@dataclasses.dataclass(frozen=True)
class Reading:
    """Another way to read a case: its rule, what it says, and the case under that reading."""

    rule: str
    why: str
    case: Callable[[Case], Case]
    # How the backend's trajectory reads under it (None: as returned).
    trajectory: Callable[[Case, Trajectory], Trajectory] | None = None
    # The case with the reading's axis made irrelevant (None: none is): there the reading and
    # the spec agree, so a backend the reading explains conforms.
    inert: Callable[[Case], Case] | None = None


def _hp(**changes: object) -> Callable[[Case], Case]:
    return lambda c: c.replace(hp=c.hp.replace(**changes))


def _first_step(c: Case) -> Case:
    return c.replace(grads=c.grads[:1], lrs=None if c.lrs is None else c.lrs[:1])


def _update_mirrored(c: Case, traj: Trajectory) -> Trajectory:
    """The first step's parameters as they would be had its update been subtracted where the
    backend added it: θ̃₁ = θ₀ − (θ₁ − θ₀) (float64 differences of the backend's own values,
    rounded back to its dtype). One step only: after it, a coupled weight decay λθ of the
    backend's own (mirrored-away) parameters makes the readings part."""
    mirrored = tuple((2 * np.asarray(p, np.complex128 if np.iscomplexobj(p) else np.float64)
                      - np.asarray(o)).astype(np.asarray(o).dtype)
                     for p, o in zip(c.params, traj.params[0]))
    return Trajectory([mirrored], None if traj.states is None else traj.states[:1])


def _first_lr(c: Case) -> Case:
    return c if c.lrs is None else c.replace(lrs=(c.lrs[0],) * len(c.lrs))


def alternatives(hp: HParams, scheduled: bool) -> list[Reading]:
    """The conventions and slips a case with ``hp`` could be read under instead (SPEC §3, §6)."""
    out = [Reading("R7", f"eps_in_sqrt={not hp.eps_in_sqrt}", _hp(eps_in_sqrt=not hp.eps_in_sqrt)),
           Reading("R8", "initial square_avg of 1" if hp.initial_square_avg == 0
                   else "initial square_avg of 0",
                   _hp(initial_square_avg=1.0 if hp.initial_square_avg == 0 else 0.0)),
           Reading("R21", "the update added instead of subtracted (sign)", _first_step,
                   _update_mirrored)]
    if not hp.bias_correction or hp.alpha > 0:
        out.append(Reading("R17", "alpha and 1 - alpha swapped", _hp(alpha=1.0 - hp.alpha)))
    if scheduled:
        out.append(Reading("R22", "the first step's learning rate reused", _first_lr))
    if hp.momentum > 0:
        out += [Reading("R9", f"lr_in_momentum={not hp.lr_in_momentum}",
                        _hp(lr_in_momentum=not hp.lr_in_momentum)),
                Reading("R21", "momentum ignored", _hp(momentum=0.0, nesterov=False))]
    if hp.weight_decay > 0:
        other = "decoupled" if hp.weight_decay_mode == "coupled" else "coupled"
        out += [Reading("R10", f"weight_decay_mode={other!r}", _hp(weight_decay_mode=other)),
                Reading("R16", "weight decay ignored", _hp(weight_decay=0.0))]
    if hp.maximize:
        out.append(Reading("R16", "maximize ignored", _hp(maximize=False)))
        if hp.weight_decay > 0:
            other = other_maximize_order(hp)
            out.append(Reading("R12", f"maximize_order={other!r}", _hp(maximize_order=other),
                               inert=_hp(maximize=False)))
    if hp.centered:
        out.append(Reading("R20", "centered ignored", _hp(centered=False)))
    if hp.bias_correction:
        out.append(Reading("R19", "bias correction ignored", _hp(bias_correction=False)))
    return out


def _ablations(case: Case) -> list[tuple[str, str, Callable[[Case], Case]]]:
    """(feature, its rule, the case without it) for each feature the case switches on."""
    hp = case.hp
    out = []
    if hp.weight_decay > 0:
        out.append(("weight decay", "R16" if hp.weight_decay_mode == "coupled" else "R21",
                    _hp(weight_decay=0.0)))
    if hp.maximize:
        out.append(("maximize", "R16", _hp(maximize=False)))
    if hp.centered:
        out.append(("centered", "R20", _hp(centered=False)))
    if hp.momentum > 0:
        out.append(("momentum", "R21", _hp(momentum=0.0, nesterov=False)))
    if hp.bias_correction:
        out.append(("bias correction", "R19", _hp(bias_correction=False)))
    if case.lrs is not None:
        out.append(("the learning-rate schedule", "R22", lambda c: c.replace(lrs=None)))
    return out


def probes(case: Case, dtype: str) -> list[Case]:
    """Well-conditioned follow-up cases: one parameter of six elements, three steps from a fresh
    state, the counterexample's hyperparameters (and a schedule when it has one); values of
    order 1 (parameters) and 0.1–1 (gradients), so that every reading of SPEC §3 differs."""
    rng = np.random.default_rng(20261203)
    dt = np_dtype(dtype)
    out = []
    for _ in range(N_PROBES):
        def draw(scale: float) -> np.ndarray:
            a = rng.normal(size=6) * scale
            if dt.kind == "c":
                a = a + 1j * rng.normal(size=6) * scale
            return a.astype(dt)

        scales = rng.uniform(0.1, 1.0, N_STEPS)
        lrs = (tuple(float(x) for x in rng.uniform(1e-3, 1e-1, N_STEPS))
               if case.lrs is not None else None)
        out.append(Case(hp=case.hp, params=(draw(2.0),),
                        grads=tuple((draw(float(s)),) for s in scales), lrs=lrs,
                        device=case.device))
    return out


class _Evidence:
    """The backend's trajectories on the counterexample and the probes, run once each."""

    def __init__(self, backend: Backend, caps: Capabilities, cases: list[Case]) -> None:
        self.backend, self.caps = backend, caps
        self.runs = [(c, call_backend(backend, caps, c)) for c in cases]

    def fit(self, reading: Reading) -> float | None:
        """The largest error/bound ratio of every run judged under ``reading`` (state
        included), or None when some run does not conform to it."""
        worst = 0.0
        for c, traj in self.runs:
            try:
                j = judge(reading.case(c), traj if reading.trajectory is None
                          else reading.trajectory(c, traj))
            except ValueError:  # the reading is outside the oracle's domain
                return None
            if not j.ok:
                return None
            worst = max(worst, j.max_ratio)
        return worst


def _judged(backend: Backend, caps: Capabilities, cases: list[Case]) -> list[Judgement]:
    return [judge(c, call_backend(backend, caps, c)) for c in cases]


def _conforms(backend: Backend, caps: Capabilities, cases: list[Case]) -> bool:
    return all(j.ok for j in _judged(backend, caps, cases))


def _renamed(v: Violation, rule: str, why: str) -> Violation:
    return dataclasses.replace(v, rule=rule, message=f"{v.message}; {why}")


def _one_element(case: Case, i: int) -> Case:
    """``case`` with parameter ``i`` (0-d), its gradients and its state of shape (1,)."""
    def flat(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.reshape(a, (1,))

    def at_i(items: tuple, change: Callable) -> tuple:
        return tuple(change(x) if k == i else x for k, x in enumerate(items))

    return case.replace(
        params=at_i(case.params, flat), grads=tuple(at_i(gs, flat) for gs in case.grads),
        initial_state=None if case.initial_state is None else at_i(
            case.initial_state, lambda st: st._replace(
                square_avg=flat(st.square_avg), grad_avg=flat(st.grad_avg),
                momentum_buffer=flat(st.momentum_buffer))))


def _zero_dimensional(backend: Backend, caps: Capabilities, case: Case, v: Violation) -> bool:
    """The failing parameter is 0-d, and the same values as a 1-element parameter conform."""
    i = v.param or 0
    if i >= len(case.params) or case.params[i].ndim != 0:
        return False
    alike = _one_element(case, i)
    return judge(alike, call_backend(backend, caps, alike)).ok


def _precision(backend: Backend, caps: Capabilities, case: Case, v: Violation) -> bool:
    """The case fails in its low-precision dtype and conforms in float64."""
    if set(case.dtypes) <= set(_WIDE):
        return False
    wide = widen(case)
    if not set(wide.dtypes) <= caps.dtypes:
        return False
    return judge(wide, call_backend(backend, caps, wide)).ok


def _localise(judgements: list[Judgement]) -> tuple[str, str] | None:
    """The earliest departing field over the failing judgements, upstream first."""
    best: tuple[int, int] | None = None
    for j in judgements:
        for w in j.violations:
            if w.kind != "value" or w.field not in _FIELD_RULE or w.step is None:
                continue
            key = (w.step, _UPSTREAM.index(w.field))
            best = key if best is None or key < best else best
    if best is None:
        return None
    field = _UPSTREAM[best[1]]
    what = ("the state conforms, the parameters do not: the step s = g/d" if field == "params"
            else f"{field} is the first quantity that departs")
    return _FIELD_RULE[field], f"{what} (step {best[0]} of the follow-up cases)"


def name_rule(backend: Backend, caps: Capabilities, case: Case | None,
              v: Violation) -> Violation:
    """``v`` with the rule it breaks decided from follow-up cases (see the module docstring)."""
    if case is None or v.kind != "value" or v.rule not in _FORMULA_RULES:
        return v
    dtype = dtype_name(case.params[v.param or 0].dtype) if case.params else "float64"
    try:
        if _zero_dimensional(backend, caps, case, v):
            return _renamed(v, "R29", "on a 0-d parameter: the same values as a 1-element "
                            "parameter conform")
        if _precision(backend, caps, case, v):
            return _renamed(v, "R31", "the same case conforms in float64: the error is one of "
                            f"rounding in {dtype}, beyond a correct implementation's bound")
        follow = probes(case, dtype)
        evidence = _Evidence(backend, caps, [case, *follow])
        fits = []
        for r in alternatives(case.hp, case.lrs is not None):
            ratio = evidence.fit(r)
            if ratio is not None and (r.inert is None or _conforms(
                    backend, caps, [r.inert(c) for c in follow])):
                fits.append((ratio, r))
        if fits:
            fits.sort(key=lambda f: f[0])
            names = " or ".join(f"{r.why} ({r.rule})" for _, r in fits)
            return _renamed(v, fits[0][1].rule, f"the results match the spec with {names} "
                            f"instead, on this case and {len(follow)} follow-up cases")
        failing = [judge(c, t) for c, t in evidence.runs[1:]]
        if all(j.ok for j in failing):
            return v  # the follow-up cases conform: only the counterexample's region tells
        ablated = [(feature, rule, [j for j in _judged(backend, caps, [off(c) for c in follow])
                                    if not j.ok])
                   for feature, rule, off in _ablations(case)]
        implicated = [(feature, rule) for feature, rule, still in ablated if not still]
        if len(implicated) == 1:
            feature, rule = implicated[0]
            if feature == "centered":
                local = _localise([j for j in failing if not j.ok])
                rule = "R18" if local and local[0] == "R18" else rule
            return _renamed(v, rule, f"the follow-up cases conform with {feature} off and "
                            f"fail with it on")
        local = _localise([j for j in failing if not j.ok])
        if local is not None and local[0] == "R21":
            # b ← μ·b + η·s carries a wrong step s into the buffer before the parameters: a
            # failure that stays with momentum off is not the buffer's, and is localised there.
            still = next((s for feature, _, s in ablated if feature == "momentum"), [])
            local = _localise(still) or local
        if local is not None:
            return _renamed(v, *local)
    except BackendError:
        return v  # the backend broke on a follow-up case: keep what the counterexample says
    return v
