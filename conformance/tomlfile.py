"""Reading the project's TOML inputs (driver files, known-deviations files, driver options):
one place for the Python 3.10 fallback and for the one-line message a bad file gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

TOMLDecodeError = tomllib.TOMLDecodeError
loads = tomllib.loads


def read(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The TOML document at ``path`` (``what``: "driver file" …); ``error`` with one line
    naming the file when it cannot be read or is not TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {str(path)!r} is not valid TOML: {exc}") from None
