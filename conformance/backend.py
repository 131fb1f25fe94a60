"""The backend contract (docs/architecture.md §3): ``name``, ``capabilities()`` and ``run(case)``.

A plug-in author writes one class::

    class MyBackend:
        name = "my.rmsprop"
        def capabilities(self) -> Capabilities: ...
        def run(self, case: Case) -> Trajectory: ...

Anything a backend does not declare in its ``Capabilities`` is *unsupported*: the harness does not
test it and the report shows it as unsupported, never as a pass or a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from conformance.case import DTYPES, Case, Trajectory
from spec.rmsprop import PROFILES, HParams

# Features a backend may declare (SPEC §2 for the hyperparameters; the rest are harness abilities).
FEATURES: dict[str, str] = {
    "weight_decay": "weight_decay > 0",
    "momentum": "momentum > 0",
    "nesterov": "nesterov momentum",
    "centered": "centered=True",
    "maximize": "maximize=True",
    "bias_correction": "bias_correction=True",
    "lr_schedule": "a learning rate that changes between steps",
    "multi_param": "several parameters in one step",
    "mixed_dtypes": "parameters of different dtypes in one step",
    "state_readout": "the state after every step is returned in the trajectory",
    "state_load": "starting from a given state (case.initial_state)",
    "layouts": "non-contiguous parameters (transposed, strided, channels_last)",
    "zero_size": "zero-size and 0-d parameters",
    "reject_invalid": "invalid hyperparameters are rejected at construction (make_optimizer)",
    "tensor_lr": "make_optimizer accepts lr as an array (the framework's tensor); one of the "
                 "wrong shape or a negative one is rejected like a float",
}
# Hyperparameters a compiling backend may compile in as constants (``Capabilities.specialised``).
SPECIALISABLE = ("lr", "alpha", "eps", "weight_decay", "momentum")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a backend claims, on this machine.

    ``profile`` names the spec profile (``spec.rmsprop.PROFILES``); ``conventions`` overrides
    convention axes of that profile (e.g. ``{"eps_in_sqrt": False}``). ``devices`` are those
    usable here; ``unavailable`` maps devices the backend supports but this machine lacks to the
    reason (reported as "unsupported on this machine").

    ``compiled``: the backend compiles a program per case structure — the number of
    parameters, their dtypes and ranks, which sides are 0 or 1, their layouts, the
    hyperparameter flags — and per value of each hyperparameter in ``specialised`` (a subset of
    ``SPECIALISABLE``), so that a new structure costs seconds where a new value costs
    milliseconds (``torch.compile``). Its cases then take their structures from a small fixed
    set per target and their specialised values from a grid (``conformance.strategies``), and
    draw every other value freely.
    """

    profile: str
    dtypes: frozenset[str]
    devices: tuple[str, ...] = ("cpu",)
    features: frozenset[str] = frozenset()
    conventions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unavailable: Mapping[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""
    compiled: bool = False
    specialised: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; allowed: {', '.join(PROFILES)}")
        object.__setattr__(self, "dtypes", frozenset(self.dtypes))
        object.__setattr__(self, "features", frozenset(self.features))
        bad = sorted(set(self.dtypes) - set(DTYPES))
        if bad:
            raise ValueError(f"unknown dtype {bad[0]!r}; allowed: {', '.join(DTYPES)}")
        bad = sorted(set(self.features) - set(FEATURES))
        if bad:
            raise ValueError(f"unknown feature {bad[0]!r}; allowed: {', '.join(FEATURES)}")
        object.__setattr__(self, "specialised", frozenset(self.specialised))
        bad = sorted(self.specialised - set(SPECIALISABLE))
        if bad:
            raise ValueError(f"specialised hyperparameter {bad[0]!r} is not one of "
                             f"{', '.join(SPECIALISABLE)}")
        if self.specialised and not self.compiled:
            raise ValueError(f"specialised={sorted(self.specialised)} needs compiled=True")
        HParams.from_profile(self.profile, **self.conventions)  # validates the axes' names/values

    def supports(self, feature: str) -> bool:
        return feature in self.features

    def hparams(self, **values: Any) -> HParams:
        """HParams of this backend's profile and conventions, with ``values`` on top."""
        return HParams.from_profile(self.profile, **{**self.conventions, **values})

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "conventions": dict(self.conventions),
            "dtypes": sorted(self.dtypes),
            "devices": list(self.devices),
            "unavailable": dict(self.unavailable),
            "features": sorted(self.features),
            "description": self.description,
            "compiled": self.compiled,
            "specialised": sorted(self.specialised),
        }


@runtime_checkable
class Backend(Protocol):
    name: str

    def capabilities(self) -> Capabilities: ...

    def run(self, case: Case) -> Trajectory: ...


class RejectingBackend(Protocol):
    """Backends declaring "reject_invalid" also offer ``make_optimizer(hparams: dict)``.

    It builds (and discards) the implementation's optimizer for raw hyperparameter values, raising
    the implementation's own error for invalid ones (property P13).
    """

    def make_optimizer(self, hparams: dict[str, Any]) -> Any: ...
