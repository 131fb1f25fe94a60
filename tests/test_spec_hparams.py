"""Hyperparameter validity (SPEC R1–R6): invalid values rejected with a clear ValueError naming
the field and the value; valid edge values accepted and behaving as the update rules say."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from spec.rmsprop import PROFILES, HParams, init_state, run, step

NUMERIC = ("lr", "alpha", "eps", "weight_decay", "momentum")


def assert_names(excinfo: pytest.ExceptionInfo, field: str, value: object) -> None:
    msg = str(excinfo.value)
    assert re.search(rf"\b{re.escape(field)}\b", msg), f"{field!r} not named in: {msg}"
    assert repr(value) in msg or str(value) in msg, f"{value!r} not named in: {msg}"


INVALID = [(name, v) for name in NUMERIC for v in (-1.0, math.nan, math.inf, -math.inf)]
INVALID += [("alpha", 1.5), ("momentum", 1.0), ("momentum", 2.0), ("initial_square_avg", -1.0),
            ("lr", -1e-300), ("eps", -1e-12)]


@pytest.mark.parametrize("field, value", INVALID)
def test_invalid_numeric_value_is_rejected(field: str, value: float) -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams(**{field: value})
    assert_names(excinfo, field, value)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("field, value", INVALID)
def test_invalid_override_is_rejected_by_from_profile(profile: str, field: str,
                                                      value: float) -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams.from_profile(profile, **{field: value})
    assert_names(excinfo, field, value)


def test_from_profile_negative_lr_names_lr() -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams.from_profile("torch", lr=-1.0)
    assert_names(excinfo, "lr", -1.0)


@pytest.mark.parametrize("field, value", [
    ("weight_decay_mode", "L2"), ("complex_mode", "pairs"), ("maximize_order", "first"),
    ("centered", "yes"), ("maximize", None), ("nesterov", "no"), ("bias_correction", "true"),
    ("eps_in_sqrt", "inside"), ("lr_in_momentum", 0.5),
])
def test_invalid_axis_value_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams.from_profile("torch", **{field: value})
    assert_names(excinfo, field, value)


@pytest.mark.parametrize("field", ["lr", "alpha", "eps"])
def test_non_number_is_rejected(field: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams(**{field: "0.1"})
    assert_names(excinfo, field, "0.1")


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams.from_profile("pytorch")
    assert_names(excinfo, "profile", "pytorch")


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams.from_profile("torch", learning_rate=0.1)
    assert "learning_rate" in str(excinfo.value)


def test_bias_correction_with_alpha_one_is_rejected() -> None:
    with pytest.raises(ValueError) as excinfo:
        HParams.from_profile("optax", alpha=1.0, bias_correction=True)
    assert_names(excinfo, "alpha", 1.0)
    HParams.from_profile("optax", alpha=1.0)  # alpha = 1 alone is a valid edge value


@pytest.mark.parametrize("lr", [-1.0, math.nan, math.inf])
def test_invalid_per_step_lr_is_rejected(lr: float) -> None:
    hp = HParams.from_profile("torch")
    params = (np.ones(3),)
    with pytest.raises(ValueError) as excinfo:
        step(params, (np.ones(3),), init_state(params, hp), hp, lr=lr)
    assert_names(excinfo, "lr", lr)
    with pytest.raises(ValueError) as excinfo:
        run(params, [(np.ones(3),)] * 2, hp, lrs=[0.1, lr])
    assert_names(excinfo, "lr", lr)


# --------------------------------------------------------------------------------------------------
# Valid edge values (R6): accepted, and they behave as the rules say.
# --------------------------------------------------------------------------------------------------
THETA = np.array([0.5, -2.0, 3.0])
GRADS = [(np.array([1.0, -0.5, 2.0]),), (np.array([-3.0, 0.25, 1.0]),),
         (np.array([0.5, 0.5, -1.0]),)]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("flags", [{}, {"momentum": 0.9, "centered": True, "nesterov": True},
                                   {"weight_decay": 0.1, "weight_decay_mode": "coupled"},
                                   {"weight_decay": 0.1, "weight_decay_mode": "decoupled"}])
def test_lr_zero_leaves_params_unchanged(profile: str, flags: dict) -> None:
    hp = HParams.from_profile(profile, lr=0.0, **flags)
    params, states = run((THETA,), GRADS, hp)
    for (p,) in params:
        np.testing.assert_array_equal(p, THETA)
    # ... while the averages still move (lr does not enter them).
    assert not np.array_equal(states[-1][0].square_avg, init_state((THETA,), hp)[0].square_avg)


@pytest.mark.parametrize("eps_in_sqrt", [False, True])
def test_eps_zero_with_positive_square_avg(eps_in_sqrt: bool) -> None:
    hp = HParams.from_profile("torch", eps=0.0, alpha=0.5, lr=0.1, eps_in_sqrt=eps_in_sqrt)
    g = GRADS[0][0]
    (p,), (s,) = step((THETA,), (g,), init_state((THETA,), hp), hp)
    v = 0.5 * g**2
    np.testing.assert_array_equal(s.square_avg, v)
    np.testing.assert_allclose(p, THETA - 0.1 * g / np.sqrt(v), rtol=1e-15)


@pytest.mark.parametrize("profile", PROFILES)
def test_momentum_zero_is_plain_rmsprop(profile: str) -> None:
    hp = HParams.from_profile(profile, momentum=0.0, alpha=0.5, lr=0.1, eps=0.0)
    (p,), (s,) = step((THETA,), (GRADS[0][0],), init_state((THETA,), hp), hp)
    assert s.momentum_buffer is None
    g = GRADS[0][0]
    v = hp.initial_square_avg * 0.5 + 0.5 * g**2
    np.testing.assert_allclose(p, THETA - 0.1 * g / np.sqrt(v), rtol=1e-15)


@pytest.mark.parametrize("profile", PROFILES)
def test_alpha_zero_uses_the_current_gradient_only(profile: str) -> None:
    hp = HParams.from_profile(profile, alpha=0.0, lr=0.1, eps=1e-3, eps_in_sqrt=False)
    params, states = run((THETA,), GRADS, hp)
    g = GRADS[-1][0]
    np.testing.assert_array_equal(states[-1][0].square_avg, g**2)
    np.testing.assert_allclose(params[-1][0], params[-2][0] - 0.1 * g / (np.abs(g) + 1e-3),
                               rtol=1e-15)


@pytest.mark.parametrize("profile", PROFILES)
def test_alpha_one_keeps_square_avg_at_its_initial_value(profile: str) -> None:
    hp = HParams.from_profile(profile, alpha=1.0, eps=0.5)
    initial = init_state((THETA,), hp)[0].square_avg
    _, states = run((THETA,), GRADS, hp)
    for (s,) in states:
        np.testing.assert_array_equal(s.square_avg, initial)
        assert np.all(s.square_avg == hp.initial_square_avg)


def test_weight_decay_zero_is_accepted_in_both_modes() -> None:
    for mode in ("coupled", "decoupled"):
        hp = HParams.from_profile("torch", weight_decay=0.0, weight_decay_mode=mode)
        plain = HParams.from_profile("torch")
        np.testing.assert_array_equal(run((THETA,), GRADS, hp)[0][-1][0],
                                      run((THETA,), GRADS, plain)[0][-1][0])
