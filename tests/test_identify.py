"""``identify``: the convention fingerprint of a backend from black-box probes.

Every bundled backend available here must be identified as the profile and conventions it
declares; torch-profile variants with one convention changed (tests/mutants.py style) as torch
with exactly that override; a bug that no convention explains as "nothing fits".
"""

from __future__ import annotations

import json

import pytest

from conformance import cli, registry
from conformance.identify import AXES, identify
from spec.rmsprop import PROFILES, HParams

torch = pytest.importorskip("torch")

from tests import mutants  # noqa: E402  (needs torch)

# torch.compile compiles every probe (about 30 s): certified elsewhere, identified in the
# slow selection only.
SLOW = {"torch.compile"}


def _loaded(name: str):
    try:
        backend = registry.load(name)
        caps = registry.capabilities_of(backend)
    except registry.BackendLoadError as exc:
        pytest.skip(f"{name} unavailable here: {exc}")
    if not caps.devices:
        pytest.skip(f"{name}: no usable device here")
    return backend, caps


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in registry.BUILTINS])
def test_recovers_declared_conventions(name: str) -> None:
    backend, caps = _loaded(name)
    found = identify(backend, caps)
    declared = caps.hparams()
    assert found.fits, found.text()
    assert found.profile == caps.profile
    assert found.overrides == dict(caps.conventions)
    decided = {a.axis: a.value for a in found.axes if a.testable}
    # Every backend runs the denominator probe; the other axes only where a feature allows.
    assert {"eps_in_sqrt", "initial_square_avg"} <= set(decided)
    assert decided == {a: getattr(declared, a) for a in decided}
    assert set(found.conventions) == set(AXES)


def test_untestable_axes_are_not_guessed() -> None:
    """jax.example_libraries has no momentum, weight decay, maximize or complex dtypes."""
    backend, caps = _loaded("jax.example_libraries")
    found = identify(backend, caps)
    assert found.conventions == {
        "eps_in_sqrt": True, "initial_square_avg": 0.0, "lr_in_momentum": "untestable",
        "weight_decay_mode": "untestable", "complex_mode": "untestable",
        "maximize_order": "untestable"}
    # optax and keras agree on every axis it can test: both are named.
    assert found.profile == "optax" and found.equally_close == ["keras"]
    reasons = {a.axis: a.reason for a in found.axes}
    assert "needs momentum" in reasons["lr_in_momentum"]
    assert "needs a complex dtype" in reasons["complex_mode"]


class InitialSquareAvgHalf(mutants.Reference):
    """square_avg starts at 0.5: no profile's value."""

    name = "variant.initial_square_avg_half"

    def _initial_square_avg(self, p):
        half = torch.full_like(p, 0.5, memory_format=torch.preserve_format)
        return half * (1 + 1j) if torch.is_complex(p) else half


class LrInsideMomentum(mutants.Reference):
    """b = μb + η·g/d, θ = θ − b (optax's and Keras's order in a torch port)."""

    name = "variant.lr_in_momentum"

    def _apply(self, p, num, d, buf, momentum, lr):
        if momentum > 0:
            buf.mul_(momentum).addcdiv_(num, d, value=lr)
            p.sub_(buf)
        else:
            p.addcdiv_(num, d, value=-lr)


@pytest.mark.parametrize(("variant", "overrides"), [
    (mutants.EpsInsideSqrt, {"eps_in_sqrt": True}),
    (mutants.InitialSquareAvgOne, {"initial_square_avg": 1.0}),
    (InitialSquareAvgHalf, {"initial_square_avg": 0.5}),
    (LrInsideMomentum, {"lr_in_momentum": True}),
])
def test_changed_convention_is_an_override(variant: type, overrides: dict) -> None:
    backend = variant()
    found = identify(backend, backend.capabilities())
    assert found.fits, found.text()
    assert (found.profile, found.overrides) == ("torch", overrides)
    # Every axis is testable on this backend (all features, complex dtypes, state read-out).
    expected = HParams.from_profile("torch", **overrides)
    assert found.conventions == {a: getattr(expected, a) for a in AXES}


@pytest.mark.parametrize(("mutant", "broken"), [
    (mutants.MaximizeTwice, "maximize"),
    (mutants.CenteredUsesV, "centered"),
    (mutants.AlphaSwapped, "denominator"),
])
def test_nothing_fits_names_closest_profile_and_rules(mutant: type, broken: str) -> None:
    backend = mutant()
    found = identify(backend, backend.capabilities())
    assert not found.fits
    assert found.profile in PROFILES
    assert any(b.startswith(f"{broken}: R") for b in found.broken), found.broken


def test_a_probe_no_convention_explains_leaves_the_others_decided() -> None:
    """Complex gradients squared as g*g (bug class 10) break the complex probe under every
    complex_mode; the real axes are still decided by the other probes."""
    backend = mutants.ComplexProductSquare()
    found = identify(backend, backend.capabilities())
    assert not found.fits
    assert [b.split(":")[0] for b in found.broken] == ["complex"]
    torch_axes = HParams.from_profile("torch")
    assert found.conventions == {a: "untestable" if a == "complex_mode"
                                 else getattr(torch_axes, a) for a in AXES}
    assert (found.profile, found.overrides) == ("torch", {})


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["identify", "seed", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["profile"] == "seed" and doc["fits"] is True
    assert set(doc["conventions"]) == set(AXES)
    assert doc["conventions"]["eps_in_sqrt"] is False
    assert doc["conventions"]["complex_mode"] == "untestable"
    assert doc["axes"]["eps_in_sqrt"]["evidence"]["False"] == []


def test_cli_text_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["identify", "tests.mutants:MaximizeTwice"]) == 1
    assert "nothing fits; closest: profile 'torch'" in capsys.readouterr().out
    assert cli.main(["identify", "no.such.backend"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown backend 'no.such.backend'" in err[0]
