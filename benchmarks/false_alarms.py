"""No false alarms: correct backends certify as conformant under many Hypothesis seeds.

    python -m benchmarks.false_alarms [BACKEND ...] [--seeds 20] [--effort ci]
    PYTHONPATH=. python -m benchmarks.false_alarms --variants [--seeds 20]

Runs ``rmsprop-conformance certify`` once per seed (with the project's known deviations) and
prints each run's verdict; any failure is printed with its message. ``--variants`` runs the
corpus of correct variants (tests/variants.py: other evaluation forms the spec permits) in
this process instead, on the properties that judge values (those of tests/test_variants.py),
every dtype, one line per seed with its false alarms. Exit 1 if any run failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="*", default=["seed", "torch.forloop", "torch.foreach"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--effort", default="ci", choices=("quick", "ci", "thorough"))
    parser.add_argument("-n", "--jobs", default="2")
    parser.add_argument("--variants", action="store_true",
                        help="the correct-variant corpus of tests/variants.py instead")
    args = parser.parse_args()
    if args.variants:
        return variants(args.seeds, args.effort)
    bad = 0
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "conformance.cli", "certify", *args.backends,
                            "--effort", args.effort, "-n", args.jobs, "--seed", str(seed),
                            "--known-deviations", str(ROOT / "known-deviations.toml"),
                            "--report-dir", tmp], check=False, capture_output=True)
            wall = time.perf_counter() - start
            for path in sorted(Path(tmp).glob("*.json")):
                doc = json.loads(path.read_text())
                counts = doc["counts"]
                print(f"seed {seed:2d} {doc['backend']['name']:20} {doc['verdict']:14} "
                      f"pass {counts['pass']:3d} known {counts['known']:2d} "
                      f"fail {counts['fail']} error {counts['error']}  ({wall:.0f} s)")
                for r in doc["results"]:
                    if r["status"] in ("fail", "error"):
                        bad += 1
                        print(f"    {r['property']} {r['dtype']}: {r.get('message', '')[:300]}")
    print(f"\n{bad} false alarm(s) over {args.seeds} seeds")
    return 1 if bad else 0


def variants(seeds: int, effort: str) -> int:
    """False alarms per seed over the variant corpus (what tests/test_variants.py runs once)."""
    from conformance.properties import BY_ID
    from conformance.result import new_result
    from conformance.runner import Target, run_property
    from tests.test_variants import DTYPES, PROPS
    from tests.variants import VARIANTS

    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            start, alarms, targets = time.perf_counter(), [], 0
            for name in sorted(VARIANTS):
                backend = VARIANTS[name]()
                caps = backend.capabilities()
                for prop_id in PROPS:
                    for dtype in DTYPES if prop_id != "P10" else ("complex64", "complex128"):
                        record = new_result(BY_ID[prop_id], backend.name, dtype, "cpu")
                        target = Target(f"tests.variants:{name}", backend, caps, dtype, "cpu",
                                        effort, Path(tmp), record, seed=seed,
                                        nodeid=f"variant::{name}::{prop_id}::{dtype}")
                        targets += 1
                        try:
                            run_property(prop_id, target)
                        except Exception:  # a failure is recorded; printed below
                            pass
                        if record["status"] != "pass":
                            alarms.append(f"    {name} {prop_id} {dtype}: {record['status']}: "
                                          f"{record.get('message', '')[:300]}")
            total += len(alarms)
            print(f"seed {seed:2d}: {len(alarms)} false alarm(s) in {targets} targets of "
                  f"{len(VARIANTS)} variants ({time.perf_counter() - start:.0f} s)", flush=True)
            for line in alarms:
                print(line)
    print(f"\n{total} false alarm(s) over {seeds} seeds")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
