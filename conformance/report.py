"""Reports (docs/architecture.md §7): ``<backend>.json`` (versioned schema), ``summary.md``,
``index.html``.

``summary.md`` and ``index.html`` are functions of the JSON reports alone: everything they show
is stored there at certification time (:mod:`conformance.evidence`), so rendering and merging
never import or run a backend. Reports of schema 1 are read with what they lack marked as not
recorded; ``python -m conformance.report upgrade DIR`` adds it (running each backend once more).

Every file is written atomically (a temporary file renamed over the target), so an interrupted
run leaves either the previous report or a complete new one.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conformance import __version__, evidence, result
from conformance.case import DTYPES
from conformance.properties import CATALOGUE
from conformance.result import BAD, TESTED, Result, counts
from conformance.tolerance import K

SCHEMA = "rmsprop-conformance/report/2"
_MIGRATABLE = {"rmsprop-conformance/report/1"}  # read, with what they lack marked not recorded
# Versions recorded with every report: what ran the suite, and the frameworks beside it.
_PACKAGES = ("numpy", "hypothesis", "pytest", "torch", "jax", "jaxlib", "optax", "keras",
             "tensorflow", "timm", "numba", "triton", "ml_dtypes")


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    versions = {name: v for name in _PACKAGES if (v := evidence.version(name)) is not None}
    return {"python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "packages": versions}


def verdict(results: Iterable[Result], interrupted: bool = False) -> str:
    """"nonconformant" on any failure or error (or an interrupted run); "unsupported" when
    nothing could be tested on this machine (never a pass); "conformant" otherwise."""
    results = list(results)
    if interrupted or any(r["status"] in BAD for r in results):
        return "nonconformant"
    if not any(r["status"] in TESTED for r in results):
        return "unsupported"
    return "conformant"


def target_key(r: dict[str, Any]) -> str:
    """One target of a backend: ``P4-float16-cpu`` (as its counterexample file is named)."""
    return f"{r['property']}-{r.get('dtype')}-{r.get('device')}"


def backend_report(spec: str, backend: Any, caps: Any, results: list[dict[str, Any]], *,
                   effort: str | None, unused_deviations: list[Any], started: float,
                   interrupted: bool, shard: str | None = None,
                   known_deviations: str | None = None,
                   found: dict[str, Any] | None = None) -> dict[str, Any]:
    results = sorted(results, key=_order)
    return {
        "schema": SCHEMA,
        "suite_version": __version__,
        "git_revision": _git_revision(),
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "shard": shard,
        "environment": environment(),
        "effort": effort,
        "known_deviations_file": known_deviations,
        "tolerance_factor_K": K,
        "backend": {"name": backend.name, "spec": spec, "capabilities": caps.to_dict(),
                    "package": evidence.implementation_package(backend),
                    # the profile and conventions found by identify, when none was declared
                    "identified": getattr(backend, "identified", None)},
        "verdict": verdict(results, interrupted),
        "counts": counts(results),
        "results": results,
        "unused_known_deviations": [d.label() + f" ({d.reason})" for d in unused_deviations],
        "evidence": found,
    }


def _order(r: dict[str, Any]) -> tuple:
    pids = [p.id for p in CATALOGUE]
    dts = list(DTYPES)
    return (pids.index(r["property"]) if r["property"] in pids else 99,
            dts.index(r["dtype"]) if r.get("dtype") in dts else -1, r.get("device") or "")


def write_session(report_dir: Path, backends: list[tuple[str, Any, Any]],
                  records: list[Result], *, effort: str | None = None,
                  unused_deviations: list[Any], started: float,
                  interrupted: bool, shard: str | None = None,
                  known_deviations: str | None = None,
                  background: evidence.Background | None = None) -> list[Path]:
    """Write ``<backend>.json`` for each backend of the session, then the summaries.

    Everything the summaries show is computed here and stored in the JSON, the evidence
    (:mod:`conformance.evidence`: the seed's trajectory, the failing targets' per-step series)
    included: from ``background``, the evidence computed while the tests ran (else computed
    now)."""
    paths = []
    mine = {spec: [r for r in records if r["backend"] == backend.name]
            for spec, backend, _ in backends}
    files = {spec: counterexample_files(rs) for spec, rs in mine.items()}
    computed = (background or evidence.Background(list(mine))).finish(files)
    for spec, backend, caps in backends:
        found = computed[spec]
        found.pop("package", None)  # this process knows it first-hand
        unused = [d for d in unused_deviations if d.applies_to(spec, backend.name)]
        doc = backend_report(spec, backend, caps, mine[spec], effort=effort,
                             unused_deviations=unused, started=started,
                             interrupted=interrupted, shard=shard,
                             known_deviations=known_deviations, found=found)
        path = report_dir / f"{safe_name(backend.name)}.json"
        atomic_write(path, json.dumps(doc, indent=1, default=str) + "\n")
        paths.append(path)
    write_summaries(report_dir, [load_report(p) for p in paths])
    return paths


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def counterexample_of(r: dict[str, Any]) -> str | None:
    """The counterexample file of a failing or known target whose evidence is recorded."""
    return r.get("counterexample") if r["status"] in ("fail", "known") else None


def counterexample_files(results: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Target key → counterexample file, for the targets whose evidence is recorded."""
    return {target_key(r): path for r in results if (path := counterexample_of(r))}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """A report of an older schema in this one's shape: the search effort under its new key,
    and what the old schema did not record (the evidence, the implementation's package, the
    known-deviations file) marked as not recorded (None)."""
    out = dict(doc)
    out["migrated_from"] = out["schema"]
    out["schema"] = SCHEMA
    out.setdefault("effort", out.pop("conformance_profile", None))
    for key in ("known_deviations_file", "evidence"):
        out.setdefault(key, None)
    out["backend"] = {"package": None, **out.get("backend", {})}
    return out


def load_report(path: Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
    if found in _MIGRATABLE:
        doc = migrate(doc)
    elif found != SCHEMA:
        readable = ", ".join(sorted({SCHEMA} | _MIGRATABLE))
        raise ValueError(f"{path}: not a report of schema {SCHEMA} (found {found!r}; this "
                         f"version reads {readable}: recertify to get a current report)")
    try:
        doc["results"] = [result.load(r) for r in doc.get("results", [])]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return doc


def upgrade(path: Path) -> dict[str, Any]:
    """Rewrite an older report at ``path`` in the current schema, adding what it lacks: the
    evidence and the implementation's package, computed once (in a child process that runs
    the backend) from its counterexample files. Verdicts, counts and results are kept as
    certified. A current report is returned unchanged."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    doc = load_report(path)
    if raw.get("schema") == SCHEMA:
        return doc
    found = evidence.collect(doc["backend"]["spec"], counterexample_files(doc["results"]))
    doc["backend"]["package"] = found.pop("package", None)
    doc["evidence"] = found
    atomic_write(Path(path), json.dumps(doc, indent=1, default=str) + "\n")
    return doc


def write_summaries(report_dir: Path, docs: list[dict[str, Any]]) -> None:
    """summary.md and index.html: functions of the reports alone (no backend is run)."""
    from conformance import html_report

    atomic_write(report_dir / "summary.md", markdown(docs))
    atomic_write(report_dir / "index.html", html_report.render(docs))


# ---------------------------------------------------------------------------------------------
# What both summaries say, read off a report
# ---------------------------------------------------------------------------------------------
def look(doc: dict[str, Any]) -> str:
    """The verdict as a reader needs it: "conformant", "deviations" (conformant with known
    deviations), "nonconformant" or "unsupported"."""
    if doc["verdict"] == "conformant" and doc["counts"].get("known", 0):
        return "deviations"
    return doc["verdict"]


def verdict_text(doc: dict[str, Any]) -> str:
    n = doc["counts"].get("known", 0)
    text = {"deviations": f"conformant with {n} known deviation{'s' if n != 1 else ''}"}.get(
        look(doc), doc["verdict"])
    return text + (" (interrupted)" if doc.get("interrupted") else "")


def unsupported_kind(doc: dict[str, Any], r: dict[str, Any]) -> str:
    """Why a target is unsupported: "not available here" (a device the backend knows but this
    machine lacks) or "not declared" (the backend does not claim it)."""
    unavailable = doc["backend"].get("capabilities", {}).get("unavailable", {})
    return "not available here" if r.get("device") in unavailable else "not declared"


def measured(r: dict[str, Any]) -> bool:
    """Whether a passing target measured an error/bound ratio (P6, P12, P13 check exactness or
    structure: their 0 is "not measured", not "no error")."""
    return r.get("elements", 0) > 0


def first_line(text: str | None) -> str:
    return text.splitlines()[0] if text else ""


def header_facts(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(what, value) pairs for a summary's header: when, what ran it, on what."""
    def joined(values: Iterable[Any]) -> str:
        seen = sorted({str(v) for v in values if v not in (None, "")})
        return ", ".join(seen) if seen else "not recorded"

    envs = [d.get("environment", {}) for d in docs]
    packages: dict[str, set[str]] = {}
    for e in envs:
        for name, v in e.get("packages", {}).items():
            packages.setdefault(name, set()).add(v)
    revisions = [(d.get("git_revision") or "")[:12] for d in docs]
    return [
        ("generated", joined(max((d.get("generated") or "" for d in docs), default="")
                             .split("T")[:1])),
        ("rmsprop-conformance", joined(d.get("suite_version") for d in docs)
         + f" (git {joined(revisions)})"),
        ("Python", joined(e.get("python") for e in envs)),
        ("frameworks", ", ".join(f"{n} {'/'.join(sorted(v))}" for n, v in sorted(packages.items()))
         or "not recorded"),
        ("machine", joined(f"{e.get('machine', '?')}, {e['cpu_count']} CPUs" if e.get("cpu_count")
                           else e.get("machine") for e in envs)
         + f"; {joined(e.get('platform') for e in envs)}"),
        ("effort", joined(d.get("effort") for d in docs)),
        ("known deviations", joined(d.get("known_deviations_file") for d in docs)),
    ]


def package_text(doc: dict[str, Any]) -> str:
    pkg = doc["backend"].get("package")
    if not pkg:
        return "not recorded"
    return f"{pkg['name']} {pkg['version']}" if pkg.get("version") else pkg["name"]


_TAG = {"fail": "FAIL", "error": "ERROR", "known": "KNOWN"}


def failure_groups(results: Iterable[dict[str, Any]]
                   ) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Failing, erroring and known-deviation targets by (status, rule, property), in report
    order (errors carry no rule: "-")."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in results:
        if r["status"] in _TAG:
            groups.setdefault((r["status"], r.get("rule") or "-", r["property"]), []).append(r)
    return groups


def _ratio(r: dict[str, Any]) -> str:
    return f"{r['max_ratio']:.2g}" if r["examples"] else "–"


_MARK = {"conformant": "✅", "deviations": "⚠️", "nonconformant": "❌", "unsupported": "⚪"}


def markdown(docs: list[dict[str, Any]]) -> str:
    lines = ["# RMSProp conformance", ""]
    lines += ["; ".join(f"{what}: {value}" for what, value in header_facts(docs)), ""]
    lines += ["| backend | profile | effort | verdict | pass | fail | known | error | "
              "unsupported | implementation |", "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for d in docs:
        c = d["counts"]
        identified = " (identified)" if d["backend"].get("identified") else ""
        lines.append(f"| `{d['backend']['name']}` | {d['backend']['capabilities']['profile']}"
                     f"{identified} | "
                     f"{d.get('effort') or ''} | {_MARK[look(d)]} {verdict_text(d)} | "
                     f"{c['pass']} | {c['fail']} | {c['known']} | {c['error']} | "
                     f"{c['unsupported']} | {package_text(d)} |")
    lines += ["", f"An element passes when |impl − exact| ≤ {K:g} × bound; cells give the largest "
              "|impl − exact| / bound observed (how much of the budget was used); ✓ = passed, "
              "nothing to measure (exactness or structure); n/a = unsupported.", ""]
    for d in docs:
        groups = failure_groups(d["results"])
        if not groups:
            continue
        lines += [f"## `{d['backend']['name']}`: failures", ""]
        for (status, rule, _prop), rs in groups.items():
            r = rs[0]
            where = ", ".join(f"{x['dtype'] or '-'} {x['device']}" for x in rs)
            label = f" ({r['label']})" if r.get("label") else ""
            rule_text = f", {rule}" if rule != "-" else ""
            lines.append(f"- **{_TAG[status]}** {r['property']} {r['name']}{rule_text}{label} "
                         f"— {len(rs)} target{'s' if len(rs) > 1 else ''} [{where}]: "
                         f"{first_line(r.get('message'))}")
            if status == "known":
                lines.append(f"  - accepted: {r.get('known_reason', '')} {r.get('known_link', '')}")
            shrunk = [x for x in rs if x.get("shrink_seconds") is not None]
            if shrunk:
                cut = sum(bool(x.get("shrink_cut_short")) for x in shrunk)
                lines.append(
                    f"  - shrinking: {max(x['shrink_seconds'] for x in shrunk):.1f} s at most "
                    f"(time box {shrunk[0].get('shrink_limit_seconds', 0):g} s per target"
                    + (f"; cut short on {cut}: the smallest failing case found by then is "
                       "reported" if cut else "") + ")")
            replays = [f"`{x['replay']}`" for x in rs if x.get("replay")]
            if replays:
                lines.append(f"  - replay: {', '.join(replays)}")
        lines.append("")
    lines += ["## Largest error/bound per property and dtype", ""]
    for d in docs:
        lines += [f"### `{d['backend']['name']}`", ""]
        dts = list(DTYPES)
        lines += ["| property | " + " | ".join(dts) + " | no dtype |",
                  "|---|" + "---|" * (len(dts) + 1)]
        for p in CATALOGUE:
            cells = []
            for dt in dts + [None]:
                rs = [r for r in d["results"] if r["property"] == p.id and r["dtype"] == dt]
                cells.append(", ".join(_cell(r) for r in rs) if rs else "")
            lines.append(f"| {p.id} {p.name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _cell(r: dict[str, Any]) -> str:
    if r["status"] == "pass":
        return _ratio(r) if measured(r) else "✓"
    return {"fail": "FAIL", "known": "known", "error": "ERROR", "unsupported": "n/a"}[r["status"]]


def escape(x: Any) -> str:
    return html.escape(str(x))


def main(argv: list[str] | None = None) -> int:
    """``python -m conformance.report upgrade DIR|FILE ...``: bring older reports to the
    current schema (see :func:`upgrade`), then rewrite each directory's summaries."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m conformance.report",
                                     description="Bring reports of an older schema up to date.")
    parser.add_argument("action", choices=["upgrade"])
    parser.add_argument("paths", nargs="+", help="report JSON files or directories of them")
    args = parser.parse_args(argv)
    for target in map(Path, args.paths):
        files = sorted(target.glob("*.json")) if target.is_dir() else [target]
        docs = []
        for f in files:
            try:
                docs.append(upgrade(f))
            except (ValueError, KeyError, json.JSONDecodeError):
                continue  # not a report (parity.json …)
            print(f"{f}: {docs[-1]['schema']}", flush=True)
        if target.is_dir() and docs:
            write_summaries(target, docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
