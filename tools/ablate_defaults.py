"""Ablation of μP's shipped defaults against SP on real text (the embedded pytext corpus).

Question (issue 10, "defaults that do not lose"): at every proxy width, is μP's best loss
over its LR within seed noise of SP's best, or better? Where it is worse, which default is
to blame: zero-init readout / query (TP5 App. D.2), attention 1/d vs 1/sqrt(d), head_dim- vs
n_heads-scaling, alpha_out, alpha_attn, embedding init std?

Each variant is a list of config overrides on top of ``param=mup``; ``sp`` is the baseline.
Every (variant, width, seed, LR) trial is one ``muscale.train`` run; results are appended to
``<out>/trials.jsonl`` as they finish (a re-run skips finished trials), then summarised per
variant and width as best loss over the LR grid (mean over seeds, and its spread).

    python tools/ablate_defaults.py --variants sp,mup_default,mup_nozero --widths 32,64,128
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import statistics
import time
from pathlib import Path

#: variant name -> overrides on top of the common ones (param=... included)
VARIANTS: dict[str, list[str]] = {
    "sp": ["param=sp"],
    "mup_default": ["param=mup", "param.zero_readout=true", "param.zero_query=true"],
    "mup_nozero": ["param=mup", "param.zero_readout=false", "param.zero_query=false"],
    "mup_noreadout0": ["param=mup", "param.zero_readout=false", "param.zero_query=true"],
    "mup_noquery0": ["param=mup", "param.zero_readout=true", "param.zero_query=false"],
    "mup_nozero_nheads": [
        "param=mup",
        "param.zero_readout=false",
        "param.zero_query=false",
        "model.head_scaling=n_heads",
        "model.head_dim=8",
    ],
    "sp_nheads": ["param=sp", "model.head_scaling=n_heads", "model.head_dim=8"],
    "mup_nozero_aout2": [
        "param=mup",
        "param.zero_readout=false",
        "param.zero_query=false",
        "param.output_mult=2.0",
    ],
    "mup_nozero_aout0.5": [
        "param=mup",
        "param.zero_readout=false",
        "param.zero_query=false",
        "param.output_mult=0.5",
    ],
    "mup_nozero_aattn2": [
        "param=mup",
        "param.zero_readout=false",
        "param.zero_query=false",
        "param.attn_mult=2.0",
    ],
    "mup_nozero_emb0.1": [
        "param=mup",
        "param.zero_readout=false",
        "param.zero_query=false",
        "param.init_std.input=0.1",
    ],
}


def common_overrides(steps: int, seq_len: int, batch: int, depth: int, base: int) -> list[str]:
    return [
        "data=pytext",
        f"model.depth={depth}",
        f"data.seq_len={seq_len}",
        f"data.batch_size={batch}",
        f"trainer.max_steps={steps}",
        "trainer.eval_every=0",
        "data.eval_batches=8",
        f"optim.schedule.warmup_steps={max(1, steps // 10)}",
        "trainer.threads=1",
        "trainer.progress=off",
        "trainer.save_final=false",
        f"param.base_width={base}",
    ]


def trial_id(t: dict) -> str:
    return f"{t['variant']}|w{t['width']}|s{t['seed']}|lr{t['lr']:.6g}"


def run_one(t: dict) -> dict:
    import tempfile

    import torch

    from muscale.hydra_app import compose
    from muscale.train.loop import run

    torch.set_num_threads(1)
    cfg = compose(
        "train",
        [
            *t["common"],
            *VARIANTS[t["variant"]],
            f"model.width={t['width']}",
            f"trainer.seed={t['seed']}",
            f"optim.lr={t['lr']!r}",
        ],
    )
    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as d:
        res = run(cfg, Path(d))
    loss = res.best_eval_loss if res.best_eval_loss is not None else res.final_eval_loss
    return {
        **{k: v for k, v in t.items() if k != "common"},
        "loss": None if loss is None or not math.isfinite(loss) else float(loss),
        "diverged": bool(res.diverged),
        "cpu_s": time.process_time() - t0,
    }


def summarise(rows: list[dict]) -> list[dict]:
    """Per (variant, width): best LR per seed, mean/spread of the best loss over seeds."""
    out = []
    keys = sorted({(r["variant"], r["width"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for variant, width in keys:
        sub = [r for r in rows if r["variant"] == variant and r["width"] == width]
        bests, lrs = [], []
        for seed in sorted({r["seed"] for r in sub}):
            ok = [r for r in sub if r["seed"] == seed and r["loss"] is not None]
            if ok:
                b = min(ok, key=lambda r: r["loss"])
                bests.append(b["loss"])
                lrs.append(b["lr"])
        # mean-over-seeds curve: best LR of the averaged curve
        by_lr: dict[float, list[float]] = {}
        for r in sub:
            by_lr.setdefault(r["lr"], []).append(r["loss"] if r["loss"] is not None else math.inf)
        curve = {lr: statistics.fmean(v) for lr, v in by_lr.items()}
        lr_best = min(curve, key=curve.get) if curve else math.nan
        grid = sorted(curve)
        out.append(
            {
                "variant": variant,
                "width": width,
                "seeds": len(bests),
                "best_mean": statistics.fmean(bests) if bests else math.nan,
                "best_sd": statistics.stdev(bests) if len(bests) > 1 else math.nan,
                "lr_best": lr_best,
                "on_edge": bool(grid) and lr_best in (grid[0], grid[-1]),
                "lr_best_per_seed": lrs,
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/ablate_defaults")
    ap.add_argument("--variants", default="sp,mup_default,mup_nozero")
    ap.add_argument("--widths", default="32,64,128")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--lr-exps", default="-10,-9,-8,-7,-6,-5,-4", help="log2(LR) grid")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--base-width", type=int, default=32, help="μP's param.base_width")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[trial_id(r)] = r
    widths = [int(w) for w in args.widths.split(",")]
    common = common_overrides(args.steps, args.seq_len, args.batch, args.depth, args.base_width)
    todo = []
    for v in args.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"--variants: unknown {v!r}; choose from {', '.join(VARIANTS)}")
        for w in widths:
            for s in (int(x) for x in args.seeds.split(",")):
                for e in (float(x) for x in args.lr_exps.split(",")):
                    t = {"variant": v, "width": w, "seed": s, "lr": 2.0**e, "steps": args.steps}
                    if trial_id(t) not in done:
                        todo.append({**t, "common": common})
    if not args.summary_only and todo:
        # widest first so the slow trials do not trail at the end
        todo.sort(key=lambda t: -t["width"])
        print(f"{len(todo)} trials to run ({len(done)} done)", flush=True)
        pool_ = mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=20)
        with pool_ as pool, log.open("a") as f:
            for i, r in enumerate(pool.imap_unordered(run_one, todo), 1):
                f.write(json.dumps(r) + "\n")
                f.flush()
                print(
                    f"[{i}/{len(todo)}] {trial_id(r)} loss {r['loss']} ({r['cpu_s']:.0f} cpu-s)",
                    flush=True,
                )
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    rows = [r for r in rows if r["steps"] == args.steps]
    summ = summarise(rows)
    (out / "summary.json").write_text(json.dumps(summ, indent=2))
    print("| variant | width | seeds | best loss (mean ± sd) | LR at best | on edge |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in summ:
        print(
            f"| {s['variant']} | {s['width']} | {s['seeds']} | {s['best_mean']:.4f} ± "
            f"{s['best_sd']:.4f} | {s['lr_best']:.4g} | {'yes' if s['on_edge'] else ''} |"
        )


if __name__ == "__main__":
    main()
