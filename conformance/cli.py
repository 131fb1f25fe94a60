"""The ``rmsprop-conformance`` command.

Exit codes: 0 conformant / nothing regressed, 1 nonconformant / regressed / a counterexample
reproduces, 2 usage error (bad backend, file, effort, directory: a message, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from conformance import __version__, compare, deviations, forkserver, registry
from conformance.plugin import DEFAULT_EFFORT, EFFORTS, SUITE_DIR, parse_shard, unknown_effort
from conformance.result import STATUSES

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input to the tool itself: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------------
def describe_backend(name: str) -> dict[str, Any]:
    """What ``list`` says of one backend: loaded, its capabilities and whether it has a device
    here. A backend that cannot be loaded (or whose capabilities() is not a Capabilities)
    raises :class:`registry.BackendLoadError`; one whose capabilities() raises (it cannot
    query its device) is unavailable."""
    backend = registry.load(name)
    try:
        caps = registry.capabilities_of(backend)
    except registry.BackendLoadError:
        raise
    except Exception as exc:
        return {"name": name, "available": False, "reason": f"{type(exc).__name__}: {exc}"}
    available = bool(caps.devices)
    reason = "; ".join(f"{d}: {r}" for d, r in caps.unavailable.items()) or None
    return {"name": name, "available": available, "reason": reason, **caps.to_dict()}


def known_backends() -> list[dict[str, Any]]:
    """``list`` without names: every known backend, none loaded (loading one imports its
    framework, seconds each), so availability is not checked."""
    targets = registry.known_targets()
    return [{"name": name, "available": None, "checked": False, "target": targets[name]}
            for name in sorted(targets)]


def cmd_list(args: argparse.Namespace) -> int:
    if not args.names:
        rows = known_backends()
        if args.json:
            print(json.dumps(rows, indent=1))
            return EXIT_OK
        for r in rows:
            print(f"{r['name']}: available: not checked (name it to check: "
                  f"rmsprop-conformance list {r['name']})")
            if r["target"]:
                print(f"  from: {r['target']}")
        return EXIT_OK
    rows, failed = [], []
    for name in args.names:
        try:
            rows.append({**describe_backend(name), "checked": True})
        except registry.BackendLoadError as exc:
            # A backend named explicitly that cannot be loaded is a usage error: one line
            # naming it and why; the others are still listed.
            message = str(exc) if name in str(exc) else f"{name}: {exc}"
            print(f"rmsprop-conformance: error: {message}", file=sys.stderr)
            failed.append(name)
    exit_code = EXIT_USAGE if failed else EXIT_OK
    if args.json:
        print(json.dumps(rows, indent=1))
        return exit_code
    for r in rows:
        status = "available" if r["available"] else "unavailable"
        print(f"{r['name']}: {status}" + (f" ({r['reason']})" if r.get("reason") else ""))
        if "profile" in r:
            conv = ", ".join(f"{k}={v}" for k, v in r["conventions"].items())
            print(f"  profile: {r['profile']}" + (f" ({conv})" if conv else ""))
            print(f"  dtypes: {', '.join(r['dtypes'])}")
            print(f"  devices: {', '.join(r['devices']) or '-'}")
            print(f"  features: {', '.join(r['features'])}")
            if r["description"]:
                print(f"  {r['description']}")
    return exit_code


# ---------------------------------------------------------------------------------------------
# certify
# ---------------------------------------------------------------------------------------------
def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"report directory {str(path)!r} cannot be written: "
                         f"{exc.strerror or exc}") from None


def _positive(kind: type) -> Any:
    def parse(value: str) -> Any:
        try:
            x = kind(value)
        except ValueError:
            x = 0
        if not 0 < x < float("inf"):
            raise argparse.ArgumentTypeError(f"{value!r}: expected a positive number")
        return x
    return parse


def _jobs(value: str) -> str:
    if value == "auto" or (value.isdigit() and int(value) >= 1):
        return value
    raise argparse.ArgumentTypeError(f"-n {value!r}: expected a positive number or 'auto'")


def pytest_command(names: list[str], args: argparse.Namespace, report_dir: Path) -> list[str]:
    """The pytest session that certifies ``names`` together (one junit file: junit-NAME.xml
    for one backend, junit.xml for several)."""
    from conformance.report import safe_name

    junit = f"junit-{safe_name(names[0])}.xml" if len(names) == 1 else "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-c", str(SUITE_DIR / "pytest.ini"),
           "--rootdir", str(SUITE_DIR), "-p", "no:cacheprovider", "-q", "-rfE",
           *(w for name in names for w in ("--conformance-backend", name)),
           "--conformance-effort", args.effort,
           "--conformance-report-dir", str(report_dir), "-n", args.jobs,
           # A backend may crash its worker in every test; each crash is that test's error,
           # not a reason to stop (xdist's default gives up after 4 restarts per worker).
           "--max-worker-restart", "1000", "--conformance-progress", "15",
           "--junitxml", str(report_dir / junit)]
    if args.known_deviations:
        cmd += ["--conformance-known-deviations", str(args.known_deviations)]
    if args.seed is not None:
        cmd += ["--hypothesis-seed", str(args.seed)]
    if args.example_timeout is not None:
        cmd += ["--conformance-example-timeout", str(args.example_timeout)]
    if args.memory_limit is not None:
        cmd += ["--conformance-memory-limit", str(args.memory_limit)]
    if args.shard is not None:
        cmd += ["--conformance-shard", args.shard]
    return cmd + [str(SUITE_DIR)]


def _run_pytest(cmd: list[str]) -> int:
    """The pytest session ``cmd`` (``python -m pytest ARGS``), run in this process: its
    controller finds the backends and frameworks this process has loaded already, and runs no
    backend code besides loading them (the tests run in its xdist workers, ``-n`` ≥ 1)."""
    import pytest

    code = pytest.main(cmd[3:])
    if code == pytest.ExitCode.INTERRUPTED:  # its report is written, marked interrupted
        raise KeyboardInterrupt
    return int(code)


def cmd_certify(args: argparse.Namespace) -> int:
    from conformance import report

    if args.former_profile is not None:
        raise UsageError(f"--profile {args.former_profile}: the search effort is now --effort "
                         f"({', '.join(EFFORTS)}); a backend's spec profile (torch, optax, "
                         "...) is the one its capabilities declare")
    if args.effort not in EFFORTS:
        raise UsageError(f"--effort: {unknown_effort(args.effort)}")
    names = list(args.backends)
    if args.bundled:
        names += [name for name in registry.BUILTINS if name not in names]
    if not names:
        raise UsageError("name at least one backend, or give --bundled")
    loaded, known_devices = [], []
    threads = forkserver.threads_before_loading()
    for name in names:
        try:
            backend, caps = registry.load_declared(name)
        except registry.BackendLoadError as exc:
            raise UsageError(str(exc)) from None
        loaded.append((name, backend))
        known_devices.extend([*caps.devices, *caps.unavailable])
    if args.known_deviations:
        try:
            deviations.load(args.known_deviations,
                            backends=[n for name, b in loaded for n in (name, b.name)],
                            devices=known_devices)
        except deviations.DeviationsError as exc:
            raise UsageError(str(exc)) from None
    if args.shard is not None:
        try:
            parse_shard(args.shard)
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None
    baseline = _load(args.baseline) if args.baseline else None
    report_dir = Path(args.report_dir)
    _check_writable(report_dir)
    paths = {name: report_dir / f"{report.safe_name(backend.name)}.json"
             for name, backend in loaded}
    previous = {name: path.stat().st_mtime_ns if path.exists() else None
                for name, path in paths.items()}
    names = [name for name, _ in loaded]

    def fresh(name: str) -> bool:  # a report left by an earlier run must not stand in
        path = paths[name]
        return path.exists() and path.stat().st_mtime_ns != previous[name]

    print(f"certifying {', '.join(names)} (effort {args.effort})", flush=True)
    # One pytest session for all of them: their targets share the xdist workers, which start
    # once, and keep both busy to the end. A backend that crashes or hangs a worker costs the
    # test it was in (the watchdog ends a stuck one; xdist starts another), never the others.
    # Its workers and evidence process are forked from one process that has what they import
    # (forkserver: when loading the backends started no threads).
    with forkserver.serving(threads):
        code = _run_pytest(pytest_command(names, args, report_dir))
        codes = dict.fromkeys(names, code)
        if code in (2, 3, 4):
            print(f"the pytest run ended with code {code}", file=sys.stderr)
        if code in (3, 4) and len(names) > 1:
            # One of them broke the session itself (pytest's internal or usage error): each
            # one without a report is certified alone, so that it cannot cost the others theirs.
            for name in [n for n in names if not fresh(n)]:
                print(f"certifying {name} alone", file=sys.stderr, flush=True)
                codes[name] = _run_pytest(pytest_command([name], args, report_dir))
    docs, outcomes = [], []
    for name, backend in loaded:
        if fresh(name):
            docs.append(report.load_report(paths[name]))
            outcomes.append((docs[-1]["backend"]["name"], docs[-1]["verdict"],
                             docs[-1]["counts"], str(paths[name])))
        else:
            print(f"  {name}: the pytest run ended with code {codes[name]} without writing its "
                  "report", file=sys.stderr)
            outcomes.append((backend.name, "no report", None, f"(pytest exit {codes[name]})"))
    if code == 2:  # interrupted: what was certified is in the reports, marked so
        return EXIT_FAIL
    # summary.md and index.html cover every report in the directory (earlier runs' backends
    # side by side with this run's); the verdict and exit code only this run's backends.
    report.write_summaries(report_dir, _all_reports(report_dir, docs))
    # A backend with nothing testable here fails a certification that names it; under
    # --bundled it is reported and skipped (this machine lacks its device), as long as at least
    # one backend was certified.
    passing = ("conformant", "unsupported") if args.bundled else ("conformant",)
    ok = (len(docs) == len(loaded) and all(d["verdict"] in passing for d in docs)
          and any(d["verdict"] == "conformant" for d in docs))
    print(results_table(outcomes), end="")
    print(f"reports: {report_dir}/ (summary.md, index.html, one JSON per backend)")
    if baseline is not None:
        diff = compare.compare(baseline, {d["backend"]["name"]: d for d in docs})
        text = diff.markdown()
        report.atomic_write(report_dir / "comparison.md", text)
        print(text)
        return EXIT_FAIL if diff.regressions else EXIT_OK
    return EXIT_OK if ok else EXIT_FAIL


def results_table(rows: list[tuple[str, str, dict[str, int] | None, str]]) -> str:
    """The end of a certify run, one row per backend: (name, verdict, counts or None when no
    report was written, report path), as aligned columns; counts right-aligned."""
    head = ("backend", "verdict", *STATUSES, "report")
    cells = [head] + [(name, verdict,
                       *(str(counts.get(k, 0)) if counts is not None else "-"
                         for k in STATUSES), where)
                      for name, verdict, counts, where in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    numeric = range(2, 2 + len(STATUSES))
    lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                       for i, (c, w) in enumerate(zip(cells[n], widths))).rstrip()
             for n in range(len(cells))]
    return "".join(line + "\n" for line in lines)


def _all_reports(report_dir: Path, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from conformance import report

    mine = {d["backend"]["name"] for d in docs}
    others = []
    for path in sorted(report_dir.glob("*.json")):
        try:
            doc = report.load_report(path)
        except (OSError, ValueError):
            continue  # not a report of ours
        if doc.get("backend", {}).get("name") not in mine:
            others.append(doc)
    return docs + others


def _load(path: str) -> dict[str, dict[str, Any]]:
    try:
        return compare.load_reports(path)
    except compare.ReportError as exc:
        raise UsageError(str(exc)) from None


def cmd_compare(args: argparse.Namespace) -> int:
    diff = compare.compare(_load(args.baseline), _load(args.current),
                           ratio_factor=args.ratio_factor, ratio_floor=args.ratio_floor)
    print(diff.markdown(), end="")
    return EXIT_FAIL if diff.regressions else EXIT_OK


def cmd_parity(args: argparse.Namespace) -> int:
    from conformance import parity, report

    backends = []
    for name in args.backends:
        try:
            backends.append(registry.load(name))
        except registry.BackendLoadError as exc:
            raise UsageError(str(exc)) from None
    if len(backends) < 2:
        raise UsageError("parity compares code paths: name at least two backends")
    rows = parity.parity(backends, n_cases=args.cases, seed=args.seed)
    text = parity.markdown(rows)
    print(text, end="")
    if args.report_dir:
        out = Path(args.report_dir)
        _check_writable(out)
        report.atomic_write(out / "parity.md", text)
        report.atomic_write(out / "parity.json", json.dumps(rows, indent=1) + "\n")
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from conformance import report

    groups: dict[str, list[dict[str, Any]]] = {}
    for d in args.dirs:
        for name, doc in _load(d).items():
            groups.setdefault(name, []).append(doc)
    out = Path(args.output)
    _check_writable(out)
    docs, rows = [], []
    for name, shard_docs in sorted(groups.items()):
        try:
            doc = compare.merge(shard_docs)
        except compare.ReportError as exc:
            raise UsageError(str(exc)) from None
        report.atomic_write(out / f"{report.safe_name(name)}.json",
                            json.dumps(doc, indent=1, default=str) + "\n")
        docs.append(doc)
        rows.append((name, doc["verdict"], doc["counts"],
                     f"{out / (report.safe_name(name) + '.json')} (from {len(shard_docs)})"))
    print(results_table(rows), end="")
    report.write_summaries(out, docs)
    return EXIT_OK if all(d["verdict"] == "conformant" for d in docs) else EXIT_FAIL


# ---------------------------------------------------------------------------------------------
# repro
# ---------------------------------------------------------------------------------------------
def _summarise_case(case: Any) -> str:
    hp = case.hp
    flags = [f for f in ("centered", "maximize", "nesterov", "bias_correction") if getattr(hp, f)]
    lines = [f"profile {hp.profile}: lr={hp.lr!r} alpha={hp.alpha!r} eps={hp.eps!r} "
             f"weight_decay={hp.weight_decay!r} momentum={hp.momentum!r} "
             f"{' '.join(flags)}".rstrip(),
             f"{len(case.params)} parameter(s): "
             + ", ".join(f"{p.dtype}{list(p.shape)}" for p in case.params)
             + f"; {case.n_steps} step(s); device {case.device}"]
    if case.lrs is not None:
        lines.append(f"learning rates per step: {list(case.lrs)}")
    if case.layouts is not None:
        lines.append(f"layouts: {list(case.layouts)}")
    if case.initial_state is not None:
        lines.append("starting from a given state (steps "
                     + ", ".join(str(s.step) for s in case.initial_state) + ")")
    return "\n".join(lines)


def cmd_repro(args: argparse.Namespace) -> int:
    from conformance import serialize
    from conformance.guard import BackendError
    from conformance.properties import BY_ID, PropertyFailure

    try:
        doc = json.loads(Path(args.counterexample).read_text(encoding="utf-8"))
        prop = BY_ID[doc["property"]]
        case = None if doc["case"] is None else serialize.case_from_json(doc["case"])
    except OSError as exc:
        raise UsageError(f"cannot read {args.counterexample!r}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{args.counterexample!r} is not a counterexample file: "
                         f"{type(exc).__name__}: {exc}") from None
    try:
        backend = registry.load(args.backend or doc["backend"])
        caps = registry.capabilities_of(backend)
    except registry.BackendLoadError as exc:
        raise UsageError(str(exc)) from None
    print(f"{prop.id} {prop.name} ({prop.title}) on {backend.name}")
    if case is not None:
        print(_summarise_case(case))
    try:
        prop.check(backend, caps, case)
    except PropertyFailure as failure:
        from conformance.diagnosis import name_rule

        print(f"REPRODUCED: {name_rule(backend, caps, case, failure.violation).describe()}")
        return EXIT_FAIL
    except BackendError as exc:
        print(f"REPRODUCED (backend error): {exc}")
        return EXIT_FAIL
    print("does not reproduce: the property holds for this case now")
    return EXIT_OK


def cmd_identify(args: argparse.Namespace) -> int:
    from conformance import identify

    try:
        return identify.command(args.name, args.json)
    except identify.IdentifyUsageError as exc:
        raise UsageError(str(exc)) from None


def cmd_translate(args: argparse.Namespace) -> int:
    from conformance import translate

    try:
        return translate.command(args.source, args.target, args.values, args.json)
    except translate.TranslateError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# What --help says (plain words: the module docstring is reStructuredText for the docs).
DESCRIPTION = "Certify RMSProp implementations against the executable spec (spec/SPEC.md)."
EPILOG = """\
exit codes:
  0  success: conformant (certify, merge), nothing regressed (compare, certify --baseline),
     a profile fits (identify), the counterexample no longer reproduces (repro)
  1  nonconformant, something regressed, no profile fits, or the counterexample reproduces
  2  usage error: unknown or unloadable backend, unreadable file, unknown effort, unwritable
     report directory (one line on stderr, no traceback)

Run 'rmsprop-conformance COMMAND --help' for a command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmsprop-conformance", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"rmsprop-conformance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        # Each command's --help opens with the summary the top-level --help lists.
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:])

    p = command("list", "the backends known; named ones loaded, with their capabilities and "
                "whether they can run here")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="load these backends and show their capabilities and availability "
                        "(without names: every known backend, none loaded or checked)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = command("certify", "certify backends; exit 0 when conformant")
    p.add_argument("backends", nargs="*", metavar="NAME",
                   help="short name, entry-point name or module:attr")
    p.add_argument("--bundled", action="store_true",
                   help="certify every bundled backend (see 'list')")
    p.add_argument("--effort", default=DEFAULT_EFFORT,
                   help=f"how hard to search: {', '.join(EFFORTS)} (default {DEFAULT_EFFORT})")
    # The search effort's former name: an error that says so (--profile would read as the
    # spec profile a backend declares).
    p.add_argument("--profile", dest="former_profile", default=None, help=argparse.SUPPRESS)
    p.add_argument("--report-dir", default="reports", help="where reports go (default reports)")
    p.add_argument("-n", "--jobs", default="1", type=_jobs,
                   help="pytest-xdist workers per backend: a number or 'auto' (default 1)")
    p.add_argument("--known-deviations", default=None, metavar="FILE",
                   help="TOML list of accepted deviations")
    p.add_argument("--seed", default=None, type=int,
                   help="seed every search with this number (also under the ci effort)")
    p.add_argument("--example-timeout", default=None, type=_positive(float), metavar="SECONDS",
                   help="fail an example whose backend call takes longer (default 300)")
    p.add_argument("--memory-limit", default=None, type=_positive(int), metavar="MIB",
                   help="error when resident memory grows by more than this during one test "
                        "(default 4096)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run only the I-th of N deterministic shares (merge them with 'merge')")
    p.add_argument("--baseline", default=None, metavar="FILE_OR_DIR",
                   help="compare with a baseline report; exit 1 on any regression")
    p.set_defaults(func=cmd_certify)

    p = command("compare", "what regressed/improved between two reports")
    p.add_argument("baseline", help="baseline report JSON (or a report directory)")
    p.add_argument("current", help="current report JSON (or a report directory)")
    p.add_argument("--ratio-factor", type=float, default=2.0,
                   help="a largest error/bound ratio that grew more than this is a regression")
    p.add_argument("--ratio-floor", type=float, default=0.1,
                   help="ignore ratio growth that stays below this")
    p.set_defaults(func=cmd_compare)

    p = command("parity", "P14: the same cases through several code paths")
    p.add_argument("backends", nargs="+", metavar="NAME")
    p.add_argument("--cases", type=int, default=30, help="cases per pair and dtype (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report-dir", default=None, help="also write parity.md and parity.json")
    p.set_defaults(func=cmd_parity)

    p = command("merge", "merge shard report directories into one report")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--output", "-o", default="reports", help="where the merged report goes")
    p.set_defaults(func=cmd_merge)

    p = command("repro", "replay a counterexample from a report")
    p.add_argument("counterexample", help="a counterexample JSON file (see the report)")
    p.add_argument("--backend", default=None, help="replay on this backend instead")
    p.set_defaults(func=cmd_repro)

    p = command("identify", "which conventions (SPEC §3) a backend follows: the "
                       "profile and overrides that reproduce it; exit 0 when one fits")
    p.add_argument("name", metavar="NAME", help="a backend name, as for certify")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_identify)

    p = command("translate", "hyperparameters from one profile's framework to "
                       "another's, with the largest difference the oracle finds")
    p.add_argument("--from", dest="source", required=True, metavar="PROFILE")
    p.add_argument("--to", dest="target", required=True, metavar="PROFILE")
    p.add_argument("values", nargs="*", metavar="NAME=VALUE",
                   help="the source framework's argument names (e.g. lr=0.01 alpha=0.99)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_translate)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A module:attr in the working directory imports as under `python -m` (and in the pytest
    # runs certify starts), also from the installed console script.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"rmsprop-conformance: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rmsprop-conformance: interrupted", file=sys.stderr)
        return 130


def console_main() -> NoReturn:
    """The ``rmsprop-conformance`` command: :func:`main`, then an exit without the interpreter's
    teardown (:func:`forkserver.exit_without_teardown`)."""
    forkserver.exit_without_teardown(main())


if __name__ == "__main__":
    console_main()
