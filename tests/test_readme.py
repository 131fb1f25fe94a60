"""The README stays true: its backend example is the shipped seed backend, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from conformance.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_writing_a_backend_example_is_the_seed_backend():
    example = _code_after("## Writing a backend")
    shipped = (ROOT / "implementations" / "seed.py").read_text(encoding="utf-8")
    body = example[example.index("class SeedBackend"):].strip()
    assert body in shipped, "README's example differs from implementations/seed.py"
    for line in example.splitlines():
        if line.startswith(("import ", "from ")):
            assert line in shipped


def test_the_two_opening_commands_parse():
    first, second = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert first.startswith("./setup.sh && .venv/bin/rmsprop-conformance certify ")
    args = build_parser().parse_args(first.split("rmsprop-conformance ", 1)[1].split())
    assert args.bundled and args.report_dir == "reports"
    assert (ROOT / args.known_deviations).exists()
    assert second == "./setup.sh && .venv/bin/pytest -n 2"
    assert "pytest -n 2" in (ROOT / ".ci" / "run").read_text()
