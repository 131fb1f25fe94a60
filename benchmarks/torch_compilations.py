"""How often the torch.compile backend compiles, and what it costs per example.

Four runs of N cases each, every run from an empty dynamo cache (``torch._dynamo.reset()``):

- one structure (float32 + float64 parameters, every flag torch has), alpha and weight_decay
  fixed; lr schedule, eps, momentum, sizes, values and step counts random: one compilation is
  expected — what the backend's design caches;
- the same with a random alpha per case, then with a random weight_decay per case: passed as
  Python floats, torch specialises ``1 - alpha`` and ``weight_decay`` (their kwargs take no
  symbolic float), so about one compilation per case; alpha passed as a 0-d tensor (the
  backend's way), one compilation; weight_decay stays a float in both (as a tensor it breaks
  the graph and dynamo runs the step eagerly: ``fullgraph=True`` makes that an error);
- random cases (random flags, dtypes, shapes, hyperparameters), and cases drawn as a
  certification draws them (conformance.strategies.cases, derandomised).

Each run twice: alpha as a Python float and as a 0-d tensor (``Compiled.tensor_hyperparameters``).
Prints, per run: examples, compilations (dynamo's graphs), the operations dynamo captured into
them (0 would mean the step ran eagerly), examples on which torch raised (its compile failures,
listed in docs/findings.md), seconds, and the median milliseconds of an example that compiled
nothing and of one that compiled.

    .venv/bin/python -m benchmarks.torch_compilations [N] [SEED]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks._cases import harness_cases, random_case, same_structure_case
from conformance.case import Case
from implementations.torch_backends import Compiled


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def measure(cases: list[Case], tensors: tuple[str, ...]) -> dict[str, float]:
    torch._dynamo.reset()
    backend = Compiled()
    backend.tensor_hyperparameters = tensors
    first = Compiled.compilations()
    captured = Compiled.captured_operations()
    warm, cold = [], []
    raised = 0
    start = time.perf_counter()
    for case in cases:
        before, t0 = Compiled.compilations(), time.perf_counter()
        try:
            backend.run(case)
        except Exception:  # torch's own compile failures (see the README's findings)
            raised += 1
        (warm if Compiled.compilations() == before else cold).append(time.perf_counter() - t0)
    return {"examples": len(cases), "compilations": Compiled.compilations() - first,
            "captured": Compiled.captured_operations() - captured,
            "raised": raised, "seconds": time.perf_counter() - start, "warm": _median(warm),
            "cold": _median(cold)}


def main(n: int = 20, seed: int = 0) -> None:
    caps = Compiled().capabilities()
    runs: dict[str, Callable[[np.random.Generator], Case]] = {
        "one structure, alpha and wd fixed": lambda rng: same_structure_case(
            rng, caps, alpha=0.9, weight_decay=0.01),
        "one structure, random alpha": lambda rng: same_structure_case(
            rng, caps, weight_decay=0.01),
        "one structure, random weight_decay": lambda rng: same_structure_case(
            rng, caps, alpha=0.9),
        "random cases": lambda rng: random_case(rng, caps),
    }
    print(f"{n} cases per run (seed {seed}), torch {torch.__version__}, CPU; alpha passed as "
          "a Python float and as a 0-d tensor (the backend); weight_decay a float in both")
    print(f"{'run':38} {'alpha as':>9} {'examples':>8} {'compiles':>8} {'ops':>6} {'raised':>6} "
          f"{'seconds':>8} {'warm ms':>8} {'cold ms':>8}")
    cases = {}
    for title, make in runs.items():
        rng = np.random.default_rng(seed)
        cases[title] = [make(rng) for _ in range(n)]
    cases["cases as certify draws them"] = harness_cases(caps, n)
    for title, drawn in cases.items():
        for label, tensors in (("float", ()), ("tensor", Compiled.tensor_hyperparameters)):
            _row(title, label, measure(drawn, tensors))


def _row(title: str, label: str, r: dict[str, float]) -> None:
    print(f"{title:38} {label:>9} {r['examples']:8d} {r['compilations']:8d} {r['captured']:6d} "
          f"{r['raised']:6d} "
          f"{r['seconds']:8.1f} {1e3 * r['warm']:8.1f} {1e3 * r['cold']:8.1f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
