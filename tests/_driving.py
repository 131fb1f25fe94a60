"""What the driver tests share: a target to run one property on, and a small random case."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conformance.case import Case
from conformance.properties import BY_ID
from conformance.result import new_result
from conformance.runner import Target
from spec.rmsprop import HParams


def driver_target(spec: str, backend, prop_id: str, dtype: str | None, tmp_path: Path) -> Target:
    """``prop_id`` on ``backend`` (named ``spec``, as it replays), quick effort, on the CPU."""
    record = new_result(BY_ID[prop_id], backend.name, dtype, "cpu")
    return Target(spec, backend, backend.capabilities(), dtype, "cpu", "quick", tmp_path, record,
                  nodeid=f"driver::{backend.name}::{prop_id}::{dtype}")


def random_case(hp: HParams, steps: int = 3, dtype=np.float64, seed: int = 0, **kw) -> Case:
    """Two parameters (2×3 and 4 elements) and ``steps`` standard-normal gradients."""
    rng = np.random.default_rng(seed)
    params = (rng.standard_normal((2, 3)).astype(dtype), rng.standard_normal(4).astype(dtype))
    grads = tuple(tuple(rng.standard_normal(p.shape).astype(dtype) for p in params)
                  for _ in range(steps))
    return Case(hp=hp, params=params, grads=grads, **kw)
