"""The self-contained HTML report: the pass/fail matrix (backend × property × dtype, the largest
error/bound ratio in each cell), failures with their replay commands, the error/bound
distribution per dtype, and the seed's picture with each backend's trajectory on it.

Plots need matplotlib (the ``plots`` extra); without it the page says so and keeps the tables.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from conformance.case import DTYPES
from conformance.properties import CATALOGUE
from conformance.report import escape
from conformance.tolerance import K

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;
font-size:13px;text-align:center}th{background:#f3f3f3}td.l{text-align:left}
.pass{background:#d9f2d9}.fail{background:#f7c6c6}.error{background:#f2a0a0}
.known{background:#fbe7b0}.unsupported{background:#eee;color:#888}
code,pre{background:#f6f6f6;padding:1px 4px}pre{padding:6px;white-space:pre-wrap}
"""


_VERDICT_CLASS = {"conformant": "pass", "unsupported": "unsupported"}


def _cell(results: list[dict[str, Any]]) -> tuple[str, str]:
    if not results:
        return "", ""
    order = ("error", "fail", "known", "pass", "unsupported")
    status = min((r["status"] for r in results), key=order.index)
    if status == "pass":
        ratio = max(r["max_ratio"] for r in results)
        return status, f"{ratio:.2g}"
    text = {"fail": "FAIL", "error": "ERROR", "known": "known", "unsupported": "n/a"}[status]
    rule = next((r.get("rule") for r in results if r.get("rule")), None)
    return status, f"{text} {rule}" if rule and status != "unsupported" else text


def _matrix(docs: list[dict[str, Any]]) -> str:
    rows = ["<table><tr><th>backend</th><th>property</th>"
            + "".join(f"<th>{d}</th>" for d in DTYPES) + "<th>–</th></tr>"]
    for d in docs:
        name = escape(d["backend"]["name"])
        for n, p in enumerate(CATALOGUE):
            head = (f"<td class=l rowspan={len(CATALOGUE)}><b>{name}</b><br>"
                    f"{escape(d['verdict'])}</td>" if n == 0 else "")
            cells = []
            for dt in list(DTYPES) + [None]:
                rs = [r for r in d["results"] if r["property"] == p.id and r["dtype"] == dt]
                status, text = _cell(rs)
                tip = escape(rs[0].get("reason") or rs[0].get("message", "")) if rs else ""
                cells.append(f"<td class='{status}' title='{tip}'>{escape(text)}</td>")
            rows.append(f"<tr>{head}<td class=l>{p.id} {escape(p.name)}</td>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _failures(docs: list[dict[str, Any]]) -> str:
    out = []
    for d in docs:
        for r in d["results"]:
            if r["status"] not in ("fail", "error", "known"):
                continue
            label = f" ({escape(r['label'])})" if r.get("label") else ""
            out.append(f"<h3>{escape(d['backend']['name'])}: {r['property']} {escape(r['name'])} "
                       f"[{escape(r['dtype'] or '-')}, {escape(r['device'])}] — "
                       f"{r['status'].upper()}{label}</h3>"
                       f"<pre>{escape(r.get('message', ''))}</pre>")
            if r["status"] == "known":
                out.append(f"<p>accepted: {escape(r.get('known_reason', ''))} "
                           f"{escape(r.get('known_link', ''))}</p>")
            if r.get("replay"):
                out.append(f"<p>replay: <code>{escape(r['replay'])}</code></p>")
    return "\n".join(out) or "<p>No failures.</p>"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _distribution(docs: list[dict[str, Any]]) -> str:
    import matplotlib
    import matplotlib.lines

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    dts = [dt for dt in DTYPES if any(r["dtype"] == dt and r.get("ratio_samples")
                                      for d in docs for r in d["results"])]
    if not dts:
        return "<p>No ratios recorded.</p>"
    fig, axes = plt.subplots(1, len(dts), figsize=(3.2 * len(dts), 2.6), squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {d["backend"]["name"]: cycle[n % len(cycle)] for n, d in enumerate(docs)}
    for ax, dt in zip(axes[0], dts):
        for d in docs:
            xs = [x for r in d["results"] if r["dtype"] == dt for x in r.get("ratio_samples", [])]
            xs = [max(x, 1e-12) for x in xs if x > 0]  # clip: 1e-300 would squash the axis
            if xs:
                ax.hist(np.log10(xs), bins=30, histtype="step", label=d["backend"]["name"],
                        color=colours[d["backend"]["name"]])
        ax.axvline(np.log10(K), color="red", lw=1)
        ax.set_title(dt, fontsize=9)
        ax.set_xlabel("log10(|impl − exact| / bound)", fontsize=8)
    handles = [matplotlib.lines.Line2D([], [], color=c) for c in colours.values()]
    fig.legend(handles, list(colours), fontsize=7, loc="upper center", ncol=len(colours),
               bbox_to_anchor=(0.5, 1.08))
    html = _png(fig)
    plt.close(fig)
    return html


def _seed_picture(docs: list[dict[str, Any]]) -> str:
    from conformance import registry, toyproblem

    extra = {}
    for d in docs:
        try:
            traj = toyproblem.backend_trajectory(registry.load(d["backend"]["spec"]))
        except Exception as exc:  # a backend that cannot run the toy problem is left out
            extra_note = f"{d['backend']['name']}: {type(exc).__name__}"
            extra.setdefault("_notes", []).append(extra_note)
            continue
        if traj is not None:
            extra[d["backend"]["name"]] = traj
    notes = extra.pop("_notes", [])
    buf = io.BytesIO()
    toyproblem.render_png(buf, extra_trajectories=extra)
    img = base64.b64encode(buf.getvalue()).decode()
    note = f"<p>left out: {escape(', '.join(notes))}</p>" if notes else ""
    return f"<img alt='seed picture' src='data:image/png;base64,{img}'>{note}"


def render(docs: list[dict[str, Any]], report_dir: Path | None = None) -> str:
    parts = ["<!doctype html><meta charset=utf-8><title>RMSProp conformance</title>",
             f"<style>{_CSS}</style><h1>RMSProp conformance</h1>"]
    parts.append("<table><tr><th>backend</th><th>profile</th><th>examples</th><th>verdict</th>"
                 "<th>pass</th>"
                 "<th>fail</th><th>known</th><th>error</th><th>unsupported</th></tr>")
    for d in docs:
        c = d["counts"]
        parts.append(f"<tr><td class=l><code>{escape(d['backend']['name'])}</code></td>"
                     f"<td>{escape(d['backend']['capabilities']['profile'])}</td>"
                     f"<td>{escape(str(d.get('conformance_profile', '')))}</td>"
                     f"<td class={_VERDICT_CLASS.get(d['verdict'], 'fail')}>"
                     f"{escape(d['verdict'])}{' (interrupted)' if d.get('interrupted') else ''}"
                     f"</td><td>{c['pass']}</td><td>{c['fail']}</td><td>{c['known']}</td>"
                     f"<td>{c['error']}</td><td>{c['unsupported']}</td></tr>")
    parts.append("</table>")
    parts.append(f"<h2>Matrix</h2><p>Each cell: the largest |impl − exact| / bound over the "
                 f"examples run (an element passes up to {K:g}); FAIL/ERROR with the rule "
                 "broken; n/a = unsupported (not declared, or not on this machine).</p>")
    parts.append(_matrix(docs))
    parts.append("<h2>Failures</h2>" + _failures(docs))
    try:
        parts.append("<h2>Error/bound distribution per dtype</h2>" + _distribution(docs))
        parts.append("<h2>The seed's picture</h2><p>SGD (red) and RMSProp (blue) on "
                     "x² + 10y² from (40, 20), 10 steps; each backend's own trajectory on top."
                     "</p>" + _seed_picture(docs))
    except ImportError as exc:
        parts.append(f"<p>Plots left out: {escape(exc)} (install the 'plots' extra).</p>")
    return "\n".join(parts) + "\n"
