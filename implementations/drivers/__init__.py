"""Generic drivers: certify an optimizer someone else wrote with no adapter code.

A driver turns an optimizer of a framework into a conformance backend by reading its
constructor's signature and its state. It is named ``DRIVER:MODULE:ATTR`` wherever a backend name
is accepted (``torch:timm.optim:RMSpropTF``, ``optax:optax:rmsprop``,
``keras:keras.optimizers:RMSprop``), or through a declarative TOML file (``my-optimizer.toml``,
see :mod:`implementations.drivers.config`) for what the signature cannot tell.

Each driver module exposes ``driver(target: str, config: DriverConfig) -> Backend`` where
``target`` is ``MODULE:ATTR``.
"""

from __future__ import annotations

# driver name -> "module:function" building a backend (imported only when used: a driver's
# framework is an optional dependency).
DRIVERS: dict[str, str] = {
    "torch": "implementations.drivers.torch_optim:driver",
    "optax": "implementations.drivers.optax_tx:driver",
    "keras": "implementations.drivers.keras_opt:driver",
}
