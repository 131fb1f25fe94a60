"""What a generic driver needs to know about an optimizer, and where it comes from.

By default everything is read off the implementation: hyperparameter keywords from its
constructor's (or factory's) signature, matched to the spec's names through ``SYNONYMS``; state
entries from its state's names. What that cannot establish is given in a TOML file::

    implementation = "torch:timm.optim:RMSpropTF"   # DRIVER:MODULE:ATTR
    name = "timm.RMSpropTF"                         # the backend's name (reports); optional
    profile = "tf1"                                 # the spec profile claimed (SPEC §4)
    [conventions]                                   # overrides of that profile's axes
    eps_in_sqrt = true
    [hyperparameters]                               # spec name -> the implementation's keyword
    alpha = "decay"
    [fixed]                                         # keyword -> value passed on every construction
    decoupled_decay = false
    [state]                                         # spec name -> the implementation's state key
    square_avg = "square_avg"

A feature whose keyword the constructor lacks is unsupported (never passed); state that cannot be
read means the multi-step properties judge parameters only.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from conformance import tomlfile
from spec.rmsprop import PROFILES, HParams

# Spec hyperparameter name -> the keywords implementations use for it, most common first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "lr": ("lr", "learning_rate", "step_size"),
    "alpha": ("alpha", "rho", "decay"),
    "eps": ("eps", "epsilon"),
    "weight_decay": ("weight_decay", "wd"),
    "momentum": ("momentum",),
    "centered": ("centered",),
    "maximize": ("maximize",),
    "nesterov": ("nesterov",),
    "bias_correction": ("bias_correction",),
}
# Spec state name (R14) -> the names implementations use for it.
STATE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "square_avg": ("square_avg", "nu", "velocity", "velocities", "ms", "rms"),
    "grad_avg": ("grad_avg", "mu", "average_gradient", "average_gradients", "mg"),
    "momentum_buffer": ("momentum_buffer", "momentum", "momentums", "mom", "trace"),
    "step": ("step", "count", "iterations"),
}
_KEYS = {"implementation", "name", "profile", "conventions", "hyperparameters", "fixed", "state",
         "dtypes", "features"}


class DriverConfigError(ValueError):
    """A driver configuration that cannot be used (a usage error: one line, exit 2)."""


@dataclasses.dataclass(frozen=True)
class DriverConfig:
    """Declared facts about an implementation; empty fields are read off the implementation."""

    profile: str | None = None
    conventions: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hyperparameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    state: Mapping[str, str] = dataclasses.field(default_factory=dict)
    dtypes: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    source: str = ""  # the file it came from, for messages
    name: str | None = None  # the backend's name; the driver's default is its spec string
    # Not declared but found: what ``identify`` found when no profile was declared (the
    # profile and conventions above are then its findings), for the description and report.
    identified: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if self.profile is not None and self.profile not in PROFILES:
            raise DriverConfigError(f"{where}unknown profile {self.profile!r}; allowed: "
                                    f"{', '.join(PROFILES)}")
        try:
            HParams.from_profile(self.profile or "torch", **self.conventions)
        except ValueError as exc:
            raise DriverConfigError(f"{where}[conventions]: {exc}") from None
        bad = sorted(set(self.hyperparameters) - set(SYNONYMS))
        if bad:
            raise DriverConfigError(f"{where}[hyperparameters]: unknown spec name {bad[0]!r}; "
                                    f"allowed: {', '.join(SYNONYMS)}")
        bad = sorted(set(self.state) - set(STATE_SYNONYMS))
        if bad:
            raise DriverConfigError(f"{where}[state]: unknown spec name {bad[0]!r}; allowed: "
                                    f"{', '.join(STATE_SYNONYMS)}")


def load_file(path: str | Path) -> tuple[str, DriverConfig]:
    """``(implementation, config)`` from a TOML driver file; DriverConfigError when malformed."""
    path = Path(path)
    data = tomlfile.read(path, "driver file", DriverConfigError)
    bad = sorted(set(data) - _KEYS)
    if bad:
        raise DriverConfigError(f"{path}: unknown key {bad[0]!r}; allowed: "
                                f"{', '.join(sorted(_KEYS))}")
    impl = data.get("implementation")
    if not isinstance(impl, str) or impl.count(":") < 2:
        raise DriverConfigError(f"{path}: 'implementation' must be 'DRIVER:MODULE:ATTR', got "
                                f"{impl!r}")
    config = DriverConfig(
        profile=data.get("profile"), conventions=dict(data.get("conventions", {})),
        hyperparameters=dict(data.get("hyperparameters", {})), fixed=dict(data.get("fixed", {})),
        state=dict(data.get("state", {})),
        dtypes=tuple(data["dtypes"]) if "dtypes" in data else None,
        features=tuple(data["features"]) if "features" in data else None, source=str(path),
        name=data.get("name"))
    return impl, config


def keyword_map(factory: Callable[..., Any], config: DriverConfig) -> dict[str, str]:
    """Spec hyperparameter name -> the keyword ``factory`` takes for it.

    Declared names (``config.hyperparameters``) win; the rest come from the signature through
    ``SYNONYMS``. A spec name with no keyword is absent: that feature is unsupported.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    names = [n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out: dict[str, str] = {}
    for spec_name, synonyms in SYNONYMS.items():
        if spec_name in config.hyperparameters:
            out[spec_name] = config.hyperparameters[spec_name]
            continue
        found = next((s for s in synonyms if s in names), None)
        if found is not None:
            out[spec_name] = found
    return out
