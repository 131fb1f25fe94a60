"""The pytest plugin certifies a backend defined outside this repository.

A user's module in a temporary directory, run with plain
``pytest --conformance-backend module:attr``: test IDs, exit codes, the report, the
counterexample and its replay, known deviations as xfail, the options' names, Hypothesis's own
options.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BACKEND = textwrap.dedent('''
    import numpy as np
    from conformance.backend import Capabilities
    from conformance.case import Trajectory
    from spec.rmsprop import ParamState

    SIGN = 1.0

    class SeedLoop:
        name = "my.seed"

        def capabilities(self):
            return Capabilities(profile="seed", dtypes={"float32", "float64"},
                                features={"lr_schedule", "multi_param", "state_readout"})

        def run(self, case):
            hp = case.hp
            params = list(case.params)
            squares = [np.zeros_like(p) for p in params]
            out = Trajectory.empty(with_state=True)
            for k, grads in enumerate(case.grads):
                for i, (x, g) in enumerate(zip(params, grads)):
                    c = x.dtype.type
                    with np.errstate(all="ignore"):
                        squares[i] = c(hp.alpha) * squares[i] + (c(1) - c(hp.alpha)) * g * g
                        step = c(case.lr_at(k)) * g / (np.sqrt(squares[i]) + c(hp.eps))
                        params[i] = np.asarray(x - c(SIGN) * step)
                out.append(params, [ParamState(k + 1, s) for s in squares])
            return out

    class SignError(SeedLoop):
        name = "my.sign_error"

        def run(self, case):
            global SIGN
            SIGN = -1.0
            try:
                return super().run(case)
            finally:
                SIGN = 1.0
''')


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    (tmp_path / "mybackend.py").write_text(BACKEND)
    return tmp_path


def test_plain_pytest_certifies_an_outside_backend(user_dir: Path) -> None:
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SeedLoop",
                   "--conformance-effort", "quick", "--conformance-report-dir", "rep", "-v")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "test_oracle_match[my.seed-float32-cpu] PASSED" in proc.stdout
    assert "test_oracle_match[my.seed-float16-cpu] SKIPPED" in proc.stdout
    doc = json.loads((user_dir / "rep" / "my.seed.json").read_text())
    assert doc["verdict"] == "conformant" and doc["counts"]["fail"] == 0
    # Undeclared dtypes and features are unsupported (skipped), never passed.
    status = {(r["name"], r["dtype"]): (r["status"], r.get("reason")) for r in doc["results"]}
    assert status["oracle_match", "float32"] == ("pass", None)
    assert status["oracle_match", "float16"] == ("unsupported", "dtype float16 not declared")
    assert status["maximize", "float32"] == ("unsupported",
                                             "feature(s) not declared: maximize")
    assert doc["backend"]["spec"] == "mybackend:SeedLoop"
    assert (user_dir / "rep" / "summary.md").exists() and (user_dir / "rep" / "index.html").exists()


def test_a_broken_backend_fails_with_a_replayable_counterexample(user_dir: Path) -> None:
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SignError",
                   "--conformance-effort", "quick", "--conformance-report-dir", "rep",
                   "-k", "oracle_match and float64")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "violates R21" in proc.stdout
    doc = json.loads((user_dir / "rep" / "my.sign_error.json").read_text())
    assert doc["verdict"] == "nonconformant"
    failed = [r for r in doc["results"] if r["status"] == "fail"]
    assert [(r["property"], r["dtype"], r["label"]) for r in failed] == [
        ("P1", "float64", "semantic")]
    replay = [w for w in failed[0]["replay"].split() if "=" not in w]  # after any VAR=value
    assert replay[:2] == ["rmsprop-conformance", "repro"]
    rerun = subprocess.run([sys.executable, "-m", "conformance.cli", "repro", replay[2]],
                           cwd=user_dir, capture_output=True, text=True, timeout=120,
                           check=False)
    assert rerun.returncode == 1 and "REPRODUCED: violates R21" in rerun.stdout
    assert "expected" in rerun.stdout and "observed" in rerun.stdout
    # The failure reads as the counterexample and its replay, not the harness's traceback
    # (which --tb=long still shows).
    assert f"replay: {failed[0]['replay']}" in proc.stdout
    assert "def run_property" not in proc.stdout and "runner.py" not in proc.stdout
    long = _pytest(user_dir, "--conformance-backend", "mybackend:SignError", "--tb=long",
                   "--conformance-effort", "quick", "-k", "oracle_match and float64")
    assert "def run_property" in long.stdout
    # The correct backend does not reproduce it.
    fixed = subprocess.run([sys.executable, "-m", "conformance.cli", "repro", replay[2],
                            "--backend", "mybackend:SeedLoop"], cwd=user_dir,
                           capture_output=True, text=True, timeout=120, check=False)
    assert fixed.returncode == 0 and "does not reproduce" in fixed.stdout


def test_known_deviation_turns_the_failure_into_xfail(user_dir: Path) -> None:
    (user_dir / "known.toml").write_text(textwrap.dedent('''
        [[deviation]]
        backend = "my.sign_error"
        property = "oracle_match"
        dtype = "float64"
        reason = "sign flipped on purpose"

        [[deviation]]
        backend = "my.sign_error"
        property = "P2"
        reason = "matches nothing in this run"
    '''))
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SignError",
                   "--conformance-effort", "quick", "--conformance-report-dir", "rep",
                   "-k", "oracle_match and float64",
                   "--conformance-known-deviations", "known.toml", "-rx")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "XFAIL" in proc.stdout and "known deviation: sign flipped on purpose" in proc.stdout
    assert "known deviation matched no failure: my.sign_error P2" in proc.stdout
    doc = json.loads((user_dir / "rep" / "my.sign_error.json").read_text())
    assert doc["verdict"] == "conformant"
    assert [r["status"] for r in doc["results"] if r["dtype"] == "float64"] == ["known"]


def test_usage_errors_name_the_problem(user_dir: Path) -> None:
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:Missing")
    assert proc.returncode == 4
    assert "module 'mybackend' has no attribute 'Missing'" in proc.stderr
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SeedLoop",
                   "--conformance-effort", "fast")
    assert proc.returncode == 4 and "unknown effort" in proc.stderr


def test_a_bad_known_deviations_entry_is_a_usage_error(user_dir: Path) -> None:
    """Checked when loaded, before any test runs: a pattern for the backend named on the
    command line is accepted, a misspelt dtype is not."""
    (user_dir / "known.toml").write_text(textwrap.dedent('''
        [[deviation]]
        backend = "my.sign_error"
        property = "P1"
        reason = "named on the command line"

        [[deviation]]
        backend = "my.*"
        property = "P1"
        dtype = "flaot16"
        reason = "a typo"
    '''))
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SignError",
                   "--conformance-known-deviations", "known.toml")
    assert proc.returncode == 4, proc.stdout[-3000:]
    assert ("known.toml: deviation #2 (my.* P1): dtype 'flaot16' matches no dtype; allowed "
            "(fnmatch patterns on): float16, bfloat16, float32, float64, complex64, complex128"
            in proc.stderr)
    assert "collected" not in proc.stdout


def test_options_share_one_prefix_and_one_help_group(tmp_path: Path) -> None:
    """Every option of the plugin starts with --conformance- and sits in its own group of
    ``pytest --help``; the un-prefixed names are not taken."""
    text = _pytest(tmp_path, "--help").stdout
    group = text.split("rmsprop-conformance:\n", 1)[1].split("\n\n", 1)[0]
    options = re.findall(r"^  (--[\w-]+)", group, re.MULTILINE)
    assert set(options) == {
        "--conformance-backend", "--conformance-effort", "--conformance-report-dir",
        "--conformance-known-deviations", "--conformance-example-timeout",
        "--conformance-memory-limit", "--conformance-shard", "--conformance-progress"}, group
    proc = _pytest(tmp_path, "--backend", "seed")
    assert proc.returncode == 4 and "unrecognized arguments: --backend" in proc.stderr


def test_effort_defaults_to_ci_and_is_a_hypothesis_profile(user_dir: Path) -> None:
    """Both entry points default to ci; --hypothesis-profile rmsprop-quick is the quick effort;
    another profile name, or one that disagrees with --conformance-effort, is a usage error."""
    def effort(*args: str) -> str:
        proc = _pytest(user_dir, "--conformance-backend", "mybackend:SeedLoop",
                       "--conformance-report-dir", "rep", "-k", "oracle_match and float64",
                       *args)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
        return json.loads((user_dir / "rep" / "my.seed.json").read_text())["effort"]

    assert effort() == "ci"
    assert effort("--hypothesis-profile", "rmsprop-quick") == "quick"
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SeedLoop",
                   "--hypothesis-profile", "default")
    assert proc.returncode == 4
    assert "--hypothesis-profile 'default': the conformance search runs with one of the " \
           "effort profiles rmsprop-quick, rmsprop-ci, rmsprop-thorough" in proc.stderr
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SeedLoop",
                   "--hypothesis-profile", "rmsprop-ci", "--conformance-effort", "thorough")
    assert proc.returncode == 4 and "disagree" in proc.stderr


def test_hypothesis_seed_and_statistics_apply(user_dir: Path) -> None:
    """--hypothesis-seed seeds the search (the same seed draws the same cases: equal example
    and element counts), --hypothesis-show-statistics prints each target's statistics."""
    def run(seed: str) -> tuple[str, dict]:
        proc = _pytest(user_dir, "--conformance-backend", "mybackend:SeedLoop",
                       "--conformance-effort", "quick", "--conformance-report-dir", f"rep{seed}",
                       "-k", "trajectory and float64", "--hypothesis-seed", seed,
                       "--hypothesis-show-statistics")
        assert proc.returncode == 0, proc.stdout[-3000:]
        doc = json.loads((user_dir / f"rep{seed}" / "my.seed.json").read_text())
        (result,) = [r for r in doc["results"] if r["dtype"] == "float64"]
        return proc.stdout, result

    out, first = run("1")
    assert "Hypothesis Statistics" in out
    assert "test_trajectory[my.seed-float64-cpu]" in out.split("Hypothesis Statistics")[1]
    assert re.search(r"\d+ passing, \d+ failing", out), out[-2000:]
    _, again = run("1")
    assert (again["elements"], again["examples"]) == (first["elements"], first["examples"])


def test_progress_lines(user_dir: Path) -> None:
    """--conformance-progress (which certify passes): targets done of all, elapsed, what is
    left, on lines of their own."""
    proc = _pytest(user_dir, "--conformance-backend", "mybackend:SeedLoop", "-q",
                   "--conformance-effort", "quick", "--conformance-progress", "0.001",
                   "-k", "oracle_match or trajectory")
    assert proc.returncode == 0, proc.stdout[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("rmsprop-conformance: ")]
    total = 2 * 6  # two properties, six dtypes (two declared, four unsupported)
    assert lines[-1].startswith(f"rmsprop-conformance: mybackend:SeedLoop: {total}/{total} "
                                "targets, ") and lines[-1].endswith(", done")
    assert any(re.search(r"targets, \d+ s, about \d+ s left$", ln) for ln in lines), lines


def test_replay_commands_keep_the_environment_that_chose_the_backend(monkeypatch, tmp_path):
    """A replay runs where the certification ran: the Keras backend and the module path
    (relative to the working directory when inside it) are part of the command."""
    from conformance.runner import replay_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'mine'}:/opt/elsewhere")
    assert replay_command(Path("rep/P1.json")) == (
        "KERAS_BACKEND=numpy PYTHONPATH=mine:/opt/elsewhere rmsprop-conformance repro rep/P1.json")
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.delenv("PYTHONPATH")
    assert replay_command(Path("rep/P1.json")) == "rmsprop-conformance repro rep/P1.json"
