"""What the ci shrink time box buys: each mutant's counterexample under several boxes.

    python -m benchmarks.shrink_box [--seconds 1,2,5]

For each mutant of tests/mutants.py, certifies the property that catches it with the ``ci``
effort once per box, and prints the rule named and the size of the stored counterexample
(steps, parameters, elements, nonzero gradient entries), then how many mutants end with the
same counterexample and rule as under the largest box, and the seconds each box took in all.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.mutants import run_mutant
from conformance import serialize, strategies
from tests.mutants import MUTANTS


def _size(path: str | None) -> tuple[int, ...] | None:
    """(steps, parameters, elements, nonzero gradient entries) of a stored counterexample."""
    if path is None:
        return None
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc["case"] is None:
        return None
    case = serialize.case_from_json(doc["case"])
    return (len(case.grads), len(case.params), sum(int(np.size(p)) for p in case.params),
            sum(int(np.count_nonzero(np.asarray(g, dtype=np.complex128)))
                for gs in case.grads for g in gs))


def _certify(name: str, box: float) -> tuple[str | None, tuple[int, ...] | None, float]:
    strategies.SHRINK_SECONDS["rmsprop-ci"] = box
    with tempfile.TemporaryDirectory() as tmp:
        record, seconds = run_mutant(name, "ci", Path(tmp))
        return record.get("rule"), _size(record.get("counterexample")), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", default="1,2,5",
                        help="comma-separated shrink time boxes (default 1,2,5)")
    args = parser.parse_args()
    boxes = sorted(float(x) for x in args.seconds.split(","))
    largest = boxes[-1]
    print(f"{'mutant':34} " + " ".join(f"{f'{b:g} s box':>22}" for b in boxes))
    same = dict.fromkeys(boxes, 0)
    total = dict.fromkeys(boxes, 0.0)
    for name in sorted(MUTANTS):
        runs = {b: _certify(name, b) for b in boxes}
        for b, (rule, size, seconds) in runs.items():
            same[b] += (rule, size) == runs[largest][:2]
            total[b] += seconds
        print(f"{name:34} " + " ".join(f"{f'{r} {s}':>22}" for r, s, _ in runs.values()),
              flush=True)
    print(f"\nsteps/parameters/elements/nonzero gradients; {len(MUTANTS)} mutants")
    for b in boxes:
        print(f"{b:g} s box: {same[b]} end as with {largest:g} s; {total[b]:.1f} s in all")


if __name__ == "__main__":
    main()
