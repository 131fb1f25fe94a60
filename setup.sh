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
# keras is pinned to the version the committed reports (reports/keras*.json) were made with.
.venv/bin/python -m pip install -q --disable-pip-version-check "keras==3.15.1"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[all,dev]"
# The timm extra without its dependencies: they would pull torchvision and a CUDA torch.
# timm/optim/rmsprop_tf.py needs only torch (tests/timm_shim.py imports it without torchvision).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "timm>=1.0"
