"""One result: what one property found on one target (a backend, a dtype, a device).

The runner fills it in, the pytest plugin carries it to the controller (in the test report's
``user_properties``, so that it crosses pytest-xdist and lands in JUnit XML), reports store it
in their ``results`` list, and ``compare``, ``merge`` and the summaries read it back: one
record, one shape, plain JSON (:func:`dump`, :func:`load`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from typing import Any, TypedDict


class Status(str, enum.Enum):
    """A target's outcome. A ``str`` enum: it is its JSON value and compares equal to it."""

    PASS = "pass"
    FAIL = "fail"
    KNOWN = "known"  # failed, as a listed known deviation excuses
    ERROR = "error"  # the backend raised, hung, crashed or broke the contract
    UNSUPPORTED = "unsupported"  # not declared, or not available on this machine

    def __str__(self) -> str:
        return self.value


# The order reports list statuses in, and their counts' keys.
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
TESTED = (Status.PASS, Status.KNOWN)  # tested, and no violation left unexcused
BAD = (Status.FAIL, Status.ERROR)  # what makes a backend nonconformant
# Worst first: the status of a cell that stands for several targets.
SEVERITY: tuple[Status, ...] = (Status.ERROR, Status.FAIL, Status.KNOWN, Status.PASS,
                                Status.UNSUPPORTED)


class Result(TypedDict, total=False):
    """The record of one target. The first group is always present."""

    property: str  # "P4"
    name: str  # "no_spurious_nonfinite"
    title: str
    rules: list[str]
    backend: str
    dtype: str | None
    device: str
    status: str  # a Status value
    examples: int  # examples judged
    max_ratio: float  # largest |impl − exact| / bound seen
    elements: int  # elements judged (0: nothing to measure — exactness or structure)
    exempt: int  # elements exempt from the bound (overflow, R26)
    figures: dict[str, float]
    ratio_samples: list[float]
    seconds: float
    # When tested
    backend_seconds: float
    shrink_limit_seconds: float
    shrink_seconds: float
    shrink_cut_short: bool
    first_failure: dict[str, float]
    # unsupported
    reason: str
    # fail / error / known
    message: str
    rule: str
    label: str
    cause: str
    counterexample: str
    replay: str
    known_reason: str
    known_link: str
    deviation_index: int


def new_result(prop: Any, backend: str, dtype: str | None, device: str) -> Result:
    """A result for ``prop`` (a catalogue Property) on a target, an error until it finishes."""
    return Result(property=prop.id, name=prop.name, title=prop.title, rules=list(prop.rules),
                  backend=backend, dtype=dtype, device=device, status=Status.ERROR.value,
                  examples=0, max_ratio=0.0, elements=0, exempt=0, figures={},
                  ratio_samples=[], seconds=0.0)


def counts(results: Iterable[Result]) -> dict[str, int]:
    """Status → how many results have it, every status present."""
    out = dict.fromkeys(STATUSES, 0)
    for r in results:
        out[r["status"]] += 1
    return out


def worst(statuses: Iterable[str]) -> Status:
    return min((Status(s) for s in statuses), key=SEVERITY.index)


def dump(result: Result) -> str:
    return json.dumps(result, default=str)


def load(text: str | dict[str, Any]) -> Result:
    """A result from JSON (or its parsed dict); ValueError when it is not one."""
    doc = json.loads(text) if isinstance(text, str) else dict(text)
    missing = sorted({"property", "backend", "device", "status"} - set(doc))
    if missing:
        raise ValueError(f"not a result: no {missing[0]!r}")
    if doc["status"] not in STATUSES:
        raise ValueError(f"not a result: status {doc['status']!r}; allowed: "
                         f"{', '.join(STATUSES)}")
    return Result(**doc)  # type: ignore[typeddict-item]
