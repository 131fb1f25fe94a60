"""How much of its error budget a correct low-precision implementation uses
(docs/architecture.md §4).

For each dtype and flag family, generated runs of tests/lowprec.py (the spec rules, every operation
rounded to the dtype) are judged step by step against the oracle's bound
(spec.rmsprop.step_with_bounds) from the same inputs. Printed per row: the median and maximum of
|lowprec - exact| / bound over the judged elements with a non-zero finite bound, the share of
elements whose bound is infinite (no numerical claim there), and the number of elements outside
the bound (K = 1; anything but 0 means the bound is unsound). A maximum far below 1 says the
bound is loose; a median near 0 with a maximum near 1 says it is tight where it matters.

Run from the repository root:  .venv/bin/python -m benchmarks.bound_usefulness [--cases N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spec.rmsprop import PROFILES, HParams, dtype_info
from tests import lowprec

# Flag family -> overrides; None means "drawn at random" (momentum, weight_decay).
FAMILIES: dict[str, dict] = {
    "plain": {},
    "centered": {"centered": True},
    "momentum": {"momentum": None},
    "nesterov": {"momentum": None, "nesterov": True},
    "wd coupled": {"weight_decay": None, "weight_decay_mode": "coupled"},
    "wd decoupled": {"weight_decay": None, "weight_decay_mode": "decoupled"},
    "bias_correction": {"bias_correction": True},
    "maximize": {"maximize": True, "weight_decay": None},
    "everything": {"centered": True, "momentum": None, "nesterov": True, "weight_decay": None,
                   "bias_correction": True, "maximize": True},
}


def draw_hparams(rng: np.random.Generator, family: dict) -> HParams:
    """A random configuration of one flag family: profile, alpha, eps and lr drawn at random."""
    o = {
        "lr": float(10 ** rng.uniform(-4, 0)),
        "alpha": float(rng.choice([0.5, 0.9, 0.99, rng.uniform(0.0, 0.999)])),
        "eps": float(10 ** rng.uniform(-10, -1)),
        "eps_in_sqrt": bool(rng.integers(2)),
    }
    for name, value in family.items():
        if name == "momentum":
            o[name] = float(rng.choice([0.5, 0.9, 0.99]))
        elif name == "weight_decay":
            o[name] = float(10 ** rng.uniform(-4, 0))
        else:
            o[name] = value
    return HParams.from_profile(str(rng.choice(PROFILES)), **o)


def measure(dtype_name: str, family: dict, n_cases: int, seed: int) -> dict:
    dtype = lowprec.DTYPES[dtype_name]
    tiny = dtype_info(dtype).tiny
    rng = np.random.default_rng(seed)
    ratios, n_inf, n_all, n_bad = [], 0, 0, 0
    for _ in range(n_cases):
        hp = draw_hparams(rng, family)
        n_steps = int(rng.integers(1, 9))
        grads = lowprec.gradient_sequence(
            rng, str(rng.choice(sorted(lowprec.GRADIENT_FAMILIES))), (8,), n_steps,
            float(rng.choice([1.0, 1e-2, 10.0])))
        theta = lowprec.rounded(rng.standard_normal(8), dtype)
        state = lowprec.init_state((8,), hp, dtype)
        for k in range(n_steps):
            g = lowprec.rounded(grads[k], dtype)
            theta, state, judged = lowprec.judged_step(theta, g, state, hp, dtype)
            for j in judged:
                ratios.append(j.ratios())
                n_inf += int(np.sum(np.isinf(j.bound)))
                n_all += j.bound.size
                n_bad += int(np.sum(j.violations(tiny)))
    r = np.concatenate(ratios)
    return dict(median=float(np.median(r)), max=float(r.max()), inf=n_inf / n_all, bad=n_bad,
                n=r.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300, help="runs per dtype and family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'dtype':9} {'family':16} {'median':>9} {'max':>9} {'inf bound':>10} "
          f"{'outside':>8} {'elements':>9}")
    start = time.perf_counter()
    for dtype_name in ("float32", "float16", "bfloat16"):
        for name, family in FAMILIES.items():
            m = measure(dtype_name, family, args.cases, args.seed)
            print(f"{dtype_name:9} {name:16} {m['median']:9.3g} {m['max']:9.3g} "
                  f"{m['inf']:10.2%} {m['bad']:8d} {m['n']:9d}")
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
