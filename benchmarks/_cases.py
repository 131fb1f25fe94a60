"""Random cases for the compilation benchmarks (jax_compilations, torch_compilations)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conformance import strategies
from conformance.backend import Capabilities
from conformance.case import Case, np_dtype


def _shape(rng: np.random.Generator) -> tuple[int, ...]:
    ndim = int(rng.integers(0, 5))
    if rng.random() < 0.05 and ndim:
        return (0,) + tuple(int(x) for x in rng.integers(1, 4, ndim - 1))
    return tuple(int(x) for x in rng.integers(1, 6, ndim))


def random_case(rng: np.random.Generator, caps: Capabilities) -> Case:
    f = caps.features
    on = lambda feature, p=0.5: feature in f and rng.random() < p  # noqa: E731
    momentum = float(rng.uniform(0.1, 0.95)) if on("momentum") else 0.0
    hp = caps.hparams(
        lr=float(10 ** rng.uniform(-4, 0)), alpha=float(rng.uniform(0.5, 0.999)),
        eps=float(10 ** rng.uniform(-10, -3)), momentum=momentum,
        centered=on("centered"), nesterov=momentum > 0 and on("nesterov"),
        bias_correction=on("bias_correction"),
        weight_decay=float(10 ** rng.uniform(-4, -1)) if on("weight_decay", 0.3) else 0.0)
    dtype = np_dtype(str(rng.choice(sorted(caps.dtypes))))
    n_params = int(rng.integers(1, 4)) if "multi_param" in f else 1
    shapes = [_shape(rng) for _ in range(n_params)]
    n_steps = int(rng.integers(1, 9))

    def array(shape: tuple[int, ...]) -> np.ndarray:
        a = rng.normal(size=shape)
        if dtype.kind == "c":
            a = a + 1j * rng.normal(size=shape)
        return a.astype(dtype)

    lrs = (tuple(float(x) for x in 10 ** rng.uniform(-4, 0, n_steps))
           if on("lr_schedule", 0.3) else None)
    return Case(hp=hp, params=tuple(array(s) for s in shapes),
                grads=tuple(tuple(array(s) for s in shapes) for _ in range(n_steps)), lrs=lrs)


def same_structure_case(rng: np.random.Generator, caps: Capabilities,
                        **fixed: Any) -> Case:
    """Every feature the backend has switched on, float32 and float64, sizes in one bucket;
    ``fixed`` hyperparameters keep the given value instead of a random one."""
    f = caps.features
    hp = caps.hparams(
        lr=float(10 ** rng.uniform(-4, 0)), alpha=float(rng.uniform(0.5, 0.999)),
        eps=float(10 ** rng.uniform(-10, -3)),
        momentum=float(rng.uniform(0.1, 0.95)) if "momentum" in f else 0.0,
        centered="centered" in f, nesterov="nesterov" in f,
        bias_correction="bias_correction" in f,
        weight_decay=float(10 ** rng.uniform(-4, -1)) if "weight_decay" in f else 0.0)
    hp = hp.replace(**fixed)
    sizes = rng.integers(1, 65, 2)
    dts = (np.float32, np.float64)
    n_steps = int(rng.integers(1, 9))
    lrs = tuple(float(x) for x in 10 ** rng.uniform(-4, 0, n_steps))
    return Case(hp=hp, params=tuple(rng.normal(size=n).astype(d) for n, d in zip(sizes, dts)),
                grads=tuple(tuple(rng.normal(size=n).astype(d) for n, d in zip(sizes, dts))
                            for _ in range(n_steps)), lrs=lrs)


def harness_cases(caps: Capabilities, n: int) -> list[Case]:
    """``n`` cases as a certification draws them (conformance.strategies.cases, every option the
    backend declares, a dtype per case), derandomised so that runs compare."""
    f = caps.features
    options = {"multi_param": "multi_param" in f,
               "mixed_dtypes": {"multi_param", "mixed_dtypes"} <= f,
               "schedule": "lr_schedule" in f, "layouts": "layouts" in f,
               "initial_state": "state_load" in f}
    out: list[Case] = []

    @settings(max_examples=n, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(st.sampled_from(sorted(caps.dtypes)).flatmap(
        lambda dtype: strategies.cases(caps, dtype, **options)))
    def collect(case: Case) -> None:
        out.append(case)

    collect()
    return out[:n]
