"""How quickly the ``ci`` effort catches each mutant of the corpus (tests/mutants.py).

    python -m benchmarks.mutants [--effort ci]

Prints, per mutant, the property that catches it, the examples and seconds until the first
failing example (before shrinking), and the total seconds including shrinking.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from conformance.properties import PropertyFailure
from conformance.runner import run_property
from tests.mutants import EXPECTED_PROPERTY, MUTANTS
from tests.test_mutants import _dtype, _target


def run_mutant(name: str, effort: str, tmp: Path) -> tuple[dict, float]:
    """Certify the property that catches mutant ``name`` (its record, counterexample under
    ``tmp``) and the seconds it took, shrinking included."""
    prop = EXPECTED_PROPERTY[name]
    target = _target(MUTANTS[name](), prop, _dtype(name, prop), tmp)
    target.effort = effort
    start = time.perf_counter()
    try:
        run_property(prop, target)
    except PropertyFailure:
        pass
    return target.record, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--effort", default="ci")
    args = parser.parse_args()
    print(f"{'mutant':34} {'prop':5} {'dtype':11} {'examples':>8} {'s to find':>9} "
          f"{'s total':>8}  rule")
    found, seconds, missed = [], [], []
    for name in sorted(MUTANTS):
        prop = EXPECTED_PROPERTY[name]
        dtype = _dtype(name, prop)
        with tempfile.TemporaryDirectory() as tmp:
            rec, total = run_mutant(name, args.effort, Path(tmp))
        first = rec.get("first_failure", {"examples": rec["examples"], "seconds": total})
        if rec["status"] != "fail":
            missed.append(name)
        else:
            found.append(first["examples"])
            seconds.append(first["seconds"])
        print(f"{name:34} {prop:5} {dtype or '-':11} {first['examples']:8d} "
              f"{first['seconds']:9.2f} {total:8.2f}  {rec.get('rule', 'NOT CAUGHT')}")
    print(f"\n{len(found)}/{len(MUTANTS)} caught; examples to first failure: median "
          f"{statistics.median(found) if found else 0}, max {max(found, default=0)}; seconds: "
          f"median {statistics.median(seconds) if seconds else 0:.2f}, "
          f"max {max(seconds, default=0):.2f}" + (f"; missed: {', '.join(missed)}" if missed
                                                   else ""))


if __name__ == "__main__":
    main()
