"""The seed's worked example (reference/seed.md), reproduced by the oracle.

RMSProp with lr = 3, alpha = 0.9, eps = 1e-6 (outside the root), r = 0, from (40, 20) on
L = x² + 10·y²; SGD with lr = 0.096. Expected values are the seed's own, not the oracle's.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance import toyproblem
from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from spec.rmsprop import HParams, init_state, run, step

AFTER_1 = (30.513167394494847, 10.51316709449486)
AFTER_10 = (4.631545619435174, 0.013535081737891329)
SGD_AFTER_10 = (4.7443159030791335, 8.687769084472642)

SEED_AS_TORCH = HParams.from_profile("torch", lr=3.0, alpha=0.9, eps=1e-6)


@pytest.mark.parametrize("hp", [HParams.from_profile("seed"), SEED_AS_TORCH],
                         ids=["seed profile", "torch profile"])
def test_rmsprop_worked_example(hp: HParams) -> None:
    # Two 0-d parameters x and y, the gradient taken at the point reached, one step at a time.
    params = (np.array(40.0), np.array(20.0))
    state = init_state(params, hp)
    for k in range(10):
        x, y = params
        params, state = step(params, (2 * x, 20 * y), state, hp)
        if k == 0:
            np.testing.assert_allclose([float(p) for p in params], AFTER_1, rtol=1e-12, atol=0)
    np.testing.assert_allclose([float(p) for p in params], AFTER_10, rtol=1e-12, atol=0)
    assert all(s.step == 10 for s in state)


def test_seed_profile_values() -> None:
    hp = HParams.from_profile("seed")
    assert (hp.lr, hp.alpha, hp.eps) == (3.0, 0.9, 1e-6)
    assert not hp.eps_in_sqrt and hp.initial_square_avg == 0.0


def test_toyproblem_rmsprop_trajectory() -> None:
    traj = toyproblem.rmsprop_trajectory()
    assert traj.shape == (11, 2)
    np.testing.assert_array_equal(traj[0], [40.0, 20.0])
    np.testing.assert_allclose(traj[1], AFTER_1, rtol=1e-12, atol=0)
    np.testing.assert_allclose(traj[10], AFTER_10, rtol=1e-12, atol=0)
    np.testing.assert_allclose(toyproblem.rmsprop_trajectory(SEED_AS_TORCH)[10], AFTER_10,
                               rtol=1e-12, atol=0)


def test_toyproblem_sgd_trajectory() -> None:
    traj = toyproblem.sgd_trajectory(lr=0.096, steps=10)
    assert traj.shape == (11, 2)
    np.testing.assert_allclose(traj[10], SGD_AFTER_10, rtol=1e-12, atol=0)
    # The seed's point: SGD crosses the valley in y at every step (sign flips) while x crawls.
    assert np.all(np.sign(traj[1:, 1]) != np.sign(traj[:-1, 1]))


def test_toyproblem_loss_and_grad() -> None:
    assert toyproblem.loss(40.0, 20.0) == 40.0**2 + 10 * 20.0**2
    np.testing.assert_array_equal(toyproblem.grad(np.array([40.0, 20.0])), [80.0, 400.0])
    assert toyproblem.grad(np.array([1.0, 1.0], np.float32)).dtype == np.float32


def test_rmsprop_evens_out_the_steps() -> None:
    """After the first step both coordinates move by about lr (g / sqrt(0.1·g²) = sqrt(10))."""
    first = np.array([40.0, 20.0]) - toyproblem.rmsprop_trajectory(steps=1)[1]
    np.testing.assert_allclose(first, 3.0 * np.sqrt(10.0), rtol=1e-6)


class OracleBackend:
    """A backend that is the oracle itself, with or without the state features."""

    name = "test.oracle"

    def __init__(self, features: frozenset[str]) -> None:
        self.features = features
        self.calls = 0

    def capabilities(self) -> Capabilities:
        return Capabilities(profile="torch", dtypes=frozenset({"float64"}),
                            features=self.features)

    def run(self, case: Case) -> Trajectory:
        self.calls += 1
        if case.initial_state is not None:
            assert "state_load" in self.features
        ps, ss = run(case.params, case.grads, case.hp, state=case.initial_state)
        out = Trajectory.empty(with_state="state_readout" in self.features)
        for p, s in zip(ps, ss):
            out.append(p, s if out.states is not None else None)
        return out


@pytest.mark.parametrize("features, calls", [
    (frozenset({"state_load", "state_readout"}), 10),  # one step per call
    (frozenset(), 10),                                 # replays 1 … 10 steps
])
def test_backend_trajectory(features: frozenset[str], calls: int) -> None:
    backend = OracleBackend(features)
    traj = toyproblem.backend_trajectory(backend, steps=10)
    assert backend.calls == calls
    np.testing.assert_allclose(traj[1], AFTER_1, rtol=1e-12, atol=0)
    np.testing.assert_allclose(traj[10], AFTER_10, rtol=1e-12, atol=0)
    assert toyproblem.backend_trajectory(backend, dtype="float16") is None


def test_render_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "seed.png"
    toyproblem.render_png(str(out), {"backend": toyproblem.rmsprop_trajectory() + 0.5})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
