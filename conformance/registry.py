"""Finding backends: built-in short names, the ``rmsprop_conformance.backends`` entry-point group,
``module:attr`` strings (``attr`` a backend instance, a class or a zero-argument factory), and an
optimizer someone else wrote, driven by a generic driver (:mod:`implementations.drivers`):
``DRIVER:MODULE:ATTR`` (``torch:timm.optim:RMSpropTF``, ``optax:optax:rmsprop``,
``keras:keras.optimizers:RMSprop``) or a driver file ``NAME.toml`` naming one. Either may end in
``?KEY=VALUE&KEY=VALUE`` (values in TOML syntax: ``true``, ``0.5``, ``"text"``): constructor
keywords added to the driver's ``[fixed]``, e.g. ``torch:torch.optim:RMSprop?foreach=true``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import json
import os
from typing import Any

from conformance import tomlfile
from conformance.backend import Backend, Capabilities
from implementations.drivers import DRIVERS
from implementations.drivers.config import DriverConfig, DriverConfigError, load_file

ENTRY_POINT_GROUP = "rmsprop_conformance.backends"

BUILTINS: dict[str, str] = {
    "seed": "implementations.seed:SeedBackend",
    "torch.forloop": "implementations.torch_backends:ForLoop",
    "torch.foreach": "implementations.torch_backends:Foreach",
    "torch.compile": "implementations.torch_backends:Compiled",
    "torch.differentiable": "implementations.torch_backends:Differentiable",
    "torch.tensor_lr": "implementations.torch_backends:TensorLR",
    "torch.capturable": "implementations.torch_backends:Capturable",
    "optax": "implementations.jax_backends:Optax",
    "optax.eps_outside": "implementations.jax_backends:OptaxEpsOutside",
    "optax.tf1": "implementations.jax_backends:OptaxTF1",
    "jax.example_libraries": "implementations.jax_backends:ExampleLibraries",
    "jax.example_libraries.momentum": "implementations.jax_backends:ExampleLibrariesMomentum",
    "numba": "implementations.numba_kernel:NumbaBackend",
    "triton": "implementations.triton_kernel:TritonBackend",
}


class BackendLoadError(Exception):
    """A backend name or ``module:attr`` string that does not give a backend (usage error)."""


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    return sorted(known_targets())


def known_targets() -> dict[str, str]:
    """Every known backend name → the ``module:attr`` it loads (built-ins first), without
    loading any."""
    return {**{name: ep.value for name, ep in _entry_points().items()}, **BUILTINS}


def _driver_for(obj: Any) -> str | None:
    """The generic driver that would drive ``obj``, when it is a framework's optimizer."""
    classes = obj.__mro__ if isinstance(obj, type) else ()
    if any(c.__module__.startswith("torch.optim") and c.__name__ == "Optimizer"
           for c in classes):
        return "torch"
    if any(c.__module__.startswith("keras") and c.__name__ == "Optimizer" for c in classes):
        return "keras"
    if (getattr(obj, "__module__", None) or "").split(".")[0] == "optax":
        return "optax"
    return None


def _not_a_backend(obj: Any, spec: str, why: str) -> BackendLoadError:
    driver = _driver_for(obj)
    if driver is None:
        return BackendLoadError(f"{spec} {why}")
    return BackendLoadError(f"{spec} is an optimizer, not a backend: name it "
                            f"{driver}:{spec} to drive it with the generic {driver} driver")


def _instantiate(obj: Any, spec: str) -> Backend:
    if _driver_for(obj) is not None and not (hasattr(obj, "capabilities")
                                             and hasattr(obj, "run")):
        raise _not_a_backend(obj, spec, "")
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Backend)):
        try:
            obj = obj()
        except Exception as exc:  # the plug-in's own failure, reported as a usage error
            raise BackendLoadError(f"{spec}: constructing the backend failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
    missing = [a for a in ("name", "capabilities", "run") if not hasattr(obj, a)]
    if missing:
        raise _not_a_backend(obj, spec, f"is not a backend: it lacks {', '.join(missing)} "
                             "(a backend has name, capabilities() and run(case))")
    return obj


def _options(spec: str, text: str) -> dict[str, Any]:
    """``KEY=VALUE&...`` after the ``?`` of a driver spec, values in TOML syntax."""
    out: dict[str, Any] = {}
    for item in text.split("&"):
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise BackendLoadError(f"{spec!r}: option {item!r} is not KEY=VALUE")
        try:
            out[key] = tomlfile.loads(f"v = {value}")["v"]
        except tomlfile.TOMLDecodeError:
            out[key] = value  # a bare word is a string
    return out


def _load_driven(spec: str, identify: bool) -> Backend:
    """A generic driver's backend: ``DRIVER:MODULE:ATTR[?OPTIONS]`` or ``FILE.toml[?OPTIONS]``."""
    base, _, options = spec.partition("?")
    fixed = _options(spec, options) if options else {}
    try:
        if base.endswith(".toml"):
            implementation, config = load_file(base)
        else:
            implementation, config = base, DriverConfig()
        driver_name, _, target = implementation.partition(":")
        name = f"{config.name}?{options}" if config.name and options else config.name or spec
        config = dataclasses.replace(config, fixed={**config.fixed, **fixed}, name=name)
    except DriverConfigError as exc:
        raise BackendLoadError(str(exc)) from None
    if driver_name not in DRIVERS:
        raise BackendLoadError(f"unknown driver {driver_name!r} in {spec!r}; known: "
                               f"{', '.join(DRIVERS)} (DRIVER:MODULE:ATTR)")
    where = f"the {driver_name} driver ({DRIVERS[driver_name]})"
    try:
        make = _import_attr(DRIVERS[driver_name])
    except BackendLoadError as exc:
        raise BackendLoadError(f"{spec}: {where} is unavailable: {exc}") from None
    try:
        backend = make(target, config)
        if identify and config.profile is None and not config.conventions:
            identified = dataclasses.replace(config, **_identified(spec, backend))
            backend = make(target, identified)
        return backend
    except DriverConfigError as exc:
        raise BackendLoadError(str(exc)) from None
    except Exception as exc:
        raise BackendLoadError(f"{spec}: {where} failed: {type(exc).__name__}: {exc}") from exc


# Identifications made in this process, by backend spec, passed to the processes it starts
# (pytest-xdist workers, the evidence process) so that they drive the backend the same way.
IDENTIFIED_ENV = "RMSPROP_CONFORMANCE_IDENTIFIED"


def _identified(spec: str, backend: Backend) -> dict[str, Any]:
    """The profile and conventions ``identify`` finds for a driven backend that declares
    none (SPEC §3–§4 from black-box probes): what it is then certified under, so that a
    correct implementation of another framework's conventions is judged by its own."""
    known = json.loads(os.environ.get(IDENTIFIED_ENV) or "{}")
    if spec not in known:
        from conformance.identify import identify  # noqa: PLC0415 (identify loads backends)

        found = identify(backend, capabilities_of(backend))
        # An axis the driver passes from each case (a constructor keyword: timm's
        # lr_in_momentum, optax's eps_in_sqrt) is the profile's, both sides then tested.
        from_case = getattr(backend, "axes", ())
        known[spec] = {"profile": found.profile, "fits": found.fits,
                       "conventions": {a: v for a, v in found.overrides.items()
                                       if a not in from_case},
                       "broken": found.broken[:3]}
        os.environ[IDENTIFIED_ENV] = json.dumps(known)
    found = known[spec]
    return {"profile": found["profile"], "conventions": found["conventions"],
            "identified": found}


def _import_attr(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BackendLoadError(f"{spec!r} is not 'module:attr'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise BackendLoadError(f"cannot import module {module_name!r} (from {spec!r}): "
                               f"{type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BackendLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def load(spec: str, *, identify: bool = True) -> Backend:
    """The backend named by a built-in short name, an entry-point name, ``module:attr``,
    ``DRIVER:MODULE:ATTR`` or a driver file (see the module docstring). A driven backend that
    declares neither a profile nor conventions is driven under those ``identify`` finds
    (unless ``identify`` is false: the ``identify`` command itself)."""
    if spec in BUILTINS:
        return _instantiate(_import_attr(BUILTINS[spec]), spec)
    eps = _entry_points()
    if spec in eps:
        try:
            obj = eps[spec].load()
        except Exception as exc:
            raise BackendLoadError(f"entry point {spec!r} failed to load: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return _instantiate(obj, spec)
    if spec.partition("?")[0].endswith(".toml") or spec.partition("?")[0].count(":") >= 2:
        return _load_driven(spec, identify)
    if ":" in spec:
        return _instantiate(_import_attr(spec), spec)
    raise BackendLoadError(f"unknown backend {spec!r}; known: {', '.join(known_names())} "
                           "(or give 'module:attr', 'DRIVER:MODULE:ATTR' or a driver file "
                           "'NAME.toml')")


def load_declared(spec: str) -> tuple[Backend, Capabilities]:
    """The backend ``spec`` names and its capabilities: what the command and the plugin both
    need before any test runs. Anything that goes wrong is a BackendLoadError (a usage error)."""
    backend = load(spec)
    try:
        return backend, capabilities_of(backend)
    except BackendLoadError:
        raise
    except Exception as exc:
        raise BackendLoadError(f"{spec}: capabilities() raised {type(exc).__name__}: "
                               f"{exc}") from None


def capabilities_of(backend: Backend) -> Capabilities:
    caps = backend.capabilities()
    if not isinstance(caps, Capabilities):
        raise BackendLoadError(f"{backend.name}: capabilities() returned "
                               f"{type(caps).__name__}, not Capabilities")
    return caps
