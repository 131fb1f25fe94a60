"""Known deviations excuse a mechanism: the cause of a spurious non-finite value (causes.py), the
``cause`` key of a deviation entry, and mutants of torch's own rmsprop.py that make NaN another
way, which the project's known-deviations file does not excuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.torch_mutants import BY_NAME, backend_for, load_mutant
from conformance import deviations
from conformance.case import Case, Trajectory
from conformance.causes import classify
from conformance.properties import BY_ID, PropertyFailure
from conformance.tolerance import judge
from spec.rmsprop import HParams, ParamState

ROOT = Path(__file__).resolve().parents[1]
F16, F32, F64 = np.float16, np.float32, np.float64


def _state(v, gbar=None, step=1, dtype=F32) -> ParamState:
    return ParamState(step, np.array(v, dtype=dtype),
                      None if gbar is None else np.array(gbar, dtype=dtype))


def _cause(hp: HParams, dtype, returned: ParamState | None, *, grad=0.0, lr=None,
           state_in: ParamState | None = None, exact: ParamState | None = None) -> str:
    p = np.array([1.0], dtype=dtype)
    g = np.array([grad], dtype=dtype)
    fresh = _state([0.0], [0.0] if hp.centered else None, step=0, dtype=dtype)
    return classify(hp, hp.lr if lr is None else lr, p, g, state_in or fresh,
                    exact or returned or fresh, returned, (0,))


def test_eps_rounding_to_zero_with_a_zero_variance_is_eps_underflow():
    hp = HParams.from_profile("torch", eps=1e-8)
    assert np.float16(1e-8) == 0 and np.float32(1e-8) != 0
    assert _cause(hp, F16, _state([0.0], dtype=F16)) == "eps-underflow"
    # In float32 eps is representable: the same 0/0 is the formula's own (eps dropped).
    assert _cause(hp, F32, _state([0.0])) == "unexplained"
    # A non-zero variance: the denominator is not 0, eps rounding does not explain the NaN.
    assert _cause(hp, F16, _state([1.0], dtype=F16)) == "unexplained"


def test_negative_centered_variance_of_the_returned_state():
    hp = HParams.from_profile("torch", centered=True)
    above_one = float(np.nextafter(F32(1), F32(2)))
    # float32: v = 1, ḡ = 1 + 2⁻²³: v − ḡ² < 0 exactly and as float32 rounds it.
    assert _cause(hp, F32, _state([1.0], [above_one])) == "centered-negative"
    # float64: ḡ = 1 + 2⁻⁵², v = fl(ḡ²) = 1 + 2⁻⁵¹: rounded, v − fl(ḡ·ḡ) is 0, but exactly (as a
    # fused multiply-add sees it) it is −2⁻¹⁰⁴.
    gbar = 1 + 2.0 ** -52
    v = gbar * gbar
    assert v - gbar * gbar == 0 and v == 1 + 2.0 ** -51
    assert _cause(hp, F64, _state([v], [gbar], dtype=F64)) == "centered-negative"
    # A positive variance: a NaN there is not this mechanism (e.g. ḡ² − v under the root).
    assert _cause(hp, F32, _state([1.0], [0.5])) == "unexplained"
    # A returned state that does not conform explains nothing.
    assert _cause(hp, F32, None, exact=_state([1.0], [above_one])) == "unexplained"


def test_a_bias_corrected_variance_within_rounding_of_zero_is_centered_negative():
    """optax's NaN found by P4 (float32, centered, bias correction, nearly constant gradients
    of ~36): after 6 steps v = 75.63292, ḡ = 2.1038125, so v̂ = v/c ≈ ḡ̂² ≈ 1292.6. Exactly
    v̂ − ḡ̂² = 8.4e-5 > 0, and fl(v̂) − fl(ḡ̂·ḡ̂) with c rounded from float64 is +2.4e-4; but
    c = 1 − 0.99⁶ computed in float32 can be off by ~16 u relative (1 − α^t cancels), which
    moves v̂ − ḡ̂² by up to ~0.03: a correct float32 computation can land below 0."""
    hp = HParams.from_profile("optax", centered=True, bias_correction=True, alpha=0.99,
                              eps=1.24e-5)
    before = _state([0.0], [0.0], step=5)
    state = _state([75.63292], [2.1038125], step=6)
    assert _cause(hp, F32, state, state_in=before) == "centered-negative"
    # Well away from 0 (v̂ − ḡ̂² ≈ 0.4 v̂): a NaN there is not this mechanism.
    assert _cause(hp, F32, _state([75.63292], [1.6], step=6), state_in=before) == "unexplained"


def test_complex_square_avg_held_complex_under_modulus_is_read_as_its_real_value():
    """optax keeps square_avg complex (zero imaginary part) under "modulus": the zero imaginary
    part is not a second variance component, so v = 2, |ḡ|² = 1 is positive."""
    hp = HParams.from_profile("optax", centered=True)
    assert hp.complex_mode == "modulus"
    p = np.array([1 + 1j], dtype=np.complex64)
    st = ParamState(1, np.array([2 + 0j], dtype=np.complex64), np.array([1 + 0j], np.complex64))
    assert classify(hp, hp.lr, p, p, st, st, st, (0, 0)) == "unexplained"
    st = ParamState(1, np.array([0.5 + 0j], dtype=np.complex64), np.array([1 + 0j], np.complex64))
    assert classify(hp, hp.lr, p, p, st, st, st, (0, 0)) == "centered-negative"


def test_an_intermediate_past_the_dtype_range_is_overflow():
    # float16 (max 65504): v = (1 − α)·g² = 100, d = 10, the step lr·g/d = 10⁴ is finite, but
    # the permitted form (lr·g)/d rounds lr·g = 10⁵ first, which overflows.
    hp = HParams.from_profile("torch", eps=1e-3, lr=1e3)
    out = _state([100.0], dtype=F16)
    assert _cause(hp, F16, out, grad=100.0) == "overflow"
    assert _cause(hp.replace(lr=1.0), F16, out, grad=100.0) == "unexplained"


def test_judge_attaches_the_cause_to_a_spurious_nonfinite_value():
    hp = HParams.from_profile("torch")
    case = Case(hp=hp, params=(np.ones(2, F16),), grads=((np.zeros(2, F16),),))
    traj = Trajectory([(np.array([np.nan, 1.0], F16),)],
                      [(ParamState(1, np.zeros(2, F16)),)])
    v = judge(case, traj).violations[0]
    assert (v.rule, v.kind, v.cause) == ("R27", "spurious_nonfinite", "eps-underflow")
    assert "cause: eps-underflow" in v.describe()
    # float32 (eps representable): the same NaN beside a zero square_avg is the formula's own,
    # and beside a square_avg that is itself wrong, no mechanism either.
    case = Case(hp=hp, params=(np.ones(2, F32),), grads=((np.zeros(2, F32),),))
    for v in (0.0, 5.0):
        traj = Trajectory([(np.array([np.nan, 1.0], F32),)],
                          [(ParamState(1, np.full(2, v, F32)),)])
        assert judge(case, traj).violations[0].cause == "unexplained"


# ---------------------------------------------------------------------------------------------
# Deviation entries name the cause they excuse
# ---------------------------------------------------------------------------------------------
def _load(tmp_path: Path, body: str) -> list[deviations.Deviation]:
    path = tmp_path / "known.toml"
    path.write_text("[[deviation]]\nbackend = \"torch.*\"\nproperty = \"P4\"\n"
                    "reason = \"why\"\n" + body)
    return deviations.load(path)


def test_a_nonfinite_entry_must_name_a_known_cause(tmp_path):
    with pytest.raises(deviations.DeviationsError) as info:
        _load(tmp_path, 'rule = "R27"\n')
    text = str(info.value)
    assert "known.toml" in text and "deviation #1" in text
    assert "centered-negative, eps-underflow, overflow" in text
    with pytest.raises(deviations.DeviationsError, match="unknown cause 'nan'.*allowed: "
                       "centered-negative, eps-underflow, overflow"):
        _load(tmp_path, 'rule = "R27"\ncause = "nan"\n')
    with pytest.raises(deviations.DeviationsError, match="unknown cause 'unexplained'"):
        _load(tmp_path, 'cause = "unexplained"\n')


def test_an_entry_excuses_only_its_cause(tmp_path):
    [entry] = _load(tmp_path, 'rule = "R27"\ncause = "eps-underflow"\n')
    where = dict(backend="torch.foreach", prop_id="P4", prop_name="no_spurious_nonfinite",
                 dtype="float16", device="cpu", rule="R27")
    assert entry.matches(**where, cause="eps-underflow")
    assert not entry.matches(**where, cause="unexplained")
    assert not entry.matches(**where, cause="centered-negative")
    # Without a cause an entry excuses value failures, never a non-finite one.
    [plain] = _load(tmp_path, "")
    assert plain.matches(**where) and not plain.matches(**where, cause="eps-underflow")


# ---------------------------------------------------------------------------------------------
# torch's own rmsprop.py: its documented NaN is excused, mutants that make NaN otherwise are not
# ---------------------------------------------------------------------------------------------
KNOWN = deviations.load(ROOT / "known-deviations.toml")


def _p4_failure(backend, case: Case) -> PropertyFailure:
    with pytest.raises(PropertyFailure) as info:
        BY_ID["P4"].check(backend, backend.capabilities(), case)
    return info.value


def _excused(failure: PropertyFailure, dtype: str) -> bool:
    return any(d.matches(backend="torch.foreach", prop_id="P4",
                         prop_name="no_spurious_nonfinite", dtype=dtype, device="cpu",
                         rule=failure.violation.rule, cause=failure.violation.cause)
               for d in KNOWN)


def _one(dtype, steps: int, value: float, **hp) -> Case:
    return Case(hp=HParams.from_profile("torch", **hp), params=(np.ones(1, dtype),),
                grads=tuple((np.full(1, value, dtype),) for _ in range(steps)))


@pytest.fixture(scope="module")
def mutants(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rmsprop_mutants")
    return {name: backend_for(load_mutant(BY_NAME[name], "foreach", directory).RMSprop,
                              "foreach", f"torch.mutant.{name}")
            for name in ("eps_dropped", "sign_under_root")}


def test_torchs_documented_centered_nan_is_excused():
    """Control: torch's own centered NaN (float64, alpha = 0, found by P4) is the known
    mechanism, and the project's file excuses it."""
    torch_backend = backend_for(__import__("torch").optim.RMSprop, "foreach", "torch.foreach")
    case = _one(F64, 3, 1.0, lr=1.0, alpha=0.0, eps=1.0, weight_decay=1.0, momentum=0.9,
                centered=True)
    failure = _p4_failure(torch_backend, case)
    assert failure.violation.cause == "centered-negative" and _excused(failure, "float64")


def test_eps_dropped_from_the_denominator_still_fails(mutants):
    # float32: a zero gradient from a fresh state, 0/0 (torch itself gives 0 there).
    failure = _p4_failure(mutants["eps_dropped"], _one(F32, 1, 0.0))
    assert failure.violation.cause == "unexplained" and not _excused(failure, "float32")
    # In float16, where eps itself rounds to 0, the same NaN is torch's documented one.
    failure = _p4_failure(mutants["eps_dropped"], _one(F16, 1, 0.0))
    assert failure.violation.cause == "eps-underflow" and _excused(failure, "float16")


def test_a_sign_error_under_the_root_still_fails(mutants):
    # sqrt(ḡ² − v): negative for any gradient, although the state's own variance is positive.
    failure = _p4_failure(mutants["sign_under_root"], _one(F32, 1, 1.0, centered=True))
    assert failure.violation.cause == "unexplained" and not _excused(failure, "float32")


def test_every_torch_mutant_edit_applies_and_the_installed_file_is_untouched(tmp_path):
    from benchmarks.torch_mutants import MUTANTS, SOURCE, VARIANTS, patched_source

    before = SOURCE.read_bytes()
    for m in MUTANTS:
        for variant in VARIANTS:
            text = patched_source(m, variant)  # asserts each edit applied
            assert text != before.decode() and "from .optimizer" not in text
    assert sum(not m.correct for m in MUTANTS) == 20 and SOURCE.read_bytes() == before
    with pytest.raises(AssertionError, match="expected 2 occurrence"):
        patched_source(MUTANTS[0], "foreach", source=before.decode().replace(
            "torch._foreach_add_(avg, eps)", "torch._foreach_add_(avg, other=eps)", 1))
