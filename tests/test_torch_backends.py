"""The torch adapters (implementations/torch_backends.py) and the mutant corpus (tests/mutants.py).

Every expected value comes from the oracle (spec.rmsprop): a backend's step k is judged from its
own parameters and state after step k-1, element by element within 4 x step_with_bounds's bound
for the parameter's dtype (R31).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import ml_dtypes
import numpy as np
import pytest
import torch

from conformance.case import Case, Trajectory
from implementations import torch_backends as tb
from implementations._torch_common import to_numpy, to_torch
from spec.rmsprop import ParamState, dtype_info, init_state, run, step_with_bounds
from tests import mutants
from tests.mutants import EXPECTED_PROPERTY, MUTANTS, REVEALING, Reference, make_case

K = 4.0
EAGER = (tb.ForLoop, tb.Foreach, tb.Differentiable, tb.TensorLR)
FIELDS = ("square_avg", "grad_avg", "momentum_buffer")


# ---------------------------------------------------------------------------------------------
# Judging against the oracle
# ---------------------------------------------------------------------------------------------
def _pairs(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if np.iscomplexobj(a):
        return np.stack([a.real, a.imag], axis=-1)
    return a.astype(np.float64)


def _deviation(observed: np.ndarray, exact: np.ndarray, bound: np.ndarray, tiny: float
               ) -> float:
    """Largest |observed - exact| / allowed (NaN where exact is NaN counts as agreement)."""
    obs, ex = _pairs(observed), _pairs(exact)
    if obs.shape != ex.shape:
        return math.inf
    both_nan = np.isnan(obs) & np.isnan(ex)
    with np.errstate(invalid="ignore"):
        err = np.where(both_nan, 0.0, np.abs(obs - ex))
        allowed = K * np.broadcast_to(bound, ex.shape) + tiny
        ratio = np.where(err <= allowed, 0.0, np.where(np.isfinite(err), err / allowed, np.inf))
    return float(ratio.max(initial=0.0))


def deviations(case: Case, traj: Trajectory) -> list[str]:
    """Where ``traj`` leaves the oracle's error bound, re-aligned per step (empty: conforms)."""
    out = []
    params = list(case.params)
    state = case.initial_state or init_state(params, case.hp)
    assert len(traj.params) == case.n_steps
    for k in range(case.n_steps):
        for i, p in enumerate(params):
            obs = traj.params[k][i]
            if obs.dtype != case.params[i].dtype:
                out.append(f"step {k} param {i}: dtype {obs.dtype}")
            tiny = dtype_info(case.params[i].dtype).tiny
            ep, es, b = step_with_bounds([p], [case.grads[k][i]], [state[i]], case.hp,
                                         dtype=case.params[i].dtype, lr=case.lr_at(k))
            if _deviation(obs, ep[0], b.params[0], tiny) > 1:
                out.append(f"step {k} param {i}: params {obs!r} vs exact {ep[0]!r}")
            st = traj.states[k][i]
            if st.step != es[0].step:
                out.append(f"step {k} param {i}: step {st.step} vs {es[0].step}")
            for name in FIELDS:
                got, want = getattr(st, name), getattr(es[0], name)
                if (got is None) != (want is None):
                    out.append(f"step {k} param {i}: {name} presence")
                elif got is not None and (got.dtype != case.params[i].dtype or _deviation(
                        got, want, getattr(b, name)[0], tiny) > 1):
                    out.append(f"step {k} param {i}: {name} {got.dtype} {got!r} vs {want!r}")
        params, state = list(traj.params[k]), traj.states[k]
    return out


def _arrays(rng: np.random.Generator, dtype: str, shape: tuple[int, ...],
            scale: float = 1.0) -> np.ndarray:
    a = rng.standard_normal(shape) * scale
    if dtype.startswith("complex"):
        a = a + 1j * rng.standard_normal(shape) * scale
    if dtype == "bfloat16":
        return a.astype(ml_dtypes.bfloat16)
    return a.astype(dtype)


def mixed_case(steps: int = 3, seed: int = 0, with_state: bool = False, **hp) -> Case:
    """Six parameters: every dtype, a 0-d and a zero-size one, every layout, an lr schedule."""
    spec = [("float32", (2, 3), "transposed"), ("float64", (), "contiguous"),
            ("complex64", (0, 4), "strided"), ("bfloat16", (5, 2), "strided"),
            ("float16", (2, 3, 2, 2), "channels_last"), ("complex128", (3,), "contiguous")]
    rng = np.random.default_rng(seed)
    base = make_case(shapes=((1,),), **hp)
    params = tuple(_arrays(rng, d, s) for d, s, _ in spec)
    grads = tuple(tuple(_arrays(rng, d, s) for d, s, _ in spec) for _ in range(steps))
    case = Case(hp=base.hp, params=params, grads=grads,
                lrs=tuple(0.01 * (k + 1) for k in range(steps)),
                layouts=tuple(layout for *_, layout in spec))
    if with_state:
        _, states = run([p.astype(np.complex128 if p.dtype.kind == "c" else np.float64)
                         for p in params], grads, base.hp, lrs=case.lrs)
        case = case.replace(initial_state=states[-1])
    return case


FLAGS = [dict(), dict(centered=True, momentum=0.9, weight_decay=0.1, maximize=True),
         dict(momentum=0.5, alpha=0.9), dict(centered=True, alpha=0.5, eps=1e-3)]


# ---------------------------------------------------------------------------------------------
# A spy on torch.optim.RMSprop.step: what torch really saw
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def spy_on_step() -> Iterator[list[dict]]:
    seen: list[dict] = []
    original = torch.optim.RMSprop.step

    def step(self, *args, **kwargs):
        params = self.param_groups[0]["params"]
        record = {
            "strides": [p.stride() for p in params],
            "contiguous": [p.is_contiguous() for p in params],
            "channels_last": [p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
                              for p in params],
            "lr": self.param_groups[0]["lr"],
            "flags": {k: self.param_groups[0][k] for k in ("foreach", "differentiable")},
        }
        out = original(self, *args, **kwargs)
        # The last operation autograd recorded on each parameter (None: not recorded).
        record["grad_fn"] = [None if p.grad_fn is None else type(p.grad_fn).__name__
                             for p in params]
        record["state_keys"] = [sorted(self.state[p]) for p in params]
        lr = self.param_groups[0]["lr"]
        record["lr_value"] = float(lr.reshape(-1)[0]) if isinstance(lr, torch.Tensor) else lr
        seen.append(record)
        return out

    torch.optim.RMSprop.step = step
    try:
        yield seen
    finally:
        torch.optim.RMSprop.step = original


# ---------------------------------------------------------------------------------------------
# Eager backends
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_cls", EAGER, ids=lambda c: c.name)
@pytest.mark.parametrize("flags", FLAGS, ids=range(len(FLAGS)))
@pytest.mark.parametrize("with_state", [False, True], ids=["fresh", "loaded"])
def test_eager_backends_conform_on_mixed_case(backend_cls, flags, with_state) -> None:
    case = mixed_case(with_state=with_state, **flags)
    traj = backend_cls().run(case)
    assert deviations(case, traj) == []


@pytest.mark.parametrize("backend_cls", EAGER, ids=lambda c: c.name)
def test_float64_trajectory_matches_oracle_tightly(backend_cls) -> None:
    case = make_case(shapes=((4, 3), (5,)), steps=6, lrs=(0.1, 0.05, 0.2, 0.01, 0.3, 0.1),
                     centered=True, momentum=0.9, weight_decay=0.1, maximize=True)
    traj = backend_cls().run(case)
    ps, ss = run(case.params, case.grads, case.hp, case.lrs)
    for k in range(case.n_steps):
        for i in range(2):
            np.testing.assert_allclose(traj.params[k][i], ps[k][i], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(traj.states[k][i].momentum_buffer,
                                       ss[k][i].momentum_buffer, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend_cls", EAGER, ids=lambda c: c.name)
def test_layouts_reach_torch_as_non_contiguous_tensors(backend_cls) -> None:
    case = mixed_case(steps=1)
    backend = backend_cls()  # outside the spy: loading steps a probe optimizer once
    with spy_on_step() as seen:
        backend.run(case)
    (record,) = seen
    # float32 (2, 3) transposed: column-major; bfloat16 (5, 2) every other element.
    assert record["strides"][0] == (1, 2)
    assert record["strides"][3] == (4, 2)
    assert record["contiguous"][0] is False and record["contiguous"][3] is False
    assert record["channels_last"][4] is True and record["contiguous"][4] is False
    assert record["strides"][1] == ()  # the 0-d parameter stays 0-d


def test_to_torch_keeps_values_dtype_and_layout() -> None:
    rng = np.random.default_rng(3)
    for dtype in ("float16", "bfloat16", "float32", "float64", "complex64", "complex128"):
        a = _arrays(rng, dtype, (2, 3, 4, 5))
        t_last = to_torch(np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2))
        assert t_last.is_contiguous(memory_format=torch.channels_last)
        back = to_numpy(t_last)
        assert back.dtype == a.dtype and np.array_equal(back.view(np.uint8), a.view(np.uint8))
    zero_d = to_torch(np.array(2.5, dtype=ml_dtypes.bfloat16))
    assert zero_d.shape == () and zero_d.dtype == torch.bfloat16 and zero_d.item() == 2.5


@pytest.mark.parametrize("backend_cls", EAGER, ids=lambda c: c.name)
def test_state_readout_uses_spec_names(backend_cls) -> None:
    for flags, present in ((dict(), set()), (dict(centered=True), {"grad_avg"}),
                           (dict(momentum=0.5), {"momentum_buffer"}),
                           (dict(centered=True, momentum=0.5), {"grad_avg", "momentum_buffer"})):
        case = make_case(shapes=((3,),), steps=2, **flags)
        with spy_on_step() as seen:
            traj = backend_cls().run(case)
        assert seen[-1]["state_keys"] == [sorted({"step", "square_avg"} | present)]
        st = traj.states[-1][0]
        assert isinstance(st, ParamState) and st.step == 2
        assert {n for n in ("grad_avg", "momentum_buffer") if getattr(st, n) is not None} \
            == present
        assert st.square_avg.shape == (3,) and st.square_avg.dtype == np.float64


@pytest.mark.parametrize("backend_cls", EAGER, ids=lambda c: c.name)
def test_state_load_round_trip(backend_cls) -> None:
    """Saving after 2 steps, loading into a fresh optimizer and continuing equals not stopping."""
    case = mixed_case(steps=4, centered=True, momentum=0.9, weight_decay=0.1)
    backend = backend_cls()
    full = backend.run(case)
    resumed = backend.run(case.replace(params=full.params[1], grads=case.grads[2:],
                                       lrs=case.lrs[2:], initial_state=full.states[1]))
    for k in range(2):
        for a, b in zip(full.params[k + 2], resumed.params[k]):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        for s1, s2 in zip(full.states[k + 2], resumed.states[k]):
            assert s1.step == s2.step == k + 3
            for name in FIELDS:
                x, y = getattr(s1, name), getattr(s2, name)
                assert (x is None) == (y is None)
                assert x is None or x.tobytes() == y.tobytes()


@pytest.mark.parametrize("backend_cls", EAGER, ids=lambda c: c.name)
def test_run_leaves_case_arrays_alone(backend_cls) -> None:
    case = mixed_case(steps=2, with_state=True, weight_decay=0.1, maximize=True)
    arrays = [*case.params, *(g for gs in case.grads for g in gs),
              *(getattr(s, n) for s in case.initial_state for n in FIELDS
                if getattr(s, n) is not None)]
    before = [a.tobytes() for a in arrays]
    backend_cls().run(case)
    assert [a.tobytes() for a in arrays] == before


@pytest.mark.parametrize("backend_cls", [*EAGER, tb.Compiled], ids=lambda c: c.name)
def test_make_optimizer_validates(backend_cls) -> None:
    backend = backend_cls()
    for name in ("lr", "eps", "alpha", "momentum", "weight_decay"):
        for bad in (-1.0, math.nan):
            with pytest.raises(ValueError, match="Invalid"):
                backend.make_optimizer({name: bad})
    for name, edge in (("lr", 0.0), ("eps", 0.0), ("alpha", 0.0), ("alpha", 1.0),
                       ("momentum", 0.0), ("weight_decay", 0.0)):
        assert isinstance(backend.make_optimizer({name: edge}), torch.optim.RMSprop)
    with pytest.raises(ValueError, match="eps_in_sqrt"):
        backend.make_optimizer({"eps_in_sqrt": True})


def test_hparams_of_another_profile_are_refused() -> None:
    case = make_case()
    with pytest.raises(ValueError, match="eps_in_sqrt"):
        tb.ForLoop().run(case.replace(hp=case.hp.replace(eps_in_sqrt=True)))


def test_code_paths_are_what_their_names_say() -> None:
    case = make_case(steps=2, lrs=(0.1, 0.02))
    expected = {tb.ForLoop: (False, False), tb.Foreach: (True, False),
                tb.Differentiable: (False, True), tb.TensorLR: (False, False)}
    for cls, (foreach, differentiable) in expected.items():
        backend = cls()  # outside the spy: loading steps a probe optimizer once
        with spy_on_step() as seen:
            backend.run(case)
        assert [r["flags"] for r in seen] == [{"foreach": foreach,
                                               "differentiable": differentiable}] * 2
        assert [r["lr_value"] for r in seen] == [0.1, 0.02]
        # The differentiable step runs under autograd and records the update.
        assert all((r["grad_fn"] != [None]) is differentiable for r in seen)
        if differentiable:  # the update itself, not the copy that made the parameter
            assert all(not r["grad_fn"][0].startswith("Copy") for r in seen)
        lr = seen[0]["lr"]
        if cls is tb.TensorLR:
            assert isinstance(lr, torch.Tensor) and lr.shape == (1,) and lr.dtype == torch.float64
        else:
            assert isinstance(lr, float)


def test_capabilities() -> None:
    for cls in (*EAGER, tb.Compiled):
        caps = cls().capabilities()
        assert caps.profile == "torch" and caps.devices[0] == "cpu"
        assert caps.dtypes == {"float16", "bfloat16", "float32", "float64", "complex64",
                               "complex128"}
        assert "reject_invalid" in caps.features and "nesterov" not in caps.features
    caps = tb.Capturable().capabilities()
    if not torch.cuda.is_available():
        assert caps.devices == () and "cuda" in caps.unavailable
        with pytest.raises(ValueError, match="unavailable"):
            tb.Capturable().run(make_case())


@pytest.mark.xfail(strict=True, reason="torch finding: load_state_dict casts floating-point "
                   "state to the parameter's dtype but not complex state (is_floating_point() is "
                   "False for complex), so a complex128 state stays complex128 on complex64 "
                   "parameters and the next step raises")
@pytest.mark.parametrize("foreach", [False, True])
def test_torch_load_state_dict_casts_complex_state(foreach: bool) -> None:
    p = torch.zeros(3, dtype=torch.complex64)
    opt = torch.optim.RMSprop([p], momentum=0.5, centered=True, foreach=foreach)
    sd = opt.state_dict()
    sd["state"] = {0: {"step": torch.tensor(3.0),
                       **{n: torch.ones(3, dtype=torch.complex128) for n in FIELDS}}}
    opt.load_state_dict(sd)
    assert [opt.state[p][n].dtype for n in FIELDS] == [torch.complex64] * 3


# ---------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled() -> tb.Compiled:
    # A fresh dynamo, so that graph counts start from entries of these tests only.
    torch._dynamo.reset()
    return tb.Compiled()


@pytest.fixture(scope="module")
def compiled_floats() -> tb.Compiled:
    """The compiled step with alpha as a Python float too, as RMSprop's param_groups hold it
    (where torch's findings below live); the backend passes it as a 0-d tensor."""
    torch._dynamo.reset()
    backend = tb.Compiled()
    backend.tensor_hyperparameters = ()
    return backend


def test_compiled_conforms_and_reuses_its_graph(compiled) -> None:
    from torch._dynamo.utils import counters  # noqa: PLC0415

    flags = dict(centered=True, momentum=0.9, weight_decay=0.1, maximize=True)
    first = make_case(shapes=((2, 3), (4,)), steps=3, lrs=(0.1, 0.2, 0.05), seed=1, **flags)
    captured = compiled.captured_operations()
    assert deviations(first, compiled.run(first)) == []
    # The update is inductor's: dynamo captured its operations (a graph break in torch's loop
    # would have run the step eagerly, capturing none).
    assert compiled.captured_operations() - captured >= 10
    graphs = counters["stats"]["unique_graphs"]
    # Same structure and weight_decay; new values, learning rates, alpha, eps and momentum,
    # and a loaded state.
    again = make_case(shapes=((2, 3), (4,)), steps=3, lrs=(0.3, 0.01, 0.02), seed=2,
                      state_step=7, **{**flags, "momentum": 0.5}, alpha=0.7, eps=1e-6)
    assert deviations(again, compiled.run(again)) == []
    assert counters["stats"]["unique_graphs"] == graphs, "recompiled for new values"


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=torch._dynamo.exc.Unsupported,
                   reason="torch finding: a 0-d tensor weight_decay breaks the graph at "
                   "`if weight_decay != 0` inside the per-parameter loop; without fullgraph, "
                   "dynamo then runs the whole step eagerly (no operation compiled)")
def test_torch_compile_takes_a_tensor_weight_decay() -> None:
    torch._dynamo.reset()
    step = torch.compile(tb._functional_step, dynamic=True, fullgraph=True)
    p, sq = torch.ones(4), torch.zeros(4)
    f64 = dict(dtype=torch.float64)
    step([p], [torch.full((4,), 2.0)], [sq], [], [], [torch.tensor(0.0)],
         torch.tensor(0.01, **f64), torch.tensor(0.9, **f64), 1e-8, torch.tensor(0.1, **f64),
         0.0, False, False, False)
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_keeps_layouts(compiled) -> None:
    case = make_case("float32", shapes=((3, 4), (2, 3, 4, 5)), steps=2,
                     layouts=("transposed", "channels_last"), momentum=0.5)
    assert deviations(case, compiled.run(case)) == []


@pytest.mark.slow
def test_compiled_follows_alpha(compiled_floats) -> None:
    """As a Python float, each new alpha compiles once more (torch specialises 1 - alpha), with
    the right value when the FX graph cache is off."""
    for alpha in (0.99, 0.9, 0.8, 0.5):
        case = make_case(shapes=((4,),), seed=5, alpha=alpha)
        assert deviations(case, compiled_floats.run(case)) == [], f"alpha={alpha}"


def _functional_square_avgs(alphas, fx_graph_cache: bool) -> list[float]:
    """square_avg after one step of the compiled functional rmsprop, per alpha (g = 2)."""
    torch._dynamo.reset()
    step = torch.compile(tb._functional_step, dynamic=True)
    lr = torch.tensor(0.01, dtype=torch.float64)
    out = []
    with torch._inductor.config.patch(fx_graph_cache=fx_graph_cache):
        for alpha in alphas:
            p, sq = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
            step([p], [torch.full((4,), 2.0, dtype=torch.float64)], [sq], [], [],
                 [torch.tensor(0.0)], lr, alpha, 1e-8, 0.0, 0.0, False, False, False)
            out.append(sq[0].item())
    torch._dynamo.reset()
    return out


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="torch finding: with inductor's FX graph cache on (the "
                   "default), the entry compiled after the guard on 1 - alpha fails is served the "
                   "graph of the first alpha: square_avg stays (1 - 0.99) * 4 for every alpha")
def test_torch_compile_fx_graph_cache_follows_alpha() -> None:
    alphas = (0.99, 0.9, 0.8)
    assert _functional_square_avgs(alphas, fx_graph_cache=True) == [(1 - a) * 4 for a in alphas]


@pytest.mark.slow
def test_torch_compile_without_fx_graph_cache_follows_alpha() -> None:
    alphas = (0.99, 0.9, 0.8)
    assert _functional_square_avgs(alphas, fx_graph_cache=False) == [(1 - a) * 4 for a in alphas]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="torch finding: centered, an alpha "
                   "that needs 17 significant digits makes dynamo raise 'Guard failed on the same "
                   "frame it was created': the guard on the specialised 1 - alpha holds the value "
                   "rounded to 16 digits (0.0557959234941825, not 0.055795923494182505)")
def test_torch_compile_centered_alpha_of_17_digits() -> None:
    torch._dynamo.reset()
    step = torch.compile(tb._functional_step, dynamic=True)
    p, sq, avg = torch.ones(4), torch.zeros(4), torch.zeros(4)
    with torch._inductor.config.patch(fx_graph_cache=False):
        step([p], [torch.full((4,), 2.0)], [sq], [avg], [], [torch.tensor(0.0)],
             torch.tensor(0.01, dtype=torch.float64), 0.055795923494182505, 1e-8, 0.0, 0.0,
             True, False, False)
    torch._dynamo.reset()
    assert sq[0].item() == pytest.approx((1 - 0.055795923494182505) * 4, rel=1e-6)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="torch finding: a compiled in-place update of a 0-d "
                   "float64 CPU tensor is dropped (aot_eager and inductor)")
@pytest.mark.parametrize("backend", ["compiled", "compiled_floats"])
def test_compiled_updates_0d_float64(backend, request) -> None:
    case = make_case(shapes=((),), steps=2, seed=6)
    assert deviations(case, request.getfixturevalue(backend).run(case)) == []


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=Exception, reason="torch finding: inductor fails to lower "
                   "view_as_complex of a zero-size complex parameter (maximize + weight decay)")
@pytest.mark.parametrize("backend", ["compiled", "compiled_floats"])
def test_compiled_zero_size_complex_with_weight_decay(backend, request) -> None:
    case = make_case("complex64", shapes=((0, 4),), weight_decay=0.1, maximize=True)
    assert deviations(case, request.getfixturevalue(backend).run(case)) == []


# ---------------------------------------------------------------------------------------------
# The mutant corpus
# ---------------------------------------------------------------------------------------------
def test_corpus_covers_the_applicable_bug_classes() -> None:
    classes = {int(c.__doc__.split()[0][1:]) for c in MUTANTS.values()
               if c.__doc__.startswith("#")}
    # 18 (differentiable path) has no single-tensor analogue; 3's clamp is not a torch bug.
    assert classes == set(range(1, 21)) - {18}
    assert set(EXPECTED_PROPERTY.values()) <= {f"P{i}" for i in range(1, 15)}
    assert all(MUTANTS[n].name == f"mutant.{n}" for n in MUTANTS)
    assert Reference.name not in {c.name for c in MUTANTS.values()}


@pytest.mark.parametrize("name", [n for n, r in REVEALING.items() if r.observe == "params"])
def test_mutant_deviates_from_oracle(name: str) -> None:
    reveal = REVEALING[name]
    case = reveal.case()
    assert deviations(case, Reference().run(case)) == []
    traj = MUTANTS[name]().run(case)
    assert deviations(case, traj) != [], f"{name} conforms on its revealing input"
    if reveal.as_if is not None:
        # The bug, in the spec's own terms: the mutant follows another configuration.
        other = reveal.as_if(case)
        ps, _ = run(other.params, other.grads, other.hp, other.lrs)
        for k in range(case.n_steps):
            for got, want in zip(traj.params[k], ps[k]):
                np.testing.assert_allclose(_pairs(got), _pairs(want), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", [n for n, r in REVEALING.items() if r.observe == "layout"])
def test_layout_mutant_deviates_only_with_layouts(name: str) -> None:
    case = REVEALING[name].case()
    mutant = MUTANTS[name]()
    assert deviations(case, Reference().run(case)) == []
    assert deviations(case.replace(layouts=None), mutant.run(case.replace(layouts=None))) == []
    assert deviations(case, mutant.run(case)) != []


@pytest.mark.parametrize("name", [n for n, r in REVEALING.items() if r.observe == "state"])
def test_state_mutant_shows_in_state_readout(name: str) -> None:
    case = REVEALING[name].case()
    ref, bad = Reference().run(case), MUTANTS[name]().run(case)
    assert deviations(case, ref) == []
    want = case.initial_state[0].step + 1
    assert ref.states[0][0].step == want
    st = bad.states[0][0]
    assert st.step != want or st.square_avg.dtype != case.params[0].dtype


@pytest.mark.parametrize("name", [n for n, r in REVEALING.items() if r.observe == "reject"])
def test_validation_mutant_accepts_what_torch_rejects(name: str) -> None:
    hparams = REVEALING[name].hparams
    with pytest.raises(ValueError):
        Reference().make_optimizer(hparams)
    with pytest.raises(ValueError):
        torch.optim.RMSprop([torch.zeros(1)], **hparams)
    MUTANTS[name]().make_optimizer(hparams)


def test_gradient_mutant_changes_the_callers_array() -> None:
    reveal = REVEALING["mutates_gradient"]
    for cls, mutated in ((Reference, False), (mutants.MutatesGradient, True)):
        case = reveal.case()
        before = case.grads[0][0].copy()
        traj = cls().run(case)
        assert deviations(reveal.case(), traj) == []  # the update itself is right
        assert (not np.array_equal(case.grads[0][0], before)) is mutated


def test_nondeterministic_mutant_differs_between_runs() -> None:
    case = REVEALING["non_deterministic"].case()
    for cls, same in ((Reference, True), (mutants.NonDeterministic, False)):
        t1, t2 = cls().run(case), cls().run(case)
        assert deviations(case, t1) == []  # within every bound
        identical = all(a.tobytes() == b.tobytes() for ps1, ps2 in zip(t1.params, t2.params)
                        for a, b in zip(ps1, ps2))
        assert identical is same


def test_reference_conforms_on_mixed_cases() -> None:
    for flags in FLAGS:
        for with_state in (False, True):
            case = mixed_case(with_state=with_state, **flags)
            assert deviations(case, Reference().run(case)) == []
