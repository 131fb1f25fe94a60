"""How long a certification takes, how much of it is the backend, and where the rest goes.

    python -m benchmarks.certify_time [BACKEND ...] [--effort ci] [-n 2]
                                      [--known-deviations known-deviations.toml] [--repeat 3]

For each backend: ``rmsprop-conformance certify NAME`` as a user runs it (``-n`` workers), with and
without the known-deviations file (a nonconformant certification should cost no more than a
conformant one), median of ``--repeat`` runs: the wall time, the time inside ``backend.run``
(summed over workers), the harness overhead = wall / backend time (the issue's figure) and test
time / backend time. Then the breakdown of one in-process run (one worker, same settings) into
input generation, the backend, oracle and bounds, diagnosis (alternative readings, labels),
report writing and the rest (Hypothesis's engine, the checks' own code), and the wall time of
certify selecting no test (start-up, workers, evidence, report). The certifications and the
empty one are run again with the session's processes started rather than forked
(``RMSPROP_CONFORMANCE_FORKSERVER=0``, docs/architecture.md §9), for the ratio. The issue's
goals: torch.foreach with the ci effort in at most 20 s wall on 2 cores, overhead at most 1.5x.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance import cli


def _command(name: str, args: argparse.Namespace, report_dir: Path,
             known: str | None) -> list[str]:
    """The pytest session ``certify`` starts (for the in-process breakdown)."""
    ns = cli.build_parser().parse_args(
        ["certify", name, "--effort", args.effort, "-n", args.jobs]
        + (["--known-deviations", known] if known else []))
    return cli.pytest_command([name], ns, report_dir)


_FORKSERVER = "RMSPROP_CONFORMANCE_FORKSERVER"

# certify with its pytest session selecting no test (start-up, workers, evidence, report).
_EMPTY = """
from conformance import cli
full = cli.pytest_command
cli.pytest_command = lambda *a: [*full(*a)[:-1], "-k", "no_test_has_this_name", full(*a)[-1]]
cli.console_main()
"""


def _certify(name: str, args: argparse.Namespace, known: str | None, forked: bool = True,
             empty: bool = False) -> tuple[float, dict[str, Any] | None]:
    """``rmsprop-conformance certify NAME`` as a user runs it (with its processes started, not
    forked, when not ``forked``; selecting no test when ``empty``): wall time and report."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", _EMPTY] if empty else \
            [sys.executable, "-m", "conformance.cli"]
        cmd += ["certify", name, "--effort", args.effort, "-n", args.jobs, "--report-dir", tmp]
        cmd += ["--known-deviations", known] if known else []
        env = {**os.environ, _FORKSERVER: "1" if forked else "0"}
        start = time.perf_counter()
        subprocess.run(cmd, check=False, capture_output=True, env=env)
        wall = time.perf_counter() - start
        path = next(Path(tmp).glob("*.json"), None)
        return wall, None if path is None else json.loads(path.read_text())


class _Clock:
    """Exclusive time per category: time in a nested category is not counted in the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[list[Any]] = []  # [category, start, time of nested categories]

    def wrap(self, category: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*a: Any, **kw: Any) -> Any:
            frame = [category, time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*a, **kw)
            finally:
                self._stack.pop()
                spent = time.perf_counter() - frame[1]
                self.seconds[category] = self.seconds.get(category, 0.0) + spent - frame[2]
                if self._stack:
                    self._stack[-1][2] += spent
        return timed


def _breakdown(name: str, args: argparse.Namespace, known: str | None) -> dict[str, float]:
    """One in-process run (-n 0) with the harness's stages timed."""
    import pytest
    from hypothesis.control import BuildContext

    from conformance import diagnosis, properties, report, runner

    clock = _Clock()
    patches = [(BuildContext, "prep_args_kwargs_from_strategies", "input generation"),
               (properties, "call_backend", "backend (with input copies)"),
               (properties, "judge", "oracle and bounds"),
               (properties, "run", "oracle and bounds"),
               (diagnosis, "name_rule", "diagnosis"),
               (runner, "label_of", "diagnosis"),
               (report, "write_session", "report writing")]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    for obj, attr, category in patches:
        setattr(obj, attr, clock.wrap(category, getattr(obj, attr)))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = _command(name, args, Path(tmp), known)
            cmd[cmd.index("-n") + 1] = "0"
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                clock.wrap("rest (Hypothesis engine, checks' own code)", pytest.main)(cmd[3:])
            total = time.perf_counter() - start
    finally:
        for obj, attr, fn in saved:
            setattr(obj, attr, fn)
    return {"total": total, **clock.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="*", default=["torch.foreach"])
    parser.add_argument("--effort", default="ci", choices=("quick", "ci", "thorough"))
    parser.add_argument("-n", "--jobs", default="2")
    parser.add_argument("--known-deviations", default="known-deviations.toml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for name in args.backends:
        print(f"{name}, effort {args.effort}, -n {args.jobs} (median of {args.repeat})")
        print(f"  {'deviations':20} {'wall s':>7} {'tests s':>8} {'in run() s':>10} "
              f"{'wall/run':>9} {'tests/run':>10} {'examples':>9}  verdict")
        rows = [("listed", args.known_deviations, True), ("none", None, True),
                ("listed, not forked", args.known_deviations, False)]
        for label, known, forked in rows:
            runs = [_certify(name, args, known, forked) for _ in range(args.repeat)]
            wall, doc = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
            if doc is None:
                print(f"  {label:20} {wall:7.1f}  no report")
                continue
            results = doc["results"]
            tests = sum(r["seconds"] for r in results)
            inside = sum(r.get("backend_seconds", 0.0) for r in results)
            examples = sum(r["examples"] for r in results)
            print(f"  {label:20} {wall:7.1f} {tests:8.1f} {inside:10.1f} "
                  f"{wall / inside if inside else float('inf'):8.2f}x "
                  f"{tests / inside if inside else float('inf'):9.2f}x {examples:9d}  "
                  f"{doc['verdict']} {doc['counts']}  (walls: "
                  f"{', '.join(f'{w:.1f}' for w, _ in runs)})")
        startup = {forked: statistics.median(_certify(name, args, args.known_deviations,
                                                      forked, empty=True)[0]
                                             for _ in range(args.repeat))
                   for forked in (True, False)}
        parts = _breakdown(name, args, args.known_deviations)
        total = parts.pop("total")
        print(f"  breakdown of one in-process run (-n 0, known deviations listed): {total:.1f} s")
        for category, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"    {category:44} {seconds:7.1f} s {100 * seconds / total:5.1f} %")
        print(f"  certify selecting no test (-n {args.jobs}: start-up, workers, evidence, "
              f"report): {startup[True]:.1f} s wall; {startup[False]:.1f} s with its processes "
              f"started, not forked ({startup[False] / startup[True]:.2f}x)")

if __name__ == "__main__":
    main()
