"""index.html, read the way a browser reads it: report docs built here (current schema), rendered
with ``html_report.render`` and parsed with ``html.parser`` into a tree. What is expected comes
from the docs below, never from the renderer."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest

from conformance import html_report, toyproblem
from conformance.properties import CATALOGUE
from conformance.report import SCHEMA
from conformance.result import counts

# ---------------------------------------------------------------------------------------------
# A small DOM
# ---------------------------------------------------------------------------------------------
_VOID = {"meta", "br", "wbr", "hr", "img", "input", "link", "col", "source"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and (cls is None or cls in n.classes)]

    def ancestors(self):
        n = self.parent
        while n is not None:
            yield n
            n = n.parent


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root
        self.ids: dict[str, Node] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if "id" in node.attrs:
            assert node.attrs["id"] not in self.ids, f"duplicate id {node.attrs['id']!r}"
            self.ids[node.attrs["id"]] = node
        if tag not in _VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.cur = self.cur.parent  # type: ignore[assignment]

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        assert n is not None, f"</{tag}> closes nothing"
        self.cur = n.parent  # type: ignore[assignment]

    def handle_data(self, data: str) -> None:
        self.cur.children.append(data)


def parse(page: str) -> _Tree:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    return tree


# ---------------------------------------------------------------------------------------------
# Report docs, as report.backend_report writes them
# ---------------------------------------------------------------------------------------------
GENERATED = "2026-03-14T10:00:00+00:00"
VERSION = "9.8.7"
REVISION = "0123456789abcdef0123456789abcdef01234567"
PYTHON = "3.11.99"
FRAMEWORKS = {"numpy": "2.4.6", "torch": "2.13.0"}
EFFORT = "thorough"
DEVIATIONS_FILE = "my-known-deviations.toml"
PACKAGE = {"name": "fakeopt", "version": "1.2.3", "source": "declared by the backend"}
NO_CUDA = "no CUDA device on this machine"
UNDECLARED_FEATURE = "maximize"
NOT_DECLARED = f"feature(s) not declared: {UNDECLARED_FEATURE}"
PROPS = {p.id: p for p in CATALOGUE}


def _result(prop: str, status: str, dtype: str | None = "float32", device: str = "cpu",
            **extra: Any) -> dict[str, Any]:
    p = PROPS[prop]
    r = {"property": p.id, "name": p.name, "title": p.title, "rules": list(p.rules),
         "backend": "?", "dtype": dtype, "device": device, "status": status, "examples": 0,
         "max_ratio": 0.0, "elements": 0, "exempt": 0, "figures": {}, "ratio_samples": [],
         "seconds": 0.1}
    r.update(extra)
    return r


def _doc(name: str, verdict: str, results: list[dict[str, Any]], *,
         unavailable: dict[str, str] | None = None, devices: tuple[str, ...] = ("cpu",),
         evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    for r in results:
        r["backend"] = name
    return {
        "schema": SCHEMA, "suite_version": VERSION, "git_revision": REVISION,
        "generated": GENERATED, "started": GENERATED, "interrupted": False, "shard": None,
        "environment": {"python": PYTHON, "platform": "Linux-test", "machine": "x86_64",
                        "cpu_count": 2, "packages": FRAMEWORKS},
        "effort": EFFORT, "known_deviations_file": DEVIATIONS_FILE, "tolerance_factor_K": 4.0,
        "backend": {"name": name, "spec": f"fake:{name}",
                    "capabilities": {"profile": "torch", "conventions": {},
                                     "dtypes": ["float32"], "devices": list(devices),
                                     "unavailable": unavailable or {"cuda": NO_CUDA},
                                     "features": [], "description": ""},
                    "package": PACKAGE, "identified": None},
        "verdict": verdict, "counts": counts(results), "results": results,
        "unused_known_deviations": [],
        "evidence": evidence or {"seed": {"not_recorded": "not run"}, "counterexamples": {}},
    }


def _common() -> list[dict[str, Any]]:
    """A measured pass with ratio 0, a pass with nothing to measure (P6), an undeclared
    feature (P9) and a device this machine lacks."""
    return [_result("P1", "pass", examples=20, elements=100, max_ratio=0.0,
                    ratio_samples=[0.0] * 20),
            _result("P3", "pass", examples=20, elements=100, max_ratio=0.5,
                    ratio_samples=[0.01, 0.5]),
            _result("P6", "pass", examples=10),
            _result("P9", "unsupported", reason=NOT_DECLARED),
            _result("P1", "unsupported", dtype="complex64", reason="dtype complex64 not declared"),
            _result("P1", "unsupported", device="cuda", reason=NO_CUDA)]


EXPECTED, OBSERVED, BOUND = 0.25, 0.75, 1e-08
STEPS = [{"step": 0, "observed": 0.5, "exact": 0.5, "bound": 1e-08},
         {"step": 1, "observed": 0.6, "exact": 0.4, "bound": 1e-08},
         {"step": 2, "observed": OBSERVED, "exact": EXPECTED, "bound": BOUND}]
REPLAY = "rmsprop-conformance repro reports/counterexamples/broken/P2-float32-cpu.json"
HINT = "square_avg is the first quantity that departs"
KNOWN_REASON = "fakeopt rounds eps to zero in float16 by design"
STRUCTURE = "square_avg has dtype float64, expected float32"
REJECT = "lr=nan was accepted without error"


def _seed(offset: float) -> dict[str, Any]:
    pts = [[float(x) + offset, float(y)] for x, y in toyproblem.rmsprop_trajectory()]
    return {"dtype": "float64", "points": pts}


def docs() -> list[dict[str, Any]]:
    good = _doc("good", "conformant", _common(),
                evidence={"seed": _seed(0.0), "counterexamples": {}})
    known = _doc("tolerated", "conformant", [
        *_common(),
        _result("P4", "known", dtype="float16", rule="R27", label="numerical",
                message="violates R27: nan where exact math is finite", examples=3,
                known_reason=KNOWN_REASON, known_link="https://example.org/issue/1"),
        _result("P5", "known", rule="R26", message="violates R26: inf became nan",
                examples=3, known_reason=KNOWN_REASON)],
        evidence={"seed": _seed(0.5), "counterexamples": {}})
    broken = _doc("broken", "nonconformant", [
        *_common(),
        _result("P2", "fail", rule="R17", label="semantic", examples=5,
                message=f"violates R17: params at step 2: outside the bound; {HINT}",
                replay=REPLAY, counterexample=REPLAY.rsplit(maxsplit=1)[-1]),
        _result("P11", "fail", rule="R14", label="semantic", examples=1,
                message=f"violates R14: square_avg at step 0: {STRUCTURE}"),
        _result("P13", "fail", dtype=None, rule="R6", label="semantic", examples=1,
                message=f"violates R6: {REJECT}")],
        evidence={"seed": _seed(-0.5), "counterexamples": {
            "P13-None-cpu": {
                "violation": {"rule": "R6", "kind": "value", "step": None, "param": None,
                              "field": None, "index": None, "expected": None,
                              "observed": None, "bound": None, "cause": None,
                              "message": REJECT},
                "label": "semantic"},
            "P11-float32-cpu": {
                "violation": {"rule": "R14", "kind": "structure", "step": 0, "param": 0,
                              "field": "square_avg", "index": None, "expected": None,
                              "observed": None, "bound": None, "cause": None,
                              "message": STRUCTURE},
                "label": "semantic",
                "inputs": {"hparams": {"lr": 0.01}, "params": ["float32[]"], "steps": 1,
                           "device": "cpu", "lrs": None, "layouts": None,
                           "initial_state": False}},
            "P2-float32-cpu": {
            "violation": {"rule": "R17", "kind": "value", "step": 2, "param": 0,
                          "field": "params", "index": [0], "expected": EXPECTED,
                          "observed": OBSERVED, "bound": BOUND, "cause": None,
                          "message": f"outside the rounding-error bound; {HINT}"},
            "label": "semantic",
            "inputs": {"hparams": {"lr": 0.01, "alpha": 0.99, "eps": 1e-08},
                       "params": ["float32[2]"], "steps": 3, "device": "cpu", "lrs": None,
                       "layouts": None, "initial_state": False,
                       "element": {"param": 0, "index": [0], "start": 0.5,
                                   "grads": [0.1, -0.2, 0.3]}},
            "series": {"field": "params", "param": 0, "index": [0], "steps": STEPS,
                       "matches": True}}}})
    absent = _doc("cudaonly", "unsupported", [
        _result(p.id, "unsupported", dtype=None if p.dtypes == "none" else "float32",
                device="cuda", reason="capturable=True needs a CUDA device")
        for p in CATALOGUE], devices=(),
        unavailable={"cuda": "capturable=True needs a CUDA device"})
    return [good, known, broken, absent]


@pytest.fixture(scope="module")
def page() -> str:
    return html_report.render(docs())


@pytest.fixture(scope="module")
def tree(page: str) -> _Tree:
    return parse(page)


def _matrix_cell(tree: _Tree, backend: str, prop: str) -> Node:
    """The main matrix's cell for (backend, property): columns in catalogue order."""
    heading = tree.ids["matrix"]
    table = next(n for n in _after(tree.root, heading) if n.tag == "table")
    for tr in table.find_all("tr"):
        cells = [c for c in tr.children if isinstance(c, Node) and c.tag in ("td", "th")]
        if cells and cells[0].tag == "td" and cells[0].text().strip() == backend:
            return cells[1 + [p.id for p in CATALOGUE].index(prop)]
    raise AssertionError(f"no matrix row for {backend}")


def _after(root: Node, start: Node):
    seen = False
    for n in root.iter():
        if n is start:
            seen = True
        elif seen:
            yield n


# ---------------------------------------------------------------------------------------------
def test_four_verdict_looks_are_distinct_and_deviations_show_their_count(tree):
    looks = {}
    for name in ("good", "tolerated", "broken", "cudaonly"):
        row = tree.ids[f"b-{name}"]
        badge = next(n for n in row.find_all("span", "badge"))
        looks[name] = ({c for c in badge.classes if c.startswith("v-")}, badge.text())
    classes = [frozenset(c) for c, _ in looks.values()]
    assert all(len(c) == 1 for c in classes) and len(set(classes)) == 4, looks
    n_known = docs()[1]["counts"]["known"]
    assert n_known == 2 and f"{n_known} known deviations" in looks["tolerated"][1]
    assert "nonconformant" in looks["broken"][1] and "unsupported" in looks["cudaonly"][1]
    # the four looks are styled differently
    style = "".join(n.text() for n in tree.root.find_all("style"))
    for (c,) in classes:
        assert f".{c}{{" in style.replace(" ", "")


def test_every_internal_link_resolves(tree):
    links = [n.attrs["href"] for n in tree.root.find_all("a") if "href" in n.attrs]
    internal = [h for h in links if h.startswith("#")]
    assert len(internal) > 10
    missing = [h for h in internal if h[1:] not in tree.ids]
    assert not missing, missing


def test_matrix_cells_link_to_their_failures(tree):
    for backend, prop, section in (("broken", "P2", "failures"), ("tolerated", "P4", "known")):
        cell = _matrix_cell(tree, backend, prop)
        (link,) = cell.find_all("a")
        target = tree.ids[link.attrs["href"][1:]]
        assert backend in target.text()
        # the target lies in its section (after its heading, before the next one)
        sections = [n for n in tree.root.find_all("h2") if "id" in n.attrs]
        where = max((s for s in sections if target in _after(tree.root, s)),
                    key=lambda s: list(tree.root.iter()).index(s))
        assert where.attrs["id"] == section


def test_header_shows_what_ran(tree):
    facts = tree.root.find_all("dl", "facts")[0]
    dts = [n.text() for n in facts.find_all("dt")]
    dds = [n.text() for n in facts.find_all("dd")]
    text = dict(zip(dts, dds))
    joined = " | ".join(dds)
    assert GENERATED.split("T", maxsplit=1)[0] in joined
    assert VERSION in joined and REVISION[:12] in joined
    assert PYTHON in text["Python"]
    for name, v in FRAMEWORKS.items():
        assert f"{name} {v}" in joined
    assert EFFORT in text["effort"]
    assert DEVIATIONS_FILE in text["known deviations"]
    assert "x86_64" in text["machine"]
    # the package that defines the implementation under test, on its backend's row
    assert f"{PACKAGE['name']} {PACKAGE['version']}" in tree.ids["b-broken"].text()


def test_unsupported_cells_say_why(tree):
    undeclared = _matrix_cell(tree, "good", "P9")
    assert "unsupported" in undeclared.classes and "not declared" in undeclared.text()
    assert "not available" not in undeclared.text()
    absent = _matrix_cell(tree, "cudaonly", "P1")
    assert "unsupported" in absent.classes and "not available here" in absent.text()
    # the reasons themselves are on the page, readable without hovering
    assert "capturable=True needs a CUDA device" in tree.ids["b-cudaonly"].text()
    row = tree.ids["b-good"].text()
    assert "not declared" in row and UNDECLARED_FEATURE in row and "complex64" in row


def test_not_measured_is_distinct_from_a_measured_zero(tree):
    zero = _matrix_cell(tree, "good", "P1")  # measured: 100 elements, largest ratio 0
    unmeasured = _matrix_cell(tree, "good", "P6")  # exactness check: nothing to measure
    half = _matrix_cell(tree, "good", "P3")
    assert zero.text().strip() == "0" and half.text().strip() == "0.5"
    assert "pass" in zero.classes and "pass" in half.classes
    assert unmeasured.text().strip() != zero.text().strip()
    assert not (unmeasured.classes & zero.classes)


def test_failure_group_shows_a_minimal_counterexample(tree):
    rows = _counterexample(tree, REPLAY)
    assert rows["expected (exact)"] == str(EXPECTED)
    assert rows["observed"] == str(OBSERVED)
    assert rows["bound"].startswith("1e-08")
    assert rows["replay"] == REPLAY
    assert HINT in rows["hint"]
    assert "float32[2]" in rows["parameters"] and "3 step(s)" in rows["parameters"]
    # grouped by rule → property → dtype, with counts
    headings = [n.text() for n in tree.root.find_all("h3") + tree.root.find_all("h4")]
    assert any(h.startswith("R17") and "1 target" in h for h in headings), headings
    assert any(h.startswith("P2 trajectory") for h in headings), headings
    known = [n for n in tree.root.find_all(cls="group") if "known" in n.classes]
    assert any(KNOWN_REASON in n.text() for n in known)


def test_the_failing_target_has_an_inline_plot(tree):
    row = tree.ids["t-broken-P2-float32-cpu"]
    svgs = [n for n in row.find_all("svg") if not any(a.tag == "svg" for a in n.ancestors())]
    assert len(svgs) == 1
    svg = svgs[0]
    assert svg.find_all("polyline"), "no line drawn"
    labels = " ".join(n.text() for n in svg.find_all("text"))
    assert "step" in labels and "implementation" in labels and "exact" in labels
    # few steps: each one marked, the implementation (filled) and the exact value (hollow),
    # in the value panel and in the error/bound panel
    circles = svg.find_all("circle")
    hollow = [c for c in circles if c.attrs.get("fill") == "none"]
    assert len(hollow) == len(STEPS) and len(circles) == 3 * len(STEPS)


def test_self_contained_without_javascript(page, tree):
    assert not tree.root.find_all("script")
    assert not any(k.startswith("on") for n in tree.root.iter() for k in n.attrs)
    for n in tree.root.iter():
        for attr in ("src", "srcset"):
            assert attr not in n.attrs, (n.tag, n.attrs)
        if n.tag == "link":
            assert n.attrs.get("rel") != "stylesheet"
    assert "@import" not in page and "url(http" not in page


def test_seed_picture_colours_are_distinct_and_legend_outside(tree):
    seed = tree.ids["seed"]
    svg = next(n for n in _after(tree.root, seed) if n.tag == "svg")
    legend = next(n for n in _after(tree.root, seed) if "legend" in n.classes)
    assert svg not in legend.ancestors() and legend not in svg.ancestors()
    items = {li.text().strip(): li for li in legend.find_all("li")}
    mine = [t for t in items if t.split(" ")[0] in ("good", "tolerated", "broken")]
    assert len(mine) == 3, items
    colours = [items[t].find_all("span")[0].attrs["style"] for t in mine]
    assert len(set(colours)) == 3


def _counterexample(tree: _Tree, text: str) -> dict[str, str]:
    """The minimal counterexample (what → value) of the one failure group that mentions
    ``text``."""
    (group,) = [n for n in tree.root.find_all(cls="group") if text in n.text()]
    (cx,) = group.find_all(cls="cx")
    return {tr.find_all("th")[0].text(): tr.find_all("td")[0].text()
            for tr in cx.find_all("tr")}


def test_a_violation_without_numbers_shows_none(tree):
    """A structure violation (a state's dtype) or a rejection (R6) has no expected, observed or
    bound: no rows of dashes for them; what was violated is said instead."""
    rows = _counterexample(tree, STRUCTURE)
    assert STRUCTURE in rows["violation"] and "square_avg at step 0" in rows["violation"]
    assert not {"expected (exact)", "observed", "bound"} & set(rows)
    rows = _counterexample(tree, REJECT)
    assert not {"expected (exact)", "observed", "bound"} & set(rows)
    assert REJECT in rows["message"] and "not recorded" not in rows["inputs"]
    # the R6 group's target has no dtype, and says so
    (group,) = [n for n in tree.root.find_all(cls="group") if REJECT in n.text()]
    assert "no dtype" in group.text() and "-, " not in group.find_all("p")[0].text()


def test_close_values_read_apart():
    """An expected and an observed value that differ in the 8th digit: the counterexample and
    the plot's tick labels give as many digits as tell them apart."""
    expected, observed = 0.78625125, 0.7862513
    ds = docs()
    ex = ds[2]["evidence"]["counterexamples"]["P2-float32-cpu"]
    ex["violation"].update(expected=expected, observed=observed)
    ex["series"]["steps"] = [{"step": 0, "observed": observed, "exact": expected,
                              "bound": 1e-17}]
    tree = parse(html_report.render(ds))
    rows = _counterexample(tree, REPLAY)
    shown = float(rows["expected (exact)"]), float(rows["observed"])
    gap = abs(observed - expected)
    assert shown[0] < shown[1], shown  # apart, in their order
    assert abs(shown[0] - expected) <= gap and abs(shown[1] - observed) <= gap, shown
    (svg,) = [n for n in tree.ids["t-broken-P2-float32-cpu"].find_all("svg")
              if not any(a.tag == "svg" for a in n.ancestors())]
    ticks = [n.text() for n in svg.find_all("text") if n.attrs.get("text-anchor") == "end"
             and n.text().startswith("0.")]
    assert len(ticks) == 3 and len(set(ticks)) == 3, ticks
