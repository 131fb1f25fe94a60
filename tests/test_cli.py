"""The ``rmsprop-conformance`` command on bad input: exit code 2, one line on stderr naming the
problem, no traceback, nothing written; and ``list``.

``run_cli`` (used by the other CLI tests too) runs the command in a fresh process, as CI does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.registry import BUILTINS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "rmsprop-conformance"


def run_cli(*args: object, cwd: Path | None = None, timeout: float = 240,
            env: dict[str, str] | None = None, script: bool = False
            ) -> subprocess.CompletedProcess[str]:
    """``rmsprop-conformance ARGS`` in ``cwd``; this repository's ``tests`` package importable
    (as a fork's own package would be once installed)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), environ.get("PYTHONPATH"))
                                            if p)
    environ.update(env or {})
    cmd = [str(SCRIPT)] if script else [sys.executable, "-m", "conformance.cli"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=cwd or REPO, env=environ,
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_usage_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 2 and a one-line message containing ``fragments``; returns the message."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rmsprop-conformance: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Backends that cannot be loaded
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "fragments"), [
    ("no.such.backend", ("unknown backend 'no.such.backend'", "seed")),
    ("no_such_module_xyz:Backend", ("cannot import module 'no_such_module_xyz'",
                                    "ModuleNotFoundError")),
    ("tests.bad_backends:Missing", ("has no attribute 'Missing'",)),
    ("tests.bad_backends:not_a_backend", ("tests.bad_backends:not_a_backend", "TypeError")),
    ("tests.bad_backends:makes_nothing", ("is not a backend", "run(case)")),
    ("tests.bad_backends:NOT_A_BACKEND_INT", ("is not a backend",)),
    ("tests.bad_backends:CapabilitiesRaise", ("capabilities() raised RuntimeError",
                                              "cannot query the device")),
    ("tests.bad_backends:CapabilitiesWrongType", ("returned dict, not Capabilities",)),
    ("tests.bad_backends", ("unknown backend 'tests.bad_backends'",)),
])
def test_certify_rejects_a_backend_it_cannot_load(tmp_path, name, fragments):
    out = tmp_path / "reports"
    assert_usage_error(run_cli("certify", name, "--report-dir", out), *fragments)
    assert not out.exists()


def test_certify_checks_every_backend_before_running_any(tmp_path):
    out = tmp_path / "reports"
    proc = run_cli("certify", "seed", "no_such_module_xyz:B", "--report-dir", out)
    assert_usage_error(proc, "no_such_module_xyz")
    assert "certifying" not in proc.stdout
    assert not out.exists()


def test_certify_needs_a_backend():
    assert_usage_error(run_cli("certify"), "name at least one backend")


def test_certify_rejects_an_unknown_effort(tmp_path):
    assert_usage_error(run_cli("certify", "seed", "--effort", "fast", "--report-dir", tmp_path),
                       "unknown effort 'fast'", "quick", "ci", "thorough")


def test_profile_is_not_the_effort(tmp_path):
    """--profile, the effort's former name, says where the effort went (and runs nothing)."""
    assert_usage_error(run_cli("certify", "seed", "--profile", "ci", "--report-dir", tmp_path),
                       "--profile ci: the search effort is now --effort (quick, ci, thorough)",
                       "spec profile")
    assert not any(tmp_path.iterdir())


def test_certify_rejects_a_report_directory_it_cannot_write(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_usage_error(run_cli("certify", "seed", "--report-dir", blocker / "reports"),
                       "cannot be written", str(blocker / "reports"))
    assert_usage_error(run_cli("certify", "seed", "--report-dir", blocker),
                       "cannot be written")
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("value", ["abc", "0/2", "3/2", "1/0", "1/2/3", "-1/2", "1/"])
def test_certify_rejects_bad_shards(tmp_path, value):
    assert_usage_error(run_cli("certify", "seed", f"--shard={value}", "--report-dir", tmp_path),
                       f"--shard {value!r}")


@pytest.mark.parametrize(("option", "value"), [
    ("-n", "0"), ("-n", "many"), ("--example-timeout", "0"), ("--example-timeout", "-2"),
    ("--example-timeout", "nan"), ("--memory-limit", "0"), ("--memory-limit", "1.5"),
    ("--seed", "x"),
])
def test_certify_rejects_bad_numbers(tmp_path, option, value):
    proc = run_cli("certify", "seed", option, value, "--report-dir", tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # argparse prints the usage first, then the message on one line.
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rmsprop-conformance certify: error: argument"), last
    assert option.lstrip("-") in last and value in last, last


# ---------------------------------------------------------------------------------------------
# Known-deviations files
# ---------------------------------------------------------------------------------------------
_GOOD_ENTRY = 'backend = "seed"\nproperty = "P4"\nreason = "why"\n'


@pytest.mark.parametrize(("text", "fragments"), [
    ("[[deviation]\nbackend = 'seed'", ("is not valid TOML",)),
    ("[[deviation]]\n" + _GOOD_ENTRY + 'colour = "red"\n', ("unknown key(s) colour",
                                                            "allowed keys")),
    ('[[deviation]]\nbackend = "seed"\nproperty = "P4"\n', ("deviation #1", "missing reason")),
    ("[[deviation]]\n" + _GOOD_ENTRY + "[[deviation]]\nbackend = 'x'\nreason = 'y'\n",
     ("deviation #2", "missing property")),
    ("[[deviation]]\n" + _GOOD_ENTRY.replace('"P4"', "4"), ("every value must be a string",)),
    ("[[exception]]\n" + _GOOD_ENTRY, ("expected only [[deviation]] tables", "exception")),
    ("deviation = 3\n", ("expected only [[deviation]] tables",)),
    ("[[deviation]]\n" + _GOOD_ENTRY.replace('"P4"', '"P99"'),
     ("deviation #1 (seed P99)", "property 'P99' matches no property", "P13",
      "no_spurious_nonfinite")),
    ("[[deviation]]\n" + _GOOD_ENTRY + 'dtype = "flaot16"\n',
     ("dtype 'flaot16' matches no dtype", "float16, bfloat16")),
    ("[[deviation]]\n" + _GOOD_ENTRY + 'rule = "R99"\n', ("rule 'R99' matches no rule", "R27")),
    ("[[deviation]]\n" + _GOOD_ENTRY + 'device = "tpu"\n',
     ("device 'tpu' matches no device", "cpu", "cuda:N")),
    ("[[deviation]]\n" + _GOOD_ENTRY.replace('"seed"', '"tourch.*"'),
     ("backend 'tourch.*' matches no bundled or named backend", "torch.foreach")),
    ("[[deviation]]\n" + _GOOD_ENTRY.replace('"why"', '"  "'), ("the reason is empty",)),
    ("[[deviation]]\n" + _GOOD_ENTRY + 'cause = "gremlins"\n',
     ("unknown cause 'gremlins'", "eps-underflow")),
])
def test_certify_rejects_a_malformed_known_deviations_file(tmp_path, text, fragments):
    path = tmp_path / "known-deviations.toml"
    path.write_text(text)
    out = tmp_path / "reports"
    assert_usage_error(run_cli("certify", "seed", "--known-deviations", path,
                               "--report-dir", out), str(path), *fragments)
    assert not out.exists()


def test_certify_rejects_an_unreadable_known_deviations_file(tmp_path):
    assert_usage_error(run_cli("certify", "seed", "--known-deviations", tmp_path / "none.toml",
                               "--report-dir", tmp_path / "r"),
                       "cannot read known-deviations file", "No such file")
    assert_usage_error(run_cli("certify", "seed", "--known-deviations", tmp_path,
                               "--report-dir", tmp_path / "r"),
                       "cannot read known-deviations file", str(tmp_path))
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00deviation")
    assert_usage_error(run_cli("certify", "seed", "--known-deviations", binary,
                               "--report-dir", tmp_path / "r"), str(binary))


# ---------------------------------------------------------------------------------------------
# Report files: baselines for compare / certify --baseline, shards for merge
# ---------------------------------------------------------------------------------------------
def _bad_reports(tmp_path: Path) -> list[tuple[Path, tuple[str, ...]]]:
    (tmp_path / "truncated.json").write_text('{"schema": "rmsprop-conformance/report/1", "ba')
    (tmp_path / "other.json").write_text('{"schema": "something-else/1"}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "partial.json").write_text('{"schema": "rmsprop-conformance/report/1", '
                                           '"backend": {"name": "seed"}}')
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-other").mkdir()
    (tmp_path / "only-other" / "x.json").write_text('{"schema": "something-else/1"}')
    return [
        (tmp_path / "missing.json", ("cannot read report", "No such file")),
        (tmp_path / "truncated.json", ("is not a conformance report",)),
        (tmp_path / "other.json", ("is not a conformance report", "something-else/1")),
        (tmp_path / "list.json", ("is not a conformance report",)),
        (tmp_path / "partial.json", ("is not a complete conformance report",)),
        (tmp_path / "empty", ("has no report JSON files",)),
        (tmp_path / "only-other", ("no conformance report found",)),
    ]


def _seed_report(tmp_path: Path) -> Path:
    doc = {"schema": "rmsprop-conformance/report/1", "backend": {"name": "seed"},
           "verdict": "conformant", "counts": {}, "results": []}
    path = tmp_path / "good" / "seed.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    return path


def test_compare_and_merge_reject_unreadable_reports(tmp_path):
    good = _seed_report(tmp_path)
    for n, (path, fragments) in enumerate(_bad_reports(tmp_path)):
        assert_usage_error(run_cli("compare", *((path, good) if n % 2 else (good, path))),
                           str(path), *fragments)
        if n < 2:
            assert_usage_error(run_cli("merge", good, path, "-o", tmp_path / "merged"),
                               str(path), *fragments)
    assert not (tmp_path / "merged").exists()


def test_certify_rejects_an_unreadable_baseline_before_running(tmp_path):
    for path, fragments in _bad_reports(tmp_path):
        proc = run_cli("certify", "seed", "--baseline", path, "--report-dir", tmp_path / "r")
        assert_usage_error(proc, str(path), *fragments)
        assert "certifying" not in proc.stdout
    assert not (tmp_path / "r").exists()


def test_merge_rejects_an_unwritable_output(tmp_path):
    good = _seed_report(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_usage_error(run_cli("merge", good.parent, "-o", blocker / "out"), "cannot be written")


# ---------------------------------------------------------------------------------------------
# repro
# ---------------------------------------------------------------------------------------------
def test_repro_rejects_missing_and_malformed_files(tmp_path):
    assert_usage_error(run_cli("repro", tmp_path / "none.json"), "cannot read", "none.json")
    cases = {
        "truncated.json": '{"property": "P1", "ca',
        "no-property.json": '{"backend": "seed", "case": null}',
        "unknown-property.json": '{"backend": "seed", "property": "P99", "case": null}',
        "bad-case.json": '{"backend": "seed", "property": "P1", "case": {"hp": 3}}',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert_usage_error(run_cli("repro", tmp_path / name), "is not a counterexample file",
                           name)


def test_repro_rejects_a_backend_it_cannot_load(tmp_path):
    path = tmp_path / "cx.json"
    path.write_text('{"backend": "no_such_module_xyz:B", "property": "P13", "case": null}')
    assert_usage_error(run_cli("repro", path), "cannot import module 'no_such_module_xyz'")
    assert_usage_error(run_cli("repro", path, "--backend", "nope"), "unknown backend 'nope'")


# ---------------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------------
FRAMEWORKS = ("torch", "jax", "jaxlib", "keras", "tensorflow", "optax", "numba", "triton")


def test_list_without_names_shows_every_known_backend_unchecked():
    proc = run_cli("list")
    assert proc.returncode == 0, proc.stderr
    heads = {line.split(": ")[0]: line.split(": ", 1)[1]
             for line in proc.stdout.splitlines() if not line.startswith(" ")}
    assert set(BUILTINS) <= set(heads)
    for name, said in heads.items():
        assert said == f"available: not checked (name it to check: rmsprop-conformance list {name})"
    for name, target in BUILTINS.items():
        assert f"rmsprop-conformance list {name})\n  from: {target}\n" in proc.stdout


def test_list_without_names_imports_no_framework():
    """Listing the known backends loads none of them: no framework is imported, so it takes a
    fraction of a second (it took 9–20 s when it loaded every one)."""
    for flags in ((), ("--json",)):
        started = time.monotonic()
        proc = run_cli("list", *flags, env={"PYTHONPROFILEIMPORTTIME": "1"})
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip().split(".")[0]
                    for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "conformance" in imported  # the import log is there to read
        assert not imported & set(FRAMEWORKS), sorted(imported & set(FRAMEWORKS))
        assert elapsed < 6, elapsed  # ~0.7 s on an idle machine; generous for a busy one


def test_registry_and_cli_import_no_framework():
    script = ("import sys, conformance.cli, conformance.registry\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_list_json_is_machine_readable():
    proc = run_cli("list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    by_name = {r["name"]: r for r in rows}
    assert set(BUILTINS) <= set(by_name)
    for row in rows:
        assert row["available"] is None and row["checked"] is False, row
    assert by_name["seed"]["target"] == BUILTINS["seed"]
    proc = run_cli("list", "--json", "seed")
    assert proc.returncode == 0, proc.stderr
    (seed,) = json.loads(proc.stdout)
    assert seed["available"] is True and seed["checked"] is True
    assert seed["profile"] == "seed"
    assert set(seed["dtypes"]) == {"float32", "float64"}


def test_list_of_named_backends_checks_their_availability():
    proc = run_cli("list", "seed", "torch.foreach")
    assert proc.returncode == 0, proc.stderr
    heads = {line.split(": ")[0]: line.split(": ", 1)[1]
             for line in proc.stdout.splitlines() if not line.startswith(" ")}
    assert heads["seed"] == "available"
    assert heads["torch.foreach"].split(" ")[0] in ("available", "unavailable")
    assert "  profile: torch" in proc.stdout


def test_list_reports_a_backend_whose_capabilities_raise_as_unavailable():
    proc = run_cli("list", "--json", "tests.bad_backends:CapabilitiesRaise", "seed")
    assert proc.returncode == 0, proc.stderr
    bad, seed = json.loads(proc.stdout)
    assert bad == {"name": "tests.bad_backends:CapabilitiesRaise", "available": False,
                   "reason": "RuntimeError: cannot query the device", "checked": True}
    assert seed["available"]


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_list_of_a_named_backend_that_cannot_load_is_a_usage_error(json_flag):
    proc = run_cli("list", *json_flag, "no_such_module_xyz:X")
    assert_usage_error(proc, "no_such_module_xyz:X", "cannot import module 'no_such_module_xyz'",
                       "ModuleNotFoundError")
    assert proc.stdout.strip() in ("", "[]"), proc.stdout
    assert "unavailable" not in proc.stdout


def test_list_still_lists_the_named_backends_that_load():
    proc = run_cli("list", "seed", "no_such_module_xyz:X", "tests.bad_backends:Missing")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 2, errors
    assert "no_such_module_xyz:X" in errors[0] and "cannot import module" in errors[0]
    assert "tests.bad_backends:Missing" in errors[1] and "has no attribute 'Missing'" in errors[1]
    assert proc.stdout.startswith("seed: available\n"), proc.stdout
    proc = run_cli("list", "--json", "no_such_module_xyz:X", "seed")
    assert proc.returncode == 2
    assert [r["name"] for r in json.loads(proc.stdout)] == ["seed"]


def test_list_of_a_backend_that_returns_no_capabilities_is_a_usage_error():
    assert_usage_error(run_cli("list", "tests.bad_backends:CapabilitiesWrongType"),
                       "tests.bad_backends:CapabilitiesWrongType",
                       "returned dict, not Capabilities")


def test_list_of_a_named_backend_with_no_device_here_is_unavailable_not_an_error(tmp_path):
    (tmp_path / "gpu_only_pkg.py").write_text(
        "from conformance.backend import Capabilities\n"
        "from implementations.seed import SeedBackend\n"
        "class GpuOnly(SeedBackend):\n"
        "    name = 'gpu_only'\n"
        "    def capabilities(self):\n"
        "        return Capabilities(profile='seed', dtypes={'float32'}, devices=(),\n"
        "                            unavailable={'cuda': 'no CUDA device on this machine'})\n")
    proc = run_cli("list", "gpu_only_pkg:GpuOnly", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(
        "gpu_only_pkg:GpuOnly: unavailable (cuda: no CUDA device on this machine)\n"), proc.stdout
    assert "  devices: -\n" in proc.stdout
    proc = run_cli("list", "--json", "gpu_only_pkg:GpuOnly", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["available"] is False and row["unavailable"] == {
        "cuda": "no CUDA device on this machine"}


def test_console_script_finds_a_module_in_the_working_directory(tmp_path):
    """A fork certifies ``my_fork.optim:MyRMSprop`` from its checkout, without installing it."""
    assert SCRIPT.exists(), f"{SCRIPT}: the package's console script is not installed"
    (tmp_path / "my_fork_pkg").mkdir()
    (tmp_path / "my_fork_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_fork_pkg" / "optim.py").write_text(
        "from implementations.seed import SeedBackend as MyRMSprop\n")
    proc = run_cli("list", "my_fork_pkg.optim:MyRMSprop", cwd=tmp_path, script=True,
                   env={"PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("my_fork_pkg.optim:MyRMSprop: available"), proc.stdout


# ---------------------------------------------------------------------------------------------
# --bundled
# ---------------------------------------------------------------------------------------------
def test_bundled_certifies_every_builtin_in_one_session_with_the_effort_asked(
        monkeypatch, tmp_path) -> None:
    """--bundled runs every builtin, in one pytest session, with the effort asked —
    torch.compile included (it once had to be capped at quick: it recompiled for every alpha)."""
    from conformance import cli, registry  # noqa: PLC0415

    # No fork server: nothing runs (pytest is replaced), and this test process may run threads.
    monkeypatch.setenv("RMSPROP_CONFORMANCE_FORKSERVER", "0")
    monkeypatch.setattr(registry, "BUILTINS", {"seed": BUILTINS["seed"],
                                               "torch.compile": BUILTINS["torch.compile"]})
    commands = []
    monkeypatch.setattr(cli, "_run_pytest", lambda cmd: commands.append(cmd) or 0)
    cli.main(["certify", "--bundled", "--effort", "thorough", "--report-dir", str(tmp_path)])
    assert len(commands) == 1, commands
    cmd = commands[0]
    assert [cmd[i + 1] for i, w in enumerate(cmd) if w == "--conformance-backend"] == [
        "seed", "torch.compile"]
    assert cmd[cmd.index("--conformance-effort") + 1] == "thorough"


# ---------------------------------------------------------------------------------------------
# --version, --help
# ---------------------------------------------------------------------------------------------
def test_version_prints_the_package_version():
    from conformance import __version__  # noqa: PLC0415

    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"rmsprop-conformance {__version__}\n"
    assert __version__.count(".") == 2 and all(p.isdigit() for p in __version__.split("."))


def _commands() -> list[str]:
    from conformance import cli  # noqa: PLC0415

    parser = cli.build_parser()
    (sub,) = (a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_help_is_plain_words():
    """--help shows a one-line description and the exit codes, no reStructuredText markup."""
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "Certify RMSProp implementations against the executable spec (spec/SPEC.md)." in text
    assert "``" not in text
    codes = text.split("exit codes:\n", 1)[1]
    for code, words in (("0", "conformant"), ("1", "nonconformant"), ("2", "usage error")):
        assert f"\n  {code}  " in "\n" + codes and words in codes, codes
    assert set(_commands()) >= {"list", "certify", "compare", "parity", "merge", "repro",
                                "identify", "translate"}
    for command in _commands():
        assert command in text


@pytest.mark.parametrize("command", _commands())
def test_every_command_help_is_plain_words(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: rmsprop-conformance {command}"), proc.stdout
    assert "``" not in proc.stdout
    # Opens with the one-line summary the top-level --help lists.
    description = proc.stdout.split("\n\n")[1]
    assert description[0].isupper() and len(description.split()) >= 3, description


# ---------------------------------------------------------------------------------------------
# certify's closing table
# ---------------------------------------------------------------------------------------------
def test_certify_ends_with_a_table_of_the_backends(tmp_path):
    out = tmp_path / "reports"
    proc = run_cli("certify", "seed", "tests.bad_backends:FailsInsidePytest", "--effort", "quick",
                   "--seed", "0", "-n", "1", "--report-dir", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one backend wrote no report
    # The session of both ended in pytest's usage error: each was then certified alone.
    assert "the pytest run ended with code 4" in proc.stderr
    assert "certifying seed alone" in proc.stderr
    assert "{'pass'" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"reports: {out}/ (summary.md, index.html, one JSON per backend)"
    head, seed, failed = lines[-4:-1]
    assert head.split() == ["backend", "verdict", "pass", "fail", "known", "error",
                            "unsupported", "report"]
    doc = json.loads((out / "seed.json").read_text())
    counts = doc["counts"]
    assert seed.split() == ["seed", "conformant", *(str(counts[k]) for k in
                            ("pass", "fail", "known", "error", "unsupported")),
                            str(out / "seed.json")]
    assert counts["pass"] > 0
    assert failed.split()[:8] == ["bad.fails_inside_pytest", "no", "report", *"-----"]
    # Aligned: every column starts where its heading does; counts end where theirs does.
    for word in ("verdict", "report"):
        assert seed.index("conformant" if word == "verdict" else str(out)) == head.index(word)
        assert failed.index("no report" if word == "verdict" else "(pytest") == head.index(word)
    for word in ("pass", "unsupported"):
        end = head.index(word) + len(word)
        assert seed[:end].endswith(str(counts[word])) and seed[end] == " "
        assert failed[:end].endswith("-")
