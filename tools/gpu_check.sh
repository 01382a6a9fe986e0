#!/usr/bin/env bash
# GPU check (issue 10): a ~1B-parameter μP GPT in bf16 + torch.compile, FSDP2 over every GPU
# present (torchrun), a few hundred steps; prints tokens/s and MFU. Then a bf16 coordinate
# check of μP on the GPU. Run from the repository root:
#
#   bash tools/gpu_check.sh [STEPS]          # default 300 steps
#
# Sizes: d_model 2048, 20 blocks, 16 heads, seq 1024 -> 12·d²·L ≈ 1.0e9 parameters in the blocks.
# Without CUDA it stops at once with one line on stderr and exit status 2.
set -euo pipefail
STEPS="${1:-300}"
OUT="${OUT:-outputs/gpu_check}"
export PYTHONPATH="${PYTHONPATH:-$(pwd)}"

NGPU=$(python -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [ "$NGPU" = "0" ]; then
  echo "gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing run" >&2
  exit 2
fi
mkdir -p "$OUT"
echo "== ${NGPU} GPU(s): $(python -c 'import torch; print(torch.cuda.get_device_name(0))')"

# 1. throughput: bf16 autocast, compile, FSDP2 (fully_shard per block) over all GPUs
torchrun --standalone --nproc_per_node="$NGPU" -m muscale.train \
  hydra.run.dir="$OUT/train" \
  model=gpt model.width=2048 model.depth=20 model.n_heads=16 \
  param=mup param.base_width=256 \
  optim=adamw optim.lr=0.01 \
  data=pytext data.seq_len=1024 data.batch_size=8 \
  trainer.parallel=fsdp trainer.precision=bf16 trainer.compile=true \
  trainer.max_steps="$STEPS" trainer.log_every=10 trainer.eval_every=0 \
  trainer.save_final=false trainer.progress=plain

python - "$OUT/train" <<'EOF'
import json, sys
from pathlib import Path
rows = [json.loads(l) for l in (Path(sys.argv[1]) / "metrics.jsonl").read_text().splitlines()]
rows = [r for r in rows if "tokens_per_s" in r]
steady = rows[len(rows) // 3:] or rows  # skip compile warm-up
tps = sum(r["tokens_per_s"] for r in steady) / len(steady)
mfu = [r["mfu"] for r in steady if "mfu" in r]
print(f"tokens/s (all GPUs): {tps:,.0f}")
print(f"MFU: {100 * sum(mfu) / len(mfu):.1f}%" if mfu else "MFU: unknown GPU peak (see muscale/train/mfu.py)")
print(f"final loss: {rows[-1]['loss']:.4f} at step {rows[-1]['step']}")
EOF

# 2. bf16 coordinate check of μP on one GPU (widths 256-2048, 3 steps, 3 seeds)
python - <<'EOF'
import torch
from muscale.coord import coord_check
from muscale.coord.run import config_factory, synthetic_batch
from muscale.models.configs import GPTConfig
from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig

dev = torch.device("cuda")
gpt = GPTConfig(width=256, depth=2, n_heads=4, vocab_size=256, seq_len=16)
inner = config_factory(gpt, ParamConfig(scheme="mup", base_width=256), family="adam")

def factory(width, seed):
    model, plan = inner(width, seed)
    return model.to(dev, torch.bfloat16), plan

x, y = synthetic_batch(gpt, batch_size=2, seq_len=16)
rep = coord_check(factory, [256, 512, 1024, 2048], batch=(x.to(dev), y.to(dev)),
                  optimizer=OptimConfig(name="adam", lr=0.01), steps=3, seeds=3)
print("bf16 coordinate check:", rep.verdict().splitlines()[0])
EOF
