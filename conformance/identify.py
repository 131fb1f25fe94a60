"""Which conventions does an implementation follow? A fingerprint from black-box runs.

``identify(backend)`` runs a handful of small deterministic *probes* on the backend, each built so
that the sides of one or two convention axes (SPEC §3) give results far apart: tiny gradients
beside ε, a first step from the initial state, a momentum run under a schedule, weight decay,
maximize with weight decay, complex gradients with unequal components. The backend runs each
probe once, under the conventions it claims (the only ones it accepts); its trajectory is then
judged by the tolerance model (SPEC §8, :func:`conformance.tolerance.judge`) under every
combination of axis values. The combinations that fit every probe are the implementation's
conventions; the profile (SPEC §4) that needs the fewest overrides to become one of them is
reported with those overrides. When no combination fits, the closest profile is reported with the
rules its probes break. A probe that no combination fits (a bug no convention explains, such as
a complex gradient squared as g·g) is reported as broken, and the axes are decided by the other
probes. Declared flags (centered, nesterov, bias correction, maximize) are then checked under the
conventions found.

The probes run under the backend's declared conventions: an implementation that takes an axis as
an argument (optax's ``eps_in_sqrt``, timm's ``lr_in_momentum``) is fingerprinted at the value it
is handed.

An axis that no probe could vary on this backend (no momentum feature, no complex dtype, ...) is
"untestable", never guessed; so is one whose sides the probes cannot tell apart under the other
axes found (the order of maximize and weight decay under decoupled decay).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from conformance import registry
from conformance.backend import Backend, Capabilities
from conformance.case import Case, Trajectory, np_dtype
from conformance.guard import call_backend
from conformance.tolerance import Violation, judge
from spec import rmsprop as spec
from spec.rmsprop import PROFILES, HParams, run

# The axes of SPEC §3 (spec.CONVENTION_AXES). Each axis's candidate values: both sides of a
# boolean, the spec's list for a string axis, the values profiles use for a number.
AXES: tuple[str, ...] = spec.CONVENTION_AXES


def _candidates(axis: str) -> tuple[Any, ...]:
    used = [getattr(HParams.from_profile(p), axis) for p in PROFILES]
    if isinstance(used[0], bool):
        return (False, True)
    if isinstance(used[0], str):
        return spec.AXIS_CHOICES[axis]
    return tuple(sorted(set(used)))


# Flags whose meaning (SPEC §6) is checked under the conventions found, when declared.
FLAGS = ("centered", "nesterov", "bias_correction", "maximize")


@dataclasses.dataclass(frozen=True)
class Probe:
    name: str
    purpose: str
    case: Case
    axes: tuple[str, ...] = ()  # the axes it is built to separate


@dataclasses.dataclass
class AxisFinding:
    """One axis: the value found (``None`` when untestable), why, and the evidence."""

    axis: str
    value: Any
    fitting: tuple[Any, ...]  # values that fit every probe with some setting of the other axes
    reason: str
    evidence: dict[str, list[str]]  # candidate value -> what breaks (nothing: it fits), the
    # other axes as found

    @property
    def testable(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value if self.testable else "untestable",
                "fitting": list(self.fitting), "reason": self.reason,
                "evidence": self.evidence}


@dataclasses.dataclass
class Identification:
    backend: str
    declared: dict[str, Any]  # profile and conventions the backend claims
    profile: str
    overrides: dict[str, Any]
    fits: bool
    axes: list[AxisFinding]
    features: dict[str, str]  # declared flag -> "fits" or what breaks, "undeclared"
    probes: dict[str, str]  # probe -> its purpose, or why it did not run
    broken: list[str]  # when nothing fits: what the closest profile breaks
    equally_close: list[str]  # other profiles with as few overrides

    @property
    def conventions(self) -> dict[str, Any]:
        return {a.axis: a.value if a.testable else "untestable" for a in self.axes}

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "profile": self.profile, "overrides": self.overrides,
                "conventions": self.conventions, "fits": self.fits, "declared": self.declared,
                "axes": {a.axis: a.to_dict() for a in self.axes}, "features": self.features,
                "probes": self.probes, "broken": self.broken,
                "equally_close": self.equally_close}

    def reproduce(self) -> str:
        over = ", ".join(f"{k}={v!r}" for k, v in self.overrides.items())
        return f"profile {self.profile!r}" + (f" with {over}" if over else " (no overrides)")

    def text(self) -> str:
        declared = f"{self.declared['profile']!r}" + (
            f" with {self.declared['conventions']}" if self.declared["conventions"] else "")
        lines = [f"{self.backend}: declares profile {declared}"]
        if self.fits:
            lines.append(f"identified: {self.reproduce()} reproduces it within the tolerance "
                         "model")
        else:
            lines.append(f"nothing fits; closest: {self.reproduce()}, which breaks:")
            lines += [f"  {b}" for b in self.broken]
        if self.equally_close:
            lines.append(f"equally close: {', '.join(self.equally_close)}")
        lines.append("axes (SPEC §3):")
        for a in self.axes:
            value = repr(a.value) if a.testable else "untestable"
            lines.append(f"  {a.axis} = {value}: {a.reason}")
            for value, fails in a.evidence.items():
                more = f" (and {len(fails) - 1} more probes)" if len(fails) > 1 else ""
                lines.append(f"    {value}: {fails[0] + more if fails else 'fits'}")
        lines.append("flags: " + "; ".join(f"{k} {v}" for k, v in self.features.items()))
        lines.append("probes: " + "; ".join(f"{k} ({v})" for k, v in self.probes.items()))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------------
# float32 first: every framework's native precision (some compute float64 parameters in float32);
# the probes' sides differ by far more than its rounding.
_REAL_DTYPES = ("float32", "float64", "float16", "bfloat16")
_COMPLEX_DTYPES = ("complex64", "complex128")


def _dtype(caps: Capabilities, choices: Sequence[str]) -> str | None:
    return next((d for d in choices if d in caps.dtypes), None)


def _arrays(values: Iterable[Any], dtype: str) -> tuple[np.ndarray, ...]:
    return (np.asarray(values, dtype=np_dtype(dtype)),)


def _case(hp: HParams, params: Sequence[Any], grads: Sequence[Sequence[Any]], dtype: str,
          device: str, lrs: Sequence[float] | None = None) -> Case:
    return Case(hp=hp, params=_arrays(params, dtype),
                grads=tuple(_arrays(g, dtype) for g in grads),
                lrs=None if lrs is None else tuple(lrs), device=device)


# Gradients from far below ε to far above it, of both signs: sqrt(w + ε) and sqrt(w) + ε differ
# by orders of magnitude on the tiny ones, and v₀ = 1 against 0 changes every first step.
_PARAMS = (1.0, -2.0, 0.5, 3.0)
_GRADS = ((1e-4, -3e-3, 0.5, 2.0), (2e-4, 1e-3, -0.25, 1.0), (-1e-4, 5e-3, 0.75, -3.0))
_SCHEDULE = (0.1, 0.02, 0.0, 0.05)
_MOMENTUM_GRADS = ((0.5, -1.0, 0.25, 2.0), (0.25, 0.5, -1.0, 1.0), (-0.5, 0.75, 0.5, 0.1),
                   (1.0, -0.25, 0.5, -2.0))
_COMPLEX_PARAMS = (1 + 1j, -0.5 + 2j)
_COMPLEX_GRADS = ((1 + 0.01j, 0.01 - 1j), (0.5 + 0.5j, -0.01 + 0.3j), (0.2 - 1j, 1 + 0.02j))


def _base(caps: Capabilities) -> HParams:
    # alpha far from 1/2, so that alpha and 1 - alpha swapped do not fit either.
    return caps.hparams(lr=0.1, alpha=0.75, eps=1e-3, weight_decay=0.0, momentum=0.0,
                        centered=False, maximize=False, nesterov=False, bias_correction=False)


def probes(caps: Capabilities) -> tuple[list[Probe], dict[str, tuple[tuple[str, ...], str]]]:
    """The axis probes this backend can run, and the others: their axes and what they need."""
    real = _dtype(caps, _REAL_DTYPES)
    cplx = _dtype(caps, _COMPLEX_DTYPES)
    device = caps.devices[0]
    base = _base(caps)
    has = caps.supports
    out: list[Probe] = []
    skipped: dict[str, tuple[tuple[str, ...], str]] = {}

    def add(name: str, axes: tuple[str, ...], needs: str, ok: bool, make: Any) -> None:
        purpose = ", ".join(axes)
        if ok:
            out.append(Probe(name, purpose, make(), axes))
        else:
            skipped[name] = (axes, f"not run: {purpose} needs {needs}")

    add("denominator", ("eps_in_sqrt", "initial_square_avg"), "a real dtype", real is not None,
        lambda: _case(base, _PARAMS, _GRADS, real, device))
    add("momentum", ("lr_in_momentum",),
        "momentum and either lr_schedule or state_readout (at a constant lr the two give the "
        "same parameters, R9)",
        real is not None and has("momentum") and (has("lr_schedule") or has("state_readout")),
        lambda: _case(base.replace(momentum=0.9), _PARAMS, _MOMENTUM_GRADS, real, device,
                      _SCHEDULE if has("lr_schedule") else None))
    add("weight_decay", ("weight_decay_mode",), "weight_decay",
        real is not None and has("weight_decay"),
        lambda: _case(base.replace(weight_decay=0.2), _PARAMS, _MOMENTUM_GRADS[:3], real,
                      device))
    add("maximize_weight_decay", ("maximize_order",), "maximize and weight_decay",
        real is not None and has("maximize") and has("weight_decay"),
        lambda: _case(base.replace(weight_decay=0.5, maximize=True), _PARAMS,
                      _MOMENTUM_GRADS[:3], real, device))
    add("complex", ("complex_mode",), "a complex dtype",
        cplx is not None,
        lambda: _case(base, _COMPLEX_PARAMS, _COMPLEX_GRADS, cplx, device))
    return out, skipped


def flag_probes(caps: Capabilities) -> dict[str, Probe]:
    """One probe per declared flag (SPEC §6), on the denominator probe's values."""
    real = _dtype(caps, _REAL_DTYPES)
    if real is None:
        return {}
    base = _base(caps)
    settings = {"centered": {"centered": True}, "bias_correction": {"bias_correction": True},
                "maximize": {"maximize": True}, "nesterov": {"nesterov": True, "momentum": 0.9}}
    out = {}
    for flag in FLAGS:
        needs = {flag, "momentum"} if flag == "nesterov" else {flag}
        if needs <= caps.features:
            out[flag] = Probe(flag, f"{flag}=True", _case(base.replace(**settings[flag]),
                                                           _PARAMS, _GRADS, real,
                                                           caps.devices[0]))
    return out


# ---------------------------------------------------------------------------------------------
# Judging under every combination of axis values
# ---------------------------------------------------------------------------------------------
Combo = tuple[Any, ...]  # one value per axis, in AXES order


def _hp(case: Case, combo: Combo) -> HParams:
    return case.hp.replace(**dict(zip(AXES, combo)))


def _short(probe: str, v: Violation) -> str:
    where = [f"step {v.step}"] if v.step is not None else []
    if v.field is not None:
        where.append(v.field + ("" if v.index is None else str(list(v.index))))
    text = f"{probe}: {v.rule} at {', '.join(where)}" if where else f"{probe}: {v.rule}"
    if v.expected is not None and v.observed is not None:
        text += f", expected {v.expected:.6g}, observed {v.observed:.6g}"
    else:
        text += f", {v.message}"
    return text


class _Judge:
    """Judgements of the probes' trajectories, and the oracle's own results, cached per
    (probe, combination)."""

    def __init__(self, runs: dict[str, tuple[Probe, Trajectory]], with_state: bool) -> None:
        self.runs = runs
        self.with_state = with_state
        self._judged: dict[tuple[str, Combo], Violation | None] = {}
        self._oracle: dict[tuple[str, Combo], list[bytes]] = {}

    def violation(self, name: str, combo: Combo) -> Violation | None:
        key = (name, combo)
        if key not in self._judged:
            probe, traj = self.runs[name]
            j = judge(probe.case.replace(hp=_hp(probe.case, combo)), traj)
            self._judged[key] = None if j.ok else j.violations[0]
        return self._judged[key]

    def failures(self, combo: Combo, names: Iterable[str]) -> list[str]:
        out = []
        for n in names:
            v = self.violation(n, combo)
            if v is not None:
                out.append(_short(n, v))
        return out

    def oracle(self, name: str, combo: Combo) -> list[bytes]:
        """What the backend reports of the probe (parameters, and state with state read-out),
        as the oracle computes it under ``combo``."""
        key = (name, combo)
        if key not in self._oracle:
            case = self.runs[name][0].case
            ps, ss = run(case.params, case.grads, _hp(case, combo), lrs=case.lrs)
            out = [a.tobytes() for step in ps for a in step]
            if self.with_state:
                out += [np.asarray(x).tobytes() for step in ss for st in step
                        for x in (st.square_avg, st.grad_avg, st.momentum_buffer)
                        if x is not None]
            self._oracle[key] = out
        return self._oracle[key]

    def relevant(self, name: str, axis: str, combos: Iterable[Combo]) -> bool:
        """Does the probe's oracle result depend on ``axis``, the other axes as in ``combos``?"""
        i = AXES.index(axis)
        seen: dict[Combo, list[bytes]] = {}
        for combo in combos:
            out = self.oracle(name, combo)
            if seen.setdefault(combo[:i] + combo[i + 1:], out) != out:
                return True
        return False


def _estimates(runs: dict[str, tuple[Probe, Trajectory]]) -> set[float]:
    """Initial square_avg values that explain the first step of the denominator probe exactly:
    from the state read out when there is one, else from the parameters under either eps
    placement (candidates for an implementation whose v₀ is no profile's)."""
    if "denominator" not in runs:
        return set()
    probe, traj = runs["denominator"]
    hp, g = probe.case.hp, np.asarray(probe.case.grads[0][0], np.float64)
    i = int(np.argmax(np.abs(g)))
    a, g2 = float(hp.alpha), float(g[i]) ** 2
    if a == 0:
        return set()
    if traj.states is not None:
        ws = [float(np.real(np.asarray(traj.states[0][0].square_avg, np.float64)[i]))]
    else:
        step = float(probe.case.params[0][i]) - float(np.asarray(traj.params[0][0])[i])
        if step == 0:
            return set()
        d = float(hp.lr) * float(g[i]) / step
        ws = [d * d - float(hp.eps), (d - float(hp.eps)) ** 2]
    out = set()
    for w in ws:
        v0 = (w - (1 - a) * g2) / a
        if math.isfinite(v0):
            out.add(float(f"{max(v0, 0.0):.12g}"))
    return out


def _choose(fitting: list[Combo], declared: str) -> tuple[str, Combo, list[str]]:
    """The profile needing the fewest overrides to reach a fitting combination (the declared
    profile first on a tie), that combination, and the other profiles as close."""
    def overrides(p: str, combo: Combo) -> int:
        hp = HParams.from_profile(p)
        return sum(getattr(hp, a) != v for a, v in zip(AXES, combo))

    best = {p: min(fitting, key=lambda c, p=p: overrides(p, c)) for p in PROFILES}
    order = sorted(PROFILES, key=lambda p: (overrides(p, best[p]), p != declared,
                                            PROFILES.index(p)))
    top = order[0]
    n = overrides(top, best[top])
    return top, best[top], [p for p in order[1:] if overrides(p, best[p]) == n]


def _run_probes(backend: Backend, caps: Capabilities, todo: Iterable[Probe],
                notes: dict[str, str]) -> dict[str, tuple[Probe, Trajectory]]:
    runs = {}
    for probe in todo:
        try:
            runs[probe.name] = (probe, call_backend(backend, caps, probe.case))
        except Exception as exc:  # the backend's own failure: that probe says nothing
            notes[probe.name] = f"not run: {type(exc).__name__}: {exc}"
        else:
            notes[probe.name] = probe.purpose
    return runs


def identify(backend: Backend, caps: Capabilities) -> Identification:
    """The convention fingerprint of ``backend`` (see the module docstring)."""
    if not caps.devices:
        reasons = "; ".join(f"{d}: {r}" for d, r in caps.unavailable.items())
        raise ValueError(f"{backend.name}: no usable device on this machine ({reasons})")
    axis_probes, skipped = probes(caps)
    notes: dict[str, str] = {}
    runs = _run_probes(backend, caps, axis_probes, notes)
    notes.update({n: text for n, (_, text) in skipped.items()})
    with_state = caps.supports("state_readout")
    judged = _Judge(runs, with_state)
    values = {a: _candidates(a) for a in AXES}
    combos, good = _fitting_probes(judged, values)
    if len(good) < len(runs):  # an initial square_avg no profile uses?
        extra = _estimates(runs) - set(values["initial_square_avg"])
        if extra:
            values["initial_square_avg"] += tuple(sorted(extra))
            combos, good = _fitting_probes(judged, values)
    # A probe that no combination fits breaks a rule no convention explains: it is reported,
    # and the axes are decided by the others.
    bad = [n for n in runs if n not in good]
    fitting = [c for c in combos if not judged.failures(c, good)]
    declared = caps.profile
    if fitting:
        profile, combo, equal = _choose(fitting, declared)
    else:
        fewest = min(len(judged.failures(c, good)) for c in combos)
        nearest = [c for c in combos if len(judged.failures(c, good)) == fewest]
        profile, combo, equal = _choose(nearest, declared)
    broken = judged.failures(combo, runs)
    axes = [_axis_finding(a, values[a], combo, fitting, judged, good, bad, skipped)
            for a in AXES]
    features = {}
    flag_runs = _run_probes(backend, caps, flag_probes(caps).values(), notes)
    flag_judge = _Judge(flag_runs, with_state)
    for flag in FLAGS:
        if flag not in flag_runs:
            features[flag] = notes.get(flag, "not probed: undeclared" if flag not in
                                       caps.features else "not probed: needs momentum")
            continue
        v = flag_judge.violation(flag, combo)
        features[flag] = "fits" if v is None else f"breaks {_short(flag, v)}"
        if v is not None:
            broken.append(_short(flag, v))
    fits = bool(fitting) and not broken
    prof = HParams.from_profile(profile)
    overrides = {a.axis: a.value for a in axes
                 if a.testable and a.value != getattr(prof, a.axis)}
    return Identification(
        backend=backend.name,
        declared={"profile": caps.profile, "conventions": dict(caps.conventions)},
        profile=profile, overrides=overrides, fits=fits, axes=axes, features=features,
        probes=notes, broken=broken, equally_close=equal)


def _fitting_probes(judged: _Judge, values: dict[str, tuple[Any, ...]]
                    ) -> tuple[list[Combo], list[str]]:
    """Every combination of the axes' values, and the probes that at least one of them fits."""
    combos = list(itertools.product(*(values[a] for a in AXES)))
    return combos, [n for n in judged.runs
                    if any(judged.violation(n, c) is None for c in combos)]


def _axis_finding(axis: str, candidates: tuple[Any, ...], combo: Combo, fitting: list[Combo],
                  judged: _Judge, good: list[str], bad: list[str],
                  skipped: dict[str, tuple[tuple[str, ...], str]]) -> AxisFinding:
    i = AXES.index(axis)
    combos = [c[:i] + (v,) + c[i + 1:] for c in fitting or [combo] for v in candidates]
    relevant = [n for n in good if judged.relevant(n, axis, combos)]
    fit_values = tuple(v for v in candidates if any(c[i] == v for c in fitting))
    if not relevant:
        meant = [p for p in good + bad if axis in judged.runs[p][0].axes]
        why = [f"{n} {text}" for n, (axes, text) in skipped.items() if axis in axes]
        why += [f"{n} fits no setting of the axes (it breaks a rule no convention explains)"
                for n in meant if n in bad]
        why += [f"it has no effect in {n} under the other axes found" for n in meant
                if n in good]
        return AxisFinding(axis, None, fit_values, "; ".join(why) or "no probe depends on it",
                           {})
    evidence = {}
    for v in candidates:
        fails = judged.failures(combo[:i] + (v,) + combo[i + 1:], relevant)
        evidence[repr(v)] = fails
    if len(fit_values) > 1:
        return AxisFinding(axis, None, fit_values, "the probes cannot tell "
                           f"{', '.join(map(repr, fit_values))} apart under the other axes "
                           f"found ({', '.join(relevant)})", evidence)
    if not fit_values:
        return AxisFinding(axis, combo[i], fit_values, "no value fits every probe; the closest "
                           f"reading, from {', '.join(relevant)}", evidence)
    return AxisFinding(axis, combo[i], fit_values, f"decided by {', '.join(relevant)}",
                       evidence)


class IdentifyUsageError(Exception):
    """A backend name that gives no backend, or one with nothing to run here (exit 2)."""


def command(name: str, as_json: bool) -> int:
    """``rmsprop-conformance identify NAME``: 0 when a profile with overrides fits, 1 if not."""
    try:
        backend = registry.load(name, identify=False)
        caps = registry.capabilities_of(backend)
        found = identify(backend, caps)
    except (registry.BackendLoadError, ValueError) as exc:
        raise IdentifyUsageError(str(exc)) from None
    print(json.dumps(found.to_dict(), indent=1) if as_json else found.text())
    return 0 if found.fits else 1
