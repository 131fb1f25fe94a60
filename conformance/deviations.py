"""Known deviations: failures a project accepts, listed as data with a reason and a link.

A TOML file of ``[[deviation]]`` tables::

    [[deviation]]
    backend = "torch.*"            # fnmatch pattern on the backend name
    property = "P4"                # property id or name, fnmatch pattern
    dtype = "float16"              # fnmatch pattern ("*" by default)
    rule = "R27"                   # optional: only failures that break this rule
    cause = "eps-underflow"        # the mechanism of a spurious non-finite value it excuses
    reason = "eps underflows in float16 (pytorch#23796)"
    link = "https://github.com/pytorch/pytorch/issues/23796"

Matching failures are reported as known; entries that match nothing produce a warning. An entry
that could match nothing (an unknown property, rule, dtype, device or key, a backend pattern
matching no bundled, installed or named backend, an empty reason) is rejected when the file is
loaded, before any test runs.

A failure that is a spurious non-finite value carries its cause (conformance/causes.py): an entry
excuses it only when it names that cause, so an entry excuses a mechanism, never every NaN of a
target. An entry without ``cause`` excuses no non-finite failure (only value and structure
failures); ``cause = "unexplained"`` is not allowed, and an entry for R27 (the non-finite rule)
without a cause would excuse nothing, so it is rejected when the file is loaded.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable
from pathlib import Path
from string import ascii_lowercase

from conformance import tomlfile
from conformance.case import DTYPES
from conformance.causes import EXCUSABLE
from spec.rules import RULE_TITLES

_FIELDS = {"backend", "property", "dtype", "rule", "reason", "link", "device", "cause"}
NONFINITE_RULE = "R27"
# Device names of the bundled backends ("cuda:N" too); a backend being certified adds its own.
DEVICES = ("cpu", "cuda", "cpu-interpreter")
_CUDA_DEVICE = re.compile(r"cuda(:[0-9*?]+)?")


class DeviationsError(ValueError):
    """The known-deviations file cannot be read or is malformed (a usage error)."""


@dataclasses.dataclass(frozen=True)
class Deviation:
    backend: str
    property: str
    reason: str
    dtype: str = "*"
    device: str = "*"
    rule: str = "*"
    link: str = ""
    cause: str = ""  # "" : excuses no spurious non-finite value

    def applies_to(self, *backends: str) -> bool:
        """The entry names one of ``backends`` (its pattern matches)."""
        return any(fnmatch.fnmatchcase(b, self.backend) for b in backends)

    def matches(self, *, backend: str, prop_id: str, prop_name: str, dtype: str | None,
                device: str | None, rule: str | None, cause: str | None = None) -> bool:
        return ((cause or "") == self.cause
                and self.applies_to(backend)
                and (fnmatch.fnmatchcase(prop_id, self.property)
                     or fnmatch.fnmatchcase(prop_name, self.property))
                and fnmatch.fnmatchcase(dtype or "", self.dtype)
                and fnmatch.fnmatchcase(device or "", self.device)
                and fnmatch.fnmatchcase(rule or "", self.rule))

    def label(self) -> str:
        return f"{self.backend} {self.property} {self.dtype} {self.rule} {self.cause}".strip()


def _allowed_values(backends: Iterable[str], devices: Iterable[str]
                    ) -> dict[str, tuple[str, ...]]:
    """What each pattern field of an entry can match: an entry matching none of these values
    excuses nothing, which is a mistake in the file (a typo), not a deviation."""
    from conformance import registry  # noqa: PLC0415 (loads no backend)
    from conformance.properties import CATALOGUE  # noqa: PLC0415

    rules = set(RULE_TITLES) | {r for p in CATALOGUE for r in p.rules}
    return {
        "backend": tuple(dict.fromkeys([*registry.known_names(), *backends])),
        "property": tuple(p.id for p in CATALOGUE) + tuple(p.name for p in CATALOGUE),
        "dtype": DTYPES,
        "rule": tuple(sorted(rules, key=lambda r: (int(r[1:].rstrip(ascii_lowercase)), r))),
        "device": tuple(dict.fromkeys([*DEVICES, *devices])),
    }


def _check_patterns(where: str, entry: dict[str, str], allowed: dict[str, tuple[str, ...]]
                    ) -> None:
    for field, values in allowed.items():
        pattern = entry.get(field)
        if pattern is None or any(fnmatch.fnmatchcase(v, pattern) for v in values):
            continue
        if field == "device" and _CUDA_DEVICE.fullmatch(pattern):
            continue
        kind = "bundled or named backend" if field == "backend" else field
        shown = ", ".join(values) + (", cuda:N" if field == "device" else "")
        raise DeviationsError(f"{where}: {field} {pattern!r} matches no {kind}; allowed "
                              f"(fnmatch patterns on): {shown}")


def load(path: str | Path, backends: Iterable[str] = (), devices: Iterable[str] = ()
         ) -> list[Deviation]:
    """The entries of the file at ``path``, each checked: known fields, a reason, and patterns
    that match some property, rule, dtype, device and backend (a bundled one, an installed
    entry point, or one of ``backends``, the names being certified; ``devices``: theirs)."""
    path = Path(path)
    data = tomlfile.read(path, "known-deviations file", DeviationsError)
    entries = data.get("deviation", [])
    unknown = set(data) - {"deviation"}
    if unknown or not isinstance(entries, list):
        raise DeviationsError(f"{path}: expected only [[deviation]] tables, found "
                              f"{', '.join(sorted(unknown)) or type(entries).__name__}")
    allowed = _allowed_values(backends, devices)
    out = []
    for n, entry in enumerate(entries, 1):
        bad = set(entry) - _FIELDS
        missing = {"backend", "property", "reason"} - set(entry)
        if bad or missing:
            problem = (f"unknown key(s) {', '.join(sorted(bad))}" if bad
                       else f"missing {', '.join(sorted(missing))}")
            raise DeviationsError(f"{path}: deviation #{n}: {problem}; allowed keys: "
                                  f"{', '.join(sorted(_FIELDS))}")
        if not all(isinstance(v, str) for v in entry.values()):
            raise DeviationsError(f"{path}: deviation #{n}: every value must be a string")
        where = f"{path}: deviation #{n} ({entry['backend']} {entry['property']})"
        if not entry["reason"].strip():
            raise DeviationsError(f"{where}: the reason is empty; say why this failure is "
                                  "accepted")
        _check_patterns(where, entry, allowed)
        cause = entry.get("cause")
        if cause is None and entry.get("rule") == NONFINITE_RULE:
            raise DeviationsError(f"{path}: deviation #{n} ({entry['backend']} "
                                  f"{entry['property']} {NONFINITE_RULE}): a spurious non-finite "
                                  "value is excused only by its cause; add cause = one of "
                                  f"{', '.join(EXCUSABLE)}")
        if cause is not None and cause not in EXCUSABLE:
            raise DeviationsError(f"{path}: deviation #{n} ({entry['backend']} "
                                  f"{entry['property']}): unknown cause {cause!r}; allowed: "
                                  f"{', '.join(EXCUSABLE)}")
        out.append(Deviation(**entry))
    return out
