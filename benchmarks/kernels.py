"""Our fused numba kernel against torch.optim.RMSprop and the machine's memory bandwidth.

For float32 parameters of 1e4 … 1e7 elements and the plain, momentum and centered updates, the
median time of one optimizer step of:

- numba:   implementations.numba_kernel.rmsprop_update (one fused pass, host code included);
- foreach: torch.optim.RMSprop(foreach=True), the multi-tensor path;
- forloop: torch.optim.RMSprop(foreach=False); with one tensor this is the single-tensor path.

Effective bandwidth = the minimal bytes a step must move / time: reads of θ, g and every state
buffer, writes of θ and every state buffer (plain 5, momentum and centered 7 arrays of 4 bytes per
element). The reference is a parallel STREAM triad x = y + s·z (numba prange, the same threads,
3 arrays counted) measured in the same run: the contenders of a row take turns in blocks (the
triad joins them at the largest size), so a busy spell on a shared machine slows them all alike.
Printed: the table, the speed-up over foreach, and numba's bandwidth as a share of the triad's.
The goal (the issue's): at 1e7 elements, >= 4x foreach and >= 85 % of the triad, for all three
updates. Sizes that fit in a cache level the triad does not fit in run above the triad's figure:
only the largest size compares. Mind the last-level cache: where it holds 1e7-element arrays
(lscpu), compare with --sizes 1e7 5e7 --triad-size 1e8 too.

Also, for information only: the Triton kernel in Triton's interpreter at small sizes.

Run from the repository root:  .venv/bin/python -m benchmarks.kernels [--sizes 1e4 1e7] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import njit, prange

from implementations.numba_kernel import rmsprop_update
from spec.rmsprop import HParams, ParamState

UPDATES: dict[str, dict] = {"plain": {}, "momentum": {"momentum": 0.9},
                           "centered": {"centered": True}}
ITEMSIZE = 4  # float32
GOAL_SPEEDUP, GOAL_TRIAD_SHARE = 4.0, 0.85


def arrays_moved(hp: HParams) -> int:
    """Arrays read or written once per step: θ, g, square_avg read; θ, square_avg written; +2 per
    extra state buffer."""
    return 5 + 2 * (hp.momentum > 0) + 2 * hp.centered


def median_times(fns: list[Callable[[], object]], budget_s: float, rounds: int = 5,
                 min_reps: int = 3) -> list[float]:
    """Median seconds per call of each of ``fns``.

    ``rounds`` times, each function in turn runs a block of calls (its share of ``budget_s``,
    at least ``min_reps``) after one untimed call, so that a busy spell on a shared machine slows
    every contender alike. Blocks rather than single alternating calls: numba's and torch's thread
    pools each spin for a while after their work, and alternating call by call would measure that
    contention instead of the kernels.
    """
    times: list[list[float]] = [[] for _ in fns]
    block_s = budget_s / (rounds * len(fns))
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            fn()
            start = time.perf_counter()
            reps = 0
            while reps < min_reps or time.perf_counter() - start < block_s:
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
                reps += 1
    return [statistics.median(ts) for ts in times]


@njit(parallel=True, fastmath=False, cache=True)
def _triad(x, y, z, s):
    for i in prange(x.shape[0]):
        x[i] = y[i] + s * z[i]


def triad(n: int) -> Callable[[], object]:
    """One parallel STREAM triad x = y + s·z over float32 arrays of ``n`` elements."""
    rng = np.random.default_rng(0)
    y, z = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    x = np.empty_like(y)
    return lambda: _triad(x, y, z, np.float32(3.0))


def numba_step(n: int, hp: HParams) -> Callable[[], object]:
    rng = np.random.default_rng(1)
    param = rng.standard_normal(n, dtype=np.float32)
    grad = rng.standard_normal(n, dtype=np.float32)

    def zeros() -> np.ndarray:
        return np.zeros(n, np.float32)

    state = ParamState(0, zeros(), zeros() if hp.centered else None,
                       zeros() if hp.momentum > 0 else None)
    return lambda: rmsprop_update(param, grad, state, hp, hp.lr)


def torch_step(n: int, hp: HParams, foreach: bool) -> Callable[[], object]:
    gen = torch.Generator().manual_seed(1)
    param = torch.randn(n, generator=gen, dtype=torch.float32, requires_grad=True)
    param.grad = torch.randn(n, generator=gen, dtype=torch.float32)
    opt = torch.optim.RMSprop([param], lr=hp.lr, alpha=hp.alpha, eps=hp.eps,
                              momentum=hp.momentum, centered=hp.centered, foreach=foreach)
    return opt.step


def triton_interpreter_times(sizes: list[int], budget_s: float) -> list[tuple[int, float]]:
    """Median seconds per step of the Triton kernel in the interpreter (None if unavailable)."""
    from implementations import triton_kernel  # noqa: PLC0415  (sets TRITON_INTERPRET)

    if not triton_kernel.INTERPRETED:
        return []
    hp = HParams.from_profile("torch")
    out = []
    for n in sizes:
        param = torch.randn(n)
        grad = torch.randn(n)
        state = ParamState(0, torch.zeros(n))

        def step(p=param, g=grad, s=state):
            return triton_kernel.rmsprop_update(p, g, s, hp, hp.lr)

        out.append((n, *median_times([step], budget_s, rounds=1)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--triad-size", type=float, default=2e7)
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds of repeats per row (default 3)")
    parser.add_argument("--quick", action="store_true", help="budget 0.3 s, for a smoke run")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for numba and torch (default: numba's default)")
    args = parser.parse_args(argv)
    budget = 0.3 if args.quick else args.budget
    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    sizes = [int(s) for s in args.sizes]

    triad_n = int(args.triad_size)
    print(f"threads: numba {numba.get_num_threads()}, torch {torch.get_num_threads()} "
          f"(numba layer {numba.threading_layer()}); torch {torch.__version__}, "
          f"numba {numba.__version__}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    largest = max(sizes)
    print(f"In each row numba, foreach and forloop take turns in blocks; at {largest:.0e} elements "
          f"a STREAM\ntriad x = y + s*z of {triad_n:.0e} float32 (3 arrays counted) joins them (at "
          "smaller sizes it would\nflush the caches the others run in). Medians per step.\n")
    rows = []
    for n in sizes:
        for name, flags in UPDATES.items():
            hp = HParams.from_profile("torch", **flags)
            fns = [numba_step(n, hp), torch_step(n, hp, foreach=True),
                   torch_step(n, hp, foreach=False)]
            rows.append((n, name, hp, median_times(fns + [triad(triad_n)] * (n == largest),
                                                   budget)))
    triad_bws = [3 * ITEMSIZE * triad_n / ts[3] for n, _, _, ts in rows if n == largest]
    triad_bw = statistics.median(triad_bws)

    head = (f"{'size':>8} {'update':>9} | {'numba ms':>9} {'foreach ms':>10} {'forloop ms':>10} | "
            f"{'numba GB/s':>10} {'foreach':>8} {'forloop':>8} {'triad':>6} | "
            f"{'vs foreach':>10} {'vs forloop':>10} {'of triad':>8}")
    print(head)
    print("-" * len(head))
    at_goal_size = []
    for n, name, hp, (t_numba, t_foreach, t_forloop, *t_triad) in rows:
        moved = arrays_moved(hp) * ITEMSIZE * n
        share = moved / t_numba / triad_bw
        triad_col = f"{3 * ITEMSIZE * triad_n / t_triad[0] / 1e9:>6.2f}" if t_triad else " " * 6
        print(f"{n:>8.0e} {name:>9} | {t_numba * 1e3:>9.3f} {t_foreach * 1e3:>10.3f} "
              f"{t_forloop * 1e3:>10.3f} | {moved / t_numba / 1e9:>10.2f} "
              f"{moved / t_foreach / 1e9:>8.2f} {moved / t_forloop / 1e9:>8.2f} {triad_col} | "
              f"{t_foreach / t_numba:>9.2f}x {t_forloop / t_numba:>9.2f}x {share:>7.0%}")
        if n == largest:
            at_goal_size.append((name, t_foreach / t_numba, share))

    print(f"'of triad': numba's bandwidth / {triad_bw / 1e9:.2f} GB/s, the median triad figure. "
          f"Load average at the end {os.getloadavg()[0]:.1f}.\nThe triad also reads x before "
          "writing it (write-allocate), which its count leaves out; the kernel\nonly writes "
          "lines it has just read. Sizes that fit in the caches run above the triad's\n"
          "main-memory figure: only the largest size compares.")
    print(f"\nGoal at {largest:.0e} elements: >= {GOAL_SPEEDUP:.0f}x foreach and "
          f">= {GOAL_TRIAD_SHARE:.0%} of the triad's bandwidth")
    for name, speedup, share in at_goal_size:
        verdict = "met" if speedup >= GOAL_SPEEDUP and share >= GOAL_TRIAD_SHARE else "NOT met"
        print(f"  {name:>9}: {speedup:.2f}x foreach, {share:.0%} of triad -> {verdict}")

    interp = triton_interpreter_times([100, 1_000, 10_000], budget)
    if interp:
        print("\nTriton interpreter (information only; plain update, host code included):")
        for n, t in interp:
            print(f"  {n:>6} elements: {t * 1e3:.2f} ms per step")


if __name__ == "__main__":
    main()
