#!/usr/bin/env bash
# The wheel as a user gets it: build it, check that it holds the configs and the Hydra
# sweeper plugin, install it (not editable) into a fresh virtual environment, and run the
# CLI from a directory outside the checkout: inspect, a 20-step train, a 2-trial sweep and a
# coordinate check. Tiny sizes; about a minute once the venv's packages are installed.
#
#   bash tools/ci_wheel.sh              # PYTHON=... to build with another interpreter
#   KEEP=1 bash tools/ci_wheel.sh       # keep the work directory (its path is printed)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
q="--quiet --disable-pip-version-check"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/muscale-wheel.XXXXXX")
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$WORK"' EXIT; fi
say() { echo "ci_wheel: $*"; }
fail() { echo "ci_wheel: FAILED: $*" >&2; exit 1; }

say "building the wheel in $WORK/dist"
# from a copy of what the Dockerfile's wheel stage copies, so the checkout gets no build/
mkdir -p "$WORK/src"
cp -r "$ROOT"/{pyproject.toml,setup.py,README.md,muscale,conf,hydra_plugins} "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
$PY -m pip wheel $q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/muscale-*.whl)
$PY - "$WHEEL" <<'PY' || fail "the wheel lacks files a user needs"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["muscale/conf/train.yaml", "muscale/conf/sweep.yaml", "muscale/conf/model/gpt.yaml",
        "muscale/conf/hydra/launcher/muscale_joblib.yaml", "muscale/conf/scaling/fit.yaml",
        "hydra_plugins/muscale_sweeper/muscale_sweeper.py",
        "muscale/scaling/data/chinchilla_epoch_svg_extracted.csv"]
missing = [n for n in need if n not in names]
print(f"ci_wheel: {len(names)} files, {sum(n.endswith('.yaml') for n in names)} YAML")
sys.exit(f"missing: {missing}" if missing else 0)
PY

say "installing it into a fresh venv"
$PY -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
PYTHON="$VPY" bash "$ROOT/tools/install.sh" --torch-only
"$VPY" -m pip install $q "$WHEEL[sweep]"

# from outside the checkout, with nothing that could point back into it
mkdir -p "$WORK/run" && cd "$WORK/run"
run() { env -u PYTHONPATH -u MUSCALE_CONF_DIR OMP_NUM_THREADS=1 "$WORK/venv/bin/muscale" "$@"; }
where=$(env -u PYTHONPATH "$VPY" -c "import muscale, os; print(os.path.dirname(muscale.__file__))")
[[ "$where" == "$WORK/venv/"* ]] || fail "muscale imported from $where, not the venv"

TINY=(param.base_width=32 model.width=32 model.depth=1 model.n_heads=2 data.seq_len=16
      data.batch_size=4 trainer.progress=off)
say "muscale inspect"
run inspect model=gpt param=mup model.width=1024 param.base_width=64 optim=adamw optim.lr=0.01 \
  > inspect.txt
grep -q "lm_head.weight" inspect.txt || fail "inspect printed no plan: $(head -c 500 inspect.txt)"
say "muscale train (20 steps)"
run train "${TINY[@]}" trainer.max_steps=20 trainer.eval_every=10 hydra.run.dir=train_run
[[ -f train_run/result.json ]] || fail "train wrote no train_run/result.json"
say "muscale sweep (2 trials)"
run sweep "${TINY[@]}" sweep.name=ci sweep.widths=[32] sweep.lrs=[0.01,0.03] \
  trainer.max_steps=5 trainer.eval_every=5 sweep.store="$WORK/run/sweeps.db"
"$VPY" - "$WORK/run/sweeps.db" <<'PY' || fail "the sweep did not store 2 trials"
import sqlite3, sys
tables = [r[0] for r in sqlite3.connect(sys.argv[1]).execute(
    "select name from sqlite_master where type='table'")]
n = max(sqlite3.connect(sys.argv[1]).execute(f"select count(*) from {t}").fetchone()[0]
        for t in tables)
print(f"ci_wheel: store tables {tables}, largest has {n} rows")
sys.exit(0 if n >= 2 else 1)
PY
say "muscale coord-check"
run coord-check model=gpt param=mup widths=[64,128,256,512] steps=3 seeds=3 plot=false out=cc
[[ -f cc/report.json ]] || fail "coord-check wrote no cc/report.json"
say "ok: the installed wheel runs inspect, train, sweep and coord-check"
