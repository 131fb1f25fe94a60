"""Baselines and shards: what changed between two reports, and merging shard reports.

A *target* is one (property, dtype, device) of one backend. Against a baseline, a regression is:
a target that passed (or was a known deviation) and now fails or errors; a target whose largest
error/bound ratio grew by more than ``ratio_factor`` (and reached ``ratio_floor``); a target
that was tested and is now unsupported or missing. The reverse changes are improvements.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from conformance import report
from conformance.result import BAD as _BAD
from conformance.result import SEVERITY, counts
from conformance.result import TESTED as _GOOD

_RANK = {s.value: n for n, s in enumerate(SEVERITY)}  # worst first


class ReportError(ValueError):
    """A report file or directory that cannot be read (a usage error)."""


def load_reports(path: str | Path) -> dict[str, dict[str, Any]]:
    """Backend name → report, from one report JSON or a directory of them."""
    path = Path(path)
    files = sorted(p for p in path.glob("*.json")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise ReportError(f"{str(path)!r} has no report JSON files")
    out = {}
    for f in files:
        try:
            doc = report.load_report(f)
            name = doc["backend"]["name"]
            missing = sorted({"results", "verdict", "counts"} - set(doc))
            if missing:
                raise KeyError(missing[0])
        except OSError as exc:
            raise ReportError(f"cannot read report {str(f)!r}: {exc.strerror or exc}") from None
        except (ValueError, json.JSONDecodeError) as exc:
            if path.is_dir() and "schema" in str(exc):
                continue  # other JSON files in a report directory
            raise ReportError(f"{str(f)!r} is not a conformance report: {exc}") from None
        except (KeyError, TypeError) as exc:
            raise ReportError(f"{str(f)!r} is not a complete conformance report: no "
                              f"{exc}") from None
        out[name] = doc
    if not out:
        raise ReportError(f"no conformance report found in {str(path)!r}")
    return out


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (r["property"], r.get("dtype") or "-", r.get("device") or "-")


def _name(backend: str, key: tuple[str, str, str]) -> str:
    return f"`{backend}` {key[0]} [{key[1]}, {key[2]}]"


@dataclasses.dataclass
class Diff:
    regressions: list[str] = dataclasses.field(default_factory=list)
    improvements: list[str] = dataclasses.field(default_factory=list)
    compared: int = 0

    def markdown(self, title: str = "Conformance against the baseline") -> str:
        lines = [f"## {title}", ""]
        verdict = (f"❌ {len(self.regressions)} regression(s)" if self.regressions
                   else "✅ no regressions")
        lines += [f"{verdict}, {len(self.improvements)} improvement(s), {self.compared} targets "
                  "compared.", ""]
        if self.regressions:
            lines += ["### Regressions", ""] + [f"- {x}" for x in self.regressions] + [""]
        if self.improvements:
            lines += ["### Improvements", ""] + [f"- {x}" for x in self.improvements] + [""]
        return "\n".join(lines) + "\n"


def compare(baseline: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]], *,
            ratio_factor: float = 2.0, ratio_floor: float = 0.1) -> Diff:
    diff = Diff()
    for backend, base_doc in sorted(baseline.items()):
        cur_doc = current.get(backend)
        if cur_doc is None:
            diff.regressions.append(f"`{backend}`: no current report (was "
                                    f"{base_doc['verdict']})")
            continue
        base = {_key(r): r for r in base_doc["results"]}
        cur = {_key(r): r for r in cur_doc["results"]}
        for key, b in sorted(base.items()):
            c = cur.get(key)
            name = _name(backend, key)
            if c is None:
                if b["status"] != "unsupported":
                    diff.regressions.append(f"{name}: no longer tested (was {b['status']})")
                continue
            diff.compared += 1
            bs, cs = b["status"], c["status"]
            if bs in _GOOD and cs in _BAD:
                msg = (c.get("message") or "").splitlines()
                replay = f" — replay: `{c['replay']}`" if c.get("replay") else ""
                diff.regressions.append(f"{name}: {bs} → **{cs}**"
                                        + (f": {msg[0]}" if msg else "") + replay)
            elif bs in _BAD and cs in _GOOD:
                diff.improvements.append(f"{name}: {bs} → {cs}")
            elif bs != "unsupported" and cs == "unsupported":
                diff.regressions.append(f"{name}: {bs} → **unsupported** "
                                        f"({c.get('reason', '')})")
            elif bs == "unsupported" and cs != "unsupported":
                (diff.improvements if cs in _GOOD else diff.regressions).append(
                    f"{name}: unsupported → {cs}")
            elif bs == cs == "pass":
                br, cr = b["max_ratio"], c["max_ratio"]
                if cr >= ratio_floor and cr > ratio_factor * br:
                    diff.regressions.append(f"{name}: largest error/bound grew {br:.3g} → "
                                            f"**{cr:.3g}** (more than ×{ratio_factor:g})")
                elif br >= ratio_floor and br > ratio_factor * cr:
                    diff.improvements.append(f"{name}: largest error/bound fell {br:.3g} → "
                                             f"{cr:.3g}")
        for key in sorted(set(cur) - set(base)):
            if cur[key]["status"] in _BAD:
                diff.regressions.append(f"{_name(backend, key)}: new target, "
                                        f"**{cur[key]['status']}**")
    return diff


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from shard reports of the same backend: the union of their results (the
    worse status where a target appears twice), counts and verdict recomputed."""
    if not docs:
        raise ReportError("nothing to merge")
    names = {d["backend"]["name"] for d in docs}
    if len(names) != 1:
        raise ReportError(f"cannot merge reports of different backends: {', '.join(sorted(names))}")
    results: dict[tuple[str, str, str], dict[str, Any]] = {}
    for d in docs:
        for r in d["results"]:
            old = results.get(_key(r))
            if old is None or _RANK[r["status"]] < _RANK[old["status"]]:
                results[_key(r)] = r
    merged = dict(docs[0])
    merged["results"] = sorted(results.values(), key=report._order)
    merged["interrupted"] = any(d.get("interrupted") for d in docs)
    merged["counts"] = counts(merged["results"])
    merged["verdict"] = report.verdict(merged["results"], merged["interrupted"])
    merged["shard"] = None
    merged["merged_from"] = [d.get("shard") or "all" for d in docs]
    merged["evidence"] = _merged_evidence([d.get("evidence") for d in docs])
    return merged


def _merged_evidence(found: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The shards' evidence together: a recorded seed trajectory over a note saying why it is
    missing, and every shard's counterexamples (recorded ones first)."""
    found = [f for f in found if f]
    if not found:
        return None
    seeds = sorted((f["seed"] for f in found if f.get("seed")), key=lambda s: "points" not in s)
    examples: dict[str, Any] = {}
    for f in found:
        for key, ex in f.get("counterexamples", {}).items():
            if key not in examples or "not_recorded" in examples[key]:
                examples[key] = ex
    return {"seed": seeds[0] if seeds else None, "counterexamples": examples}
