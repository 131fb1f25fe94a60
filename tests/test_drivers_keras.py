"""The generic Keras driver (implementations/drivers/keras_opt.py) on Keras 3's RMSprop.

Keras runs on its numpy backend here (``KERAS_BACKEND=numpy``, set before Keras is imported;
TensorFlow, Keras's default, is not installed); the torch backend, which rejects NumPy
gradients, is checked in a subprocess. Expected values come from the oracle
(``conformance.tolerance.judge``) or are written out by hand, never from the driver. Keras's
findings (float64 computed in 32 bits, complex gradients squared as g*g, no hyperparameter
validation) are strict xfails, each with its counterexample.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "numpy")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from conformance import registry  # noqa: E402
from conformance.case import Case  # noqa: E402
from conformance.properties import PropertyFailure  # noqa: E402
from conformance.runner import run_property  # noqa: E402
from conformance.tolerance import judge  # noqa: E402
from spec.rmsprop import HParams, ParamState  # noqa: E402
from tests._driving import driver_target, random_case  # noqa: E402
from tests.test_cli import assert_usage_error, run_cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RMSPROP = "keras:keras.optimizers:RMSprop"
KERAS_TOML = REPO / "examples" / "keras-rmsprop.toml"
pytestmark = pytest.mark.skipif(keras.backend.backend() != "numpy",
                                reason="these tests drive Keras's numpy backend")


def _case(hp: HParams, steps: int = 3, dtype=np.float32, seed: int = 0, **kw) -> Case:
    return random_case(hp, steps, dtype, seed, **kw)


class NeedsBeta(keras.optimizers.RMSprop):
    def __init__(self, beta, learning_rate=0.001):
        super().__init__(learning_rate=learning_rate)


class Explodes(keras.optimizers.RMSprop):
    def __init__(self, learning_rate=0.001):
        raise RuntimeError("boom at construction")


# ---------------------------------------------------------------------------------------------
# What the driver reads off RMSprop
# ---------------------------------------------------------------------------------------------
def test_keywords_state_and_features_are_read_off_rmsprop() -> None:
    backend = registry.load(RMSPROP)
    caps = backend.capabilities()
    assert backend.keywords == {"lr": "learning_rate", "alpha": "rho", "eps": "epsilon",
                                "weight_decay": "weight_decay", "momentum": "momentum",
                                "centered": "centered"}
    assert backend.state_attrs == {"square_avg": "_velocities", "grad_avg": "_average_gradients",
                                   "momentum_buffer": "_momentums", "step": "iterations"}
    assert not backend.negated  # Keras's momentum buffer already points along the gradient
    assert caps.profile == "keras" and backend.package == ("keras", keras.__version__)
    assert {"weight_decay", "momentum", "centered", "lr_schedule", "state_readout",
            "state_load"} <= caps.features
    assert not {"maximize", "nesterov", "bias_correction"} & caps.features
    assert caps.dtypes == {"float16", "bfloat16", "float32", "float64", "complex64",
                           "complex128"}  # what the numpy backend can step
    assert "backend numpy" in caps.description
    assert "profile 'keras' identified by 'identify'" in caps.description


def test_driver_file_declares_the_real_dtypes() -> None:
    backend = registry.load(str(KERAS_TOML))
    caps = backend.capabilities()
    assert backend.name == "keras.RMSprop" and caps.profile == "keras"
    assert caps.dtypes == {"float16", "bfloat16", "float32"}
    assert "assumed" not in caps.description


def test_every_feature_agrees_with_the_oracle() -> None:
    backend = registry.load(RMSPROP)
    hp = HParams.from_profile("keras", centered=True, momentum=0.9, weight_decay=0.1, lr=0.01)
    case = _case(hp, lrs=(0.01, 0.02, 0.005))
    traj = backend.run(case)
    assert judge(case, traj).ok
    assert [s.step for s in traj.states[-1]] == [3, 3]


def test_momentum_and_decoupled_decay_by_hand() -> None:
    """One step, keras profile: theta <- theta - lr*wd*theta, v = (1-rho)*g^2,
    b = lr*g/sqrt(v + eps), theta <- theta - b (float32, within a few ulps)."""
    backend = registry.load(RMSPROP)
    hp = HParams.from_profile("keras", lr=0.1, momentum=0.5, weight_decay=0.5, eps=1e-3)
    p, g = np.array([1.0, -2.0], np.float32), np.array([0.5, 3.0], np.float32)
    traj = backend.run(Case(hp=hp, params=(p,), grads=((g,),)))
    p64, g64 = p.astype(np.float64), g.astype(np.float64)
    v = 0.1 * g64 * g64
    b = 0.1 * g64 / np.sqrt(v + 1e-3)
    np.testing.assert_allclose(traj.states[0][0].square_avg, v, rtol=1e-6)
    np.testing.assert_allclose(traj.states[0][0].momentum_buffer, b, rtol=1e-6)
    np.testing.assert_allclose(traj.params[0][0], p64 - 0.05 * p64 - b, rtol=1e-6)


def test_state_round_trip_continues_exactly() -> None:
    """R15: loading the state after 2 steps and running on equals not stopping, bit for bit."""
    backend = registry.load(RMSPROP)
    hp = HParams.from_profile("keras", centered=True, momentum=0.9)
    case = _case(hp, steps=4, lrs=(0.01, 0.02, 0.03, 0.04))
    full = backend.run(case)
    resumed = backend.run(case.replace(params=full.params[1], grads=case.grads[2:],
                                       lrs=case.lrs[2:], initial_state=full.states[1]))
    for a, b in zip(full.params[2:], resumed.params):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert [s.step for s in resumed.states[-1]] == [4, 4]
    with pytest.raises(ValueError, match="one step count"):
        backend.run(case.replace(initial_state=(ParamState(1, np.ones((2, 3), np.float32)),
                                                ParamState(2, np.ones(4, np.float32)))))


def test_unsupported_features_are_refused() -> None:
    backend = registry.load(RMSPROP)
    with pytest.raises(ValueError, match=r"maximize=True \(no keyword\)"):
        backend.run(_case(HParams.from_profile("keras", maximize=True)))
    with pytest.raises(ValueError, match=r"eps_in_sqrt=False \(fixed to True\)"):
        backend.run(_case(HParams.from_profile("keras", eps_in_sqrt=False)))


@pytest.mark.parametrize(("prop_id", "dtype"), [("P1", "float32"), ("P11", "float32")])
def test_rmsprop_certifies_in_its_real_dtypes(prop_id: str, dtype: str, tmp_path) -> None:
    backend = registry.load(str(KERAS_TOML))
    target = driver_target(str(KERAS_TOML), backend, prop_id, dtype, tmp_path)
    run_property(prop_id, target)
    assert target.record["status"] == "pass", target.record


def test_torch_backend_gets_converted_gradients() -> None:
    """The torch backend rejects NumPy gradients; the driver converts them."""
    script = (
        "from conformance import registry\n"
        "from conformance.tolerance import judge\n"
        "from spec.rmsprop import HParams\n"
        "from tests.test_drivers_keras import _case\n"
        "b = registry.load('keras:keras.optimizers:RMSprop')\n"
        "case = _case(HParams.from_profile('keras', momentum=0.5, centered=True))\n"
        "assert judge(case, b.run(case)).ok\n"
        "print(b.capabilities().description)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(KERAS_BACKEND="torch", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "backend torch" in proc.stdout


# ---------------------------------------------------------------------------------------------
# Keras findings, each with its counterexample
# ---------------------------------------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="Keras finding: on the numpy (and jax) backend float64 "
                   "parameters are updated in float32: keras's result_type maps float64 to "
                   "float32 (BIT64_TO_BIT32_DTYPE), and the learning rate is a floatx (float32) "
                   "variable on every backend (R31: an implementation computes in its dtype)")
def test_float64_is_computed_in_float64() -> None:
    """One step of float64 p = 1, g = 0.3, lr = 0.01: exact 1 - 0.01*0.3/sqrt(0.009 + 1e-7)."""
    assert keras.ops.multiply(0.9, np.ones(2)).dtype == np.float32  # the cause, isolated
    backend = registry.load(RMSPROP)
    hp = HParams.from_profile("keras", lr=0.01)
    case = Case(hp=hp, params=(np.ones(1),), grads=((np.full(1, 0.3),),))
    assert judge(case, backend.run(case)).ok


@pytest.mark.xfail(strict=True, reason="Keras finding: a complex gradient is squared as "
                   "ops.square(g) = g*g, the complex square (bug class 10), neither |g|^2 "
                   "(modulus) nor the components' squares (real pairs) (R11)")
def test_complex_gradient_square() -> None:
    """p = 0, g = 1j, rho = 0.5, eps = 0, lr = 0.1: modulus v = 0.5*|g|^2 = 0.5 and real pairs
    v = (0, 0.5) both give p = -0.1j/sqrt(0.5); Keras's v = 0.5*(1j)^2 = -0.5."""
    opt = keras.optimizers.RMSprop(learning_rate=0.1, rho=0.5, epsilon=0.0)
    var = keras.Variable(np.zeros(1, np.complex64), dtype="complex64")
    opt.apply([np.array([1j], np.complex64)], [var])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(var.value), [-0.1j / np.sqrt(0.5)],
                               rtol=1e-6)


@pytest.mark.xfail(strict=True, raises=PropertyFailure, reason="Keras finding: RMSprop "
                   "validates no hyperparameter: negative or NaN learning_rate, rho, epsilon, "
                   "momentum, weight_decay are accepted (R6)")
def test_invalid_hyperparameters_are_rejected(tmp_path) -> None:
    backend = registry.load(str(KERAS_TOML))
    backend.make_optimizer({"lr": -1.0, "alpha": float("nan")})  # accepted: the counterexample
    run_property("P13", driver_target(str(KERAS_TOML), backend, "P13", None, tmp_path))


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the implementation and what is missing (exit 2 in the command)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("spec", "fragments"), [
    ("keras:collections:OrderedDict", ("collections.OrderedDict is not a "
                                       "keras.optimizers.Optimizer subclass",)),
    ("keras:math:pi", ("float object 3.14", "is not a keras.optimizers.Optimizer subclass")),
    ("keras:keras.optimizers:Optimizer", ("a first step of", "NotImplementedError")),
    ("keras:tests.test_drivers_keras:NeedsBeta", ("needs argument 'beta'", "[fixed]")),
    ("keras:tests.test_drivers_keras:Explodes", ("constructing tests.test_drivers_keras.Explodes",
                                                 "RuntimeError: boom at construction")),
    ("keras:keras.optimizers:NoSuchThing", ("has no attribute 'NoSuchThing'",)),
    ("keras:keras.optimizers:RMSprop?fooo=1", ("RMSprop raised ValueError: Argument(s) not "
                                               "recognized: {'fooo': 1}",)),
])
def test_load_errors(spec: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(registry.BackendLoadError) as info:
        registry.load(spec)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_missing_keras_backend_is_a_usage_error() -> None:
    proc = run_cli("certify", RMSPROP, "--report-dir", "/nonexistent/never",
                   env={"KERAS_BACKEND": "tensorflow"})
    assert_usage_error(proc, "Keras cannot load its backend", "KERAS_BACKEND=numpy")
