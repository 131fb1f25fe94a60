"""A sample "fork" backend, as a project certifying its own RMSProp in CI would write it
(examples/github-actions.yml), and the same fork after a regression.

``MyRMSprop`` is the seed's loop (eps outside the square root, square_avg starting at 0) with a
per-step learning rate. ``RegressedRMSprop`` has one bug a refactoring could bring in: it reads
the learning rate once, before the first step, so a schedule is ignored after step 0. Only P3
(learning-rate schedules) can see it; both carry the same backend name, so reports of the two
compare target by target.
"""

from __future__ import annotations

import numpy as np

from conformance.backend import Capabilities
from conformance.case import Case, Trajectory
from spec.rmsprop import ParamState


class MyRMSprop:
    name = "my_fork"

    def capabilities(self) -> Capabilities:
        return Capabilities(profile="seed", dtypes=frozenset({"float32", "float64"}),
                            features=frozenset({"lr_schedule", "state_readout"}),
                            description="a sample fork: the seed's loop in NumPy")

    def learning_rates(self, case: Case) -> list[float]:
        return [case.lr_at(k) for k in range(case.n_steps)]

    def run(self, case: Case) -> Trajectory:
        hp = case.hp
        params = list(case.params)
        square_avgs = [np.zeros_like(p) for p in params]
        out = Trajectory.empty(with_state=True)
        for k, (grads, lr) in enumerate(zip(case.grads, self.learning_rates(case))):
            for i, (x, g) in enumerate(zip(params, grads)):
                c = x.dtype.type
                with np.errstate(all="ignore"):
                    square_avgs[i] = c(hp.alpha) * square_avgs[i] + (c(1) - c(hp.alpha)) * g * g
                    params[i] = x - c(lr) * g / (np.sqrt(square_avgs[i]) + c(hp.eps))
            out.append(params, [ParamState(k + 1, v.copy()) for v in square_avgs])
        return out


class RegressedRMSprop(MyRMSprop):
    def learning_rates(self, case: Case) -> list[float]:
        return [case.lr_at(0)] * case.n_steps
