"""Finding backends: built-in short names, the ``rmsprop_conformance.backends`` entry-point group,
and ``module:attr`` strings. ``attr`` may be a backend instance, a class or a zero-argument factory.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from conformance.backend import Backend, Capabilities

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


# Bundled backends that --bundled certifies with fewer examples than asked, and why: (the
# largest settings profile used for them, the reason). Naming the backend uses the profile given.
BUNDLED_PROFILE_CAP: dict[str, tuple[str, str]] = {
    "torch.compile": ("quick", "torch specialises alpha and weight_decay, so nearly every "
                               "example compiles (about 2 s each on a CPU)"),
}


class BackendLoadError(Exception):
    """A backend name or ``module:attr`` string that does not give a backend (usage error)."""


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    return sorted(set(BUILTINS) | set(_entry_points()))


def _instantiate(obj: Any, spec: str) -> Backend:
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Backend)):
        try:
            obj = obj()
        except Exception as exc:  # the plug-in's own failure, reported as a usage error
            raise BackendLoadError(f"{spec}: constructing the backend failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
    missing = [a for a in ("name", "capabilities", "run") if not hasattr(obj, a)]
    if missing:
        raise BackendLoadError(f"{spec} is not a backend: it lacks {', '.join(missing)} "
                               "(a backend has name, capabilities() and run(case))")
    return obj


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


def load(spec: str) -> Backend:
    """The backend named by a built-in short name, an entry-point name or ``module:attr``."""
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
    if ":" in spec:
        return _instantiate(_import_attr(spec), spec)
    raise BackendLoadError(f"unknown backend {spec!r}; known: {', '.join(known_names())} "
                           "(or give 'module:attr')")


def capabilities_of(backend: Backend) -> Capabilities:
    caps = backend.capabilities()
    if not isinstance(caps, Capabilities):
        raise BackendLoadError(f"{backend.name}: capabilities() returned "
                               f"{type(caps).__name__}, not Capabilities")
    return caps
