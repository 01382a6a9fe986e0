"""Depth transfer (issue 10, "Depth too"): the LR optimum across depth at a fixed width, with
no depth rule (α = 0), depth-μP (α = ½, Yang et al. 2023 "Tensor Programs VI") and CompleteP
(α = 1, Dey et al. 2025), fitted across depth and transferred to a deeper target.

One run, one table. For each α: a μP GPT at one width (the pipeline's smallest proxy, 32) on
the embedded pytext corpus, an LR sweep at every proxy depth with ≥ 2 seeds
(``param.depth_alpha=α``, ``param.base_depth`` = the shallowest proxy), the optimum per depth
and its trend in octaves per depth doubling with a 95% interval and the verdict
(:func:`muscale.sweep.optima.fit_param`, ``scale=depth``: the same rules as ``muscale fit``);
then the LR transferred to ``--target-depth`` by ``muscale.sweep.transfer``'s ``auto`` rule
and a 3-point LR check there (½×, 1×, 2× the transferred LR): the regret of the transferred
LR. Depth-μP's premise is a depth-independent optimum once the residual branches are scaled
by L^-α; without a rule (α = 0) the optimum is expected to fall with depth.

    python tools/bench_depth.py                          # depths 2,4,8 -> 16, 300 steps
    python tools/bench_depth.py --quick                  # a smoke run (a minute)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from omegaconf import OmegaConf

from muscale.hydra_app import compose
from muscale.pipeline import run_spec
from muscale.sweep.optima import fit_param
from muscale.sweep.store import Store
from muscale.sweep.transfer import transfer_log2, transfer_method
from muscale.trial_pool import make_pool


def _alpha_cfg(cfg, extra: list[str], alpha: float, base_depth: int, depth: int | None = None):
    o = [*extra, f"param.depth_alpha={alpha}", f"param.base_depth={base_depth}"]
    return OmegaConf.merge(
        cfg, {"proxy": {"overrides": o, **({} if depth is None else {"depth": depth})}}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/bench_depth")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depths", default="2,4,8", help="proxy depths")
    ap.add_argument("--target-depth", type=int, default=16, help="0: no transfer check")
    ap.add_argument("--alphas", default="0,0.5,1", help="param.depth_alpha values")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lrs", default="-9,-8,-7,-6,-5,-4,-3", help="log2 of the swept LRs")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    if args.quick:
        args.depths, args.target_depth, args.steps, args.lrs = "1,2", 4, 10, "-8,-6,-4"
        args.alphas, args.width = "0,1", 16
    depths = [int(d) for d in args.depths.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    lrs = [2.0 ** float(x) for x in args.lrs.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = [
        "data.seq_len=64",
        "data.batch_size=16",
        "data.eval_batches=8",
        "trainer.eval_every=0",
        f"optim.schedule.warmup_steps={max(1, args.steps // 10)}",
    ]
    cfg = compose(
        "pipeline",
        [
            f"proxy.widths=[{args.width}]",
            f"proxy.steps={args.steps}",
            f"proxy.seeds=[{','.join(map(str, seeds))}]",
            f"jobs={args.jobs}",
            "progress=plain",
        ],
    )
    d0 = min(depths)
    rows = []
    t_all = time.perf_counter()
    with make_pool(args.jobs) as pool:
        for alpha in alphas:
            acfg = _alpha_cfg(cfg, extra, alpha, d0)
            name = f"depth_a{alpha:g}".replace(".", "p")
            oc = run_spec(
                acfg,
                out,
                pool,
                name,
                f"α={alpha:g} LR sweep over depth",
                widths=[args.width],
                depths=depths,
                scheme="mup",
                lrs=lrs,
                params={},
                seeds=seeds,
            )
            recs = Store(str(out / "sweeps.db")).records(name)
            pf = fit_param(recs, param="lr", scale="depth", scheme="mup", tol=0.15)
            row = {
                "alpha": alpha,
                "optima": {o.scale_value: o.value for o in pf.optima},
                "on_edge": [o.scale_value for o in pf.optima if o.on_edge],
                "slope": pf.trend.slope if pf.trend else math.nan,
                "ci": list(pf.trend.ci) if pf.trend else [math.nan, math.nan],
                "verdict": pf.verdict.kind,
                "reason": pf.verdict.reason,
                "best_loss": {o.scale_value: o.best_loss for o in pf.optima},
                "cpu_s": oc.cpu_s,
            }
            if args.target_depth and pf.trend is not None:
                method = transfer_method("auto", "mup", pf.verdict)
                x, _ = transfer_log2(
                    [o.log2_opt for o in pf.optima],
                    [o.log2_ci for o in pf.optima],
                    pf.trend,
                    args.target_depth,
                    method,
                )
                lr_t = 2.0**x
                tcfg = _alpha_cfg(cfg, extra, alpha, d0, depth=args.target_depth)
                check = [lr_t * 2.0**d for d in (-1, 0, 1)]
                tc = run_spec(
                    tcfg,
                    out,
                    pool,
                    f"{name}_target",
                    f"α={alpha:g} depth {args.target_depth}",
                    widths=[args.width],
                    scheme="mup",
                    lrs=check,
                    params={},
                    seeds=seeds,
                )
                by_lr: dict[float, list[float]] = {}
                for t, loss in tc.losses.values():
                    by_lr.setdefault(t.lr, []).append(loss)
                mean = {k: statistics.fmean(v) for k, v in by_lr.items()}
                at = mean[min(mean, key=lambda k: abs(math.log2(k / lr_t)))]
                row.update(
                    target_lr=lr_t,
                    method=method,
                    target_loss=at,
                    target_best=min(mean.values()),
                    regret=at / min(mean.values()) - 1,
                    target_losses={f"{k:.4g}": v for k, v in sorted(mean.items())},
                )
            rows.append(row)
    minutes = (time.perf_counter() - t_all) / 60
    (out / "summary.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(
        f"\npytext, μP GPT width {args.width}, LR swept at depths {args.depths} ({len(lrs)} LRs x "
        f"{len(seeds)} seeds), {args.steps} steps, base depth {d0}; {minutes:.1f} min"
    )
    tgt = f"depth {args.target_depth}" if args.target_depth else "target"
    print(
        f"| α | LR optimum per depth | slope (oct/doubling), 95% CI | verdict | "
        f"transferred LR at {tgt} | regret vs ½×/2× |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        opt = ", ".join(
            f"{d}: {v:.3g}{' (edge)' if d in r['on_edge'] else ''}"
            for d, v in sorted(r["optima"].items())
        )
        ci = f"{r['slope']:+.2f} ({r['ci'][0]:+.2f}..{r['ci'][1]:+.2f})"
        tr = f"{r['target_lr']:.3g} ({r['method']})" if "target_lr" in r else "–"
        rg = f"{100 * r['regret']:+.2f}%" if "regret" in r else "–"
        print(f"| {r['alpha']:g} | {opt} | {ci} | {r['verdict']} | {tr} | {rg} |")


if __name__ == "__main__":
    main()
