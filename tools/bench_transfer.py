"""The headline experiment: does the optimal LR transfer across width? SP vs μP.

On the embedded real-text corpus (``data=pytext``: the Python standard library's sources,
byte-level), GPT proxies are swept over LR at widths 32..256 under SP and μP, in one run.
Reported per scheme:

* the optimum's drift in octaves across the width range (slope of log2(lr_opt) on
  log2(width) times log2(max/min width));
* the regret of the transferred LR at the largest width: fit the proxies (all widths but
  the largest), transfer their optimum (μP/SP: the proxies' mean optimum; SP also with the
  fitted trend extrapolated), train the largest width at that LR, and compare its loss with
  the best loss of the direct sweep there: (loss_transfer - loss_best) / loss_best;
* adaptive search vs a fine grid (0.25 octave) at one width: trials the adaptive search
  needs to land within ±0.25 octave of the grid optimum.

Trials run through ``muscale sweep`` (Hydra + muscale's sweeper) with the joblib launcher
(2 workers, one thread each). Widths 32..256 (8x) fit the ~30-minute budget of a 2-core
machine; ``--widths`` takes more. ``--quick`` shrinks everything for a smoke run.

    python tools/bench_transfer.py [--out outputs/bench_transfer] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from omegaconf import OmegaConf

from muscale.cli.common import compose, run_hydra_app
from muscale.sweep.job import run_trial
from muscale.sweep.optima import fit_sweep
from muscale.sweep.plots import plot_optimum_vs_width, plot_transfer
from muscale.sweep.store import Store
from muscale.sweep.transfer import transferred_lr


def lst(xs) -> str:
    return "[" + ",".join(str(x) for x in xs) + "]"


def sweep(out: Path, name: str, common: list[str], **kw: object) -> None:
    args = [
        f"sweep.name={name}",
        f"sweep.store={out / 'store.db'}",
        f"hydra.sweep.dir={out / 'runs' / name}",
        "hydra/launcher=muscale_joblib",
        "trainer.progress=off",
        *common,
    ]
    args += [f"sweep.{k}={lst(v) if isinstance(v, list) else v}" for k, v in kw.items()]
    run_hydra_app("sweep", args, run_trial, multirun=True, prog="bench_transfer")


def train_at(out: Path, common: list[str], scheme: str, width: int, lr: float, base: int) -> float:
    from muscale.train.loop import run

    cfg = compose(
        "train",
        [
            *common,
            f"param={scheme}",
            f"model.width={width}",
            f"optim.lr={lr!r}",
            f"param.base_width={base}",
            "trainer.progress=off",
        ],
    )
    res = run(cfg, out / "transfer_runs" / f"{scheme}_w{width}_lr{lr:.5g}")
    return res.best_eval_loss if res.best_eval_loss is not None else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/bench_transfer")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--widths", default=None, help="comma-separated, e.g. 32,64,128,256,512")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        widths, steps, lrs = [32, 64, 128], 60, [2.0**x for x in range(-7, -1)]
        fine = [2.0 ** (-7 + 0.5 * i) for i in range(11)]
    else:
        # 8x, not 16x: 512-wide trials take ~5 CPU-min each here, beyond a 30-min budget
        widths, steps, lrs = [32, 64, 128, 256], 200, [2.0**x for x in range(-9, -1)]
        fine = [2.0 ** (-7 + 0.25 * i) for i in range(17)]
    if args.widths:
        widths = [int(w) for w in args.widths.split(",")]
    common = [
        "data=pytext",
        "model.depth=2",
        "data.seq_len=64",
        "data.batch_size=16",
        f"trainer.max_steps={steps}",
        "trainer.eval_every=0",
        "data.eval_batches=8",
        "optim.schedule.warmup_steps=20",
        "trainer.threads=1",
    ]
    t0 = time.perf_counter()
    sweep(out, "grid", common, widths=widths, schemes=["sp", "mup"], lrs=lrs)
    t_grid = time.perf_counter() - t0
    store = Store(str(out / "store.db"))
    recs = [r for r in store.records("grid") if r.width in widths]
    full = fit_sweep(recs)
    proxies = fit_sweep([r for r in recs if r.width < max(widths)])
    plot_transfer(full, out / "transfer.png")
    plot_optimum_vs_width(full, out / "optimum_vs_width.png")
    big = max(widths)
    rows = []
    for scheme in ("sp", "mup"):
        best_direct = min(
            r.loss
            for r in recs
            if r.scheme == scheme and r.width == big and not r.diverged and r.loss is not None
        )
        t = full.trends[scheme]
        drift = t.slope * math.log2(big / min(widths))
        for method in ("mean", "trend") if scheme == "sp" else ("mean",):
            x, _, _ = transferred_lr(proxies, scheme, big, method)
            loss = train_at(out, common, scheme, big, 2.0**x, min(widths))
            rows.append(
                {
                    "scheme": scheme,
                    "method": method,
                    "drift_octaves": drift,
                    "slope": t.slope,
                    "slope_ci": list(t.ci),
                    "lr_transfer": 2.0**x,
                    "loss_transfer": loss,
                    "loss_best_direct": best_direct,
                    "regret": (loss - best_direct) / best_direct,
                }
            )
    # adaptive vs a fine grid, μP at width 64
    t1 = time.perf_counter()
    sweep(out, "fine", common, widths=[64], schemes=["mup"], lrs=fine)
    sweep(
        out,
        "adaptive",
        common,
        widths=[64],
        schemes=["mup"],
        strategy="adaptive",
        lr_min=min(fine),
        lr_max=max(fine),
    )
    t_adapt = time.perf_counter() - t1
    fine_recs = store.records("fine")
    grid_best = min(fine_recs, key=lambda r: r.loss if r.loss is not None else math.inf)
    ad = store.records("adaptive")
    ad_best = min(ad, key=lambda r: r.loss if r.loss is not None else math.inf)
    gap = abs(math.log2(ad_best.lr) - math.log2(grid_best.lr))
    summary = {
        "widths": widths,
        "steps": steps,
        "lrs": lrs,
        "rows": rows,
        "adaptive": {
            "grid_trials": len(fine_recs),
            "adaptive_trials": len(ad),
            "grid_best_lr": grid_best.lr,
            "adaptive_best_lr": ad_best.lr,
            "gap_octaves": gap,
        },
        "seconds": {"grid": t_grid, "adaptive_and_fine": t_adapt},
        "fit": full.to_json(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nwidths {widths[0]}..{widths[-1]} ({widths[-1] // widths[0]}x), {steps} steps, "
        f"pytext, GPT depth 2; grid {len(lrs)} LRs x 2 schemes; {t_grid / 60:.1f} min"
    )
    print(
        f"{'scheme':<6} {'method':<6} {'drift (oct)':>11} {'slope/doubling':>15} "
        f"{'lr transfer':>11} {'loss transfer':>13} {'best direct':>11} {'regret':>8}"
    )
    for r in rows:
        print(
            f"{r['scheme']:<6} {r['method']:<6} {r['drift_octaves']:>+11.2f} "
            f"{r['slope']:>+15.2f} {r['lr_transfer']:>11.4g} {r['loss_transfer']:>13.4f} "
            f"{r['loss_best_direct']:>11.4f} {100 * r['regret']:>7.2f}%"
        )
    a = summary["adaptive"]
    ratio = a["adaptive_trials"] / a["grid_trials"]
    print(
        f"adaptive search: {a['adaptive_trials']} trials vs fine grid {a['grid_trials']} "
        f"(ratio {ratio:.2f}); best LR {a['adaptive_best_lr']:.4g} vs grid "
        f"{a['grid_best_lr']:.4g}: {a['gap_octaves']:.2f} octave apart"
    )
    print(f"figures: {out / 'transfer.png'}, {out / 'optimum_vs_width.png'}")
    OmegaConf.save(OmegaConf.create(summary), out / "summary.yaml")


if __name__ == "__main__":
    main()
