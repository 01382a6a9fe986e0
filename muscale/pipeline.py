"""The main job: coordinate check -> SP and μP proxy sweeps -> fit -> transfer -> target run.

Each step is a library call (the same ones the individual commands use); this module only
chains them and writes a summary. On the embedded synthetic language it runs in minutes on a
laptop CPU; point ``data=`` and the widths at real data and a cluster launcher for real use.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


@dataclass
class PipelineResult:
    out: Path
    coord_passed: bool | None
    fit: dict[str, Any]
    target_config: Path
    target_loss: float | None
    predicted_loss: float
    predicted_loss_ci: list[float]
    timings: dict[str, float] = field(default_factory=dict)


def _sweep_overrides(cfg: DictConfig, out: Path) -> list[str]:
    p = cfg.proxy
    lst = lambda xs: "[" + ",".join(str(x) for x in xs) + "]"  # noqa: E731
    return [
        f"model={cfg.model}",
        f"data={cfg.data}",
        f"model.depth={p.depth}",
        f"trainer.max_steps={p.steps}",
        "sweep.name=pipeline",
        f"sweep.store={out / 'sweeps.db'}",
        f"sweep.widths={lst(p.widths)}",
        f"sweep.schemes={lst(p.schemes)}",
        f"sweep.lrs={lst(p.lrs)}",
        f"sweep.seeds={lst(p.seeds)}",
        f"param.base_width={min(p.widths)}",
        f"hydra.sweep.dir={out / 'sweep'}",
        f"hydra/launcher={cfg.launcher}",
        "trainer.progress=off",
        *(["trainer.threads=1"] if cfg.launcher != "basic" else []),
        *list(p.overrides),
    ]


def run_pipeline(cfg: DictConfig) -> PipelineResult:
    from muscale.hydra_app import compose, run_hydra_app
    from muscale.sweep.job import run_trial
    from muscale.sweep.optima import fit_sweep
    from muscale.sweep.plots import plot_optimum_vs_width, plot_transfer
    from muscale.sweep.store import Store
    from muscale.sweep.transfer import TargetConfig, make_transfer, write_transfer
    from muscale.train.loop import run as train

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(cfg.out) if cfg.out else Path("outputs/pipeline") / stamp
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    coord_passed = None
    if cfg.coord_check.enabled:
        t0 = time.perf_counter()
        coord_passed = _coord_check(cfg, out / "coord_check")
        timings["coord_check"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_hydra_app(
        "sweep", _sweep_overrides(cfg, out), run_trial, multirun=True, prog="muscale pipeline"
    )
    timings["sweep"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    records = Store(str(out / "sweeps.db"), create=False).records("pipeline")
    fit = fit_sweep(records)
    report = fit.to_json()
    (out / "fit.json").write_text(json.dumps(report, indent=2))
    plot_transfer(fit, out / "transfer.png")
    plot_optimum_vs_width(fit, out / "optimum_vs_width.png")
    target = TargetConfig(
        width=int(cfg.target.width),
        depth=cfg.target.depth,
        max_steps=cfg.target.steps or int(cfg.proxy.steps),
        device="auto",
        precision="auto",
        compile=False,
    )
    tdict = make_transfer(
        fit,
        records,
        target,
        scheme="mup" if "mup" in fit.trends else None,
        store=str(out / "sweeps.db"),
    )
    # the pipeline owns its out dir (fit.json and plots are rewritten too): a re-run replaces
    target_path = write_transfer(tdict, out / f"target_w{target.width}.yaml", overwrite=True)
    timings["fit_transfer"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    base = compose("train", [])
    run_cfg = OmegaConf.merge(
        base, {k: v for k, v in tdict.items() if k not in ("defaults", "provenance")}
    )
    res = train(run_cfg, out / "target_run")
    timings["target_run"] = time.perf_counter() - t0
    target_loss = res.best_eval_loss if res.best_eval_loss is not None else res.final_loss
    prov = tdict["provenance"]
    result = PipelineResult(
        out=out,
        coord_passed=coord_passed,
        fit=report,
        target_config=target_path,
        target_loss=target_loss,
        predicted_loss=prov["predicted_loss"],
        predicted_loss_ci=prov["predicted_loss_ci"],
        timings=timings,
    )
    (out / "summary.md").write_text(summary_markdown(result, tdict))
    return result


def _coord_check(cfg: DictConfig, out: Path) -> bool:
    from muscale.coord import run_coord_check_from_config

    c = cfg.coord_check
    return run_coord_check_from_config(
        model=str(cfg.model),
        widths=list(c.widths),
        steps=int(c.steps),
        seeds=int(c.seeds),
        out=out,
    )


def summary_markdown(r: PipelineResult, tdict: dict[str, Any]) -> str:
    lines = ["# muscale pipeline summary", ""]
    if r.coord_passed is not None:
        lines.append(f"- coordinate check (μP): {'passed' if r.coord_passed else 'FAILED'}")
    for s, d in r.fit["by_scheme"].items():
        t = d["trend"]["lr"]
        lines.append(
            f"- {s.upper()}: optimum log2(LR) slope {t['slope']:+.2f} octaves/doubling "
            f"(95% CI {t['ci'][0]:+.2f}..{t['ci'][1]:+.2f}), drift {t['drift_octaves']:+.2f} "
            f"octaves over widths {min(t['widths'])}-{max(t['widths'])}: "
            f"{'transfer holds' if d['transfer_holds'] else 'optimum drifts'}"
        )
    prov = tdict["provenance"]
    lines += [
        f"- transferred LR {prov['lr']:.4g} ({prov['scheme']}, {prov['lr_method']}) to width "
        f"{tdict['model']['width']}: predicted loss {r.predicted_loss:.4f} "
        f"[{r.predicted_loss_ci[0]:.4f}, {r.predicted_loss_ci[1]:.4f}], achieved "
        f"{r.target_loss:.4f}"
        if r.target_loss is not None
        else "- target run: no loss",
        "",
        "| scheme | width | lr_opt | 95% CI | best loss | on edge |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for w in r.fit["per_width"]:
        lines.append(
            f"| {w['scheme']} | {w['width']} | {w['lr_opt']:.3g} | "
            f"{w['lr_opt_ci'][0]:.3g}–{w['lr_opt_ci'][1]:.3g} | {w['best_loss']:.4f} | "
            f"{'yes' if w['on_edge'] else ''} |"
        )
    lines += [
        "",
        "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in r.timings.items()),
        "",
        f"Target config: `{r.target_config}`",
        "Plots: transfer.png, optimum_vs_width.png",
    ]
    return "\n".join(lines) + "\n"
