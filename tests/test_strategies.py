"""Tests of conformance.strategies: every drawn value is valid, bounded and of the kind asked for.

Bounds and exactness are checked independently of the module: dtype limits from ``np.finfo`` /
``ml_dtypes.finfo``, exact comparisons with ``fractions.Fraction``.
"""

from __future__ import annotations

import collections
import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from conformance import strategies as S
from conformance.backend import FEATURES, Capabilities
from conformance.case import DTYPES, LAYOUTS, Case, materialize, np_dtype
from spec.rmsprop import PROFILES, HParams, step

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALL = Capabilities(profile="torch", dtypes=frozenset(DTYPES), features=frozenset(FEATURES))
HP_FEATURES = {"weight_decay", "momentum", "nesterov", "centered", "maximize", "bias_correction"}


class _Found(Exception):
    pass


def reaches(strategy: st.SearchStrategy, predicate, max_examples: int = 2000) -> None:
    """Fail unless some draw of ``strategy`` (within max_examples, no shrinking) satisfies
    ``predicate``."""

    @settings(max_examples=max_examples, phases=[Phase.generate], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def search(value):
        if predicate(value):
            raise _Found

    try:
        search()
    except _Found:
        return
    pytest.fail(f"no draw of {strategy!r} satisfied the predicate in {max_examples} examples")


def finfo(dtype: str):
    dt = np_dtype(dtype)
    if dt.kind == "c":
        dt = np.dtype(np.float32 if dt.itemsize == 8 else np.float64)
    return ml_dtypes.finfo(dt) if dt.name == "bfloat16" else np.finfo(dt)


def components(a: np.ndarray) -> np.ndarray:
    """Real components as float64 (complex: trailing axis of 2)."""
    if np.iscomplexobj(a):
        return np.stack([a.real, a.imag], axis=-1).astype(np.float64)
    return np.asarray(a, dtype=np.float64)


def assert_bounded(a: np.ndarray, dtype: str, *, finite: bool = True) -> None:
    """|component| ≤ sqrt(max)/8 and the square computed in the dtype itself does not overflow."""
    c = components(a)
    ok = np.isfinite(c)
    if finite:
        assert ok.all(), a
    limit = math.sqrt(float(finfo(dtype).max)) / 8
    assert (np.abs(c[ok]) <= limit).all(), (np.abs(c[ok]).max(), limit)
    with np.errstate(over="raise"):
        sq = np.where(np.isfinite(a), a, 0) * np.where(np.isfinite(a), a, 0)
    assert np.isfinite(components(sq)).all()


# --------------------------------------------------------------------------------------------------
# shapes and layouts
# --------------------------------------------------------------------------------------------------
@FAST
@given(st.data(), st.integers(0, 4), st.integers(0, 3), st.integers(1, 8), st.integers(1, 100),
       st.booleans())
def test_shapes_in_range(data, min_dims, extra_dims, max_side, max_size, zero):
    max_dims = min_dims + extra_dims
    shape = data.draw(S.shapes(min_dims=min_dims, max_dims=max_dims, max_side=max_side,
                               max_size=max_size, allow_zero_size=zero))
    assert isinstance(shape, tuple) and all(type(s) is int for s in shape)
    assert min_dims <= len(shape) <= max_dims
    assert all(0 <= s <= max_side for s in shape)
    assert math.prod(shape) <= max_size
    if not zero:
        assert all(s >= 1 for s in shape)


@pytest.mark.parametrize("predicate", [
    lambda s: s == (),
    lambda s: len(s) > 0 and math.prod(s) == 0,
    lambda s: len(s) == 4 and math.prod(s) > 1,
    lambda s: max(s, default=0) == 6,
], ids=["0-d", "zero-size", "4-d", "max side"])
def test_shapes_reach(predicate):
    reaches(S.shapes(), predicate)


@pytest.mark.parametrize("kwargs", [
    dict(min_dims=-1), dict(min_dims=3, max_dims=2), dict(max_side=0), dict(max_size=0),
    dict(allow_zero_size="yes"), dict(min_dims=True), dict(max_dims=2.0),
])
def test_shapes_validation(kwargs):
    with pytest.raises(InvalidArgument, match=list(kwargs)[-1]):
        S.shapes(**kwargs).validate()


def allowed_layouts(shape):
    if math.prod(shape) == 0 or not shape:
        return {"contiguous"}
    out = {"contiguous", "strided"}
    if len(shape) >= 2:
        out.add("transposed")
    if len(shape) == 4:
        out.add("channels_last")
    return out


@FAST
@given(st.data(), S.shapes())
def test_layouts_valid_for_shape(data, shape):
    layout = data.draw(S.layouts(shape))
    assert layout in allowed_layouts(shape)
    a = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    np.testing.assert_array_equal(materialize(a, layout), a)


def test_layouts_all_reached_for_4d():
    for v in LAYOUTS:
        reaches(S.layouts((2, 3, 2, 2)), lambda x, v=v: x == v)


def test_layouts_validation():
    with pytest.raises(InvalidArgument, match="shape"):
        S.layouts((2, -1))


# --------------------------------------------------------------------------------------------------
# gradient sequences
# --------------------------------------------------------------------------------------------------
@FAST
@given(st.data(), S.shapes(max_size=80), st.sampled_from(DTYPES), st.integers(1, 5),
       st.sampled_from((None,) + S.FAMILIES))
def test_gradient_sequence_dtype_shape_bounds(data, shape, dtype, n_steps, family):
    seq = data.draw(S.gradient_sequence(shape, dtype, n_steps, family=family))
    assert isinstance(seq, tuple) and len(seq) == n_steps
    for g in seq:
        assert isinstance(g, np.ndarray) and g.shape == shape and g.dtype == np_dtype(dtype)
        assert_bounded(g, dtype)
    assert len({id(g) for g in seq}) == n_steps  # separate arrays, one per step


@FAST
@given(st.data(), S.shapes(max_size=80), st.sampled_from(DTYPES), st.integers(2, 5))
def test_nearly_constant_is_nearly_constant(data, shape, dtype, n_steps):
    seq = [components(g) for g in
           data.draw(S.gradient_sequence(shape, dtype, n_steps, family="nearly_constant"))]
    u = float(finfo(dtype).eps)
    for g in seq[1:]:
        # relative noise ≤ 4e-3 around the same constant, plus rounding in the dtype
        tol = (1e-2 + 2 * u) * np.maximum(np.abs(g), np.abs(seq[0])) + float(
            finfo(dtype).smallest_subnormal)
        assert (np.abs(g - seq[0]) <= tol).all()


@FAST
@given(st.data(), S.shapes(max_size=80), st.sampled_from(DTYPES), st.integers(2, 5))
def test_sign_flipping_alternates(data, shape, dtype, n_steps):
    seq = data.draw(S.gradient_sequence(shape, dtype, n_steps, family="sign_flipping"))
    for k in range(1, n_steps):
        np.testing.assert_array_equal(components(seq[k]), -components(seq[k - 1]))


@FAST
@given(st.data(), st.one_of(S.shapes(max_size=80, allow_zero_size=False),
                            st.sampled_from([(), (1,), (3,)])),
       st.sampled_from(DTYPES), st.integers(1, 5))
def test_sparse_has_many_exact_zeros(data, shape, dtype, n_steps):
    seq = np.stack(data.draw(S.gradient_sequence(shape, dtype, n_steps, family="sparse")))
    assert np.count_nonzero(seq == 0) >= seq.size / 2


@FAST
@given(st.data(), S.shapes(max_size=80), st.sampled_from(DTYPES))
def test_tiny_magnitudes(data, shape, dtype):
    seq = data.draw(S.gradient_sequence(shape, dtype, 3, family="tiny"))
    fi = finfo(dtype)
    c = np.abs(np.stack([components(g) for g in seq]))
    assert (c <= 1e-4 * (1 + float(fi.eps))).all()
    nonzero = c[c > 0]
    if fi.dtype in (np.float16, np.dtype(ml_dtypes.bfloat16)):
        assert (nonzero >= 1e-6 * (1 - float(fi.eps)) - float(fi.smallest_subnormal)).all()
    else:  # float32, float64: normal numbers
        assert (nonzero >= float(fi.tiny)).all()
        if fi.dtype == np.float32:
            assert (nonzero >= 1e-20 * (1 - float(fi.eps))).all()


@FAST
@given(st.data(), S.shapes(max_size=80), st.sampled_from(DTYPES))
def test_huge_magnitudes(data, shape, dtype):
    seq = data.draw(S.gradient_sequence(shape, dtype, 2, family="huge"))
    limit = math.sqrt(float(finfo(dtype).max)) / 8
    c = np.abs(np.stack([components(g) for g in seq]))
    assert (c >= limit / 8 * (1 - 4 * float(finfo(dtype).eps))).all()
    assert (c <= limit).all()


@FAST
@given(st.data(), S.shapes(max_size=80), st.sampled_from(DTYPES), st.integers(1, 4))
def test_nonfinite_only_when_allowed(data, shape, dtype, n_steps):
    clean = data.draw(S.gradient_sequence(shape, dtype, n_steps))
    assert all(np.isfinite(components(g)).all() for g in clean)
    dirty = data.draw(S.gradient_sequence(shape, dtype, n_steps, allow_nonfinite=True))
    bad = sum(int((~np.isfinite(components(g))).sum()) for g in dirty)
    assert bad >= (1 if math.prod(shape) else 0)
    assert bad <= 3
    for g in dirty:
        assert_bounded(g, dtype, finite=False)


def test_nonfinite_values_reached():
    for kind in (np.isnan, np.isposinf, np.isneginf):
        reaches(S.gradient_sequence((3,), "float32", 2, allow_nonfinite=True),
             lambda seq, kind=kind: any(kind(g).any() for g in seq))


@FAST
@given(st.data(), st.sampled_from(("complex64", "complex128")))
def test_complex_sequence_is_complex(data, dtype):
    seq = data.draw(S.gradient_sequence((3, 2), dtype, 2))
    assert all(np.iscomplexobj(g) and g.dtype == np.dtype(dtype) for g in seq)


@FAST
@given(st.data(), st.floats(1e-3, 10.0))
def test_scale_sets_the_magnitude(data, scale):
    seq = data.draw(S.gradient_sequence((5,), "float64", 3, family="normal", scale=scale))
    assert all((np.abs(g) <= 4 * scale * (1 + 1e-12)).all() for g in seq)


# Signatures of each family, reached with the family left to the strategy (family=None).
def _abs(seq):
    return np.abs(np.stack([components(g) for g in seq]))


FAMILY_SIGNATURES = {
    "huge": lambda seq: (_abs(seq) > 1e6).all(),
    "tiny": lambda seq: ((_abs(seq) < 1e-5) & (_abs(seq) > 0)).all(),
    "sign_flipping": lambda seq: (_abs(seq) > 0).all() and all(
        np.array_equal(seq[k], -seq[k - 1]) for k in range(1, len(seq))),
    "nearly_constant": lambda seq: (_abs(seq) > 0).all() and not all(
        np.array_equal(seq[0], g) for g in seq) and all(
        np.allclose(seq[0], g, rtol=1e-3, atol=0) for g in seq),
    "sparse": lambda seq: (np.stack(seq) == 0).mean() >= 0.5 and (np.stack(seq) != 0).any(),
    "heavy_tailed": lambda seq: _abs(seq).max() > 100 * np.median(_abs(seq)) > 0,
    "normal": lambda seq: 0 < _abs(seq).max() <= 4 * np.median(_abs(seq)) and len(
        {float(x) for x in _abs(seq).ravel()}) == _abs(seq).size,
}


@pytest.mark.parametrize("family", S.FAMILIES)
def test_each_family_appears(family):
    reaches(S.gradient_sequence((4,), "float32", 3), FAMILY_SIGNATURES[family])


def test_family_draws_cover_all():
    counts = collections.Counter()

    @settings(FAST, max_examples=300)
    @given(S.gradient_families())
    def draw(f):
        counts[f] += 1

    draw()
    assert set(counts) == set(S.FAMILIES)


@pytest.mark.parametrize("args, kwargs, match", [
    (((2,), "float8", 2), {}, "dtype"),
    (((2,), "float32", 0), {}, "n_steps"),
    (((-2,), "float32", 1), {}, "shape"),
    (((2,), "float32", 1), dict(family="gaussian"), "family"),
    (((2,), "float32", 1), dict(scale=-1.0), "scale"),
    (((2,), "float16", 1), dict(scale=1e6), "scale"),
    (((2,), "float32", 1), dict(family="tiny", scale=1.0), "scale"),
    (((2,), "float32", 1), dict(allow_nonfinite=1), "allow_nonfinite"),
])
def test_gradient_sequence_validation(args, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        S.gradient_sequence(*args, **kwargs)


# --------------------------------------------------------------------------------------------------
# hyperparameters and schedules
# --------------------------------------------------------------------------------------------------
def caps_with(profile, features, dtypes=("float32",)):
    return Capabilities(profile=profile, dtypes=frozenset(dtypes), features=frozenset(features))


@FAST
@given(st.data(), st.sampled_from(PROFILES),
       st.frozensets(st.sampled_from(sorted(FEATURES))))
def test_hparams_valid_and_never_beyond_features(data, profile, features):
    caps = caps_with(profile, features)
    hp = data.draw(S.hparams(caps))
    ref = HParams.from_profile(profile)
    for axis in ("eps_in_sqrt", "initial_square_avg", "lr_in_momentum", "weight_decay_mode",
                 "complex_mode", "maximize_order"):
        assert getattr(hp, axis) == getattr(ref, axis)
    assert hp.profile == profile
    assert hp.lr == 0 or 1e-6 <= hp.lr <= 1
    assert 0 <= hp.alpha <= 1 and not (hp.alpha == 1 and hp.bias_correction)
    assert hp.eps == 0 or 1e-12 <= hp.eps <= 1
    if hp.eps == 0:  # only where v stays positive whatever the gradients
        assert hp.initial_square_avg > 0 and hp.alpha > 0
    assert hp.weight_decay == 0 or 1e-5 <= hp.weight_decay <= 1
    assert 0 <= hp.momentum <= 0.999
    on = {"weight_decay": hp.weight_decay > 0, "momentum": hp.momentum > 0,
          "nesterov": hp.nesterov, "centered": hp.centered, "maximize": hp.maximize,
          "bias_correction": hp.bias_correction}
    assert {f for f, v in on.items() if v} <= features
    assert not hp.nesterov or hp.momentum > 0


@FAST
@given(st.data(), st.frozensets(st.sampled_from(sorted(HP_FEATURES - {"nesterov"}))))
def test_hparams_require(data, required):
    hp = data.draw(S.hparams(ALL, require=required | {"momentum"}))
    assert hp.momentum > 0
    on = {"weight_decay": hp.weight_decay > 0, "centered": hp.centered,
          "maximize": hp.maximize, "bias_correction": hp.bias_correction, "momentum": True}
    assert all(on[f] for f in required)


def test_hparams_restricting_features_turns_others_off():
    caps = caps_with("torch", FEATURES)
    reaches(S.hparams(caps, features={"momentum"}), lambda hp: hp.momentum > 0)
    reaches(S.hparams(caps, features={"momentum"}), lambda hp: hp.momentum == 0)

    @FAST
    @given(S.hparams(caps, features={"momentum"}))
    def others_off(hp):
        assert not (hp.centered or hp.maximize or hp.bias_correction or hp.weight_decay)

    others_off()


@pytest.mark.parametrize("name, predicate, profile", [
    ("lr = 0", lambda hp: hp.lr == 0, "torch"),
    ("alpha = 0", lambda hp: hp.alpha == 0, "torch"),
    ("alpha = 1", lambda hp: hp.alpha == 1, "torch"),
    ("alpha in (0, 1) not special", lambda hp: hp.alpha not in (0, .5, .9, .99, .999, 1),
     "torch"),
    ("alpha = 0.999", lambda hp: hp.alpha == 0.999, "torch"),
    ("eps = 0 (tf1: initial_square_avg = 1)", lambda hp: hp.eps == 0, "tf1"),
    ("tiny eps", lambda hp: 0 < hp.eps < 1e-10, "torch"),
    ("momentum = 0.99", lambda hp: hp.momentum == 0.99, "torch"),
    ("nesterov", lambda hp: hp.nesterov, "optax"),
    ("everything on", lambda hp: hp.centered and hp.maximize and hp.bias_correction and
     hp.momentum > 0 and hp.weight_decay > 0, "torch"),
])
def test_hparams_reach(name, predicate, profile):
    reaches(S.hparams(caps_with(profile, FEATURES)), predicate)


@FAST
@given(S.hparams(ALL, edge=False))
def test_hparams_without_edges(hp):
    assert hp.lr > 0 and 0 < hp.alpha < 1 and hp.eps > 0


@FAST
@given(S.hparams(caps_with("torch", FEATURES)))
def test_hparams_eps_zero_never_with_zero_initial_square_avg(hp):
    assert hp.eps > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(features={"momentum"}), "momentum"),          # not declared by the backend
    (dict(features={"warp_drive"}), "warp_drive"),     # unknown
    (dict(require={"centered"}, features=set()), "centered"),
    (dict(edge="no"), "edge"),
    (dict(features="momentum"), "features"),
])
def test_hparams_validation(kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        S.hparams(caps_with("torch", {"centered"}), **kwargs)
    with pytest.raises(InvalidArgument, match="caps"):
        S.hparams("torch")


@FAST
@given(st.data(), st.integers(1, 8), st.sampled_from((0.0, 1e-3, 0.5, 3.0)))
def test_lr_schedules(data, n_steps, base):
    lrs = data.draw(S.lr_schedules(n_steps, base))
    assert isinstance(lrs, tuple) and len(lrs) == n_steps
    assert all(type(x) is float and math.isfinite(x) and 0 <= x <= base for x in lrs)


@pytest.mark.parametrize("name, predicate", [
    ("exact 0 after a positive lr", lambda lrs: lrs[0] > 0 and 0.0 in lrs),
    ("constant", lambda lrs: len(set(lrs)) == 1),
    ("decreasing", lambda lrs: all(a > b for a, b in zip(lrs, lrs[1:]))),
    ("increasing somewhere", lambda lrs: any(0 < a < b for a, b in zip(lrs, lrs[1:]))),
])
def test_lr_schedules_reach(name, predicate):
    reaches(S.lr_schedules(4, 0.1), predicate)


@pytest.mark.parametrize("args, match", [((0, 0.1), "n_steps"), ((3, -1.0), "base_lr"),
                                         ((3, math.nan), "base_lr"), ((3, math.inf), "base_lr")])
def test_lr_schedules_validation(args, match):
    with pytest.raises(InvalidArgument, match=match):
        S.lr_schedules(*args)


# --------------------------------------------------------------------------------------------------
# states
# --------------------------------------------------------------------------------------------------
def exact_le(a: np.ndarray, b: np.ndarray, strict: bool) -> bool:
    """a ≤ b (or a < b) element by element, in exact rational arithmetic."""
    for x, y in zip(np.ravel(a), np.ravel(b), strict=True):
        fx, fy = Fraction(float(x)), Fraction(float(y))
        if fx > fy or (strict and fx == fy):
            return False
    return True


def exact_square(a: np.ndarray, modulus: bool) -> np.ndarray:
    c = components(a)
    sq = np.vectorize(lambda x: Fraction(float(x)) ** 2, otypes=[object])(c)
    return np.asarray(sq.sum(axis=-1) if modulus and np.iscomplexobj(a) else sq, dtype=object)


@FAST
@given(st.data(), st.sampled_from(DTYPES), st.sampled_from(("torch", "optax", "tf1")),
       st.booleans(), st.booleans(), st.sampled_from((0.0, 1e-8)), S.shapes(max_size=12))
def test_states_valid(data, dtype, profile, centered, bias_correction, eps, shape):
    hp = HParams.from_profile(profile, centered=centered, bias_correction=bias_correction,
                              eps=eps, momentum=data.draw(st.sampled_from((0.0, 0.9))),
                              alpha=data.draw(st.sampled_from((0.0, 0.5, 0.9, 0.999))))
    dt = np_dtype(dtype)
    params = [np.zeros(shape, dt), np.ones((2,), dt)]
    out = data.draw(S.states(params, hp, max_step=50))
    assert len(out) == len(params) and len({s.step for s in out}) == 1
    modulus = dt.kind == "c" and hp.complex_mode == "modulus"
    for p, s in zip(params, out):
        assert 0 <= s.step <= 50
        if bias_correction and eps == 0 and hp.initial_square_avg == 0:
            assert s.step >= 1
        v_dtype = (np.float32 if dt == np.complex64 else np.float64) if modulus else dt
        assert type(s.square_avg) is np.ndarray
        assert s.square_avg.shape == p.shape and s.square_avg.dtype == v_dtype
        v = components(s.square_avg)
        # as if averaged from gradients within sqrt(max)/8: at most max/64
        assert np.isfinite(v).all() and (v >= 0).all()
        assert (v <= float(finfo(dtype).max) / 64).all()
        assert (s.grad_avg is not None) == centered
        assert (s.momentum_buffer is not None) == (hp.momentum > 0)
        if s.momentum_buffer is not None:
            assert s.momentum_buffer.shape == p.shape and s.momentum_buffer.dtype == dt
            assert_bounded(s.momentum_buffer, dtype)
        if centered:
            assert s.grad_avg.shape == p.shape and s.grad_avg.dtype == dt
            assert_bounded(s.grad_avg, dtype)
            vv = np.vectorize(lambda x: Fraction(float(x)), otypes=[object])(v)
            assert exact_le(exact_square(s.grad_avg, modulus), vv, strict=eps == 0)
        elif eps == 0:
            assert (v > 0).all()


@FAST
@given(st.data(), st.sampled_from(("float32", "float64", "complex128")), st.booleans(),
       st.sampled_from((0.5, 0.9, 0.99)))
def test_states_keep_the_centered_variance_positive(data, dtype, bias_correction, alpha):
    """R30 from a generated state: one exact step with eps = 0 stays finite (w > 0)."""
    hp = HParams.from_profile("torch", centered=True, eps=0.0, alpha=alpha, lr=0.1,
                              bias_correction=bias_correction)
    dt = np_dtype(dtype)
    params = (np.ones((4,), dt),)
    state = data.draw(S.states(params, hp, max_step=20))
    g = state[0].grad_avg * 2 + 1
    new_params, _ = step(params, (g,), state, hp)
    assert np.isfinite(components(new_params[0])).all()


@pytest.mark.parametrize("args, kwargs, match", [
    (([np.zeros(2)], HParams()), dict(max_step=-1), "max_step"),
    (([np.zeros(2)], HParams(bias_correction=True, eps=0.0)), dict(max_step=0), "max_step"),
    (([np.zeros(2)], "torch"), {}, "hp"),
    ((np.zeros(2), HParams()), {}, "params"),
    (([[0.0, 1.0]], HParams()), {}, "params"),
])
def test_states_validation(args, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        S.states(*args, **kwargs)


# --------------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------------
def check_case(case: Case, caps: Capabilities, dtype: str, *, min_steps=1, max_steps=4,
               max_size=64, allow_nonfinite=False) -> None:
    assert isinstance(case, Case)
    assert case.params[0].dtype == np_dtype(dtype)
    assert set(case.dtypes) <= caps.dtypes
    assert min_steps <= case.n_steps <= max_steps
    on = {"weight_decay": case.hp.weight_decay > 0, "momentum": case.hp.momentum > 0,
          "nesterov": case.hp.nesterov, "centered": case.hp.centered,
          "maximize": case.hp.maximize, "bias_correction": case.hp.bias_correction,
          "lr_schedule": case.lrs is not None, "layouts": case.layouts is not None,
          "state_load": case.initial_state is not None, "multi_param": len(case.params) > 1,
          "mixed_dtypes": len(set(case.dtypes)) > 1,
          "zero_size": any(p.ndim == 0 or p.size == 0 for p in case.params)}
    assert {f for f, v in on.items() if v} <= caps.features
    arrays = [*case.params, *(g for gs in case.grads for g in gs)]
    for st_ in case.initial_state or ():
        arrays += [a for a in (st_.square_avg, st_.grad_avg, st_.momentum_buffer)
                   if a is not None]
    assert all(type(a) is np.ndarray for a in arrays)  # 0-d arrays, never NumPy scalars
    for p in case.params:
        assert p.size <= max_size
        assert_bounded(p, p.dtype.name)
    for grads in case.grads:
        for g in grads:
            assert_bounded(g, g.dtype.name, finite=not allow_nonfinite)
    if allow_nonfinite:
        assert not all(np.isfinite(components(gs[0])).all() for gs in case.grads)
    if case.lrs is not None:
        assert all(x >= 0 and math.isfinite(x) for x in case.lrs)
    if case.layouts is not None:
        assert all(x in allowed_layouts(p.shape) for x, p in zip(case.layouts, case.params))
    if case.initial_state is not None:
        for p, s in zip(case.params, case.initial_state):
            assert s.square_avg.shape == p.shape
            assert (s.grad_avg is not None) == case.hp.centered


@FAST
@given(st.data(), st.sampled_from(DTYPES), st.sampled_from(PROFILES))
def test_cases_full_capabilities(data, dtype, profile):
    caps = caps_with(profile, FEATURES, DTYPES)
    case = data.draw(S.cases(caps, dtype, multi_param=True, mixed_dtypes=True, schedule=True,
                             layouts=True, initial_state=True, max_steps=3, max_size=16))
    check_case(case, caps, dtype, max_steps=3, max_size=16)
    assert case.lrs is not None and case.layouts is not None
    assert case.initial_state is not None


@FAST
@given(st.data(), st.sampled_from(DTYPES),
       st.frozensets(st.sampled_from(sorted(FEATURES)), max_size=5))
def test_cases_never_beyond_capabilities(data, dtype, features):
    caps = caps_with("torch", features, (dtype,))
    case = data.draw(S.cases(caps, dtype, min_steps=2, max_steps=2))
    check_case(case, caps, dtype, min_steps=2, max_steps=2)
    assert case.lrs is None and case.layouts is None and case.initial_state is None


@FAST
@given(st.data(), st.sampled_from(DTYPES))
def test_cases_nonfinite(data, dtype):
    caps = caps_with("torch", FEATURES, (dtype,))
    case = data.draw(S.cases(caps, dtype, allow_nonfinite=True, multi_param=True))
    check_case(case, caps, dtype, allow_nonfinite=True)


@pytest.mark.parametrize("name, predicate", [
    ("zero-size parameter beside others", lambda c: len(c.params) > 1 and any(
        p.size == 0 for p in c.params)),
    ("0-d parameter beside others", lambda c: len(c.params) > 1 and any(
        p.ndim == 0 for p in c.params)),
    ("mixed dtypes", lambda c: len(set(c.dtypes)) > 2),
    ("eps = 0 from a loaded state (torch profile)", lambda c: c.hp.eps == 0),
    ("channels_last", lambda c: "channels_last" in c.layouts),
    ("weight decay with parameters far from 0", lambda c: c.hp.weight_decay > 0.1 and any(
        (np.abs(components(p)) > 10).any() for p in c.params)),
])
def test_cases_reach(name, predicate):
    caps = caps_with("torch", FEATURES, DTYPES)
    reaches(S.cases(caps, "float32", multi_param=True, mixed_dtypes=True, layouts=True,
                 initial_state=True), predicate)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dtype="float64"), "float64"),                  # not declared
    (dict(device="cuda"), "cuda"),
    (dict(multi_param=True), "multi_param"),
    (dict(schedule=True), "lr_schedule"),
    (dict(layouts=True), "layouts"),
    (dict(initial_state=True), "state_load"),
    (dict(min_steps=0), "min_steps"),
    (dict(min_steps=3, max_steps=2), "max_steps"),
    (dict(max_size=0), "max_size"),
])
def test_cases_validation(kwargs, match):
    caps = caps_with("torch", {"centered", "mixed_dtypes"})
    kwargs = {"dtype": "float32", **kwargs}
    with pytest.raises(InvalidArgument, match=match):
        S.cases(caps, **kwargs)


def test_cases_mixed_dtypes_needs_multi_param():
    caps = caps_with("torch", FEATURES)
    with pytest.raises(InvalidArgument, match="multi_param"):
        S.cases(caps, "float32", mixed_dtypes=True)


# --------------------------------------------------------------------------------------------------
# structures of compiled backends
# --------------------------------------------------------------------------------------------------
COMPILED = Capabilities(profile="torch", dtypes=frozenset(DTYPES), features=frozenset(FEATURES),
                        compiled=True, specialised=frozenset({"weight_decay"}))
MULTI = {"multi_param": True, "mixed_dtypes": True, "layouts": True}


def compile_key(case: Case) -> tuple:
    """What torch.compile(dynamic=True) specialises a program on: flags, weight_decay, and per
    parameter its dtype, its sides 0 and 1 (the others symbolic) and its layout."""
    hp = case.hp
    return (hp.centered, hp.maximize, hp.momentum > 0, hp.nesterov, hp.bias_correction,
            hp.weight_decay, tuple((p.dtype.name, tuple(min(d, 2) for d in p.shape))
                                   for p in case.params), case.layouts)


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
@pytest.mark.parametrize("options", [{}, MULTI], ids=["single", "multi"])
def test_compiled_cases_take_a_few_structures_and_free_values(dtype, options):
    """40 examples of a compiled backend's target (what ci runs) compile at most STRUCTURES
    programs; sizes (beyond 0 and 1) and values still vary."""
    keys, sizes, lrs = set(), set(), set()

    @settings(max_examples=40, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(S.cases(COMPILED, dtype, **options))
    def collect(case):
        keys.add(compile_key(case))
        sizes.add(tuple(p.shape for p in case.params))
        lrs.add(case.hp.lr)
        assert all(p.size <= 64 for p in case.params)

    collect()
    assert 2 <= len(keys) <= S.STRUCTURES
    assert len(sizes) > len(keys) and len(lrs) >= 8


def test_structures_cover_ranks_sides_dtypes_layouts_and_flags():
    pool = S.structures(COMPILED, "float32", **MULTI)
    assert len(pool) == S.STRUCTURES
    params = [p for s in pool for p in s.params]
    assert {len(p.sides) for p in params} == {0, 1, 2, 3, 4}
    assert any(0 in p.sides for p in params) and any(1 in p.sides for p in params)
    assert any(p.sides == () and p.dtype == "float32" for p in params)  # a 0-d of the case dtype
    assert {p.layout for p in params} == set(LAYOUTS)
    assert len({p.dtype for p in params}) >= 4
    for feature in ("weight_decay", "momentum", "centered", "maximize"):
        assert {feature in s.flags.on for s in pool} == {True, False}, feature
    assert {dict(s.flags.values)["weight_decay"] for s in pool} == set(
        S.SPECIALISED_VALUES["weight_decay"])
    # The simplest first: what a failure shrinks towards.
    first = pool[0]
    assert not first.flags.on and all(p.dtype == "float32" and p.layout == "contiguous"
                                      for p in first.params)
    assert S.structures(COMPILED, "float32", **MULTI) == pool  # deterministic


def test_structures_keep_required_flags_and_declared_features():
    caps = Capabilities(profile="torch", dtypes=frozenset({"float32"}),
                        features=frozenset({"momentum", "maximize", "multi_param"}),
                        compiled=True, specialised=frozenset({"weight_decay"}))
    pool = S.structures(caps, "float32", multi_param=True, require={"maximize"})
    assert all("maximize" in s.flags.on and s.flags.on <= {"momentum", "maximize"}
               for s in pool)
    assert all(0 not in p.sides and p.sides != () for s in pool for p in s.params)  # no zero_size

    @FAST
    @given(S.cases(caps, "float32", multi_param=True, require={"maximize"}))
    def check(case):
        assert case.hp.maximize and case.hp.weight_decay == 0.0  # not a declared feature

    check()


def test_structures_nonfinite_first_parameter_is_never_empty():
    pool = S.structures(COMPILED, "float64", multi_param=True, allow_nonfinite=True)
    assert all(0 not in s.params[0].sides for s in pool)

    @FAST
    @given(S.cases(COMPILED, "float64", multi_param=True, allow_nonfinite=True))
    def check(case):
        g = case.grads[0][0]
        assert g.size > 0 and not np.isfinite(np.concatenate(
            [components(gs[0]).ravel() for gs in case.grads])).all()

    check()


@FAST
@given(S.hparams(COMPILED))
def test_compiled_hparams_take_specialised_values_from_the_grid(hp):
    assert hp.weight_decay == 0.0 or hp.weight_decay in S.SPECIALISED_VALUES["weight_decay"]


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n=0"), ({"dtype": "float8"}, "dtype='float8'"),
    ({"require": {"layouts"}}, "layouts"),
])
def test_structures_validation(kwargs, match):
    kwargs = {"dtype": "float32", **kwargs}
    with pytest.raises(InvalidArgument, match=match):
        S.structures(COMPILED, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"specialised": {"beta"}}, "'beta' is not one of lr, alpha"),
    ({"specialised": {"weight_decay"}, "compiled": False}, "needs compiled=True"),
])
def test_capabilities_reject_bad_specialised(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Capabilities(profile="torch", dtypes=frozenset({"float32"}),
                     **{"compiled": True, **kwargs})


# --------------------------------------------------------------------------------------------------
# settings profiles
# --------------------------------------------------------------------------------------------------
def test_settings_profiles():
    quick, ci, thorough = (S.settings_for(n) for n in ("quick", "ci", "thorough"))
    assert quick.max_examples < ci.max_examples < thorough.max_examples
    assert ci.derandomize and ci.print_blob
    assert all(s.deadline is None for s in (quick, ci, thorough))
    assert HealthCheck.too_slow in ci.suppress_health_check
    assert S.settings_for("rmsprop-ci") is ci
    assert settings.get_profile("rmsprop-thorough").max_examples == thorough.max_examples


@pytest.mark.parametrize("bad", ["fast", "rmsprop-fast", "", None])
def test_settings_for_rejects_unknown(bad):
    with pytest.raises(ValueError, match="quick.*ci.*thorough") as info:
        S.settings_for(bad)
    assert repr(bad) in str(info.value)
