"""Our own kernels (numba, Triton, the seed's loop) against the oracle, step by step (R31).

Each step k is judged from the backend's own parameters and state after step k-1: the oracle
(spec.rmsprop.step_with_bounds) runs that step in float64 and bounds the rounding error of an
implementation in the parameter's dtype; every element must lie within K·bound + the dtype's
smallest subnormal, be finite where exact math is finite (R27) and non-finite where it is not (R26).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.backend import Capabilities
from conformance.case import LAYOUTS, Case, Trajectory, np_dtype
from conformance.registry import load
from spec.rmsprop import HParams, ParamState, dtype_info, init_state, step_with_bounds

K = 4.0
KERNELS = ("numba", "triton", "seed")
FLAG_NAMES = ("weight_decay", "momentum", "centered", "maximize")
STATE_FIELDS = ("square_avg", "grad_avg", "momentum_buffer")


@pytest.fixture(scope="module", params=KERNELS)
def backend(request):
    if request.param != "seed":  # numba and triton are the optional "kernels" extra
        pytest.importorskip(request.param)
    return load(request.param)


def device_of(caps: Capabilities) -> str:
    return caps.devices[0]


def as_f64(a) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def assert_close(actual, exact: np.ndarray, bound: np.ndarray, overflow: np.ndarray,
                 dtype: np.dtype, what: str) -> None:
    assert np.asarray(actual).dtype == dtype, f"{what}: dtype {np.asarray(actual).dtype} != {dtype}"
    a = as_f64(actual)
    assert a.shape == exact.shape, f"{what}: shape {a.shape} != {exact.shape}"
    tol = K * bound + dtype_info(dtype).tiny
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - exact)
    exact_finite = np.isfinite(exact)
    # A NaN bound (0 · an unbounded error, e.g. lr = 0) constrains no value, only finiteness.
    bad = ~overflow & np.where(exact_finite, ~np.isfinite(a) | (err > tol),
                               ~((a == exact) | (np.isnan(a) & np.isnan(exact))))
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise AssertionError(f"{what}, element {list(i)}: got {a[i]!r}, exact {exact[i]!r}, "
                             f"|error| {err[i]!r} > K·bound + tiny = {tol[i]!r}")


def assert_matches_oracle(case: Case, traj: Trajectory) -> None:
    """Every step and parameter, re-aligned on the backend's previous params and state."""
    hp = case.hp
    params = case.params
    states = case.initial_state or init_state(case.params, hp)
    assert len(traj.params) == len(traj.states) == case.n_steps
    for k, grads in enumerate(case.grads):
        for i, (p, g, s) in enumerate(zip(params, grads, states)):
            dtype = case.params[i].dtype
            (p_new,), (s_new,), b = step_with_bounds([p], [g], [s], hp, dtype, case.lr_at(k))
            where = f"step {k}, parameter {i} ({dtype}{list(p.shape)})"
            assert_close(traj.params[k][i], p_new, b.params[0], b.overflow[0], dtype,
                         f"{where}: param")
            got = traj.states[k][i]
            assert got.step == s.step + 1, f"{where}: step counter {got.step} (R15)"
            bounds = (b.square_avg[0], b.grad_avg[0], b.momentum_buffer[0])
            for name, bound in zip(STATE_FIELDS, bounds):
                exact, actual = getattr(s_new, name), getattr(got, name)
                assert (actual is None) == (exact is None), f"{where}: {name} presence (R14)"
                if exact is not None:
                    assert_close(actual, exact, bound, b.overflow[0], dtype, f"{where}: {name}")
        params = traj.params[k]
        states = [ParamState(st_.step, *(None if x is None else as_f64(x) for x in st_[1:]))
                  for st_ in traj.states[k]]


def run_checked(backend, case: Case) -> Trajectory:
    """Run ``case``, check the inputs stay untouched (R24) and the trajectory against the oracle."""
    before = [np.array(a, copy=True) for a in (*case.params, *itertools.chain(*case.grads))]
    traj = backend.run(case)
    after = (*case.params, *itertools.chain(*case.grads))
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y, err_msg="the case's arrays were mutated (R24)")
    assert_matches_oracle(case, traj)
    return traj


def supported(caps: Capabilities, values: dict) -> dict:
    """``values`` restricted to the hyperparameters whose feature ``caps`` declares."""
    return {k: v for k, v in values.items() if k not in FLAG_NAMES or caps.supports(k)}


# --------------------------------------------------------------------------------------------------
# Fixed cases
# --------------------------------------------------------------------------------------------------
def fixed_case(caps: Capabilities, dtype: str, flags: dict, n_steps: int = 3) -> Case:
    rng = np.random.default_rng(7)
    d = np_dtype(dtype)
    shapes = [(3, 5), (2, 3, 2, 2)] if caps.supports("multi_param") else [(3, 5)]
    params = tuple(rng.standard_normal(s).astype(d) for s in shapes)
    grads = tuple(tuple(rng.standard_normal(s).astype(d) for s in shapes) for _ in range(n_steps))
    layouts = (("strided", "channels_last") if caps.supports("layouts") else None)
    hp = caps.hparams(lr=0.05, **supported(caps, flags))
    lrs = (0.05, 0.2, 0.01)[:n_steps] if caps.supports("lr_schedule") else None
    return Case(hp, params, grads, lrs=lrs, device=device_of(caps),
                layouts=None if layouts is None else layouts[:len(shapes)])


FLAG_COMBINATIONS = [
    dict(zip(FLAG_NAMES, values))
    for values in itertools.product((0.0, 0.1), (0.0, 0.9), (False, True), (False, True))
]


@pytest.mark.parametrize("flags", FLAG_COMBINATIONS,
                         ids=lambda f: "-".join(k for k, v in f.items() if v) or "plain")
def test_every_flag_combination_float32(backend, flags):
    caps = backend.capabilities()
    if any(v and not caps.supports(k) for k, v in flags.items()):
        pytest.skip(f"{backend.name} does not declare {flags}")
    run_checked(backend, fixed_case(caps, "float32", flags))


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
@pytest.mark.parametrize("flags", [FLAG_COMBINATIONS[0], FLAG_COMBINATIONS[-1]],
                         ids=["plain", "all-flags"])
def test_other_dtypes(backend, dtype, flags):
    caps = backend.capabilities()
    if dtype not in caps.dtypes:
        pytest.skip(f"{backend.name} does not declare {dtype}")
    run_checked(backend, fixed_case(caps, dtype, flags))


def test_layouts_give_bit_identical_results(backend):
    """R25: every layout, and the same case twice, give the same bits as the contiguous run."""
    caps = backend.capabilities()
    if not caps.supports("layouts"):
        pytest.skip(f"{backend.name} does not declare layouts")
    flags = supported(caps, FLAG_COMBINATIONS[-1])
    base = fixed_case(caps, "float32", flags).replace(layouts=None)
    reference = run_checked(backend, base)
    for layout in (*LAYOUTS, "contiguous"):
        traj = backend.run(base.replace(layouts=(layout,) * len(base.params)))
        for k, (got, ref) in enumerate(zip(traj.params, reference.params)):
            for i, (x, y) in enumerate(zip(got, ref)):
                np.testing.assert_array_equal(x, y, err_msg=f"{layout}: step {k}, parameter {i}")


@pytest.mark.parametrize("name", ["numba", "triton"])
def test_update_reaches_any_strides(name):
    """rmsprop_update on a parameter no 1-D view covers (a 2-D slice with gaps in both axes),
    with the gradient in yet another layout, equals the update of contiguous copies."""
    kernel = pytest.importorskip(f"implementations.{name}_kernel")
    to_array = np.asarray if name == "numba" else __import__("torch").from_numpy
    hp = HParams.from_profile("torch", momentum=0.9, centered=True, weight_decay=0.1)
    rng = np.random.default_rng(11)
    values = rng.standard_normal((2, 8, 6)).astype(np.float32)
    before = values.copy()
    grad = np.asfortranarray(rng.standard_normal((4, 3)).astype(np.float32))
    param = to_array(values)[0, ::2, ::2]  # gaps along both axes: no 1-D view reaches it
    dense = to_array(np.ascontiguousarray(values[0, ::2, ::2]))

    def fresh_state():
        return ParamState(0, *(to_array(np.zeros((4, 3), np.float32)) for _ in range(3)))

    state, dense_state = fresh_state(), fresh_state()
    for _ in range(2):
        state = kernel.rmsprop_update(param, to_array(grad), state, hp, 0.01)
        dense_state = kernel.rmsprop_update(dense, to_array(np.ascontiguousarray(grad)),
                                            dense_state, hp, 0.01)
    np.testing.assert_array_equal(np.asarray(param), np.asarray(dense))
    for x, y in zip(state[1:], dense_state[1:]):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert state.step == 2
    untouched = np.ones(values.shape, bool)
    untouched[0, ::2, ::2] = False
    np.testing.assert_array_equal(values[untouched], before[untouched])  # nothing else written
    assert (values[~untouched] != before[~untouched]).all()


def test_state_load_continues_exactly(backend):
    """R15: stopping after 2 steps, loading the state and continuing equals not stopping."""
    caps = backend.capabilities()
    flags = supported(caps, FLAG_COMBINATIONS[-1])
    case = fixed_case(caps, "float32", flags)
    full = backend.run(case)
    head = backend.run(case.replace(grads=case.grads[:2], lrs=case.lrs and case.lrs[:2]))
    tail = backend.run(case.replace(params=head.params[-1], grads=case.grads[2:],
                                    lrs=case.lrs and case.lrs[2:],
                                    initial_state=head.states[-1]))
    for x, y in zip(tail.params[-1], full.params[-1]):
        np.testing.assert_array_equal(x, y)
    for s, t in zip(tail.states[-1], full.states[-1]):
        assert s.step == t.step == 3
        for x, y in zip(s[1:], t[1:]):
            np.testing.assert_array_equal(x, y)


def test_zero_size_and_0d(backend):
    """R29: 0-d and zero-size parameters are valid; multi-step, one parameter per shape."""
    caps = backend.capabilities()
    rng = np.random.default_rng(3)
    shapes = [(), (0,), (2, 0, 3), (4,)]
    params = tuple(rng.standard_normal(s).astype(np.float32) for s in shapes)
    grads = tuple(tuple(rng.standard_normal(s).astype(np.float32) for s in shapes)
                  for _ in range(2))
    hp = caps.hparams(**supported(caps, dict(momentum=0.5, centered=True)))
    traj = run_checked(backend, Case(hp, params, grads, device=device_of(caps)))
    assert [p.shape for p in traj.params[-1]] == shapes


def test_special_values(backend):
    """R26 and R28: NaN and inf propagate as IEEE arithmetic says; zero gradients do not move."""
    caps = backend.capabilities()
    inf, nan = np.inf, np.nan
    p = np.array([1.0, 1.0, inf, 2.0, 0.5], dtype=np.float32)
    g = np.array([nan, inf, 1.0, 0.0, 0.0], dtype=np.float32)
    hp = caps.hparams(lr=0.1, eps=1e-8)
    traj = run_checked(backend, Case(hp, (p,), ((g,),), device=device_of(caps)))
    got = traj.params[0][0]
    assert np.isnan(got[0]) and np.isnan(got[1]), "NaN/inf gradient -> NaN (inf/inf)"
    assert got[2] == inf, "an infinite parameter stays infinite without weight decay"
    assert got[3] == 2.0 and got[4] == 0.5, "g = 0 with v = 0, eps > 0 leaves θ unchanged"
    # eps = 0 and v = 0: 0/0 is NaN by IEEE arithmetic (the spec's domain note, R28)
    traj = run_checked(backend, Case(hp.replace(eps=0.0), (p[3:],), ((g[3:],),),
                                     device=device_of(caps)))
    assert np.isnan(traj.params[0][0]).all()


def test_centered_variance_never_turns_into_nan(backend):
    """R27/R30: nearly constant gradients make v - ḡ² negative by rounding; θ stays finite."""
    caps = backend.capabilities()
    if not caps.supports("centered"):
        pytest.skip(f"{backend.name} does not declare centered")
    rng = np.random.default_rng(0)
    p = np.zeros(256, np.float32)
    grads = tuple(((1 + 1e-4 * rng.standard_normal(256)).astype(np.float32),) for _ in range(20))
    traj = run_checked(backend, Case(caps.hparams(centered=True, alpha=0.1), (p,), grads,
                                     device=device_of(caps)))
    # The hazard is real here: float32 v - ḡ² < 0 for the stored state at some step.
    assert any((s[0].square_avg - s[0].grad_avg * s[0].grad_avg < 0).any() for s in traj.states)
    assert all(np.isfinite(x[0]).all() for x in traj.params)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_is_rounded_once_to_nearest(backend, dtype):
    """alpha = 0 makes square_avg = g², exact in float32; stored, it is round-to-nearest(g²)."""
    caps = backend.capabilities()
    if dtype not in caps.dtypes:
        pytest.skip(f"{backend.name} does not declare {dtype}")
    d = np_dtype(dtype)
    g = np.random.default_rng(5).uniform(-4, 4, 4096).astype(d)
    p = np.zeros_like(g)
    traj = backend.run(Case(caps.hparams(alpha=0.0), (p,), ((g,),), device=device_of(caps)))
    expected = (g.astype(np.float32) ** 2).astype(d)  # NumPy / ml_dtypes round to nearest even
    np.testing.assert_array_equal(traj.states[0][0].square_avg.view(np.uint16),
                                  expected.view(np.uint16))


def test_float16_tiny_gradients_stay_finite(backend):
    """R27: eps = 1e-8 underflows in float16, so float16 arithmetic divides by 0 here; exact math
    (and a kernel computing in float32) does not."""
    caps = backend.capabilities()
    if "float16" not in caps.dtypes:
        pytest.skip(f"{backend.name} does not declare float16")
    g = np.array([6e-8, -1e-7, 3e-6, 0.0, 1e-5], dtype=np.float16)
    p = np.ones_like(g)
    hp = caps.hparams(lr=1e-3, eps=1e-8, **supported(caps, dict(momentum=0.9, centered=True)))
    traj = run_checked(backend, Case(hp, (p,), ((g,), (g,)), device=device_of(caps)))
    assert all(np.isfinite(x[0]).all() for x in traj.params)


def test_seed_worked_example():
    """reference/seed.md: 10 steps on x² + 10y² from (40, 20), lr 3, alpha 0.9, eps 1e-6."""
    backend = load("seed")
    hp = backend.capabilities().hparams()
    assert (hp.lr, hp.alpha, hp.eps) == (3.0, 0.9, 1e-6)
    params = (np.array(40.0), np.array(20.0))
    state = None
    for k in range(10):
        grads = ((2 * params[0], 20 * params[1]),)  # the loss's gradient at the current point
        traj = backend.run(Case(hp, params, grads, initial_state=state))
        params, state = traj.params[0], traj.states[0]
        if k == 0:
            assert [float(x) for x in params] == [30.513167394494847, 10.51316709449486]
    assert [float(x) for x in params] == [4.631545619435174, 0.013535081737891329]
    assert [s.step for s in state] == [10, 10]


# --------------------------------------------------------------------------------------------------
# Generated cases
# --------------------------------------------------------------------------------------------------
SHAPES = st.sampled_from([(), (0,), (1,), (7,), (3, 4), (2, 3, 2), (2, 3, 2, 2), (1, 5, 1)])


@st.composite
def cases(draw, caps: Capabilities) -> Case:
    n_params = draw(st.integers(1, 3)) if caps.supports("multi_param") else 1
    dtypes = sorted(caps.dtypes)
    if caps.supports("mixed_dtypes"):
        dts = draw(st.lists(st.sampled_from(dtypes), min_size=n_params, max_size=n_params))
    else:
        dts = [draw(st.sampled_from(dtypes))] * n_params
    shapes = draw(st.lists(SHAPES, min_size=n_params, max_size=n_params))
    n_steps = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    scale_p, scale_g = draw(st.sampled_from([1e-3, 1.0, 10.0])), draw(st.sampled_from([1e-3, 1.0]))
    sparse = draw(st.booleans(), label="sparse gradients")

    def grad(shape, dt):
        g = scale_g * rng.standard_normal(shape)
        return np.asarray(g * (rng.random(shape) < 0.5) if sparse else g, np_dtype(dt))

    params = tuple(np.asarray(scale_p * rng.standard_normal(s), np_dtype(d))
                   for s, d in zip(shapes, dts))
    grads = tuple(tuple(grad(s, d) for s, d in zip(shapes, dts)) for _ in range(n_steps))
    hp = caps.hparams(**supported(caps, dict(
        lr=draw(st.sampled_from([0.0, 1e-3, 0.01, 0.3])),
        alpha=draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0])),
        eps=draw(st.sampled_from([1e-8, 1e-6, 1e-3])),
        weight_decay=draw(st.sampled_from([0.0, 0.0, 0.01, 0.5])),
        momentum=draw(st.sampled_from([0.0, 0.0, 0.5, 0.9])),
        centered=draw(st.booleans()),
        maximize=draw(st.booleans()),
    )))
    lrs = None
    if caps.supports("lr_schedule") and draw(st.booleans(), label="lr schedule"):
        lrs = tuple(draw(st.lists(st.sampled_from([0.0, 1e-3, 0.05, 0.5]),
                                  min_size=n_steps, max_size=n_steps)))
    layouts = None
    if caps.supports("layouts"):
        layouts = tuple(draw(st.lists(st.sampled_from(LAYOUTS), min_size=n_params,
                                      max_size=n_params)))
    return Case(hp, params, grads, lrs=lrs, device=device_of(caps), layouts=layouts)


# derandomize: the same draws every run, so numba's on-disk cache covers the kernels they need
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_cases_match_oracle(backend, data):
    run_checked(backend, data.draw(cases(backend.capabilities())))


def test_triton_device_names():
    """Without CUDA the Triton kernel runs in the interpreter, a device distinct from "cpu"."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("triton")
    caps = load("triton").capabilities()
    if torch.cuda.is_available():
        assert caps.devices == tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    else:
        assert caps.devices == ("cpu-interpreter",)
        assert caps.unavailable == {"cuda": "no CUDA device on this machine"}


@pytest.mark.parametrize("name", ["numba", "triton"])
def test_kernels_reject_other_conventions(name):
    """A kernel implements the torch profile only: another convention is an error, not a silent
    different answer."""
    pytest.importorskip(name)
    backend = load(name)
    caps = backend.capabilities()
    p = np.ones(3, np.float32)
    for change in (dict(eps_in_sqrt=not caps.hparams().eps_in_sqrt), dict(nesterov=True),
                   dict(bias_correction=True)):
        case = Case(caps.hparams(**change), (p,), ((p,),), device=device_of(caps))
        with pytest.raises(ValueError):
            backend.run(case)
