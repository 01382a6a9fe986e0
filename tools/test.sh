#!/usr/bin/env bash
# The README's test command (what CI runs): install muscale (idempotent) and the one-node
# SLURM that the sweep tests start themselves, run the whole suite (CPU; GPU tests skip
# without CUDA), then build the wheel and run it from a fresh venv (tools/ci_wheel.sh).
#
#   bash tools/test.sh                 # all of it
#   bash tools/test.sh -k schedules    # extra arguments go to pytest
#   SKIP_WHEEL=1 bash tools/test.sh    # without the wheel check
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
bash tools/slurm_local.sh install
python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
if [[ -z "${SKIP_WHEEL:-}" ]]; then
  bash tools/ci_wheel.sh
fi
