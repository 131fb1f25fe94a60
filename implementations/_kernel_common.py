"""What our own kernels (numba, Triton) share: they implement the torch profile only."""

from __future__ import annotations

from spec.rmsprop import CONVENTION_AXES, HParams


def check_hparams(hp: HParams) -> None:
    """Raise ValueError naming the first setting these kernels do not implement."""
    torch_axes = HParams.from_profile("torch")
    for name in CONVENTION_AXES:  # complex_mode too: a real kernel never meets another
        value = getattr(hp, name)
        if value != getattr(torch_axes, name):
            raise ValueError(f"this kernel implements the torch profile; {name}={value!r} is not "
                             "supported")
    if hp.nesterov or hp.bias_correction:
        raise ValueError("this kernel supports neither nesterov nor bias_correction")
