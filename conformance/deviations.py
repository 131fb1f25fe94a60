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

Matching failures are reported as known; entries that match nothing produce a warning.

A failure that is a spurious non-finite value carries its cause (conformance/causes.py): an entry
excuses it only when it names that cause, so an entry excuses a mechanism, never every NaN of a
target. An entry without ``cause`` excuses no non-finite failure (only value and structure
failures); ``cause = "unexplained"`` is not allowed, and an entry for R27 (the non-finite rule)
without a cause would excuse nothing, so it is rejected when the file is loaded.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

from conformance.causes import EXCUSABLE

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

_FIELDS = {"backend", "property", "dtype", "rule", "reason", "link", "device", "cause"}
NONFINITE_RULE = "R27"


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

    def matches(self, *, backend: str, prop_id: str, prop_name: str, dtype: str | None,
                device: str | None, rule: str | None, cause: str | None = None) -> bool:
        return ((cause or "") == self.cause
                and fnmatch.fnmatchcase(backend, self.backend)
                and (fnmatch.fnmatchcase(prop_id, self.property)
                     or fnmatch.fnmatchcase(prop_name, self.property))
                and fnmatch.fnmatchcase(dtype or "", self.dtype)
                and fnmatch.fnmatchcase(device or "", self.device)
                and fnmatch.fnmatchcase(rule or "", self.rule))

    def label(self) -> str:
        return f"{self.backend} {self.property} {self.dtype} {self.rule} {self.cause}".strip()


def load(path: str | Path) -> list[Deviation]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeviationsError(f"cannot read known-deviations file {str(path)!r}: "
                              f"{exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeviationsError(f"known-deviations file {str(path)!r} is not valid TOML: "
                              f"{exc}") from None
    entries = data.get("deviation", [])
    unknown = set(data) - {"deviation"}
    if unknown or not isinstance(entries, list):
        raise DeviationsError(f"{path}: expected only [[deviation]] tables, found "
                              f"{', '.join(sorted(unknown)) or type(entries).__name__}")
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
