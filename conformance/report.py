"""Reports (DESIGN §7): ``<backend>.json`` (versioned schema), ``summary.md``, ``index.html``.

Every file is written atomically (a temporary file renamed over the target), so an interrupted
run leaves either the previous report or a complete new one.
"""

from __future__ import annotations

import datetime
import html
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conformance import __version__
from conformance.case import DTYPES
from conformance.properties import CATALOGUE
from conformance.tolerance import K

SCHEMA = "rmsprop-conformance/report/1"
STATUSES = ("pass", "fail", "known", "error", "unsupported")
_PACKAGES = ("numpy", "hypothesis", "pytest", "torch", "jax", "jaxlib", "optax", "numba",
             "triton", "ml_dtypes")


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
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "packages": versions}


def verdict(results: Iterable[dict[str, Any]], interrupted: bool = False) -> str:
    """"nonconformant" on any failure or error (or an interrupted run); "unsupported" when
    nothing could be tested on this machine (never a pass); "conformant" otherwise."""
    results = list(results)
    if interrupted or any(r["status"] in ("fail", "error") for r in results):
        return "nonconformant"
    if not any(r["status"] in ("pass", "known") for r in results):
        return "unsupported"
    return "conformant"


def counts(results: Iterable[dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for r in results:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def backend_report(spec: str, backend: Any, caps: Any, results: list[dict[str, Any]], *,
                   profile: str, unused_deviations: list[Any], started: float,
                   interrupted: bool, shard: str | None = None) -> dict[str, Any]:
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
        "conformance_profile": profile,
        "tolerance_factor_K": K,
        "backend": {"name": backend.name, "spec": spec, "capabilities": caps.to_dict()},
        "verdict": verdict(results, interrupted),
        "counts": counts(results),
        "results": results,
        "unused_known_deviations": [d.label() + f" ({d.reason})" for d in unused_deviations],
    }


def _order(r: dict[str, Any]) -> tuple:
    pids = [p.id for p in CATALOGUE]
    dts = list(DTYPES)
    return (pids.index(r["property"]) if r["property"] in pids else 99,
            dts.index(r["dtype"]) if r.get("dtype") in dts else -1, r.get("device") or "")


def write_session(report_dir: Path, backends: list[tuple[str, Any, Any]],
                  records: list[dict[str, Any]], *, profile: str, unused_deviations: list[Any],
                  started: float, interrupted: bool, shard: str | None = None) -> list[Path]:
    """Write ``<backend>.json`` for each backend of the session, then the summaries."""
    paths = []
    for spec, backend, caps in backends:
        mine = [r for r in records if r["backend"] == backend.name]
        doc = backend_report(spec, backend, caps, mine, profile=profile,
                             unused_deviations=unused_deviations, started=started,
                             interrupted=interrupted, shard=shard)
        path = report_dir / f"{safe_name(backend.name)}.json"
        atomic_write(path, json.dumps(doc, indent=1, default=str) + "\n")
        paths.append(path)
    write_summaries(report_dir, [load_report(p) for p in paths])
    return paths


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def load_report(path: Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
    if found != SCHEMA:
        raise ValueError(f"{path}: not a report of schema {SCHEMA} (found {found!r})")
    return doc


def write_summaries(report_dir: Path, docs: list[dict[str, Any]]) -> None:
    atomic_write(report_dir / "summary.md", markdown(docs))
    atomic_write(report_dir / "index.html", _html(docs, report_dir))


_HTML_TIMEOUT = 300.0
_RENDER = ("import json, sys; from pathlib import Path; from conformance import html_report; "
           "sys.stdout.write(html_report.render(json.load(sys.stdin), Path(sys.argv[1])))")


def _html(docs: list[dict[str, Any]], report_dir: Path) -> str:
    """index.html, rendered in a child process: the seed's picture runs every backend once
    more, and a backend that crashes, exits or hangs there must not take this process (and the
    verdict) with it. If the child fails, a plain page with the Markdown summary stands in."""
    try:
        # The child imports the backends (module:attr) from where this process found them.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        out = subprocess.run([sys.executable, "-c", _RENDER, str(report_dir)],
                             input=json.dumps(docs, default=str), capture_output=True,
                             text=True, timeout=_HTML_TIMEOUT, check=False, env=env)
        why = f"the renderer ended with code {out.returncode}: {out.stderr.strip()[-500:]}"
        if out.returncode == 0:
            return out.stdout
    except subprocess.TimeoutExpired:
        why = f"the renderer did not finish within {_HTML_TIMEOUT:g} s"
    return ("<!doctype html><meta charset=utf-8><title>RMSProp conformance</title>"
            f"<p>The full page could not be rendered ({escape(why)}).</p>"
            f"<pre>{escape(markdown(docs))}</pre>\n")


def _ratio(r: dict[str, Any]) -> str:
    return f"{r['max_ratio']:.2g}" if r["examples"] else "–"


def markdown(docs: list[dict[str, Any]]) -> str:
    lines = ["# RMSProp conformance", ""]
    lines += ["| backend | profile | examples | verdict | pass | fail | known | error | "
              "unsupported |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for d in docs:
        c = d["counts"]
        mark = {"conformant": "✅", "unsupported": "⚪"}.get(d["verdict"], "❌")
        lines.append(f"| `{d['backend']['name']}` | {d['backend']['capabilities']['profile']} | "
                     f"{d.get('conformance_profile', '')} | {mark} {d['verdict']}"
                     f"{' (interrupted)' if d.get('interrupted') else ''} | "
                     f"{c['pass']} | {c['fail']} | {c['known']} | {c['error']} | "
                     f"{c['unsupported']} |")
    lines += ["", f"An element passes when |impl − exact| ≤ {K:g} × bound; cells give the largest "
              "|impl − exact| / bound observed (how much of the budget was used).", ""]
    for d in docs:
        bad = [r for r in d["results"] if r["status"] in ("fail", "error", "known")]
        if not bad:
            continue
        lines += [f"## `{d['backend']['name']}`: failures", ""]
        for r in bad:
            head = r.get("message", "").splitlines()[0] if r.get("message") else ""
            tag = {"fail": "FAIL", "error": "ERROR", "known": "KNOWN"}[r["status"]]
            label = f" ({r['label']})" if r.get("label") else ""
            lines.append(f"- **{tag}** {r['property']} {r['name']} [{r['dtype'] or '-'}, "
                         f"{r['device']}]{label}: {head}")
            if r["status"] == "known":
                lines.append(f"  - accepted: {r.get('known_reason', '')} {r.get('known_link', '')}")
            if r.get("replay"):
                lines.append(f"  - replay: `{r['replay']}`")
        lines.append("")
    lines += ["## Largest error/bound per property and dtype", ""]
    for d in docs:
        lines += [f"### `{d['backend']['name']}`", ""]
        dts = [x for x in DTYPES]
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
    return {"pass": _ratio(r), "fail": "FAIL", "known": "known", "error": "ERROR",
            "unsupported": "n/a"}[r["status"]]


def escape(x: Any) -> str:
    return html.escape(str(x))
