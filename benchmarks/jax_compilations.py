"""How often the JAX backends compile during a certification-like run, and what it costs.

Runs N random cases (random flags, dtypes, shapes, step counts, schedules; a fixed seed) through
each JAX backend, once with shape buckets (the default) and once without, starting each from
empty JAX caches. Prints, per backend and mode: examples, compilations (traces counted by
implementations.jax_backends.compilations), seconds, the share of that time spent tracing,
lowering and compiling (JAX's own monitoring events), the median seconds of an example that
compiled nothing, and the speed-up buckets give. Then the same for N cases that share one
structure (flags, dtypes, shape bucket) and differ in every value: one compilation is expected.

    .venv/bin/python benchmarks/jax_compilations.py [N] [SEED]
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import numpy as np

from conformance.case import Case, np_dtype
from conformance.registry import load
from implementations import jax_backends as jb

NAMES = ("optax", "optax.eps_outside", "optax.tf1", "jax.example_libraries",
         "jax.example_libraries.momentum")
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]


def _on_duration(event: str, duration: float, **_: object) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


def _shape(rng: np.random.Generator) -> tuple[int, ...]:
    ndim = int(rng.integers(0, 5))
    if rng.random() < 0.05 and ndim:
        return (0,) + tuple(int(x) for x in rng.integers(1, 4, ndim - 1))
    return tuple(int(x) for x in rng.integers(1, 6, ndim))


def random_case(rng: np.random.Generator, caps) -> Case:
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


def same_structure_case(rng: np.random.Generator, caps) -> Case:
    """Every feature the backend has switched on, float32 and float64, sizes in one bucket."""
    f = caps.features
    hp = caps.hparams(
        lr=float(10 ** rng.uniform(-4, 0)), alpha=float(rng.uniform(0.5, 0.999)),
        eps=float(10 ** rng.uniform(-10, -3)),
        momentum=float(rng.uniform(0.1, 0.95)) if "momentum" in f else 0.0,
        centered="centered" in f, nesterov="nesterov" in f,
        bias_correction="bias_correction" in f,
        weight_decay=float(10 ** rng.uniform(-4, -1)) if "weight_decay" in f else 0.0)
    sizes = rng.integers(1, 65, 2)
    dts = (np.float32, np.float64)
    n_steps = int(rng.integers(1, 9))
    lrs = tuple(float(x) for x in 10 ** rng.uniform(-4, 0, n_steps))
    return Case(hp=hp, params=tuple(rng.normal(size=n).astype(d) for n, d in zip(sizes, dts)),
                grads=tuple(tuple(rng.normal(size=n).astype(d) for n, d in zip(sizes, dts))
                            for _ in range(n_steps)), lrs=lrs)


def measure(name: str, bucket: bool, cases: list[Case]) -> dict[str, float]:
    backend = type(load(name))(bucket_shapes=bucket)
    jax.clear_caches()
    _compile_seconds[0] = 0.0
    first = jb.compilations()
    warm = []
    start = time.perf_counter()
    for case in cases:
        before, t0 = jb.compilations(), time.perf_counter()
        backend.run(case)
        if jb.compilations() == before:
            warm.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return {"examples": len(cases), "compilations": jb.compilations() - first,
            "seconds": total, "compile_share": _compile_seconds[0] / total,
            "warm_median": statistics.median(warm) if warm else float("nan")}


def main(n: int = 200, seed: int = 0) -> None:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    print(f"{n} random cases per backend (seed {seed}), CPU, JAX {jax.__version__}")
    print(f"{'backend':32} {'buckets':>7} {'examples':>8} {'compiles':>8} {'seconds':>8} "
          f"{'compile%':>8} {'warm median ms':>14}")
    for name in NAMES:
        rng = np.random.default_rng(seed)
        caps = load(name).capabilities()
        cases = [random_case(rng, caps) for _ in range(n)]
        rows = {bucket: measure(name, bucket, cases) for bucket in (True, False)}
        for bucket, r in rows.items():
            print(f"{name:32} {'yes' if bucket else 'no':>7} {r['examples']:8d} "
                  f"{r['compilations']:8d} {r['seconds']:8.2f} {100 * r['compile_share']:7.1f}% "
                  f"{1e3 * r['warm_median']:14.2f}")
        fewer = rows[False]["compilations"] / max(rows[True]["compilations"], 1)
        faster = rows[False]["seconds"] / rows[True]["seconds"]
        print(f"{'':32} buckets: {fewer:.1f}x fewer compilations, {faster:.1f}x faster")
    print(f"\n{n} cases of one structure per backend (values, sizes <= 64 and step counts differ)")
    for name in NAMES:
        rng = np.random.default_rng(seed)
        caps = load(name).capabilities()
        r = measure(name, True, [same_structure_case(rng, caps) for _ in range(n)])
        print(f"{name:32} {'yes':>7} {r['examples']:8d} {r['compilations']:8d} "
              f"{r['seconds']:8.2f} {100 * r['compile_share']:7.1f}% "
              f"{1e3 * r['warm_median']:14.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
