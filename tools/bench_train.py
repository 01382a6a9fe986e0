"""Throughput and peak memory of the muscale trainer against a minimal plain-PyTorch loop.

Same μP GPT (~10M parameters), same optimizer groups, same data and batches, CPU, eager
and ``torch.compile``. Each measurement runs in a fresh process (peak RSS is per process);
muscale and plain alternate, several repeats, and the table reports medians and the median
of the per-repeat ratios. Throughput counts only steady-state steps (after ``warmup``).

    python tools/bench_train.py [--repeats 3] [--steps 6] [--modes eager,compiled]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

MODEL = ["model.width=384", "model.n_heads=6", "model.depth=6", "param.base_width=96"]
DATA = ["data.seq_len=128", "data.batch_size=8"]


def _overrides(steps: int, warmup: int, compiled: bool) -> list[str]:
    return [
        *MODEL,
        *DATA,
        f"trainer.max_steps={warmup + steps}",
        f"trainer.log_every={warmup}",
        "trainer.eval_every=0",
        "trainer.save_final=false",
        "trainer.device=cpu",
        "trainer.progress=off",
        "data.eval_batches=1",
        f"trainer.compile={compiled}",
    ]


def one(impl: str, compiled: bool, steps: int, warmup: int) -> dict:
    from muscale.cli.common import compose
    from muscale.cli.train import register_schemas

    register_schemas()
    cfg = compose("train", _overrides(steps, warmup, compiled))
    if impl == "muscale":
        from muscale.train.logging import read_metrics
        from muscale.train.loop import run

        with tempfile.TemporaryDirectory() as d:
            run(cfg, d)
            rows = [r for r in read_metrics(d) if "tokens_per_s" in r]
        tps = rows[-1]["tokens_per_s"]
    else:
        tps = plain_loop(cfg, steps, warmup, compiled)
    return {
        "tokens_per_s": tps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def plain_loop(cfg, steps: int, warmup: int, compiled: bool) -> float:
    """The loop anyone would write: same model, optimizer, batches, clipping."""
    import torch
    import torch.nn.functional as F

    from muscale.build import build_model
    from muscale.data import build_data
    from muscale.optim.config import OptimConfig
    from muscale.optim.optimizer import make_optimizer

    data = build_data(cfg.data)
    mcfg = {**cfg.model, "vocab_size": data.vocab_size, "seq_len": data.seq_len}
    optim = OptimConfig(**cfg.optim)
    model, plan = build_model(mcfg, cfg.param, optim_family="adam", seed=0)
    opt, sched = make_optimizer(model, plan, optim, total_steps=warmup + steps)
    fwd = torch.compile(model) if compiled else model
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        x, y = data.train_batch(step)
        loss = F.cross_entropy(fwd(x).float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    loss.item()
    return steps * data.batch_size * data.seq_len / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=None, help="default: --steps")
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--one", nargs=2, metavar=("IMPL", "MODE"))
    args = ap.parse_args()
    # the trainer logs every `warmup` steps: its last line then times exactly `steps` steps
    args.warmup = args.steps if args.warmup is None else args.warmup
    if args.warmup != args.steps:
        ap.error("--warmup must equal --steps (the trainer's timing window is log_every)")
    if args.one:
        impl, mode = args.one
        print(json.dumps(one(impl, mode == "compiled", args.steps, args.warmup)))
        return
    rows = []
    for mode in args.modes.split(","):
        res: dict[str, list[dict]] = {"muscale": [], "plain": []}
        for rep in range(args.repeats):
            order = ("muscale", "plain") if rep % 2 == 0 else ("plain", "muscale")
            for impl in order:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        impl,
                        mode,
                        "--steps",
                        str(args.steps),
                        "--warmup",
                        str(args.warmup),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                res[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
        ratios = [
            m["tokens_per_s"] / p["tokens_per_s"]
            for m, p in zip(res["muscale"], res["plain"], strict=True)
        ]
        mem = [
            m["peak_rss_mb"] / p["peak_rss_mb"]
            for m, p in zip(res["muscale"], res["plain"], strict=True)
        ]
        rows.append(
            (
                mode,
                statistics.median(r["tokens_per_s"] for r in res["muscale"]),
                statistics.median(r["tokens_per_s"] for r in res["plain"]),
                statistics.median(ratios),
                statistics.median(r["peak_rss_mb"] for r in res["muscale"]),
                statistics.median(r["peak_rss_mb"] for r in res["plain"]),
                statistics.median(mem),
            )
        )
    print(
        f"μP GPT width 384 depth 6 (~10M params), seq 128, batch 8, CPU, "
        f"{args.repeats} repeats x {args.steps} timed steps"
    )
    print(
        "| mode | muscale tok/s | plain tok/s | ratio (median) | muscale peak RSS MB "
        "| plain peak RSS MB | memory ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r[0]} | {r[1]:.0f} | {r[2]:.0f} | {r[3]:.3f} | {r[4]:.0f} | {r[5]:.0f} "
            f"| {r[6]:.3f} |"
        )
    print("MFU on GPU: not measured (no GPU on this machine).")


if __name__ == "__main__":
    main()
