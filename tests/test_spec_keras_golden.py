"""Keras's published RMSprop test values, reproduced by the oracle's keras profile.

Source: keras-team/keras, keras/src/optimizers/rmsprop_test.py (tests ``test_single_step``,
``test_weight_decay`` and ``test_correctness_with_golden``). Keras 3 defaults: rho = 0.9,
epsilon = 1e-7 inside the root, lr = 1e-3, decoupled weight decay θ ← θ − θ·λ·η before the step.
Keras prints its expectations to 4 or 7 digits; the exact values must round to them, so the
oracle must lie within half a unit of the last printed digit.
"""

from __future__ import annotations

import numpy as np

from spec.rmsprop import HParams, init_state, run, step


def test_keras_profile_is_the_keras_default() -> None:
    hp = HParams.from_profile("keras")
    assert (hp.lr, hp.alpha, hp.eps) == (1e-3, 0.9, 1e-7)
    assert hp.eps_in_sqrt and hp.weight_decay_mode == "decoupled" and hp.lr_in_momentum


def test_single_step() -> None:
    # RMSprop(learning_rate=0.5); vars [1, 2, 3, 4], grads [1, 6, 7, 2];
    # Keras expects [-0.5811, 0.4189, 1.4189, 2.4189] (rtol = atol = 1e-4).
    hp = HParams.from_profile("keras", lr=0.5)
    theta, g = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 6.0, 7.0, 2.0])
    (new,), _ = step((theta,), (g,), init_state((theta,), hp), hp)
    np.testing.assert_allclose(new, [-0.5811, 0.4189, 1.4189, 2.4189], rtol=0, atol=5e-5)
    # The move, from the rule written out: v = 0.1·g², step = lr·g / sqrt(v + 1e-7), which is
    # close to 0.5 / sqrt(0.1) = 1.5811 for every coordinate whatever g.
    np.testing.assert_allclose(theta - new, 0.5 * g / np.sqrt(0.1 * g**2 + 1e-7), rtol=1e-14)
    np.testing.assert_allclose(theta - new, 0.5 / np.sqrt(0.1), rtol=1e-5)


def test_weight_decay() -> None:
    # RMSprop(learning_rate=1.0, weight_decay=0.004) applied three times (three fresh
    # optimizers) to var1 = 2.0 with a zero gradient; Keras expects 1.9760959 (7 decimals).
    # A zero gradient moves nothing (v = 0, eps > 0), so only the decay acts: 2·(1 − 0.004)³.
    hp = HParams.from_profile("keras", lr=1.0, weight_decay=0.004)
    theta = (np.array(2.0),)
    for _ in range(3):
        theta, _ = step(theta, (np.array(0.0),), init_state(theta, hp), hp)
    assert abs(float(theta[0]) - 1.9760959) <= 5e-8
    np.testing.assert_allclose(theta[0], 2.0 * (1 - 0.004) ** 3, rtol=1e-15)


def test_centered_golden_sequence() -> None:
    # RMSprop(centered=True) with the defaults (lr 1e-3, rho 0.9, epsilon 1e-7); x = ones(10);
    # one step with gradient full(10, 0.01), then steps with arange(0.1, 1.1, 0.1); Keras checks x
    # against [0.9967, 0.9933, 0.9908, 0.9885, 0.9864] (every coordinate) before each of those
    # later steps, i.e. after steps 1 … 5 (rtol = atol = 5e-4).
    hp = HParams.from_profile("keras", centered=True)
    grads = [(np.full(10, 0.01),)] + [(np.arange(1, 11) / 10,)] * 4
    params, _ = run((np.ones(10),), grads, hp)
    golden = [0.9967, 0.9933, 0.9908, 0.9885, 0.9864]
    for k, (p,) in enumerate(params):
        np.testing.assert_allclose(p, np.full(10, golden[k]), rtol=0, atol=5e-5,
                                   err_msg=f"after step {k + 1}")
    # The first step, from the rule: v = 0.1·g², ḡ = 0.1·g, w = v − ḡ² = 0.09·g².
    np.testing.assert_allclose(params[0][0], 1 - 1e-3 * 0.01 / np.sqrt(0.09 * 0.01**2 + 1e-7),
                               rtol=1e-14)
