"""Hyperparameters from one profile's framework to another's (SPEC §3–§4).

``translate("torch", "optax", {"lr": 0.01, "momentum": 0.9})`` gives ``optax.rmsprop``'s
arguments for the same training: every spec field the target can express is copied, under the
target's own argument names; the convention axes the target cannot set stay at its profile's
values. Whether the result is exact is decided from the fields that still differ and the
equivalences SPEC R9 and R11 state (lr inside or outside the momentum buffer coincide at a constant
learning rate; complex_mode only matters for complex parameters); the claim is shown beside the
largest relative difference in the parameters over generated trajectories, computed with the
oracle (:func:`spec.rmsprop.run`), never guessed. Where no exact equivalent exists, the numbers
that can compensate (eps when eps sits on the other side of the root, weight_decay when the decay
is coupled on one side and decoupled on the other) are searched for the nearest setting on those
trajectories.

Relative difference of one step: max |θ_to − θ_from| / max |θ_from| over the parameter's
elements; the figure is the largest over every step of every generated trajectory.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spec.rmsprop import PROFILES, HParams, run


@dataclasses.dataclass(frozen=True)
class Framework:
    """How a profile's framework spells the spec's fields."""

    call: str
    arguments: Mapping[str, str]  # the constructor's argument -> spec field
    # spec fields realised outside the constructor: name shown -> (spec field, how)
    composed: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    complex_support: bool = False

    def fields(self) -> dict[str, str]:
        """Every name the framework offers -> spec field."""
        return {**self.arguments, **{n: f for n, (f, _) in self.composed.items()}}


_NEGATE = ("maximize", "no argument: negate the gradient before handing it in")
FRAMEWORKS: dict[str, Framework] = {
    "torch": Framework("torch.optim.RMSprop", {
        "lr": "lr", "alpha": "alpha", "eps": "eps", "weight_decay": "weight_decay",
        "momentum": "momentum", "centered": "centered", "maximize": "maximize"},
        complex_support=True),
    "optax": Framework("optax.rmsprop", {
        "learning_rate": "lr", "decay": "alpha", "eps": "eps",
        "initial_scale": "initial_square_avg", "eps_in_sqrt": "eps_in_sqrt",
        "centered": "centered", "momentum": "momentum", "nesterov": "nesterov",
        "bias_correction": "bias_correction"}, {
        "add_decayed_weights": ("weight_decay", "optax.chain(optax.add_decayed_weights(VALUE), "
                                                "optax.rmsprop(...))"),
        "maximize": _NEGATE}, complex_support=True),
    "keras": Framework("keras.optimizers.RMSprop", {
        "learning_rate": "lr", "rho": "alpha", "momentum": "momentum", "epsilon": "eps",
        "centered": "centered", "weight_decay": "weight_decay"}, {"maximize": _NEGATE}),
    "tf1": Framework("tf.compat.v1.train.RMSPropOptimizer", {
        "learning_rate": "lr", "decay": "alpha", "momentum": "momentum", "epsilon": "eps",
        "centered": "centered"}, {
        "weight_decay": ("weight_decay", "no argument: add VALUE * θ to the gradient before "
                                         "apply_gradients"),
        "maximize": _NEGATE}),
    "seed": Framework("the seed's loop (reference/seed.md)", {
        "lr": "lr", "alpha": "alpha", "eps": "eps"}),
}

# Why a differing field changes the training (SPEC rule).
_RULES = {"eps_in_sqrt": "R7", "initial_square_avg": "R8", "lr_in_momentum": "R9",
          "weight_decay_mode": "R10", "complex_mode": "R11", "maximize_order": "R12",
          "nesterov": "R21", "bias_correction": "R19", "centered": "R18", "maximize": "R16",
          "weight_decay": "R16", "momentum": "R21", "lr": "R21", "alpha": "R17", "eps": "R20"}


class TranslateError(ValueError):
    """Bad input: an unknown profile, name or value (one line, exit 2)."""


# ---------------------------------------------------------------------------------------------
# Generated trajectories
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    grads: tuple[tuple[tuple[np.ndarray, ...], ...], ...]  # per run, per step
    starts: tuple[tuple[np.ndarray, ...], ...]  # per run
    schedule: bool


RUNS, STEPS, SIZE, SEED = 4, 60, 16, 0
# Per-element gradient scales from far below to far above a typical eps's root.
_SCALES = 10.0 ** np.linspace(-6, 1, SIZE)


def scenarios(complex_too: bool) -> list[Scenario]:
    """Deterministic trajectories: RUNS runs of STEPS steps of one parameter of SIZE elements,
    gradients of non-zero mean at scales 1e-6..10; with a learning-rate schedule too."""
    rng = np.random.default_rng(SEED)
    real_starts = tuple((rng.standard_normal(SIZE),) for _ in range(RUNS))
    real_grads = tuple(tuple((_SCALES * (rng.standard_normal(SIZE) + 0.5),)
                             for _ in range(STEPS)) for _ in range(RUNS))
    out = [Scenario("constant learning rate", real_grads, real_starts, False),
           Scenario("learning-rate schedule (cosine to 0)", real_grads, real_starts, True)]
    if complex_too:
        starts = tuple((rng.standard_normal(SIZE) + 1j * rng.standard_normal(SIZE),)
                       for _ in range(RUNS))
        grads = tuple(tuple((_SCALES * (rng.standard_normal(SIZE) + 0.5)
                             + 0.01j * _SCALES * rng.standard_normal(SIZE),)
                            for _ in range(STEPS)) for _ in range(RUNS))
        out.append(Scenario("complex parameters", grads, starts, False))
    return out


def schedule(lr: float) -> list[float]:
    return [lr * 0.5 * (1 + math.cos(math.pi * k / (STEPS - 1))) for k in range(STEPS)]


def trajectories(hp: HParams, scenario: Scenario) -> list[list[np.ndarray]]:
    """The oracle's parameters after every step of every run of the scenario."""
    out = []
    for start, grads in zip(scenario.starts, scenario.grads):
        ps, _ = run(start, grads, hp, lrs=schedule(float(hp.lr)) if scenario.schedule else None)
        out.append([p[0] for p in ps])
    return out


def relative_difference(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> float:
    """The largest relative difference in the parameters of ``b`` from ``a`` (see the module
    docstring)."""
    worst = 0.0
    for run_a, run_b in zip(a, b):
        for x, y in zip(run_a, run_b):
            scale, diff = float(np.max(np.abs(x))), float(np.max(np.abs(y - x)))
            worst = max(worst, diff / scale if scale > 0 else math.inf if diff else 0.0)
    return worst


def max_relative_difference(a: HParams, b: HParams, scenario: Scenario) -> float:
    return relative_difference(trajectories(a, scenario), trajectories(b, scenario))


# ---------------------------------------------------------------------------------------------
# Translation
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ScenarioResult:
    name: str
    exact: bool
    why: str  # the differing fields that matter here, or why it is exact
    max_relative_difference: float


@dataclasses.dataclass
class Translation:
    source: str
    target: str
    given: dict[str, Any]  # as the user gave them (source names)
    arguments: dict[str, Any]  # the target constructor's arguments
    composed: dict[str, str]  # realised outside the constructor: name -> how
    differences: list[str]  # spec fields that still differ, with their rule
    nearest: dict[str, dict[str, float]]  # target argument -> copied value, nearest value
    scenarios: list[ScenarioResult]

    @property
    def exact(self) -> bool:
        return all(s.exact for s in self.scenarios)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "given": self.given,
                "call": FRAMEWORKS[self.target].call, "arguments": self.arguments,
                "composed": self.composed, "exact": self.exact,
                "differences": self.differences, "nearest": self.nearest,
                "scenarios": [dataclasses.asdict(s) for s in self.scenarios],
                "trajectories": f"{RUNS} runs of {STEPS} steps, {SIZE} elements, gradient scales "
                                f"1e-6..10, seed {SEED}"}

    def text(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        lines = [f"{self.source} -> {self.target}: {FRAMEWORKS[self.target].call}({args})"]
        lines += [f"  {name}: {how}" for name, how in self.composed.items()]
        for arg, v in self.nearest.items():
            lines.append(f"  {arg}: no exact equivalent; nearest {v['nearest']!r} (copied value "
                         f"{v['copied']!r} gives {v['copied_difference']:.3g})")
        if self.differences:
            lines.append(f"  still differs: {', '.join(self.differences)}")
        lines.append(f"  largest relative difference in the parameters ({RUNS} generated runs of "
                     f"{STEPS} steps, oracle in float64):")
        for s in self.scenarios:
            claim = "exact" if s.exact else "not exact"
            lines.append(f"    {s.name}: {claim} ({s.why}): {s.max_relative_difference:.3g}")
        return "\n".join(lines)


def parse(source: str, target: str, items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings in ``source``'s names -> values (bad input: TranslateError)."""
    for p in (source, target):
        if p not in FRAMEWORKS:
            raise TranslateError(f"unknown profile {p!r}; allowed: {', '.join(PROFILES)}")
    names = FRAMEWORKS[source].fields()
    defaults = HParams.from_profile(source)
    out: dict[str, Any] = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not eq:
            raise TranslateError(f"{item!r}: expected NAME=VALUE")
        if name not in names:
            raise TranslateError(f"{name!r} is not a hyperparameter of {source} "
                                 f"({FRAMEWORKS[source].call}); allowed: {', '.join(names)}")
        if isinstance(getattr(defaults, names[name]), bool):
            if text.lower() not in ("true", "false"):
                raise TranslateError(f"{name}={text!r} is not a boolean; allowed: true, false")
            out[name] = text.lower() == "true"
            continue
        try:
            out[name] = float(text)
        except ValueError:
            raise TranslateError(f"{name}={text!r} is not a number") from None
    return out


def _source_hparams(source: str, given: Mapping[str, Any]) -> HParams:
    names = FRAMEWORKS[source].fields()
    try:
        return HParams.from_profile(source, **{names[k]: v for k, v in given.items()})
    except ValueError as exc:
        raise TranslateError(str(exc)) from None


def _matters(field: str, hp: HParams, scenario: Scenario) -> bool:
    """Does a difference in ``field`` change this scenario's training (SPEC §3)?"""
    if field == "lr_in_momentum":
        return hp.momentum > 0 and scenario.schedule  # R9: equal at a constant lr
    if field == "complex_mode":
        return scenario.name == "complex parameters"  # R11: equal for real parameters
    if field == "weight_decay_mode":
        return hp.weight_decay > 0
    if field == "maximize_order":
        return hp.maximize and hp.weight_decay > 0 and hp.weight_decay_mode == "coupled"
    if field == "nesterov":
        return hp.momentum > 0
    return True


def _differing(a: HParams, b: HParams) -> list[str]:
    return [f.name for f in dataclasses.fields(HParams)
            if f.name != "profile" and getattr(a, f.name) != getattr(b, f.name)]


# Numbers of the target that can compensate a differing axis, searched on a log grid around
# the copied value (decades below and above).
_COMPENSATE = {"eps_in_sqrt": ("eps", -9.0, 9.0), "weight_decay_mode": ("weight_decay", -3.0, 3.0)}


def _nearest(hp_from: HParams, hp_to: HParams, field: str, lo: float, hi: float,
             scenario: Scenario) -> tuple[float, float]:
    """The value of ``field`` minimising the difference on ``scenario`` (a grid of half
    decades, then twentieths around the best; 3 significant digits), and that difference."""
    reference = trajectories(hp_from, scenario)
    copied = float(getattr(hp_to, field))

    def cost(x: float) -> float:
        return relative_difference(reference, trajectories(hp_to.replace(**{field: x}),
                                                           scenario))

    if copied == 0:
        return copied, cost(copied)
    best = min((copied * 10.0 ** e for e in np.arange(lo, hi + 1e-9, 0.5)), key=cost)
    best = min((best * 10.0 ** e for e in np.arange(-0.5, 0.5 + 1e-9, 0.05)), key=cost)
    value = float(f"{best:.3g}")
    return value, cost(value)


def translate(source: str, target: str, given: Mapping[str, Any]) -> Translation:
    """``given`` (``source``'s names) as ``target``'s arguments, with the claims and figures."""
    hp_from = _source_hparams(source, given)
    fw = FRAMEWORKS[target]
    expressible = set(fw.fields().values())
    hp_to = HParams.from_profile(target, **{
        f.name: getattr(hp_from, f.name) for f in dataclasses.fields(HParams)
        if f.name in expressible})
    runs = scenarios(fw.complex_support and FRAMEWORKS[source].complex_support)
    main = runs[0]
    nearest: dict[str, dict[str, float]] = {}
    for axis, (field, lo, hi) in _COMPENSATE.items():
        if (field in expressible and axis in _differing(hp_from, hp_to)
                and _matters(axis, hp_from, main)):
            copied = float(getattr(hp_to, field))
            before = max_relative_difference(hp_from, hp_to, main)
            value, after = _nearest(hp_from, hp_to, field, lo, hi, main)
            if after < before:
                hp_to = hp_to.replace(**{field: value})
                name = next(n for n, f in fw.fields().items() if f == field)
                nearest[name] = {"copied": copied, "nearest": value,
                                 "copied_difference": before, "nearest_difference": after}
    differing = [f for f in _differing(hp_from, hp_to)
                 if any(_matters(f, hp_from, sc) for sc in runs)]
    results = []
    for sc in runs:
        matter = [f for f in differing if _matters(f, hp_from, sc)]
        why = ("differs: " + ", ".join(f"{f} ({_RULES.get(f, '')})" for f in matter)
               if matter else "no difference that matters here")
        results.append(ScenarioResult(sc.name, not matter, why,
                                      max_relative_difference(hp_from, hp_to, sc)))
    arguments = {name: _plain(getattr(hp_to, f)) for name, f in fw.arguments.items()}
    composed = {name: how.replace("VALUE", repr(_plain(getattr(hp_to, f))))
                for name, (f, how) in fw.composed.items() if getattr(hp_to, f)}
    return Translation(source, target, dict(given), arguments, composed,
                       [f"{f}: {getattr(hp_from, f)!r} -> {getattr(hp_to, f)!r} "
                        f"({_RULES.get(f, '')})" for f in differing],
                       nearest, results)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, str)) else float(value)


def command(source: str, target: str, items: Sequence[str], as_json: bool) -> int:
    """``rmsprop-conformance translate`` (bad input: TranslateError)."""
    result = translate(source, target, parse(source, target, items))
    print(json.dumps(result.to_dict(), indent=1) if as_json else result.text())
    return 0
