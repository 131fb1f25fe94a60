"""How certify shares targets among its xdist workers (conformance/scheduling.py): all of one
backend's targets of one dtype in one worker, which then compiles each program once."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.scheduling import target_group
from tests.test_cli import run_cli


@pytest.mark.parametrize(("nodeid", "group"), [
    ("test_conformance.py::test_state[torch.compile-float32-cpu]", "torch.compile-float32-cpu"),
    ("conformance/suite/test_conformance.py::test_oracle_match[optax-bfloat16-cpu]",
     "optax-bfloat16-cpu"),
    ("test_conformance.py::test_invalid_hparams[examples/timm-rmsproptf.toml]",
     "examples/timm-rmsproptf.toml"),
    # The user's own tests, beside the suite: each alone.
    ("tests/test_mine.py::test_x[torch.compile-float32-cpu]",
     "tests/test_mine.py::test_x[torch.compile-float32-cpu]"),
    ("test_conformance.py::test_plain", "test_conformance.py::test_plain"),
])
def test_a_suite_test_is_grouped_by_its_target_parameter(nodeid: str, group: str) -> None:
    assert target_group(nodeid) == group


def test_certify_runs_each_dtype_of_a_backend_in_one_worker(tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    proc = run_cli("certify", "tests.bad_backends:RecordsItsWorker", "--effort", "quick",
                   "--seed", "0", "-n", "2", "--report-dir", tmp_path / "reports",
                   cwd=tmp_path, timeout=180, env={"RECORD_WORKER": str(record)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workers: dict[str, set[str]] = {}
    for line in record.read_text().splitlines():
        dtype, worker = line.split()
        if worker != "-":  # the evidence process
            workers.setdefault(dtype, set()).add(worker)
    assert sorted(workers) == ["float32", "float64"]
    assert all(len(w) == 1 for w in workers.values()), workers
