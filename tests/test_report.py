"""Report verdicts: a backend with nothing testable here is never reported as conformant."""

from conformance.report import verdict


def _r(status: str) -> dict:
    return {"status": status}


def test_verdicts():
    assert verdict([_r("pass"), _r("unsupported")]) == "conformant"
    assert verdict([_r("known"), _r("unsupported")]) == "conformant"
    assert verdict([_r("pass"), _r("fail")]) == "nonconformant"
    assert verdict([_r("pass"), _r("error")]) == "nonconformant"
    assert verdict([_r("pass")], interrupted=True) == "nonconformant"
    # Nothing ran (e.g. a CUDA-only path on a CPU machine): unsupported, not a pass.
    assert verdict([_r("unsupported"), _r("unsupported")]) == "unsupported"
    assert verdict([]) == "unsupported"


def test_summaries_and_merge_never_import_the_backend(tmp_path):
    """summary.md and index.html are functions of the JSON: certified with a backend module
    that is then deleted, the reports render (from the JSON alone, in a fresh process) to the
    same bytes, and ``merge`` of them works — the seed's trajectory and the counterexample's
    per-step plot included, both stored at certification time."""
    import subprocess
    import sys

    from tests.test_cli import REPO, run_cli

    # The seed's loop with eps doubled: nonconformant, with counterexamples to plot (float64
    # only: half the targets to search and shrink).
    seed = (REPO / "implementations" / "seed.py").read_text(encoding="utf-8")
    both = 'frozenset({"float32", "float64"})'
    assert "c(hp.eps)" in seed and 'name = "seed"' in seed and both in seed
    (tmp_path / "gone_backend.py").write_text(
        seed.replace("c(hp.eps)", "c(2 * hp.eps)").replace('name = "seed"', 'name = "gone"')
        .replace(both, 'frozenset({"float64"})'))
    first = tmp_path / "first"
    proc = run_cli("certify", "gone_backend:SeedBackend", "--effort", "quick", "--seed", "0",
                   "--report-dir", first, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (tmp_path / "gone_backend.py").unlink()
    page = (first / "index.html").read_text(encoding="utf-8")
    assert "<polyline" in page  # the seed picture and the counterexample plots, drawn
    assert "not drawn: gone" not in page
    script = ("import sys; from pathlib import Path; from conformance import report\n"
              "d = Path(sys.argv[1]); out = Path(sys.argv[2])\n"
              "report.write_summaries(out, [report.load_report(d / 'gone.json')])\n"
              "assert 'gone_backend' not in sys.modules\n")
    again = tmp_path / "again"
    again.mkdir()
    done = subprocess.run([sys.executable, "-c", script, str(first), str(again)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    for name in ("index.html", "summary.md"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    merged = tmp_path / "merged"
    proc = run_cli("merge", first, "--output", merged, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # nonconformant, merged
    assert "<polyline" in (merged / "index.html").read_text(encoding="utf-8")


def test_summary_gives_each_failures_shrinking_and_its_time_box():
    """A failure's shrinking time and the time box (SHRINK_SECONDS) are in summary.md; a cut
    short one says that its smallest case found by then is what is reported."""
    from conformance.report import markdown  # noqa: PLC0415
    from tests.test_html_report import _doc, _result  # noqa: PLC0415

    doc = _doc("broken", "nonconformant", [
        _result("P2", "fail", rule="R17", message="violates R17", shrink_seconds=1.25,
                shrink_limit_seconds=5.0, shrink_cut_short=False),
        _result("P4", "fail", rule="R27", message="violates R27", shrink_seconds=5.5,
                shrink_limit_seconds=5.0, shrink_cut_short=True)])
    lines = [line for line in markdown([doc]).splitlines() if "shrinking" in line]
    assert lines == ["  - shrinking: 1.2 s at most (time box 5 s per target)",
                     "  - shrinking: 5.5 s at most (time box 5 s per target; cut short on 1: "
                     "the smallest failing case found by then is reported)"]
