#!/usr/bin/env bash
# Idempotent install of muscale and everything its tests and main job need, on a CPU
# machine. Installs the CPU torch wheel first (a plain `torch` requirement on a machine
# without one would pull a multi-GB CUDA build), microsoft/mup without its torchvision
# dependency, then the package in editable mode with all extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
q="--quiet --disable-pip-version-check"
if ! $PY -c "import torch" 2>/dev/null; then
  $PY -m pip install $q "torch==2.13.0"
fi
$PY -c "import mup" 2>/dev/null || $PY -m pip install $q --no-deps "mup==1.0.0"
$PY -m pip install $q -e ".[all]"
