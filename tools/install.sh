#!/usr/bin/env bash
# Idempotent install of muscale and everything its tests and main job need, on a CPU
# machine: PyTorch (see below), microsoft/mup without its torchvision dependency, then the
# package in editable mode with all extras.
#
#   bash tools/install.sh               # all of it, into $PYTHON (default python3)
#   bash tools/install.sh --torch-only  # only PyTorch (tools/ci_wheel.sh uses it for its venv)
#
# PyTorch: an installed torch is kept whatever its build (a CUDA user's stays). Without one,
# the CPU build torch==$TORCH_VERSION is installed: from a local wheel if pip's configured
# --find-links has it, else from PyTorch's CPU index. A bare `pip install torch` would resolve
# to the multi-GB CUDA build from PyPI on Linux, so that is never the route taken.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${MUSCALE_TORCH_VERSION:-2.13.0}
CPU_INDEX=${MUSCALE_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
q="--quiet --disable-pip-version-check"

install_torch() {
  if $PY -c "import torch" 2>/dev/null; then
    return 0
  fi
  # 1. a local wheel (pip's find-links, no index): then its dependencies from the indexes
  if $PY -m pip install $q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
    $PY -m pip install $q "torch==$TORCH_VERSION"
    return 0
  fi
  # 2. PyTorch's CPU index (torch and its dependencies are all there)
  if $PY -m pip install $q --index-url "$CPU_INDEX" "torch==$TORCH_VERSION"; then
    return 0
  fi
  echo "install.sh: could not install torch==$TORCH_VERSION (CPU) from a local wheel or" \
    "$CPU_INDEX; install the PyTorch build you want first, then rerun" >&2
  return 1
}

install_torch
if [[ "${1:-}" == "--torch-only" ]]; then
  exit 0
fi
$PY -c "import mup" 2>/dev/null || $PY -m pip install $q --no-deps "mup==1.0.0"
$PY -m pip install $q -e ".[all]"
