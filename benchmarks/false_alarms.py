"""No false alarms: correct backends certify as conformant under many Hypothesis seeds.

    python -m benchmarks.false_alarms [BACKEND ...] [--seeds 20] [--effort ci]

Runs ``rmsprop-conformance certify`` once per seed (with the project's known deviations) and
prints each run's verdict; any failure is printed with its message. Exit 1 if any run failed.
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    sys.exit(main())
