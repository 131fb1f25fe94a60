#!/usr/bin/env bash
# Creates .venv with everything the project needs (idempotent; seconds when already done).
# torch is pinned here, not in pyproject.toml: 2.13.0 is the CPU build this machine has on disk,
# while an unpinned torch would pull a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[all,dev]"
