"""``translate``: hyperparameters between profiles, claims checked against the oracle.

The target's arguments are mapped back to spec fields here by hand (not through the module's
table), the oracle is run under both profiles, and the module's exactness claims and figures are
recomputed independently.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from conformance import cli, translate
from spec.rmsprop import PROFILES, HParams, run

# Each framework's arguments as spec fields, written out independently of translate.FRAMEWORKS.
BY_HAND = {
    "torch": {"lr": "lr", "alpha": "alpha", "eps": "eps", "weight_decay": "weight_decay",
              "momentum": "momentum", "centered": "centered", "maximize": "maximize"},
    "optax": {"learning_rate": "lr", "decay": "alpha", "eps": "eps",
              "initial_scale": "initial_square_avg", "eps_in_sqrt": "eps_in_sqrt",
              "centered": "centered", "momentum": "momentum", "nesterov": "nesterov",
              "bias_correction": "bias_correction", "add_decayed_weights": "weight_decay"},
    "keras": {"learning_rate": "lr", "rho": "alpha", "momentum": "momentum", "epsilon": "eps",
              "centered": "centered", "weight_decay": "weight_decay"},
    "tf1": {"learning_rate": "lr", "decay": "alpha", "momentum": "momentum",
            "epsilon": "eps", "centered": "centered"},
}


def _hp(profile: str, arguments: dict, **extra) -> HParams:
    return HParams.from_profile(profile, **{BY_HAND[profile][k]: v
                                            for k, v in arguments.items()}, **extra)


def _trajectories(hp: HParams, seed: int, schedule: bool = False, cplx: bool = False):
    """Parameters after each of 40 steps of 3 runs, gradients of scales 1e-5..1."""
    rng = np.random.default_rng(seed)
    out = []
    scales = 10.0 ** np.linspace(-5, 0, 8)
    for _ in range(3):
        theta = rng.standard_normal(8) + (1j * rng.standard_normal(8) if cplx else 0)
        grads = [(scales * (rng.standard_normal(8) + 0.3)
                  + (0.1j * scales * rng.standard_normal(8) if cplx else 0),)
                 for _ in range(40)]
        lrs = [hp.lr * (1 - k / 40) for k in range(40)] if schedule else None
        ps, _ = run((theta,), grads, hp, lrs=lrs)
        out.append(np.array([p[0] for p in ps]))
    return out


def _max_rel(a, b) -> float:
    return max(float(np.max(np.max(np.abs(y - x), axis=1) / np.max(np.abs(x), axis=1)))
               for x, y in zip(a, b))


def test_every_profile_has_a_framework() -> None:
    assert set(translate.FRAMEWORKS) == set(PROFILES)


@pytest.mark.parametrize(("module", "attr", "profile"), [
    ("torch.optim", "RMSprop", "torch"), ("optax", "rmsprop", "optax"),
    ("keras.optimizers", "RMSprop", "keras")])
def test_argument_names_are_the_frameworks(module: str, attr: str, profile: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "numpy")  # Keras 3 defaults to TensorFlow
    obj = getattr(pytest.importorskip(module), attr)
    accepted = set(inspect.signature(obj).parameters)
    assert set(translate.FRAMEWORKS[profile].arguments) <= accepted


def test_torch_to_optax_momentum_exact_at_constant_lr_only() -> None:
    given = {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.9}
    t = translate.translate("torch", "optax", given)
    assert t.arguments["eps_in_sqrt"] is False and t.arguments["decay"] == 0.99
    assert t.arguments["learning_rate"] == 0.01 and t.arguments["momentum"] == 0.9
    claims = {s.name: s.exact for s in t.scenarios}
    assert claims == {"constant learning rate": True,
                      "learning-rate schedule (cosine to 0)": False,
                      "complex parameters": False}
    src, dst = _hp("torch", given), _hp("optax", t.arguments)
    # Constant lr: equal trajectories to float64 rounding (R9), on trajectories of our own.
    assert _max_rel(_trajectories(src, 1), _trajectories(dst, 1)) < 1e-12
    # The claimed differences are real: under a schedule, and for complex parameters.
    assert _max_rel(_trajectories(src, 1, schedule=True),
                    _trajectories(dst, 1, schedule=True)) > 1e-3
    assert _max_rel(_trajectories(src, 1, cplx=True), _trajectories(dst, 1, cplx=True)) > 1e-3


def test_tf1_to_optax_exact_everywhere() -> None:
    given = {"learning_rate": 0.001, "decay": 0.9, "momentum": 0.5, "epsilon": 1e-10,
             "centered": True}
    t = translate.translate("tf1", "optax", given)
    assert t.exact and t.arguments["initial_scale"] == 1.0
    src, dst = _hp("tf1", given), _hp("optax", t.arguments)
    for schedule in (False, True):
        a, b = _trajectories(src, 2, schedule), _trajectories(dst, 2, schedule)
        assert _max_rel(a, b) < 1e-12


def test_weight_decay_and_maximize_through_composition() -> None:
    given = {"lr": 0.01, "weight_decay": 0.1, "maximize": True}
    t = translate.translate("torch", "optax", given)
    assert "add_decayed_weights(0.1)" in t.composed["add_decayed_weights"]
    assert "negate the gradient" in t.composed["maximize"]
    assert all(s.exact for s in t.scenarios if s.name != "complex parameters")
    dst = _hp("optax", t.arguments, weight_decay=0.1, maximize=True)
    assert _max_rel(_trajectories(_hp("torch", given), 3), _trajectories(dst, 3)) < 1e-12


def test_claimed_difference_recomputed() -> None:
    """torch -> keras: eps moves inside the root (R7); the figure and the nearest-eps gain are
    recomputed on the module's generated trajectories with a metric written here."""
    given = {"lr": 0.01, "alpha": 0.99, "eps": 1e-8, "momentum": 0.9}
    t = translate.translate("torch", "keras", given)
    assert not t.exact
    src, dst = _hp("torch", given), _hp("keras", t.arguments)
    assert dst.eps_in_sqrt and not src.eps_in_sqrt
    for sc, result in zip(translate.scenarios(False), t.scenarios):
        assert sc.name == result.name
        lrs = (lambda hp: [hp.lr * 0.5 * (1 + np.cos(np.pi * k / (translate.STEPS - 1)))
                           for k in range(translate.STEPS)]) if sc.schedule else None
        worst = 0.0
        for start, grads in zip(sc.starts, sc.grads):
            pa, _ = run(start, grads, src, lrs=None if lrs is None else lrs(src))
            pb, _ = run(start, grads, dst, lrs=None if lrs is None else lrs(dst))
            for x, y in zip(pa, pb):
                worst = max(worst, np.max(np.abs(y[0] - x[0])) / np.max(np.abs(x[0])))
        assert result.max_relative_difference == pytest.approx(worst, rel=1e-9)
        assert not result.exact and worst > 1e-3
    near = t.nearest["epsilon"]
    assert near["copied"] == 1e-8 and near["nearest"] == t.arguments["epsilon"]
    copied = _hp("keras", {**t.arguments, "epsilon": 1e-8})
    sc = translate.scenarios(False)[0]
    assert translate.max_relative_difference(src, copied, sc) == pytest.approx(
        near["copied_difference"], rel=1e-12)
    assert near["nearest_difference"] < near["copied_difference"]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--from", "jax", "--to", "optax"], "unknown profile 'jax'; allowed: torch, optax"),
    (["--from", "torch", "--to", "optax", "learning_rate=1"],
     "'learning_rate' is not a hyperparameter of torch"),
    (["--from", "torch", "--to", "optax", "lr=abc"], "lr='abc' is not a number"),
    (["--from", "torch", "--to", "optax", "centered=2"], "centered='2' is not a boolean"),
    (["--from", "torch", "--to", "optax", "lr=-1"], "invalid lr: -1.0; allowed"),
    (["--from", "torch", "--to", "optax", "lr"], "'lr': expected NAME=VALUE"),
])
def test_bad_input(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["translate", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["translate", "--from", "tf1", "--to", "optax", "learning_rate=0.001",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["exact"] is True and doc["call"] == "optax.rmsprop"
    assert doc["arguments"]["initial_scale"] == 1.0 and doc["arguments"]["eps"] == 1e-10
