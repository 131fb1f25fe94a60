"""index.html, a function of the JSON reports alone: no backend is imported or run.

Read top to bottom: what ran (versions, machine, effort), each backend's verdict in one of four
looks (conformant; conformant with known deviations; nonconformant; unsupported) and the worst
failure with its replay command; the matrix (backend × property, each backend's dtype × property
detail folded beneath), whose cells link to their failures; the failures grouped by rule,
property and dtype, each target with a plot of the violating element over the counterexample's
steps, each group with one minimal counterexample; the error/bound distribution; the seed's
picture with each backend's trajectory.

The page is self-contained and needs no JavaScript: plots are inline SVG drawn here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from conformance.case import DTYPES
from conformance.evidence import number
from conformance.properties import CATALOGUE
from conformance.report import (
    escape,
    failure_groups,
    first_line,
    header_facts,
    look,
    measured,
    package_text,
    safe_name,
    target_key,
    unsupported_kind,
    verdict_text,
)
from conformance.result import worst
from conformance.tolerance import K
from spec.rules import rule_title

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:1em 1.5em;
max-width:1400px;color:#1d1d1f;line-height:1.4}
h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h3{margin:1.2em 0 .3em}h4{margin:.8em 0 .3em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d0d0;padding:3px 6px;
font-size:13px;text-align:center;vertical-align:middle}th{background:#f3f3f3;font-weight:600}
td.l,th.l{text-align:left}td.why{min-width:12em}small{color:#555}
a{color:#0550ae}td a{color:inherit;text-decoration:none;display:block}
td a:hover{text-decoration:underline}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13px;
margin:.5em 0}.facts dt{font-weight:600;color:#444}.facts dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:13px;
white-space:nowrap}
.v-conformant{background:#1a7f37;color:#fff}
.v-deviations{background:#fff3c4;color:#6b4f00;border:2px solid #d4a72c}
.v-nonconformant{background:#cf222e;color:#fff}
.v-unsupported{background:#eaeef2;color:#57606a;border:1px dashed #8c959f}
td.pass{background:#dafbe1}td.nm{background:#eefbf0;color:#1a7f37}
td.known{background:#fff3c4}td.fail{background:#ffcecb;font-weight:600}
td.error{background:#ff9c95;font-weight:600}td.unsupported{background:#f6f8fa;color:#8c959f}
td.empty{background:#fff}
.glance{font-size:15px;background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;
padding:.6em 1em}.glance p{margin:.3em 0}
code,pre{background:#f3f3f3;border-radius:3px;font-size:12px}code{padding:1px 4px;
overflow-wrap:anywhere}code.n{overflow-wrap:normal}pre{padding:6px 8px;white-space:pre-wrap;
overflow-wrap:anywhere}.group p a{overflow-wrap:anywhere}
.group{border-left:4px solid #cf222e;padding:.1em 0 .1em .8em;margin:.8em 0}
.group.known{border-color:#d4a72c}
.cx{background:#fafbfc;border:1px solid #e1e4e8;border-radius:6px;padding:.4em .8em}
.cx table td{text-align:left;overflow-wrap:anywhere}.cx{overflow-x:auto}
details>summary{cursor:pointer}svg{max-width:100%;height:auto}
td>svg,svg.full{max-width:none}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:13px}
.legend span{display:inline-block;width:22px;height:4px;vertical-align:middle;
margin-right:5px}
:target{outline:3px solid #0969da;outline-offset:2px}
"""

_SECTION = {"fail": "fail", "error": "fail", "known": "known"}
# The seed picture's backends: colours told apart from each other and from SGD's red and the
# oracle's blue (the previous list held near-twins: two greys, two greens, two oranges, blues).
_PALETTE = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#000000", "#ff00b6", "#005300", "#720055")


# ---------------------------------------------------------------------------------------------
# Anchors: every link on the page points at one of these
# ---------------------------------------------------------------------------------------------
def _target_id(doc: dict[str, Any], r: dict[str, Any]) -> str:
    return safe_name(f"t-{doc['backend']['name']}-{target_key(r)}")


def _group_id(r: dict[str, Any]) -> str:
    rule = r.get("rule") or ("error" if r["status"] == "error" else "-")
    return safe_name(f"g-{_SECTION[r['status']]}-{rule}-{r['property']}-{r['dtype']}")


def _backend_id(doc: dict[str, Any]) -> str:
    return safe_name(f"b-{doc['backend']['name']}")


def _breakable(text: str) -> str:
    """``text`` escaped, with a line break allowed after each . : _ (and nowhere else)."""
    return "".join(escape(c) + ("<wbr>" if c in ".:_" else "") for c in text)


def _name(name: str) -> str:
    """A backend's name: code that wraps at its separators, never inside a word."""
    return f"<code class=n>{_breakable(name)}</code>"


# ---------------------------------------------------------------------------------------------
# Header, at a glance, overview
# ---------------------------------------------------------------------------------------------
def _header(docs: list[dict[str, Any]]) -> str:
    facts = "".join(f"<dt>{escape(what)}</dt><dd>{escape(value)}</dd>"
                    for what, value in header_facts(docs))
    return f"<h1>RMSProp conformance</h1><dl class=facts>{facts}</dl>"


def _badge(doc: dict[str, Any]) -> str:
    mark = {"conformant": "✔", "deviations": "✔", "nonconformant": "✘", "unsupported": "○"}
    return (f"<span class='badge v-{look(doc)}'>{mark[look(doc)]} "
            f"{escape(verdict_text(doc))}</span>")


def _worst(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The failure to read first: a semantic failure over a numerical one over an error."""
    rank = {("fail", "semantic"): 0, ("fail", "numerical"): 1, ("error", None): 2}
    found = [(rank.get((r["status"], r.get("label")), 3), n, d, r) for n, d in enumerate(docs)
             for r in d["results"] if r["status"] in ("fail", "error")]
    if not found:
        return None
    _, _, d, r = min(found, key=lambda x: x[:2])
    return d, r


def _glance(docs: list[dict[str, Any]]) -> str:
    by_look: dict[str, list[str]] = {}
    for d in docs:
        by_look.setdefault(look(d), []).append(
            f"<a href='#{_backend_id(d)}'>{escape(d['backend']['name'])}</a>")
    words = {"conformant": "conformant", "deviations": "conformant with known deviations",
             "nonconformant": "nonconformant", "unsupported": "unsupported here"}
    lines = [f"<p><span class='badge v-{k}'>{len(by_look[k])} {words[k]}</span> "
             f"{', '.join(by_look[k])}</p>" for k in words if k in by_look]
    worst = _worst(docs)
    if worst is not None:
        d, r = worst
        replay = f"<br>replay: <code>{escape(r['replay'])}</code>" if r.get("replay") else ""
        lines.append(f"<p><b>Worst failure</b>: <a href='#{_target_id(d, r)}'>"
                     f"{escape(d['backend']['name'])} {r['property']} {escape(r['name'])} "
                     f"[{escape(r['dtype'] or '-')}, {escape(r['device'])}]</a>: "
                     f"{escape(first_line(r.get('message')))}{replay}</p>")
    return f"<div class=glance>{''.join(lines)}</div>"


def _unsupported_counts(doc: dict[str, Any]) -> str:
    """How many targets are unsupported, of each kind; what is not declared, said (what is not
    available here is said in the next column)."""
    kinds: dict[str, int] = {}
    undeclared: dict[str, dict[str, None]] = {}  # dtype / device / feature(s) → which
    for r in doc["results"]:
        if r["status"] == "unsupported":
            kind = unsupported_kind(doc, r)
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "not declared" and r.get("reason"):
                what, _, which = _undeclared(r["reason"])
                for x in which.split(", "):
                    undeclared.setdefault(what, {})[x] = None
    why = "; ".join(f"{escape(what)} {escape(', '.join(which))}".strip()
                    for what, which in undeclared.items())
    return ("<br>".join(f"{n} {escape(k)}" for k, n in sorted(kinds.items()))
            + (f"<br><small>not declared: {why}</small>" if why else "")) or "0"


def _undeclared(reason: str) -> tuple[str, str, str]:
    """properties.unsupported_reason's words, parted: "dtype complex64 not declared" →
    ("dtype", " ", "complex64"), "feature(s) not declared: maximize" → ("feature(s)", ": ",
    "maximize"); any other reason whole."""
    if reason.endswith(" not declared") and reason.count(" ") == 3:
        return reason.removesuffix(" not declared").partition(" ")
    if " not declared: " in reason:
        return reason.partition(" not declared: ")
    return ("", "", reason)


def _not_here(doc: dict[str, Any]) -> str:
    unavailable = doc["backend"].get("capabilities", {}).get("unavailable", {})
    return "; ".join(f"{escape(dev)}: {escape(why)}" for dev, why in unavailable.items())


def _overview(docs: list[dict[str, Any]]) -> str:
    rows = ["<div class=scroll><table><tr><th class=l>backend</th><th>verdict</th>"
            "<th class=l>implementation</th><th>profile</th><th>effort</th><th>pass</th>"
            "<th>known</th><th>fail</th><th>error</th><th>unsupported</th>"
            "<th class=l>not available here</th></tr>"]
    for d in docs:
        c = d["counts"]
        rows.append(
            f"<tr id='{_backend_id(d)}'><td class=l>{_name(d['backend']['name'])}"
            f"</td><td>{_badge(d)}</td><td class=l>{escape(package_text(d))}</td>"
            f"<td>{escape(d['backend']['capabilities'].get('profile', ''))}"
            f"{' (identified)' if d['backend'].get('identified') else ''}</td>"
            f"<td>{escape(d.get('effort') or '')}</td><td>{c['pass']}</td><td>{c['known']}</td>"
            f"<td>{c['fail']}</td><td>{c['error']}</td><td class=why>{_unsupported_counts(d)}"
            f"</td><td class='l why'><small>{_not_here(d)}</small></td></tr>")
    rows.append("</table></div>")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# Matrix
# ---------------------------------------------------------------------------------------------
def _tested(doc: dict[str, Any], rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results a cell speaks for: those on a device this machine has, unless none is."""
    here = [r for r in rs if not (r["status"] == "unsupported"
                                  and unsupported_kind(doc, r) == "not available here")]
    return here or rs


def _cell(doc: dict[str, Any], rs: list[dict[str, Any]]) -> str:
    """One matrix cell: the worst status of its results, linked to its first failure."""
    if not rs:
        return "<td class=empty></td>"
    rs = _tested(doc, rs)
    status = worst(r["status"] for r in rs).value
    worst_rs = [r for r in rs if r["status"] == status]
    tip = "; ".join(f"{r['dtype'] or '-'} {r['device']}: {r['status']}"
                    + (f" ({r.get('reason')})" if r.get("reason") else "") for r in rs)
    many = f" ×{len(worst_rs)}" if len(worst_rs) > 1 else ""
    if status == "pass":
        ratios = [r["max_ratio"] for r in worst_rs if measured(r)]
        if not ratios:
            return (f"<td class=nm title='passed; nothing to measure (exactness or structure): "
                    f"{escape(tip)}'>✓</td>")
        return f"<td class=pass title='{escape(tip)}'>{max(ratios):.2g}</td>"
    if status == "unsupported":
        kinds = {unsupported_kind(doc, r) for r in rs}
        return (f"<td class=unsupported title='{escape(tip)}'>n/a<br><small>"
                f"{escape(' / '.join(sorted(kinds)))}</small></td>")
    rule = worst_rs[0].get("rule")
    text = {"fail": "FAIL", "error": "ERROR", "known": "known"}[status]
    text += f" {rule}" if rule else ""
    return (f"<td class={status} title='{escape(tip)}'><a href='#{_target_id(doc, worst_rs[0])}'>"
            f"{escape(text)}{many}</a></td>")


def _prop_head(p: Any) -> str:
    return f"<th title='{escape(p.title)}'>{p.id}<br><small>{_breakable(p.name)}</small></th>"


def _matrix(docs: list[dict[str, Any]]) -> str:
    rows = ["<div class=scroll><table><tr><th class=l>backend</th>"
            + "".join(_prop_head(p) for p in CATALOGUE) + "</tr>"]
    for d in docs:
        cells = "".join(_cell(d, [r for r in d["results"] if r["property"] == p.id])
                        for p in CATALOGUE)
        rows.append(f"<tr><td class=l><a href='#{_backend_id(d)}'>"
                    f"{_name(d['backend']['name'])}</a></td>{cells}</tr>")
    rows.append("</table></div>")
    details = []
    for d in docs:
        body = ["<div class=scroll><table><tr><th class=l>property</th>"
                + "".join(f"<th>{dt}</th>" for dt in DTYPES) + "<th>no dtype</th></tr>"]
        for p in CATALOGUE:
            cells = "".join(_cell(d, [r for r in d["results"]
                                      if r["property"] == p.id and r["dtype"] == dt])
                            for dt in [*DTYPES, None])
            body.append(f"<tr><td class=l>{p.id} {escape(p.name)}</td>{cells}</tr>")
        body.append("</table></div>")
        open_ = " open" if look(d) == "nonconformant" else ""
        details.append(f"<details{open_}><summary>{_name(d['backend']['name'])} "
                       f"{_badge(d)} by dtype</summary>{''.join(body)}</details>")
    return "\n".join(rows) + "\n" + "\n".join(details)


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------
def _evidence(doc: dict[str, Any], r: dict[str, Any]) -> dict[str, Any] | None:
    return ((doc.get("evidence") or {}).get("counterexamples") or {}).get(target_key(r))


def _size(ex: dict[str, Any] | None) -> float:
    """How big a counterexample is (steps × elements): the smallest one stands for a group."""
    inputs = (ex or {}).get("inputs")
    if not inputs:
        return math.inf
    elements = 0
    for shape in inputs["params"]:
        dims = shape[shape.index("[") + 1:-1]
        elements += math.prod(int(x) for x in dims.split(",") if x.strip()) if dims else 1
    return inputs["steps"] * max(elements, 1)


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, list):  # a complex element: [re, im]
        re, im = (_fmt(part) for part in x)
        return f"{re}{'' if im.startswith('-') else '+'}{im}j"
    v = number(x)
    return repr(v) if not math.isfinite(v) else f"{v:.6g}"


def _distinct(values: Sequence[float], least: int) -> list[str]:
    """``values`` with the fewest significant digits (``least`` at the fewest) that tell them
    apart: an expected and an observed value that differ in the 8th digit do not both read
    0.786251."""
    for digits in range(least, 18):
        out = [f"{v:.{digits}g}" if math.isfinite(v) else repr(v) for v in values]
        if len(set(out)) == len(set(values)):
            return out
    return [repr(v) for v in values]


def _hint(r: dict[str, Any], ex: dict[str, Any] | None) -> str:
    label = {"semantic": "semantic: a formula differs from the spec (it fails in float64 too)",
             "numerical": "numerical: only in low precision or at extreme magnitudes"}.get(
        r.get("label") or "", "")
    message = ((ex or {}).get("violation") or {}).get("message") or first_line(r.get("message"))
    diagnosis = message.split("; ", 1)[1] if "; " in message else ""
    return "; ".join(x for x in (label, diagnosis) if x)


def _counterexample(doc: dict[str, Any], r: dict[str, Any], ex: dict[str, Any] | None) -> str:
    """The group's minimal counterexample: inputs, expected, observed, bound, replay, hint."""
    rows = [("backend", f"{_name(doc['backend']['name'])} "
                        f"[{escape(r['dtype'] or '-')}, {escape(r['device'])}]")]
    v = (ex or {}).get("violation") or {}
    inputs = (ex or {}).get("inputs")
    if inputs:
        hp = ", ".join(f"{k}={escape(v_)}" for k, v_ in inputs["hparams"].items()
                       if k != "profile")
        rows += [("hyperparameters", f"<small>{hp}</small>"),
                 ("parameters", escape(", ".join(inputs["params"]))
                  + f", {inputs['steps']} step(s)"
                  + (", from a given state" if inputs.get("initial_state") else "")
                  + (f", layouts {escape(inputs['layouts'])}" if inputs.get("layouts") else "")
                  + (f", lr per step {escape(inputs['lrs'])}" if inputs.get("lrs") else ""))]
        el = inputs.get("element")
        if el:
            rows.append((f"element {el['index']} of parameter {el['param']}",
                         f"starts at {_fmt(el['start'])}; gradients "
                         + ", ".join(_fmt(g) for g in el["grads"])))
    what = ([f"{escape(v.get('field') or '')} at step {v['step']}"]
            if v.get("step") is not None else [])
    if v.get("expected") is None and v.get("message") and inputs:  # a structure, not a value
        what.append(escape(v["message"]))
    if what:
        rows.append(("violation", ": ".join(what)))
    if v.get("expected") is not None:
        e, o = (_distinct([number(v["expected"]), number(v["observed"])], 6)
                if v.get("observed") is not None else (_fmt(v["expected"]), _fmt(None)))
        rows += [("expected (exact)", e), ("observed", o),
                 ("bound", f"{_fmt(v.get('bound'))} (allowed: {K:g} × bound)")]
    if ex is None or "inputs" not in ex:
        why = ((ex or {}).get("not_recorded")
               or ("the counterexample holds no case of parameters and steps (the message "
                   "says what was violated; the replay has the rest)" if ex and ex.get("violation")
                   else "not recorded in this report"))
        rows.append(("inputs", f"<small>{escape(why)}</small>"))
        rows.append(("message", f"<pre>{escape(r.get('message', ''))}</pre>"))
    if r.get("replay"):
        rows.append(("replay", f"<code>{escape(r['replay'])}</code>"))
    hint = _hint(r, ex)
    if hint:
        rows.append(("hint", escape(hint)))
    body = "".join(f"<tr><th class=l>{what}</th><td>{value}</td></tr>" for what, value in rows)
    return f"<div class=cx><b>Minimal counterexample</b><table>{body}</table></div>"


def _target_row(doc: dict[str, Any], r: dict[str, Any]) -> str:
    ex = _evidence(doc, r)
    v = (ex or {}).get("violation") or {}
    series = (ex or {}).get("series")
    if series and series.get("matches"):
        plot = _series_svg(series["steps"], f"{series['field']}{series['index']}")
    elif series:
        plot = ("<small>the oracle's trajectory does not reproduce this violation (the property "
                "judges against another run)</small>")
    else:
        why = ((ex or {}).get("series_not_recorded") or (ex or {}).get("not_recorded")
               or ("no element to plot" if ex else "not recorded in this report"))
        plot = f"<small>{escape(why)}</small>"
    where = (f"step {v['step']}, {escape(v.get('field') or '')}" if v.get("step") is not None
             else "")
    msg = escape(first_line(r.get("message")))
    replay = f"<br><code>{escape(r['replay'])}</code>" if r.get("replay") else ""
    return (f"<tr id='{_target_id(doc, r)}'><td class=l>{_name(doc['backend']['name'])}"
            f"<br><small>{escape(r['device'])}, {escape(r.get('label') or r['status'])}"
            f"</small></td><td class=l><small>{where}<br>{msg}</small>{replay}</td>"
            f"<td>{plot}</td></tr>")


def _failures(docs: list[dict[str, Any]], section: str) -> str:
    """The section's groups: rule → property → dtype, with their targets across backends."""
    tree: dict[str, dict[str, dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]]] = {}
    for d in docs:
        for rs in failure_groups(d["results"]).values():
            for r in rs:
                if _SECTION[r["status"]] != section:
                    continue
                rule = r.get("rule") or "error"
                tree.setdefault(rule, {}).setdefault(r["property"], {}).setdefault(
                    r["dtype"] or "-", []).append((d, r))
    if not tree:
        return "<p>None.</p>"
    out = []
    for rule, props in sorted(tree.items(), key=lambda kv: _rule_order(kv[0])):
        n = sum(len(x) for dts in props.values() for x in dts.values())
        title = ("error: the backend raised, timed out or broke the contract" if rule == "error"
                 else rule_title(rule))
        out.append(f"<h3>{escape(title)} <small>— {n} target{'s' * (n > 1)}</small></h3>")
        for prop, dts in sorted(props.items(), key=lambda kv: int(kv[0][1:])):
            m = sum(len(x) for x in dts.values())
            name = next(iter(dts.values()))[0][1]["name"]
            out.append(f"<h4>{prop} {escape(name)} <small>— {m} target{'s' * (m > 1)}</small>"
                       "</h4>")
            for dt, members in dts.items():
                out.append(_group(section, dt, members))
    return "\n".join(out)


def _rule_order(rule: str) -> tuple[int, str]:
    return (int(rule[1:]) if rule[1:].isdigit() else 999, rule)


def _group(section: str, dt: str, members: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    gid = _group_id(members[0][1])
    backends = sorted({d["backend"]["name"] for d, _ in members})
    head = (f"<b>{escape(dt) if dt != '-' else 'no dtype'}</b> — {len(members)} "
            f"target{'s' * (len(members) > 1)} in {len(backends)} "
            f"backend{'s' * (len(backends) > 1)}")
    reasons = sorted({(r.get("known_reason", ""), r.get("known_link", "")) for _, r in members})
    accepted = "".join(f"<p><b>accepted</b>: {escape(reason)} "
                       + (f"<a href='{escape(link)}'>{escape(link)}</a>" if link else "") + "</p>"
                       for reason, link in reasons if reason)
    rows = "".join(_target_row(d, r) for d, r in members)
    d, r = min(members, key=lambda m: _size(_evidence(*m)))
    body = (f"{accepted}<div class=scroll><table><tr><th class=l>target</th><th class=l>"
            f"violation</th><th>the violating element, step by step</th></tr>{rows}</table>"
            f"</div>{_counterexample(d, r, _evidence(d, r))}")
    if section == "known":
        return (f"<details class='group known' id='{gid}'><summary>{head}</summary>{body}"
                "</details>")
    return f"<div class=group id='{gid}'><p>{head}</p>{body}</div>"


# ---------------------------------------------------------------------------------------------
# SVG plots
# ---------------------------------------------------------------------------------------------
def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda x: a + (x - lo) / span * (b - a)


def _poly(points: Iterable[tuple[float, float]], colour: str, width: float = 1.5,
          dash: str = "") -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dashed = f" stroke-dasharray='{dash}'" if dash else ""
    return (f"<polyline points='{pts}' fill='none' stroke='{colour}' "
            f"stroke-width='{width}'{dashed}/>")


def _series_svg(steps: Sequence[dict[str, Any]], what: str) -> str:
    """Two panels: values (implementation, exact, exact ± K·bound) and |impl − exact| / bound,
    over the counterexample's steps; a non-finite value marked at the top."""
    w, h, mb, mt = 200, 110, 26, 14
    ks = [s["step"] for s in steps]
    obs = [number(s["observed"]) for s in steps]
    ex = [number(s["exact"]) for s in steps]
    bd = [K * number(s["bound"]) for s in steps]
    vals = [v for v in obs + ex + [e + b for e, b in zip(ex, bd)]
            + [e - b for e, b in zip(ex, bd)] if math.isfinite(v)] or [0.0]
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    nonfinite = not all(math.isfinite(o) for o in obs)
    hi += (hi - lo) * 0.15 * nonfinite  # room at the top for the ✕ of a non-finite value
    ml = max(56, 8 + round(5.5 * max(len(t) for t in _distinct(_ticks(lo, hi, False), 4))))
    x = _scale(min(ks), max(ks) if len(ks) > 1 else min(ks) + 1, ml, ml + w)
    y = _scale(lo, hi, mt + h, mt)
    band_top = [(x(k), y(e + b)) for k, e, b in zip(ks, ex, bd) if math.isfinite(e + b)]
    band_bot = [(x(k), y(e - b)) for k, e, b in zip(ks, ex, bd) if math.isfinite(e - b)]
    parts = [f"<rect x='{ml}' y='{mt}' width='{w}' height='{h}' fill='#fff' stroke='#999'/>"]
    data = []
    if band_top and band_bot:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in band_top + band_bot[::-1])
        data.append(f"<polygon points='{pts}' fill='#9ecae1' opacity='0.6'/>")
    data.append(_poly([(x(k), y(e)) for k, e in zip(ks, ex) if math.isfinite(e)], "#000", 1.2,
                      "4 2"))
    data.append(_poly([(x(k), y(o)) for k, o in zip(ks, obs) if math.isfinite(o)], "#d62728"))
    if len(ks) <= 20:  # few steps: mark each one (a single step draws no line)
        data += [f"<circle cx='{x(k):.1f}' cy='{y(e):.1f}' r='3.2' fill='none' stroke='#000'/>"
                 for k, e in zip(ks, ex) if math.isfinite(e)]
        data += [f"<circle cx='{x(k):.1f}' cy='{y(o):.1f}' r='2.2' fill='#d62728'/>"
                 for k, o in zip(ks, obs) if math.isfinite(o)]
    parts.append(_clip(ml, mt, w, h, data))
    for k, o in zip(ks, obs):
        if not math.isfinite(o):
            parts.append(f"<text x='{x(k):.1f}' y='{mt + 10}' font-size='10' fill='#d62728' "
                         f"text-anchor='{_anchor(k, ks)}'>✕ {escape(repr(o))}</text>")
    parts += _axes(ml, mt, w, h, ks, lo, hi, "step", what)
    # The ratio panel (log scale), with the allowed K.
    ox = ml + w + 64
    ratios = [_ratio(o, e, b / K) for o, e, b in zip(obs, ex, bd)]
    finite = [r for r in ratios if 0 < r < math.inf]
    low = math.floor(math.log10(min(finite + [K])))
    zero = any(r == 0 for r in ratios)  # drawn on the bottom line, labelled 0
    rlo = low - zero - 0.2
    rhi = math.ceil(math.log10(max(finite + [K]))) + 0.2
    rhi += (rhi - rlo) * 0.15 * (math.inf in ratios)  # room for the ✕ at the top
    x2 = _scale(min(ks), max(ks) if len(ks) > 1 else min(ks) + 1, ox, ox + w)
    y2 = _scale(rlo, rhi, mt + h, mt)
    parts.append(f"<rect x='{ox}' y='{mt}' width='{w}' height='{h}' fill='#fff' stroke='#999'/>")
    parts.append(f"<line x1='{ox}' x2='{ox + w}' y1='{y2(math.log10(K)):.1f}' "
                 f"y2='{y2(math.log10(K)):.1f}' stroke='#cf222e' stroke-dasharray='3 2'/>")
    parts.append(f"<text x='{ox + w - 2}' y='{y2(math.log10(K)) - 3:.1f}' font-size='9' "
                 f"fill='#cf222e' text-anchor='end'>allowed {K:g}</text>")
    pts = [(x2(k), y2(math.log10(r) if r else low - 1)) for k, r in zip(ks, ratios)
           if r < math.inf and (r or zero)]
    parts.append(_poly(pts, "#d62728"))
    if len(ks) <= 20:
        parts += [f"<circle cx='{a:.1f}' cy='{b:.1f}' r='2.2' fill='#d62728'/>" for a, b in pts]
    for k, r in zip(ks, ratios):
        if r == math.inf:
            parts.append(f"<text x='{x2(k):.1f}' y='{mt + 10}' font-size='10' fill='#d62728' "
                         f"text-anchor='{_anchor(k, ks)}'>✕</text>")
    parts += _axes(ox, mt, w, h, ks, rlo, rhi, "step", "|impl − exact| / bound", log=True,
                   zero=zero)
    legend = (f"<text x='{ml}' y='{mt + h + mb + 12}' font-size='10'><tspan fill='#d62728'>"
              "—● implementation</tspan>  <tspan fill='#000'>- -○ exact</tspan>  "
              f"<tspan fill='#3182bd'>▮ exact ± {K:g}·bound</tspan></text>")
    total_w, total_h = ox + w + 8, mt + h + mb + 18
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{total_w}' height='{total_h}' "
            f"viewBox='0 0 {total_w} {total_h}' role='img' aria-label='{escape(what)} per step'>"
            + "".join(parts) + legend + "</svg>")


def _anchor(k: int, ks: Sequence[int]) -> str:
    """A label at step ``k`` kept inside its panel: left-aligned at the first step, right-aligned
    at the last."""
    return "end" if k == max(ks) and len(ks) > 1 else "start" if k == min(ks) else "middle"


def _clip(x0: float, y0: float, w: float, h: float, inner: list[str], m: float = 4) -> str:
    """``inner`` drawn inside the panel only (a nested svg clips what leaves it; ``m`` pixels
    of margin keep the markers on its edges whole)."""
    return (f"<svg x='{x0 - m}' y='{y0 - m}' width='{w + 2 * m}' height='{h + 2 * m}' "
            f"viewBox='{x0 - m} {y0 - m} {w + 2 * m} {h + 2 * m}'>{''.join(inner)}</svg>")


def _ratio(o: float, e: float, bound: float) -> float:
    """|o − e| / bound: 0 where they agree (an infinite or NaN exact value reproduced
    included) or the bound is infinite, inf where o is not finite or no error is allowed."""
    if o == e or (math.isnan(o) and math.isnan(e)):
        return 0.0
    if not (math.isfinite(o) and math.isfinite(e)) or bound == 0:
        return math.inf
    return abs(o - e) / bound


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:  # whole decades, at most five labels
        first, last = math.ceil(lo), math.floor(hi)
        step = max(1, math.ceil((last - first) / 4))
        return [float(t) for t in range(first, last + 1, step)]
    return [lo + (hi - lo) * f for f in (0.1, 0.5, 0.9)]


def _axes(x0: float, y0: float, w: float, h: float, ks: Sequence[int], lo: float, hi: float,
          xlabel: str, ylabel: str, log: bool = False, zero: bool = False) -> list[str]:
    """Tick labels, the first and last step, the axis labels; with ``zero``, a log axis's
    lowest decade stands for 0."""
    y = _scale(lo, hi, y0 + h, y0)
    out = []
    ticks = _ticks(lo, hi, log)
    linear = _distinct(ticks, 4)
    for n, t in enumerate(ticks):
        label = ("0" if zero and n == 0 else f"1e{int(t)}") if log else linear[n]
        out.append(f"<text x='{x0 - 3}' y='{y(t) + 3:.1f}' font-size='9' text-anchor='end'>"
                   f"{label}</text><line x1='{x0}' x2='{x0 + 3}' y1='{y(t):.1f}' "
                   f"y2='{y(t):.1f}' stroke='#999'/>")
    first, last = min(ks), max(ks)
    out.append(f"<text x='{x0}' y='{y0 + h + 11}' font-size='9'>{first}</text>")
    if last != first:
        out.append(f"<text x='{x0 + w}' y='{y0 + h + 11}' font-size='9' text-anchor='end'>"
                   f"{last}</text>")
    out.append(f"<text x='{x0 + w / 2}' y='{y0 + h + 20}' font-size='10' "
               f"text-anchor='middle'>{escape(xlabel)}</text>")
    out.append(f"<text x='{x0}' y='{y0 - 3}' font-size='10'>{escape(ylabel)}</text>")
    return out


_BINS = 28
_LOG_LO, _LOG_HI = -6.0, 1.0


def _distribution(docs: list[dict[str, Any]]) -> str:
    """Per dtype, one row per backend: how often each error/bound ratio was reached (the
    darker, the more examples), on a log scale; the red line is the allowed K."""
    dts = [dt for dt in DTYPES if any(r["dtype"] == dt and r.get("ratio_samples")
                                      for d in docs for r in d["results"])]
    names = [d["backend"]["name"] for d in docs]
    if not dts:
        return "<p>No ratios recorded.</p>"
    label_w = max(90, round(6.5 * max(len(n) for n in names)) + 12)  # no name cut off
    pw, gap, row_h, top, bottom = 150, 16, 15, 30, 44
    width = label_w + len(dts) * (pw + gap)
    height = top + row_h * len(docs) + bottom
    x_of = _scale(_LOG_LO, _LOG_HI, 0, pw)
    parts = []
    for n, name in enumerate(names):
        parts.append(f"<text x='{label_w - 6}' y='{top + row_h * n + 11}' font-size='11' "
                     f"text-anchor='end'>{escape(name)}</text>")
    for j, dt in enumerate(dts):
        x0 = label_w + j * (pw + gap)
        parts.append(f"<text x='{x0 + pw / 2}' y='{top - 8}' font-size='12' font-weight='bold' "
                     f"text-anchor='middle'>{dt}</text>")
        parts.append(f"<rect x='{x0}' y='{top}' width='{pw}' height='{row_h * len(docs)}' "
                     "fill='#fafafa' stroke='#bbb'/>")
        for n, d in enumerate(docs):
            xs = [v for r in d["results"] if r["dtype"] == dt for v in r.get("ratio_samples", [])
                  if v > 0]
            counts = [0] * _BINS
            for v in xs:
                b = (math.log10(v) - _LOG_LO) / (_LOG_HI - _LOG_LO) * _BINS
                counts[min(max(int(b), 0), _BINS - 1)] += 1
            peak = max(counts) or 1
            for b, c in enumerate(counts):
                if c:
                    parts.append(f"<rect x='{x0 + b * pw / _BINS:.1f}' y='{top + row_h * n + 2}' "
                                 f"width='{pw / _BINS:.1f}' height='{row_h - 4}' fill='#08519c' "
                                 f"opacity='{0.15 + 0.85 * math.sqrt(c / peak):.2f}'>"
                                 f"<title>{escape(d['backend']['name'])} {dt}: {c} example(s) "
                                 "</title></rect>")
        kx = x0 + x_of(math.log10(K))
        parts.append(f"<line x1='{kx:.1f}' x2='{kx:.1f}' y1='{top}' "
                     f"y2='{top + row_h * len(docs)}' stroke='#cf222e' stroke-width='1.5'/>")
        for t in range(int(_LOG_LO), int(_LOG_HI) + 1, 2):
            tx = x0 + x_of(t)
            parts.append(f"<text x='{tx:.1f}' y='{top + row_h * len(docs) + 12}' font-size='9' "
                         f"text-anchor='middle'>{'≤' if t == _LOG_LO else ''}1e{t}</text>")
    parts.append(f"<text x='{label_w + (width - label_w) / 2}' y='{height - 8}' font-size='11' "
                 "text-anchor='middle'>largest |impl − exact| / bound per example (log scale; "
                 f"the darker, the more examples); red line: allowed {K:g}</text>")
    return (f"<div class=scroll><svg class=full xmlns='http://www.w3.org/2000/svg' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}' role='img' "
            "aria-label='error/bound distribution'>" + "".join(parts) + "</svg></div>")


def _seed_picture(docs: list[dict[str, Any]]) -> str:
    """The seed's toy problem from above: contours of x² + 10y², SGD, the oracle's RMSProp and
    each backend's recorded trajectory; the legend and a table of distances beside it."""
    from conformance import toyproblem

    sgd, oracle = toyproblem.sgd_trajectory(), toyproblem.rmsprop_trajectory()
    recorded, missing = [], []
    for d in docs:
        seed = (d.get("evidence") or {}).get("seed") or {}
        if "points" in seed:
            pts = [(number(a), number(b)) for a, b in seed["points"]]
            recorded.append((d["backend"]["name"], seed["dtype"], pts))
        else:
            missing.append(f"{d['backend']['name']}: "
                           f"{seed.get('not_recorded', 'not recorded in this report')}")
    s, ml, mt = 7.0, 30, 10
    w, h = 90 * s, 50 * s
    x = _scale(-45, 45, ml, ml + w)
    y = _scale(-25, 25, mt + h, mt)
    parts = [f"<rect x='{ml}' y='{mt}' width='{w}' height='{h}' fill='#fff' stroke='#999'/>"]
    contours = []
    for c in (10, 100, 400, 1000, 2000, 3500, 5500, 8000):
        contours.append(f"<ellipse cx='{x(0)}' cy='{y(0)}' rx='{math.sqrt(c) * s:.1f}' "
                     f"ry='{math.sqrt(c / 10) * s:.1f}' fill='none' stroke='#c7e9c0'/>")
    parts.append(_clip(ml, mt, w, h, contours, 0))  # the outer contours stop at the frame
    parts.append(f"<text x='{x(0) + 4}' y='{y(0) - 4}' font-size='11'>★ minimum</text>")
    legend = [("#d62728", f"SGD, lr={toyproblem.SGD_LR}"),
              ("#1f77b4", "RMSProp, the oracle (lr=3, alpha=0.9, eps=1e-6)")]
    parts.append(_poly([(x(a), y(b)) for a, b in sgd], "#d62728", 2.5))
    parts.append(_poly([(x(a), y(b)) for a, b in oracle], "#1f77b4", 5))
    rows = []
    # Trajectories that coincide (a conforming backend's lies on the oracle's) would hide each
    # other: the dashes of up to four backends interleave, so that each colour shows.
    k = min(len(recorded), 4)
    for n, (name, dtype, pts) in enumerate(recorded):
        colour = _PALETTE[n % len(_PALETTE)]
        line = _poly([(x(a), y(b)) for a, b in pts], colour, 2, f"6 {6 * (k - 1)}" if k > 1
                     else "5 3")
        parts.append(line.replace("/>", f" stroke-dashoffset='{6 * (n % k)}'/>"))
        legend.append((colour, f"{name} ({dtype})"))
        far = max(math.dist(p, q) for p, q in zip(pts, oracle))
        rows.append(f"<tr><td class=l><span style='color:{colour}'>■</span> "
                    f"{_name(name)}</td><td>{dtype}</td><td>{far:.2g}</td>"
                    f"<td>({pts[-1][0]:.6g}, {pts[-1][1]:.6g})</td></tr>")
    parts += _axes(ml, mt, w, h, [-45, 45], -25, 25, "x", "y")
    width, height = ml + w + 10, mt + h + 26
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' role='img' aria-label='seed picture'>"
           + "".join(parts) + "</svg>")
    items = "".join(f"<li><span style='background:{c}'></span>{escape(t)}</li>" for c, t in legend)
    table = ("<div class=scroll><table><tr><th class=l>backend</th><th>dtype</th>"
             "<th>largest distance from the oracle</th><th>point after 10 steps</th></tr>"
             + "".join(rows) + "</table></div>") if rows else ""
    note = (f"<p><small>not drawn: {escape('; '.join(missing))}</small></p>" if missing else "")
    return (f"<div class=scroll>{svg}</div><ul class=legend>{items}</ul>"
            f"<p>The oracle's point after 10 steps: ({oracle[-1][0]:.6g}, {oracle[-1][1]:.6g})."
            f"</p>{table}{note}")


# ---------------------------------------------------------------------------------------------
def render(docs: list[dict[str, Any]]) -> str:
    """The page for these reports (as loaded by :func:`conformance.report.load_report`)."""
    parts = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
             "<meta name=viewport content='width=device-width, initial-scale=1'>",
             f"<title>RMSProp conformance</title><style>{_CSS}</style></head><body>",
             _header(docs), _glance(docs), _overview(docs)]
    parts.append(f"<h2 id=matrix>Matrix</h2><p>Each cell: the largest |impl − exact| / bound "
                 f"over the examples run (an element passes up to {K:g}; the fraction of the "
                 "error budget used); <b>✓</b> passed with nothing to measure (exactness or "
                 "structure); FAIL / ERROR / known with the rule, linked to the failure; "
                 "<b>n/a</b> unsupported, saying why. Hover a cell for its dtypes and devices."
                 "</p>")
    parts.append(_matrix(docs))
    parts.append("<h2 id=failures>Failures and errors</h2>" + _failures(docs, "fail"))
    parts.append("<h2 id=known>Known deviations</h2><p>Failures the known-deviations file "
                 "accepts (open a group for its targets).</p>" + _failures(docs, "known"))
    parts.append("<h2 id=distribution>Error/bound distribution per dtype</h2>"
                 + _distribution(docs))
    parts.append("<h2 id=seed>The seed's picture</h2><p>10 steps on L(x, y) = x² + 10·y² from "
                 "(40, 20), seen from above: SGD zig-zags across the valley, RMSProp evens out "
                 "the step sizes. Each backend's own trajectory (recorded at certification) is "
                 "drawn dashed over the oracle's.</p>" + _seed_picture(docs))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
