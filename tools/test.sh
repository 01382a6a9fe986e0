#!/usr/bin/env bash
# The README's test command (what CI runs): install muscale (idempotent) and the one-node
# SLURM that the sweep tests start themselves; build the wheel and run it from a fresh venv
# (tools/ci_wheel.sh); then the whole suite (CPU; GPU tests skip without CUDA), last, so
# that pytest's summary is the closing line.
#
#   bash tools/test.sh                 # all of it
#   SKIP_WHEEL=1 bash tools/test.sh -k schedules   # no wheel check; arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
bash tools/slurm_local.sh install
if [[ -z "${SKIP_WHEEL:-}" ]]; then
  bash tools/ci_wheel.sh
fi
python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
