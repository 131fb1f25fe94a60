"""The spec's optax and tf1 profiles agree with ``optax.rmsprop`` itself (float64, complex128).

optax is driven directly here, the way its users call it (Python-float hyperparameters, eager
``update``/``apply_updates``), not through implementations.jax_backends. Each step is judged from
optax's own state after the previous one (re-alignment): |optax - exact| <= 4 x the float64 bound
of spec.rmsprop.step_with_bounds (+ the smallest subnormal), for the parameters and every state
array.

Inputs are kept well-conditioned on purpose. With ``centered`` and ``bias_correction`` from a
fresh state, step 1's variance is exactly 0 (v̂ = g² = |ḡ̂|²), and with alpha = 0 a centered
variance is 0 at every step: the result is then rounding noise (sqrt(noise) + eps, or a NaN from a
slightly negative variance). That is property P4's territory, not a check of the formula, so such
cases start from a generated state whose variance is clearly positive, and centered cases draw
alpha >= 0.1.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec.rmsprop import HParams, ParamState, init_state, step_with_bounds

jax.config.update("jax_enable_x64", True)

SHAPES = ((3,), (2, 2))
K = 4.0
TINY = float(np.finfo(np.float64).smallest_subnormal)


def _log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(np.log10(lo), np.log10(hi)).map(lambda x: float(10.0 ** x))


def _array(rng: np.random.Generator, shape: tuple[int, ...], scale: float,
           complex_: bool) -> np.ndarray:
    a = rng.normal(size=shape) * scale
    if complex_:
        a = a + 1j * rng.normal(size=shape) * scale
    return a


def _generated_state(rng: np.random.Generator, p: np.ndarray, hp: HParams, scale: float,
                     step: int) -> ParamState:
    """A state that a run could have reached: c·v >= 2|ḡ|² (c = 1 - alpha^step with bias
    correction, else 1), so the centered variance stays clearly positive from here on."""
    cplx = np.iscomplexobj(p)
    c = 1.0 - hp.alpha ** step if hp.bias_correction else 1.0
    grad_avg = _array(rng, p.shape, 0.5 * scale, cplx) if hp.centered else None
    floor = 0.0 if grad_avg is None else 2.0 * np.abs(grad_avg) ** 2 / c
    square_avg = floor + rng.uniform(0.1, 2.0, size=p.shape) * scale ** 2
    buf = _array(rng, p.shape, hp.lr, cplx) if hp.momentum > 0 else None
    return ParamState(step, square_avg, grad_avg, buf)


@st.composite
def optax_cases(draw: st.DrawFn, complex_: bool = False) -> dict:
    profile = draw(st.sampled_from(("optax", "tf1")), label="profile")
    centered = draw(st.booleans(), label="centered")
    momentum = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.99)), label="momentum")
    hp = HParams.from_profile(
        profile,
        lr=draw(_log_uniform(1e-4, 1.0), label="lr"),
        alpha=draw(st.floats(0.1 if centered else 0.0, 0.999), label="alpha"),
        eps=draw(_log_uniform(1e-10, 1e-2), label="eps"),
        eps_in_sqrt=draw(st.booleans(), label="eps_in_sqrt"),
        centered=centered,
        momentum=momentum,
        nesterov=draw(st.booleans(), label="nesterov"),
        bias_correction=draw(st.booleans(), label="bias_correction"),
        weight_decay=draw(st.one_of(st.just(0.0), _log_uniform(1e-4, 1e-1)), label="wd"),
    )
    seed = draw(st.integers(0, 2 ** 32 - 1), label="seed")
    n_steps = draw(st.integers(1, 6), label="n_steps")
    scale = draw(_log_uniform(1e-3, 1e3), label="grad_scale")
    generated = (hp.centered and hp.bias_correction) or draw(st.booleans(), label="generated")
    start = draw(st.integers(1, 20), label="start_step") if generated else 0
    schedule = draw(st.booleans(), label="schedule")
    rng = np.random.default_rng(seed)
    lrs = [float(x) for x in 10 ** rng.uniform(-4, 0, n_steps)] if schedule else None
    params = [_array(rng, s, 1.0, complex_) for s in SHAPES]
    grads = [[_array(rng, s, scale, complex_) for s in SHAPES] for _ in range(n_steps)]
    state = (tuple(_generated_state(rng, p, hp, scale, start) for p in params) if generated
             else init_state(params, hp))
    return dict(hp=hp, params=params, grads=grads, state=state, lrs=lrs)


def _optax_rmsprop(hp: HParams, lrs: list[float] | None) -> optax.GradientTransformation:
    """With ``lrs``, optax's schedule machinery: its update number k (from 0) uses lrs[k]."""
    learning_rate = hp.lr if lrs is None else (lambda count: jnp.asarray(lrs)[count])
    tx = optax.rmsprop(learning_rate, decay=hp.alpha, eps=hp.eps,
                       initial_scale=hp.initial_square_avg, eps_in_sqrt=hp.eps_in_sqrt,
                       centered=hp.centered,
                       momentum=hp.momentum if hp.momentum > 0 else None, nesterov=hp.nesterov,
                       bias_correction=hp.bias_correction)
    if hp.weight_decay > 0:
        tx = optax.chain(optax.add_decayed_weights(hp.weight_decay), tx)
    return tx


def _is_step_count(path, _value) -> bool:
    return path[-1].tuple_name != "ScaleByScheduleState"  # that count indexes the schedule


def _to_optax(opt_state, state: tuple[ParamState, ...], params: list[np.ndarray],
              hp: HParams):
    """Write the spec's state into optax's (momentum buffer negated: optax's trace is −b)."""
    dt = [p.dtype for p in params]
    fields = {"nu": [jnp.asarray(s.square_avg, dtype=d) for s, d in zip(state, dt)]}
    if hp.centered:
        fields["mu"] = [jnp.asarray(s.grad_avg, dtype=d) for s, d in zip(state, dt)]
    if hp.momentum > 0:
        fields["trace"] = [jnp.asarray(-s.momentum_buffer, dtype=d) for s, d in zip(state, dt)]
    opt_state = optax.tree.set(opt_state, **fields)
    if hp.bias_correction:
        opt_state = optax.tree.set(opt_state, _is_step_count,
                                   count=jnp.asarray(state[0].step, dtype=jnp.int32))
    return opt_state


def _from_optax(opt_state, hp: HParams, step: int) -> tuple[ParamState, ...]:
    nu = optax.tree.get(opt_state, "nu")
    mu = optax.tree.get(opt_state, "mu") if hp.centered else [None] * len(nu)
    trace = optax.tree.get(opt_state, "trace") if hp.momentum > 0 else [None] * len(nu)
    if hp.bias_correction:
        step = int(optax.tree.get(opt_state, "count", filtering=_is_step_count))
    return tuple(ParamState(step, np.asarray(n), None if m is None else np.asarray(m),
                            None if t is None else -np.asarray(t))
                 for n, m, t in zip(nu, mu, trace))


def _pairs(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.stack([a.real, a.imag], axis=-1) if np.iscomplexobj(a) else a.astype(np.float64)


def _assert_within(what: str, observed: np.ndarray, exact: np.ndarray, bound: np.ndarray) -> None:
    obs, ex = _pairs(observed), _pairs(exact)
    bound = np.asarray(bound)
    if bound.shape != ex.shape:  # modulus square_avg: one real value per complex element
        bound = bound[..., 0]
    bad = ~(np.abs(obs - ex) <= K * bound + TINY)
    assert not bad.any(), (f"{what}: optax {obs[bad]} vs exact {ex[bad]}, |diff| "
                           f"{np.abs(obs - ex)[bad]} > {K} x bound {bound[bad]}")


def _check_against_optax(case: dict, tx: optax.GradientTransformation | None = None) -> None:
    hp, params, state = case["hp"], [np.asarray(p) for p in case["params"]], case["state"]
    lrs = case.get("lrs")
    tx = _optax_rmsprop(hp, lrs) if tx is None else tx
    opt_state = tx.init([jnp.asarray(p) for p in params])
    if any(s.step for s in state):
        opt_state = _to_optax(opt_state, state, params, hp)
    step = state[0].step
    for k, grads in enumerate(case["grads"]):
        jp = [jnp.asarray(p) for p in params]
        updates, opt_state = tx.update([jnp.asarray(g) for g in grads], opt_state, jp)
        new_params = [np.asarray(p) for p in optax.apply_updates(jp, updates)]
        step += 1
        new_state = _from_optax(opt_state, hp, step)
        exact_p, exact_s, bounds = step_with_bounds(params, grads, state, hp,
                                                    lr=None if lrs is None else lrs[k])
        for i in range(len(params)):
            _assert_within(f"step {k} param {i}", new_params[i], exact_p[i], bounds.params[i])
            nu = new_state[i].square_avg
            if np.iscomplexobj(nu):  # optax keeps the modulus accumulator in the complex dtype
                assert not nu.imag.any(), f"step {k} param {i}: nu has an imaginary part"
                nu = nu.real
            _assert_within(f"step {k} param {i} nu", nu, exact_s[i].square_avg,
                           bounds.square_avg[i])
            if hp.centered:
                _assert_within(f"step {k} param {i} mu", new_state[i].grad_avg,
                               exact_s[i].grad_avg, bounds.grad_avg[i])
            if hp.momentum > 0:
                _assert_within(f"step {k} param {i} -trace", new_state[i].momentum_buffer,
                               exact_s[i].momentum_buffer, bounds.momentum_buffer[i])
            assert new_state[i].step == exact_s[i].step
        params, state = new_params, new_state


SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(optax_cases())
def test_float64_profiles_match_optax_rmsprop(case: dict) -> None:
    _check_against_optax(case)


@SETTINGS
@given(optax_cases(complex_=True))
def test_complex128_modulus_matches_optax_rmsprop(case: dict) -> None:
    assert case["hp"].complex_mode == "modulus"
    _check_against_optax(case)


@pytest.mark.parametrize("profile, optax_kwargs", [("optax", {}),
                                                   ("tf1", {"initial_scale": 1.0})])
def test_profile_is_optax_with_its_defaults(profile: str, optax_kwargs: dict) -> None:
    """``optax.rmsprop(lr)`` (tf1: ``initial_scale=1.0``), other arguments left at their defaults,
    is the profile (tf1 with optax's eps: the profile's own default is TF1's 1e-10)."""
    defaults = {k: p.default for k, p in inspect.signature(optax.rmsprop).parameters.items()}
    hp = HParams.from_profile(profile, lr=0.05, eps=defaults["eps"])
    if profile == "optax":
        assert HParams.from_profile("optax").eps == defaults["eps"]
    rng = np.random.default_rng(7)
    params = [rng.normal(size=(4,))]
    grads = [[rng.normal(size=(4,))] for _ in range(5)]
    _check_against_optax(dict(hp=hp, params=params, grads=grads, state=init_state(params, hp)),
                         optax.rmsprop(0.05, **optax_kwargs))
