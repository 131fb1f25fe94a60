"""What every generic driver reads off an implementation the same way: the object a
``MODULE:ATTR`` names, a callable's keywords, and the package that defines it."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from conformance.backend import Capabilities
from implementations.drivers.config import DriverConfig, DriverConfigError, keyword_map
from spec.rmsprop import CONVENTION_AXES, HParams

__all__ = ["ALWAYS", "FEATURE_KEYWORDS", "DrivenBackend", "check_keywords", "features_of",
           "gaps", "keywords_of", "off_value", "package_of", "qualname", "resolve",
           "takes_var_keyword"]

# Spec hyperparameters whose keyword, when the implementation takes it, makes a feature of the
# same name (SPEC §2); what a driver provides for any optimizer it drives.
FEATURE_KEYWORDS = ("weight_decay", "momentum", "centered", "maximize", "nesterov",
                    "bias_correction")
ALWAYS = frozenset({"multi_param", "mixed_dtypes", "layouts", "zero_size", "reject_invalid"})


def resolve(driver: str, target: str, name: str) -> Any:
    """The object ``MODULE:ATTR`` names (``name``: the backend, for messages)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise DriverConfigError(f"{name}: expected {driver}:MODULE:ATTR")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise DriverConfigError(f"{name}: cannot import module {module_name!r}: "
                                f"{type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise DriverConfigError(f"{name}: module {module_name!r} has no attribute "
                                    f"{attr!r}") from None
    return obj


def qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def package_of(obj: Any) -> tuple[str, str] | None:
    """``(distribution, version)`` of the installed package that defines ``obj``, if known."""
    top = (getattr(obj, "__module__", None) or "").split(".")[0]
    if not top:
        return None
    for dist in importlib.metadata.packages_distributions().get(top, [top]):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    version = getattr(importlib.import_module(top), "__version__", None)
    return (top, str(version)) if version else None


def keywords_of(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The parameters ``factory`` takes by keyword (empty when it has no signature)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {n: p for n, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def takes_var_keyword(factory: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params)


def check_keywords(name: str, implementation: Callable[..., Any],
                   accepted: Mapping[str, inspect.Parameter], mapped: set[str],
                   fixed: Mapping[str, Any], skip: int = 0) -> None:
    """DriverConfigError unless every required parameter of ``implementation`` (after the
    first ``skip``: torch's ``params``) is provided by a mapping (``mapped``: the keywords a
    spec name, a fixed value or a convention axis gives) and every ``[fixed]`` keyword is one
    it takes (or it takes ``**kwargs``)."""
    params = list(accepted.values())[skip:]
    missing = [p.name for p in params if p.default is p.empty and p.name not in mapped]
    if missing:
        raise DriverConfigError(
            f"{name}: {qualname(implementation)} needs argument {missing[0]!r}, which matches "
            "no spec hyperparameter; give its value in [fixed] or its spec name in "
            "[hyperparameters] of a driver file")
    bad = [] if takes_var_keyword(implementation) else sorted(set(fixed) - set(accepted))
    if bad:
        raise DriverConfigError(f"{name}: {qualname(implementation)} takes no keyword "
                                f"{bad[0]!r} (from [fixed]); it takes: "
                                f"{', '.join(p.name for p in params)}")


def off_value(accepted: Mapping[str, inspect.Parameter], keyword: str, value: Any) -> Any:
    """``value``, or ``None`` where it is 0 and the keyword's default is ``None``: such a
    constructor says "off" with ``None`` (optax's ``momentum=None``, Keras's
    ``weight_decay=None``), and a 0 would build another program (a trace of decay 0)."""
    param = accepted.get(keyword)
    if param is not None and param.default is None and not isinstance(value, bool) \
            and isinstance(value, (int, float)) and value == 0:
        return None
    return value


def features_of(name: str, implementation: Any, keywords: Mapping[str, Any],
                config: DriverConfig, *, found: set[str], readable: bool,
                loadable: bool) -> set[str]:
    """The features a driver declares: what it always provides, one per feature keyword the
    implementation takes, ``found`` (read off it: "lr_schedule" …), the state features; or
    the driver file's ``features`` list, checked against the keywords."""
    features = set(ALWAYS) | {f for f in FEATURE_KEYWORDS if f in keywords} | found
    if readable:
        features.add("state_readout")
        if loadable:
            features.add("state_load")
    if config.features is None:
        return features
    declared = set(config.features)
    bad = sorted(declared & set(FEATURE_KEYWORDS) - set(keywords))
    if bad:
        raise DriverConfigError(f"{name}: feature {bad[0]!r} is declared but "
                                f"{qualname(implementation)} takes no keyword for it")
    return declared


def gaps(config: DriverConfig, default_profile: str, features: set[str], *,
         readable: bool, state_problem: str | None) -> list[str]:
    """What a driver's description says it could not establish or assumed: the profile
    (identified, or assumed), the features without a keyword, the state."""
    parts = []
    if config.identified is not None:
        found = config.identified
        overrides = "".join(f", {k}={v!r}" for k, v in found.get("conventions", {}).items())
        unexplained = "; ".join(found.get("broken", []))
        parts.append(f"profile {config.profile!r}{overrides} identified by 'identify' (none "
                     "declared" + (f"; what no convention explains: {unexplained})"
                                   if unexplained else ")"))
    elif config.profile is None:
        parts.append(f"profile {default_profile!r} assumed: none declared (name it in a "
                     "driver file)")
    unsupported = [f for f in FEATURE_KEYWORDS if f not in features]
    if unsupported:
        parts.append(f"unsupported (no keyword): {', '.join(unsupported)}")
    if not readable:
        parts.append(f"state not readable ({state_problem}): multi-step properties judge "
                     "parameters only")
    elif state_problem:
        parts.append(state_problem)
    return parts


class DrivenBackend:
    """What a driver's backend shares: capabilities computed once, when it reads the
    implementation, and a state that is read but not loaded when some of it has no spec name."""

    _caps: Capabilities
    keywords: Mapping[str, str]  # spec name -> the implementation's keyword
    loadable: bool
    state_problem: str | None
    _hparams: Callable[[], HParams]  # the claimed profile and conventions

    def capabilities(self) -> Capabilities:
        return self._caps

    @property
    def identified(self) -> Mapping[str, Any] | None:
        """What ``identify`` found, when the backend is driven under it (for the report)."""
        return self.config.identified

    name: str
    config: DriverConfig
    package: tuple[str, str] | None

    def _read(self, name: str, implementation: Callable[..., Any], config: DriverConfig) -> None:
        """What every driver reads first: the name, the declared facts, the ``[fixed]``
        keywords, the spec name → keyword map and the keywords it accepts."""
        self.name = name
        self.config = config
        self.flags: dict[str, Any] = dict(config.fixed)
        self.keywords = keyword_map(implementation, config)  # spec name -> its keyword
        self.accepted = keywords_of(implementation)

    def _declare(self, default_profile: str, **fields: Any) -> Capabilities:
        """The Capabilities (the claimed profile, or ``default_profile``); a declaration they
        refuse (a driver file's) is a DriverConfigError naming the backend."""
        try:
            return Capabilities(profile=self.config.profile or default_profile, **fields)
        except ValueError as exc:
            raise DriverConfigError(f"{self.name}: {exc}") from None

    def _package_text(self, framework: str) -> str:
        """"timm 1.0.31, " when the implementation comes from a package other than
        ``framework`` (whose version the description gives anyway), else ""."""
        if self.package is None or self.package[0] == framework:
            return ""
        return f"{self.package[0]} {self.package[1]}, "

    def _settings_missing(self, hp: HParams) -> list[str]:
        """What of ``hp`` this implementation has no setting for: a convention axis other than
        the claimed one (unless passed from the case, ``axes``), a feature without a keyword."""
        claimed, from_case = self._hparams(), getattr(self, "axes", ())
        wrong = [f"{a}={getattr(hp, a)!r} (fixed to {getattr(claimed, a)!r})"
                 for a in CONVENTION_AXES if a not in from_case
                 and getattr(hp, a) != getattr(claimed, a)]
        wrong += [f"{f}=True (no keyword)" for f in ("centered", "maximize", "nesterov",
                                                        "bias_correction")
                  if getattr(hp, f) and f not in self.keywords]
        wrong += [f"{f}={getattr(hp, f)!r} (no keyword)" for f in ("weight_decay", "momentum")
                  if getattr(hp, f) != 0 and f not in self.keywords]
        return wrong

    def _fixed_axis(self, name: str, raw: Any) -> bool:
        """Whether spec name ``name`` is a convention axis the implementation has no setting
        for (then ``raw`` must be the claimed value: ValueError otherwise)."""
        if name not in CONVENTION_AXES or name in getattr(self, "axes", ()):
            return False
        claimed = getattr(self._hparams(), name)
        if raw != claimed:
            raise ValueError(f"{self.name} has no {name} setting: it is fixed to {claimed!r}, "
                             f"got {raw!r}")
        return True

    def _state_missing(self, hp: HParams, found: Mapping[str, str], seen: list[str], what: str,
                       always: tuple[str, ...] = ("square_avg",)) -> bool:
        """Whether the probe (run with ``hp``) found no ``what`` (state key, field …) for a
        spec state name ``hp`` creates (``found``: spec name → the implementation's name;
        ``seen``: the names it has); if so ``state_problem`` says which and the state is not
        read."""
        expected = [*always, *(["grad_avg"] if hp.centered else []),
                    *(["momentum_buffer"] if hp.momentum > 0 else [])]
        missing = [n for n in expected if n not in found]
        if missing:
            self.state_problem = (f"no {what} for {', '.join(missing)} among "
                                  f"{sorted(seen) or 'none'} (name it in [state])")
        return bool(missing)

    def _unmatched_state(self, what: str, extra: list[str]) -> None:
        """``extra``: the implementation's state ``what`` (keys, fields…) no spec name matches;
        a loaded state would miss them."""
        self.loadable = not extra
        if extra:
            self.state_problem = (f"{what} {', '.join(extra)} match no spec name: the state is "
                                  "read, not loaded")
