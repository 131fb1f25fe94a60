"""The seed's own loop (reference/seed.md) as the smallest complete backend.

    r = alpha * r + (1 - alpha) * g * g
    x = x - lr * (g / (sqrt(r) + eps))      # eps outside the square root

NumPy, computing in the parameter's dtype. This is the README's "Writing a backend" example.
(g / d first, then lr: the order that reproduces the seed's ten-step figures to the last bit.)
"""

from __future__ import annotations

import numpy as np

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from spec.rmsprop import ParamState


class SeedBackend:
    name = "seed"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            profile="seed",
            dtypes=frozenset({"float32", "float64"}),
            features=frozenset({"lr_schedule", "multi_param", "state_readout", "state_load",
                                "zero_size"}),
        )

    def run(self, case: Case) -> Trajectory:
        hp = case.hp
        params = list(case.params)  # never written to: every step makes new arrays
        states = case.initial_state or [
            ParamState(0, np.full_like(p, hp.initial_square_avg)) for p in params]
        states = [ParamState(s.step, np.asarray(s.square_avg, p.dtype))
                  for p, s in zip(params, states)]
        out = Trajectory.empty(with_state=True)
        for k, grads in enumerate(case.grads):
            for i, (x, g, s) in enumerate(zip(params, grads, states)):
                c = x.dtype.type  # constants rounded into the parameter's dtype
                with np.errstate(all="ignore"):  # IEEE results (inf, NaN) are the answer
                    r = c(hp.alpha) * s.square_avg + (c(1) - c(hp.alpha)) * g * g
                    params[i] = np.asarray(x - c(case.lr_at(k)) * (g / (np.sqrt(r) + c(hp.eps))))
                states[i] = ParamState(s.step + 1, np.asarray(r))
            out.append(params, states)
        return out
