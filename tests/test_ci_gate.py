"""The CI gate: baselines (compare, certify --baseline), shards (certify --shard, merge), known
deviations, and examples/github-actions.yml run as written (with tests/sample_fork.py as the fork).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_cli import REPO, run_cli

GOOD = "tests.sample_fork:MyRMSprop"
REGRESSED = "tests.sample_fork:RegressedRMSprop"
WORKFLOW = REPO / "examples" / "github-actions.yml"


def certify(cwd: Path, name: str, out: str, *extra: object, seed: bool = True
            ) -> subprocess.CompletedProcess[str]:
    seeded = ("--seed", "1") if seed else ()
    return run_cli("certify", name, "--effort", "quick", *seeded, "-n", "1", "--report-dir",
                   cwd / out, *extra, cwd=cwd)


def report(directory: Path) -> dict:
    return json.loads((directory / "my_fork.json").read_text(encoding="utf-8"))


def outcomes(doc: dict) -> dict[tuple[str, str, str], str]:
    """(property, dtype, device) → status."""
    return {(r["property"], r["dtype"] or "-", r["device"]): r["status"] for r in doc["results"]}


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], None]) -> Path:
    """A directory made once per test session by ``build``, also when pytest-xdist workers
    (which share the parent of their temporary directories) all ask for it."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    target = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (base / f"{name}.done").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            build(target)
            (base / f"{name}.done").touch()
    return target


def _certify_both(root: Path) -> None:
    for key, name in (("good", GOOD), ("regressed", REGRESSED)):
        proc = certify(root, name, key)
        assert proc.returncode == (0 if key == "good" else 1), proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def fork_reports(tmp_path_factory) -> dict[str, Path]:
    """Report directories of the sample fork ("good") and of its regressed version."""
    root = shared_dir(tmp_path_factory, "fork-reports", _certify_both)
    return {"good": root / "good", "regressed": root / "regressed"}


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------
def test_the_regression_is_what_tells_the_two_forks_apart(fork_reports):
    good, bad = outcomes(report(fork_reports["good"])), outcomes(report(fork_reports["regressed"]))
    assert set(good) == set(bad)
    assert set(good.values()) == {"pass", "unsupported"}
    differ = {k for k in good if good[k] != bad[k]}
    assert differ == {("P3", "float32", "cpu"), ("P3", "float64", "cpu")}
    assert {bad[k] for k in differ} == {"fail"}


def test_a_regression_fails_with_a_markdown_diff_naming_the_property(fork_reports):
    proc = run_cli("compare", fork_reports["good"] / "my_fork.json", fork_reports["regressed"])
    assert proc.returncode == 1, proc.stderr
    text = proc.stdout
    assert text.startswith("## Conformance against the baseline")
    assert "❌ 2 regression(s), 0 improvement(s)" in text
    regressions = text.split("### Regressions")[1].strip().splitlines()
    assert len(regressions) == 2, text
    for line, dtype in zip(regressions, ("float32", "float64")):
        assert line.startswith(f"- `my_fork` P3 [{dtype}, cpu]: pass → **fail**: violates R"), line
        # (after the environment that chose the backend: run_cli sets PYTHONPATH)
        assert re.search(r"replay: `(\w+=\S+ )*rmsprop-conformance repro ", line), line
    assert "### Improvements" not in text


def test_identical_reports_pass(fork_reports):
    for current in (fork_reports["good"], fork_reports["good"] / "my_fork.json"):
        proc = run_cli("compare", fork_reports["good"], current)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "✅ no regressions, 0 improvement(s)" in proc.stdout
        assert "### Regressions" not in proc.stdout


def test_a_fix_is_listed_as_an_improvement(fork_reports):
    proc = run_cli("compare", fork_reports["regressed"], fork_reports["good"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    improvements = proc.stdout.split("### Improvements")[1].strip().splitlines()
    assert improvements == ["- `my_fork` P3 [float32, cpu]: fail → pass",
                            "- `my_fork` P3 [float64, cpu]: fail → pass"]


def test_a_grown_error_budget_is_a_regression(fork_reports, tmp_path):
    """A target that still passes but uses more than twice its former error budget."""
    doc = report(fork_reports["good"])
    target = next(r for r in doc["results"] if r["status"] == "pass" and r["max_ratio"] > 0)
    before = target["max_ratio"]
    target["max_ratio"] = max(3 * before, 0.5)
    (tmp_path / "my_fork.json").write_text(json.dumps(doc))
    proc = run_cli("compare", fork_reports["good"], tmp_path)
    assert proc.returncode == 1
    where = f"`my_fork` {target['property']} [{target['dtype']}, {target['device']}]"
    assert f"{where}: largest error/bound grew" in proc.stdout
    assert run_cli("compare", tmp_path, fork_reports["good"]).returncode == 0


def test_a_lost_target_is_a_regression(fork_reports, tmp_path):
    doc = report(fork_reports["good"])
    gone = next(r for r in doc["results"] if r["status"] == "pass")
    doc["results"].remove(gone)
    (tmp_path / "my_fork.json").write_text(json.dumps(doc))
    proc = run_cli("compare", fork_reports["good"], tmp_path)
    assert proc.returncode == 1
    assert f"{gone['property']} [{gone['dtype']}, cpu]: no longer tested (was pass)" in proc.stdout
    other = json.loads(json.dumps(doc).replace('"my_fork"', '"another_fork"'))
    (tmp_path / "my_fork.json").write_text(json.dumps(other))
    proc = run_cli("compare", fork_reports["good"], tmp_path)
    assert proc.returncode == 1
    assert "`my_fork`: no current report (was conformant)" in proc.stdout


def test_certify_against_a_baseline(fork_reports, tmp_path):
    """The regressed fork against the good fork's baseline: exit 1, comparison.md written.
    Unseeded, so it also shows where the Hypothesis database goes: the working directory."""
    proc = certify(tmp_path, REGRESSED, "reports", "--baseline", fork_reports["good"],
                   seed=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    comparison = (tmp_path / "reports" / "comparison.md").read_text()
    assert comparison in proc.stdout
    assert "- `my_fork` P3 [float64, cpu]: pass → **fail**" in comparison
    assert report(tmp_path / "reports")["verdict"] == "nonconformant"
    examples = tmp_path / ".hypothesis" / "examples"
    assert examples.is_dir() and any(examples.iterdir())  # the failures, saved for next time


# ---------------------------------------------------------------------------------------------
# Shards
# ---------------------------------------------------------------------------------------------
def test_merged_shards_equal_an_unsharded_run(fork_reports, tmp_path):
    """On the nonconformant fork (test_workflow_gpu_shards_and_merge: the conformant one)."""
    parts = []
    for i in (1, 2):
        proc = certify(tmp_path, REGRESSED, f"shard{i}", "--shard", f"{i}/2")
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        doc = report(tmp_path / f"shard{i}")
        assert doc["shard"] == f"{i}/2"
        parts.append(outcomes(doc))
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    proc = run_cli("merge", tmp_path / "shard1", tmp_path / "shard2", "-o", tmp_path / "merged")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    merged, whole = report(tmp_path / "merged"), report(fork_reports["regressed"])
    assert merged["verdict"] == whole["verdict"] == "nonconformant"
    assert outcomes(merged) == outcomes(whole) == {**parts[0], **parts[1]}
    assert merged["counts"] == whole["counts"]
    assert merged["merged_from"] == ["1/2", "2/2"] and merged["shard"] is None
    assert (tmp_path / "merged" / "summary.md").exists()


# ---------------------------------------------------------------------------------------------
# Known deviations
# ---------------------------------------------------------------------------------------------
DEVIATIONS = """\
[[deviation]]
backend = "my_*"
property = "lr_schedule"
reason = "the fork reads the learning rate once"
link = "https://example.org/my_fork/issues/1"

[[deviation]]
backend = "my_fork"
property = "P9"
reason = "matches nothing: my_fork does not declare maximize"
"""


def test_known_deviations_turn_a_failure_into_known(tmp_path):
    path = tmp_path / "known-deviations.toml"
    path.write_text(DEVIATIONS)
    proc = certify(tmp_path, REGRESSED, "reports", "--known-deviations", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = report(tmp_path / "reports")
    assert doc["verdict"] == "conformant"
    known = [r for r in doc["results"] if r["status"] == "known"]
    assert {(r["property"], r["dtype"]) for r in known} == {("P3", "float32"), ("P3", "float64")}
    assert all(r["known_reason"] == "the fork reads the learning rate once" for r in known)
    assert doc["counts"]["fail"] == doc["counts"]["error"] == 0
    # The entry that matched nothing: a warning, and a line in the report.
    assert "known deviation matched no failure: my_fork P9" in proc.stdout + proc.stderr
    assert doc["unused_known_deviations"] == [
        "my_fork P9 * * (matches nothing: my_fork does not declare maximize)"]
    summary = (tmp_path / "reports" / "summary.md").read_text()
    assert "**KNOWN** P3" in summary and "https://example.org/my_fork/issues/1" in summary


# ---------------------------------------------------------------------------------------------
# examples/github-actions.yml, run as written
# ---------------------------------------------------------------------------------------------
def _uncommented(text: str) -> str:
    """The workflow with its commented-out jobs (certify-gpu, merge) restored."""
    return "\n".join(line[:2] + line[4:] if line.startswith("  # ") else
                     "" if line == "  #" else line for line in text.splitlines()) + "\n"


def _run_blocks(text: str) -> dict[str, str]:
    """Every ``run: |`` block of a workflow (by its step's name, else "job:n"), dedented."""
    blocks: dict[str, str] = {}
    lines = text.splitlines()
    job, name = "", None
    for n, line in enumerate(lines):
        if re.match(r"^  [a-z][\w-]*:$", line):
            job = line.strip().rstrip(":")
        if re.match(r"^\s*- ", line):
            name = None
        m = re.match(r"^(\s*)(?:- )?name: (.+)$", line)
        if m:
            name = m.group(2)
        m = re.match(r"^(\s*)(- )?run: \|$", line)
        if not m:
            continue
        indent = len(m.group(1)) + len(m.group(2) or "")
        body = []
        for following in lines[n + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following[indent + 2:])
        blocks[f"{job}: {name}" if name else f"{job}:{len(blocks)}"] = "\n".join(body).strip()
    return blocks


def _fork(script: str) -> str:
    return script.replace("my_fork.optim:MyRMSprop", GOOD)


def _bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A ``run:`` block as GitHub Actions runs it: bash -eo pipefail, the tool on PATH."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    environ.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{environ['PATH']}",
                   PYTHONPATH=str(REPO), **env)  # the fork, as `pip install -e .` would
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=cwd, env=environ, capture_output=True, text=True, timeout=300,
                          check=False)


def test_workflow_is_well_formed():
    text = WORKFLOW.read_text()
    try:
        import yaml
    except ImportError:  # not a dependency; the text checks below still hold
        yaml = None
    if yaml is not None:
        for source in (text, _uncommented(text)):
            doc = yaml.safe_load(source)
            assert set(doc) >= {"name", "jobs"}
        doc = yaml.safe_load(_uncommented(text))
        assert set(doc["jobs"]) == {"certify", "certify-gpu", "merge"}
        steps = doc["jobs"]["certify"]["steps"]
        uses = [s.get("uses", "").split("@")[0] for s in steps]
        for action in ("actions/checkout", "actions/setup-python", "actions/cache/restore",
                       "actions/cache/save", "actions/upload-artifact"):
            assert action in uses, action
        by_use = {s.get("uses", "").split("@")[0]: s for s in steps}
        for action in ("actions/cache/restore", "actions/cache/save"):
            assert by_use[action]["with"]["path"] == ".hypothesis"
        assert by_use["actions/cache/save"]["if"] == "always()"
        assert by_use["actions/upload-artifact"]["if"] == "always()"
        assert by_use["actions/upload-artifact"]["with"]["path"] == "reports/"
        assert doc["jobs"]["merge"]["needs"] == "certify-gpu"
        assert doc["jobs"]["certify-gpu"]["strategy"]["matrix"]["shard"] == ["1/2", "2/2"]
    blocks = _run_blocks(text)
    install = blocks["certify: Install rmsprop-conformance and the fork"]
    assert "rmsprop-conformance[torch]" in install and "pip install -e ." in install
    assert "$GITHUB_STEP_SUMMARY" in blocks["certify: Job summary"]
    assert re.search(r"path: \.hypothesis\n", text)
    assert text.count("if: always()") >= 3


@pytest.fixture(scope="module")
def fork_checkout(tmp_path_factory) -> Path:
    """A fork's checkout: the baseline made with the workflow's own command, and the
    known-deviations file it documents."""
    return shared_dir(tmp_path_factory, "fork-checkout", _checkout)


def _checkout(root: Path) -> None:
    header = WORKFLOW.read_text().split("\nname:")[0]
    bootstrap = next(line.strip("# ") for line in header.splitlines()
                     if "certify my_fork" in line)
    proc = _bash(_fork(bootstrap), root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    toml = [line.removeprefix("#").strip() for line in header.splitlines()
            if re.match(r"^#\s+(\[\[deviation\]\]|\w+ = )", line)]
    (root / "known-deviations.toml").write_text("\n".join(toml) + "\n")


def test_workflow_certify_job(fork_checkout, tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(fork_checkout, root)
    blocks = _run_blocks(WORKFLOW.read_text())
    proc = _bash(_fork(blocks["certify: Certify (against the baseline)"]), root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The documented example entry (float16 P4) matches nothing for this float32/64 fork.
    assert "known deviation matched no failure: my_fork P4 float16" in proc.stdout
    assert report(root / "reports")["verdict"] == "conformant"
    summary = tmp_path / "step-summary.md"
    proc = _bash(blocks["certify: Job summary"], root, GITHUB_STEP_SUMMARY=str(summary))
    assert proc.returncode == 0, proc.stderr
    text = summary.read_text()
    assert text.startswith("# RMSProp conformance")
    assert "`my_fork` | seed | ci | ✅ conformant" in text
    assert "## Conformance against the baseline\n\n✅ no regressions" in text


def test_workflow_gpu_shards_and_merge(fork_checkout, tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(fork_checkout, root)
    shutil.copytree(root / "conformance-baseline", root / "conformance-baseline-gpu")
    blocks = _run_blocks(_uncommented(WORKFLOW.read_text()))
    shard_step = next(b for k, b in blocks.items() if k.startswith("certify-gpu") and "--shard"
                      in b)
    merge_step = next(b for k, b in blocks.items() if k.startswith("merge") and "merge" in b)
    (root / "shards").mkdir()
    for index, shard in enumerate(("1/2", "2/2")):  # each on its own runner, then downloaded
        proc = _bash(_fork(shard_step), root, SHARD=shard)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (root / "shard-report").rename(root / "shards" / f"shard-{index}")
    proc = _bash(merge_step, root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✅ no regressions" in (root / "reports" / "comparison.md").read_text()
    merged, baseline = report(root / "reports"), report(root / "conformance-baseline")
    assert merged["verdict"] == baseline["verdict"] == "conformant"
    assert outcomes(merged) == outcomes(baseline)
