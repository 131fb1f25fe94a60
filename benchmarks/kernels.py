"""Our fused numba kernel against torch.optim.RMSprop and the machine's memory bandwidth.

For float32 parameters of 1e4 … 1e7 elements and the plain, momentum and centered updates, the
median time of one optimizer step of:

- numba:   implementations.numba_kernel.rmsprop_update (one fused pass, host code included);
- foreach: torch.optim.RMSprop(foreach=True), the multi-tensor path;
- forloop: torch.optim.RMSprop(foreach=False); with one tensor this is the single-tensor path.

Effective bandwidth = the minimal bytes a step must move / time: reads of θ, g and every state
buffer, writes of θ and every state buffer (plain 5, momentum and centered 7 arrays of 4 bytes per
element). The reference is a parallel STREAM triad x = y + s·z (numba prange, the same threads,
3 arrays counted) measured in the same run, before and after the table. Printed: the table, the
speed-up over foreach, and numba's bandwidth as a share of the triad's. The goal (the issue's):
at 1e7 elements, >= 4x foreach and >= 85 % of the triad, for all three updates. Sizes that fit
in the caches (1e4 … 1e6 here) exceed the triad's main-memory figure; only the largest compares.

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


def median_time(fn: Callable[[], object], budget_s: float, min_reps: int = 5,
                max_reps: int = 200) -> float:
    """Median seconds per call, after warm-up calls, over repeats filling ``budget_s``."""
    fn()
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s
                                    and len(times) < max_reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@njit(parallel=True, fastmath=False, cache=True)
def _triad(x, y, z, s):
    for i in prange(x.shape[0]):
        x[i] = y[i] + s * z[i]


def triad_bandwidth(n: int, budget_s: float) -> float:
    """Bytes/s of x = y + s·z over 3 float32 arrays of ``n`` elements (3 arrays counted)."""
    rng = np.random.default_rng(0)
    y, z = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    x = np.empty_like(y)
    t = median_time(lambda: _triad(x, y, z, np.float32(3.0)), budget_s)
    return 3 * ITEMSIZE * n / t


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
        out.append((n, median_time(
            lambda p=param, g=grad, s=state: triton_kernel.rmsprop_update(p, g, s, hp, hp.lr),
            budget_s, min_reps=3, max_reps=50)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--triad-size", type=float, default=2e7)
    parser.add_argument("--budget", type=float, default=2.0,
                        help="seconds of repeats per measurement (default 2)")
    parser.add_argument("--quick", action="store_true", help="budget 0.3 s, for a smoke run")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for numba and torch (default: numba's default)")
    args = parser.parse_args(argv)
    budget = 0.3 if args.quick else args.budget
    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    sizes = [int(s) for s in args.sizes]

    # The triad is measured before and after the table; the higher figure is the reference, so
    # that a busy moment during one measurement cannot flatter the kernel's share.
    triad_before = triad_bandwidth(int(args.triad_size), budget)
    load_before = os.getloadavg()[0]
    print(f"threads: numba {numba.get_num_threads()}, torch {torch.get_num_threads()} "
          f"(numba layer {numba.threading_layer()}); torch {torch.__version__}, "
          f"numba {numba.__version__}; {os.cpu_count()} CPUs, load average {load_before:.1f}\n")
    head = (f"{'size':>8} {'update':>9} | {'numba ms':>9} {'foreach ms':>10} {'forloop ms':>10} | "
            f"{'numba GB/s':>10} {'foreach':>8} {'forloop':>8} | {'vs foreach':>10} "
            f"{'vs forloop':>10} {'of triad':>8}")
    print(head)
    print("-" * len(head))
    at_goal_size = []
    for n in sizes:
        for name, flags in UPDATES.items():
            hp = HParams.from_profile("torch", **flags)
            t_numba = median_time(numba_step(n, hp), budget)
            t_foreach = median_time(torch_step(n, hp, foreach=True), budget)
            t_forloop = median_time(torch_step(n, hp, foreach=False), budget)
            moved = arrays_moved(hp) * ITEMSIZE * n
            share = moved / t_numba / triad_before
            print(f"{n:>8.0e} {name:>9} | {t_numba * 1e3:>9.3f} {t_foreach * 1e3:>10.3f} "
                  f"{t_forloop * 1e3:>10.3f} | {moved / t_numba / 1e9:>10.2f} "
                  f"{moved / t_foreach / 1e9:>8.2f} {moved / t_forloop / 1e9:>8.2f} | "
                  f"{t_foreach / t_numba:>9.2f}x {t_forloop / t_numba:>9.2f}x {share:>7.0%}")
            if n == max(sizes):
                at_goal_size.append((name, t_foreach / t_numba, moved / t_numba))

    triad_after = triad_bandwidth(int(args.triad_size), budget)
    triad = max(triad_before, triad_after)
    print(f"\nSTREAM triad x = y + s*z, {int(args.triad_size):.0e} float32, 3 arrays counted:\n"
          f"  {triad_before / 1e9:.2f} GB/s before, {triad_after / 1e9:.2f} GB/s after the table "
          f"(load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}); 'of triad' above uses"
          " the first.\n  The triad also reads x before writing it (write-allocate), which the"
          " count leaves out;\n  the kernel only writes lines it has just read.")
    print(f"\nGoal at {max(sizes):.0e} elements: >= {GOAL_SPEEDUP:.0f}x foreach and "
          f">= {GOAL_TRIAD_SHARE:.0%} of the triad's bandwidth (the higher triad figure, "
          f"{triad / 1e9:.2f} GB/s)")
    for name, speedup, bandwidth in at_goal_size:
        share = bandwidth / triad
        verdict = "met" if speedup >= GOAL_SPEEDUP and share >= GOAL_TRIAD_SHARE else "NOT met"
        print(f"  {name:>9}: {speedup:.2f}x foreach, {share:.0%} of triad -> {verdict}")

    interp = triton_interpreter_times([100, 1_000, 10_000], budget)
    if interp:
        print("\nTriton interpreter (information only; plain update, host code included):")
        for n, t in interp:
            print(f"  {n:>6} elements: {t * 1e3:.2f} ms per step")


if __name__ == "__main__":
    main()
