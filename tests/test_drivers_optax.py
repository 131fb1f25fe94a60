"""The generic optax driver (implementations/drivers/optax_tx.py) and its registry spellings.

Driven transformations: ``optax.rmsprop`` (``optax:optax:rmsprop``, the code path the bundled
``optax*`` backends share) and small factories written here to pin down state matching, the
tracing fallback and every load error. Expected values come from the oracle
(``conformance.tolerance.judge``) or are written out by hand, never from the driver.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conformance import registry
from conformance.case import Case
from conformance.runner import run_property
from conformance.tolerance import judge
from implementations import jax_backends as jb
from implementations.drivers.config import DriverConfig
from implementations.drivers.optax_tx import OptaxTxBackend
from spec.rmsprop import HParams, ParamState
from tests._driving import driver_target, random_case
from tests.test_cli import assert_usage_error, run_cli

RMSPROP = "optax:optax:rmsprop"




# ---------------------------------------------------------------------------------------------
# Transformations written for these tests
# ---------------------------------------------------------------------------------------------
class Accumulator(NamedTuple):
    acc: object  # a name no synonym knows


def opaque_rmsprop(learning_rate, decay=0.9, eps=1e-8):
    """optax-profile RMSProp keeping its second moment under an unknown name."""
    def init(params):
        return Accumulator(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        acc = jax.tree.map(lambda a, g: decay * a + (1 - decay) * g * g, state.acc, grads)
        updates = jax.tree.map(lambda g, a: -learning_rate * g / jnp.sqrt(a + eps), grads, acc)
        return updates, Accumulator(acc)

    return optax.GradientTransformation(init, update)


def branchy_rmsprop(learning_rate, decay=0.9, eps=1e-8, momentum=0.0):
    """Decides its structure with a Python ``if`` on a float: cannot be traced."""
    if momentum > 0:
        return optax.rmsprop(learning_rate, decay=decay, eps=eps, momentum=momentum)
    return optax.rmsprop(learning_rate, decay=decay, eps=eps)


def needs_beta(learning_rate, beta):
    return optax.rmsprop(learning_rate, decay=beta)


def explodes(learning_rate=0.1):
    raise RuntimeError("boom at construction")


# ---------------------------------------------------------------------------------------------
# optax.rmsprop through the driver
# ---------------------------------------------------------------------------------------------
def test_signature_and_state_are_read_off_optax_rmsprop() -> None:
    backend = registry.load(RMSPROP)
    caps = backend.capabilities()
    assert backend.keywords == {"lr": "learning_rate", "alpha": "decay", "eps": "eps",
                                "momentum": "momentum", "centered": "centered",
                                "nesterov": "nesterov", "bias_correction": "bias_correction"}
    assert backend.axes == {"eps_in_sqrt": "eps_in_sqrt", "initial_square_avg": "initial_scale"}
    assert backend.state_fields == {"square_avg": "nu", "grad_avg": "mu",
                                    "momentum_buffer": "trace", "step": "count"}
    assert backend.negated == {"momentum_buffer"}  # optax's trace holds -lr*g/d
    assert caps.profile == "optax" and backend.package[0] == "optax"
    assert "weight_decay" not in caps.features and "maximize" not in caps.features
    assert {"state_readout", "state_load", "lr_schedule", "nesterov"} <= caps.features
    assert "profile 'optax' identified by 'identify'" in caps.description
    assert "unsupported (no keyword): weight_decay, maximize" in caps.description


def test_driver_over_optax_rmsprop_is_the_bundled_optax() -> None:
    driven, bundled = registry.load(RMSPROP), jb.Optax()
    hp = HParams.from_profile("optax", centered=True, momentum=0.9, nesterov=True)
    case = random_case(hp, lrs=(0.1, 0.02, 0.05))
    a, b = driven.run(case), bundled.run(case)
    assert judge(case, a).ok
    for pa, pb in zip(a.params, b.params):
        assert all(x.tobytes() == y.tobytes() for x, y in zip(pa, pb))


def test_axis_keywords_follow_the_case_unless_fixed() -> None:
    driven = registry.load(RMSPROP)
    for overrides in ({"eps_in_sqrt": False}, {"initial_square_avg": 1.0}):
        case = random_case(HParams.from_profile("optax", **overrides))
        assert judge(case, driven.run(case)).ok
    fixed = registry.load(f"{RMSPROP}?eps_in_sqrt=false")
    assert fixed.capabilities().conventions == {"eps_in_sqrt": False}
    assert fixed.make_optimizer({}) is not None
    with pytest.raises(ValueError, match=r"eps_in_sqrt=True \(fixed to False\)"):
        fixed.run(random_case(HParams.from_profile("optax")))
    with pytest.raises(ValueError, match=r"weight_decay=0.1 \(no keyword\)"):
        driven.run(random_case(HParams.from_profile("optax", weight_decay=0.1)))


def test_momentum_and_count_by_hand() -> None:
    """One step from a loaded state: v' = a*v + (1-a)*g^2, b' = mu*b + lr*g/sqrt(v'/(1-a^8) +
    eps) (bias correction at step 8), theta' = theta - b'; the loaded step 7 becomes 8."""
    backend = registry.load(RMSPROP)
    hp = HParams.from_profile("optax", lr=0.1, momentum=0.5, bias_correction=True, alpha=0.5)
    g, v, b = 1.0, 4.0, 0.3
    state = (ParamState(7, np.full(1, v), None, np.full(1, b)),)
    traj = backend.run(Case(hp=hp, params=(np.zeros(1),), grads=((np.full(1, g),),),
                            initial_state=state))
    v1 = 0.5 * v + 0.5 * g * g
    b1 = 0.5 * b + 0.1 * g / math.sqrt(v1 / (1 - 0.5**8) + hp.eps)
    st = traj.states[0][0]
    np.testing.assert_allclose(st.square_avg, v1, rtol=1e-15)
    np.testing.assert_allclose(st.momentum_buffer, b1, rtol=1e-14)
    np.testing.assert_allclose(traj.params[0][0], -b1, rtol=1e-14)
    assert st.step == 8
    with pytest.raises(ValueError, match="one step count for all parameters"):
        backend.run(random_case(hp, initial_state=(ParamState(1, np.ones((2, 3)), None,
                                                        np.zeros((2, 3))),
                                             ParamState(2, np.ones(4), None, np.zeros(4)))))


def test_state_round_trip_continues_exactly() -> None:
    """R15: loading the state after 2 steps and running on equals not stopping, bit for bit."""
    backend = registry.load(RMSPROP)
    hp = HParams.from_profile("optax", momentum=0.9, bias_correction=True)
    case = random_case(hp, steps=4, dtype=np.float32, lrs=(0.01, 0.02, 0.03, 0.04))
    full = backend.run(case)
    resumed = backend.run(case.replace(params=full.params[1], grads=case.grads[2:],
                                       lrs=case.lrs[2:], initial_state=full.states[1]))
    for a, b in zip(full.params[2:], resumed.params):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert [s.step for s in resumed.states[-1]] == [4, 4]


def test_same_structure_compiles_once() -> None:
    backend = registry.load(RMSPROP)
    rng = np.random.default_rng(3)
    counts = []
    for n in range(4):
        hp = HParams.from_profile("optax", lr=float(rng.uniform(0.01, 0.1)),
                                  alpha=float(rng.uniform(0.5, 0.99)), momentum=0.5)
        params = (rng.normal(size=300 + n),)  # one bucket of 512, used by no other test
        case = Case(hp=hp, params=params, grads=((rng.normal(size=300 + n),),) * 2)
        before = jb.compilations("optax")
        backend.run(case)
        counts.append(jb.compilations("optax") - before)
    assert counts[0] >= 1 and counts[1:] == [0, 0, 0]


@pytest.mark.parametrize(("prop_id", "dtype"), [("P1", "float64"), ("P11", "float64")])
def test_optax_rmsprop_certifies(prop_id: str, dtype: str, tmp_path) -> None:
    # Real dtypes: optax's complex nu (R14) is a known deviation, kept by the bundled reports.
    backend = OptaxTxBackend(optax.rmsprop, DriverConfig(dtypes=("float32", "float64")),
                             RMSPROP)
    target = driver_target(RMSPROP, backend, prop_id, dtype, tmp_path)
    run_property(prop_id, target)
    assert target.record["status"] == "pass", target.record


def test_make_optimizer_builds_what_optax_accepts() -> None:
    """optax validates nothing (the bundled P13 known deviation); an unknown name is optax's
    own TypeError."""
    backend = registry.load(RMSPROP)
    for name in ("lr", "eps", "alpha", "momentum"):
        backend.make_optimizer({name: -1.0})
    with pytest.raises(TypeError, match="maximize"):
        backend.make_optimizer({"maximize": True})


# ---------------------------------------------------------------------------------------------
# Factories written here
# ---------------------------------------------------------------------------------------------
def test_unreadable_state_judges_parameters_only(tmp_path) -> None:
    backend = OptaxTxBackend(opaque_rmsprop, DriverConfig(profile="optax"),
                             "optax:tests.test_drivers_optax:opaque_rmsprop")
    caps = backend.capabilities()
    assert not {"state_readout", "state_load"} & caps.features
    assert "no state field for square_avg among ['acc']" in caps.description
    case = random_case(HParams.from_profile("optax"))
    traj = backend.run(case)
    assert traj.states is None and judge(case, traj).ok
    declared = OptaxTxBackend(opaque_rmsprop, DriverConfig(
        profile="optax", state={"square_avg": "acc"}, dtypes=("float32", "float64")),
        "opaque, declared")
    assert declared.state_fields == {"square_avg": "acc"}
    assert "the driver counts steps" in declared.capabilities().description
    target = driver_target("declared", declared, "P11", "float64", tmp_path)
    run_property("P11", target)
    assert target.record["status"] == "pass", target.record


def test_a_factory_branching_on_a_float_runs_with_static_values() -> None:
    backend = OptaxTxBackend(branchy_rmsprop, DriverConfig(profile="optax"), "branchy")
    for momentum in (0.0, 0.5):
        case = random_case(HParams.from_profile("optax", momentum=momentum))
        assert judge(case, backend.run(case)).ok


@pytest.mark.parametrize(("spec", "fragments"), [
    ("optax:collections:OrderedDict", ("returned OrderedDict",
                                       "not an optax.GradientTransformation")),
    ("optax:math:pi", ("float object 3.14", "is not a factory of optax.GradientTransformation")),
    ("optax:tests.test_drivers_optax:needs_beta", ("needs argument 'beta'", "[fixed]")),
    ("optax:tests.test_drivers_optax:explodes", ("constructing tests.test_drivers_optax.explodes",
                                                 "RuntimeError: boom at construction")),
    ("optax:optax:no_such_thing", ("module 'optax' has no attribute 'no_such_thing'",)),
    ("optax:no_such_module_xyz:X", ("cannot import module 'no_such_module_xyz'",)),
    ("optax:optax:rmsprop?fooo=1", ("takes no keyword 'fooo'", "learning_rate")),
])
def test_load_errors(spec: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(registry.BackendLoadError) as info:
        registry.load(spec)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_command_reports_a_driver_error_as_usage() -> None:
    proc = run_cli("certify", "optax:math:pi", "--report-dir", "/nonexistent/never")
    assert_usage_error(proc, "is not a factory of optax.GradientTransformation")
