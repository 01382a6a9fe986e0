#!/usr/bin/env bash
# The README's test command: install muscale (idempotent), the one-node SLURM the sweep
# tests start themselves, then the whole suite (CPU; GPU tests skip without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
bash tools/slurm_local.sh install
python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
