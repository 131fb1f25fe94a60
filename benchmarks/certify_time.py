"""How long a certification takes, and how much of it is the backend.

    python -m benchmarks.certify_time [BACKEND ...] [--profile ci] [-n 2]

Runs ``rmsprop-conformance certify`` for each backend (default: torch.foreach) and prints the wall
time, the time the tests spent (summed over workers), the time spent inside ``backend.run``, and
the harness overhead = test time / backend time. The issue's goal: torch.foreach with the ci
profile in at most 2 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="*", default=["torch.foreach"])
    parser.add_argument("--profile", default="ci")
    parser.add_argument("-n", "--jobs", default="2")
    args = parser.parse_args()
    print(f"{'backend':24} {'wall s':>8} {'tests s':>8} {'in run() s':>10} {'overhead':>9} "
          f"{'examples':>9}  verdict")
    for name in args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "conformance.cli", "certify", name,
                            "--profile", args.profile, "-n", args.jobs, "--report-dir", tmp],
                           check=False, capture_output=True)
            wall = time.perf_counter() - start
            path = next(Path(tmp).glob("*.json"))
            doc = json.loads(path.read_text())
        results = doc["results"]
        tests = sum(r["seconds"] for r in results)
        inside = sum(r.get("backend_seconds", 0.0) for r in results)
        examples = sum(r["examples"] for r in results)
        overhead = tests / inside if inside else float("inf")
        print(f"{name:24} {wall:8.1f} {tests:8.1f} {inside:10.1f} {overhead:8.1f}x "
              f"{examples:9d}  {doc['verdict']} {doc['counts']}")


if __name__ == "__main__":
    main()
