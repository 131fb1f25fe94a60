"""How often the JAX backends compile during a certification-like run, and what it costs.

Runs N random cases (random flags, dtypes, shapes, step counts, schedules; a fixed seed) through
each JAX backend, once with shape buckets (the default) and once without, starting each from
empty JAX caches. Prints, per backend and mode: examples, compilations (traces counted by
implementations.jax_backends.compilations), seconds, the share of that time spent tracing,
lowering and compiling (JAX's own monitoring events), the median seconds of an example that
compiled nothing, and the speed-up buckets give. The same for N cases drawn as a certification
draws them (conformance.strategies.cases). Then N cases that share one structure (flags, dtypes,
shape bucket) and differ in every value: one compilation is expected. Last, the persistent
compilation cache (implementations._jax_common.persistent_cache_dir): the certification-like
cases of each backend run twice, each time in a fresh process over one new cache directory;
the second run traces again (tracing is Python) but compiles nothing — XLA compilations are the
cache misses JAX reports, loads from disk its cache hits.

    .venv/bin/python -m benchmarks.jax_compilations [N] [SEED]
"""

from __future__ import annotations

import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from benchmarks._cases import harness_cases, random_case, same_structure_case
from conformance.case import Case
from conformance.registry import load
from implementations import jax_backends as jb
from implementations._jax_common import CACHE_ENV

NAMES = ("optax", "optax.eps_outside", "optax.tf1", "jax.example_libraries",
         "jax.example_libraries.momentum")
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_compile_seconds = [0.0]


def _on_duration(event: str, duration: float, **_: object) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


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


def _row(name: str, bucket: bool, r: dict[str, float]) -> None:
    print(f"{name:32} {'yes' if bucket else 'no':>7} {r['examples']:8d} {r['compilations']:8d} "
          f"{r['seconds']:8.2f} {100 * r['compile_share']:7.1f}% "
          f"{1e3 * r['warm_median']:14.2f}")


def _compare(name: str, cases: list[Case]) -> None:
    rows = {bucket: measure(name, bucket, cases) for bucket in (True, False)}
    for bucket, r in rows.items():
        _row(name, bucket, r)
    fewer = rows[False]["compilations"] / max(rows[True]["compilations"], 1)
    faster = rows[False]["seconds"] / rows[True]["seconds"]
    print(f"{'':32} buckets: {fewer:.1f}x fewer compilations, {faster:.1f}x faster")


def _cached_child(name: str, n: int) -> None:
    """One fresh process's run of ``n`` certification-like cases (the cache set by the parent)."""
    events: collections.Counter[str] = collections.Counter()
    jax.monitoring.register_event_listener(lambda event, **_: events.update([event]))
    backend = load(name)
    cases = harness_cases(backend.capabilities(), n)
    first, start = jb.compilations(), time.perf_counter()
    for case in cases:
        backend.run(case)
    print(jb.compilations() - first, events["/jax/compilation_cache/cache_misses"],
          events["/jax/compilation_cache/cache_hits"], time.perf_counter() - start)


def _persistent_cache(n: int) -> None:
    print(f"\n{n} certification-like cases per backend, run twice in fresh processes over one "
          f"new persistent cache\n{'backend':32} {'run':>4} {'traces':>7} {'XLA compiles':>12} "
          f"{'per 100':>8} {'from disk':>9} {'seconds':>8}")
    for name in NAMES:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, CACHE_ENV: cache}
            for run in (1, 2):
                out = subprocess.run([sys.executable, "-m", "benchmarks.jax_compilations",
                                      "--cached-child", name, str(n)], env=env, check=True,
                                     capture_output=True, text=True).stdout.split()
                traces, misses, hits, seconds = int(out[0]), int(out[1]), int(out[2]), out[3]
                print(f"{name:32} {run:4d} {traces:7d} {misses:12d} {100 * misses / n:8.1f} "
                      f"{hits:9d} {float(seconds):8.2f}")


def main(n: int = 200, seed: int = 0) -> None:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    header = (f"{'backend':32} {'buckets':>7} {'examples':>8} {'compiles':>8} {'seconds':>8} "
              f"{'compile%':>8} {'warm median ms':>14}")
    print(f"{n} random cases per backend (seed {seed}), CPU, JAX {jax.__version__}\n{header}")
    for name in NAMES:
        rng = np.random.default_rng(seed)
        caps = load(name).capabilities()
        _compare(name, [random_case(rng, caps) for _ in range(n)])
    print(f"\n{n} cases per backend as a certification draws them (derandomised)\n{header}")
    for name in NAMES:
        _compare(name, harness_cases(load(name).capabilities(), n))
    print(f"\n{n} cases of one structure per backend (values, sizes <= 64 and step counts "
          f"differ)\n{header}")
    for name in NAMES:
        rng = np.random.default_rng(seed)
        caps = load(name).capabilities()
        _row(name, True, measure(name, True, [same_structure_case(rng, caps) for _ in range(n)]))
    _persistent_cache(n)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cached-child"]:
        _cached_child(sys.argv[2], int(sys.argv[3]))
    else:
        main(*(int(a) for a in sys.argv[1:3]))
