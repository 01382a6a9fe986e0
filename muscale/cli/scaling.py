"""``muscale scaling fit|plan``: scaling-law fits from a table of runs, and plans.

* ``muscale scaling fit data=runs.csv [columns.N=... columns.C=... columns.D=...
  columns.loss=...] [drop_top=5] [approaches=auto|[1,2,3]] [bootstrap=1000] [out=DIR]
  [format=json]``: Approach 3 (always), Approaches 2 and 1 when the data allow (or when
  asked: then a missing structure is an error), hyperparameter laws when the table has
  ``lr``/``batch_size``; a table or JSON, ``fit.json`` and PNG plots under ``out``.
* ``muscale scaling plan compute=1e21 [inference_tokens=...] [fit=fit.json | law=epoch]
  [format=json]``: N, D, tokens per parameter, predicted loss (and LR, batch size when the
  fit has hyperparameter laws), with bootstrap intervals when the fit has replicates.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from muscale.cli.common import check_format, conf_dir, print_json
from muscale.cli.common import compose as common_compose
from muscale.errors import UserError

SUBCOMMANDS = ("fit", "plan")


def compose(name: str, overrides: list[str]) -> DictConfig:
    """Compose ``conf/scaling/<name>.yaml``: its own primary directory, because under
    ``conf/`` ``data`` is a config group and ``data=runs.csv`` would read as a group choice
    (the documented interface is ``muscale scaling fit data=<file>``)."""
    return common_compose(name, overrides, config_dir=conf_dir() / "scaling")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUBCOMMANDS:
        got = argv[0] if argv else "nothing"
        raise UserError(f"scaling needs a subcommand, fit or plan (got {got})")
    return {"fit": fit_main, "plan": plan_main}[argv[0]](argv[1:])


# ---------------------------------------------------------------------------- fit


def _options(cls: type, cfg: DictConfig) -> Any:
    """The typed options of :mod:`muscale.scaling.report` from the composed config."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    return cls(**{k: plain[k] for k in cls.__dataclass_fields__ if k in plain})


def fit_main(argv: list[str]) -> int:
    from muscale.scaling import report as scaling

    cfg = compose("fit", argv)
    fmt = check_format(cfg.format)
    res = scaling.fit(_options(scaling.FitOptions, cfg))
    out = Path(cfg.out) if cfg.out else Path("outputs/scaling") / time.strftime("%Y%m%d-%H%M%S")
    report = scaling.save_fit(
        res, out, with_plots=bool(cfg.plots), levels_tol=float(cfg.levels_tol)
    )
    if fmt == "json":
        print_json(report)
    else:
        _print_fit(report)
    return 0


def _ci(ci: Any, fmt: str = ".4g") -> str:
    return f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else ""


def _print_fit(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=140)
    iv = report["intervals"]
    level = round(report["level"] * 100)
    t = Table(
        title=f"approach 3: L(N, D) = E + A/N^alpha + B/D^beta  ({report['n_points']} "
        f"points, {report['dropped']} dropped)"
    )
    for col in ("parameter", "value", f"{level}% CI"):
        t.add_column(col, justify="right")
    for k in ("E", "A", "B", "alpha", "beta", "a", "b"):
        t.add_row(k, f"{report[k]:.4g}", _ci(iv.get(k)))
    con.print(t)
    t = Table(title="compute-optimal allocation (approach 3)")
    for col in ("C", "N", "D", "tokens/param", f"{level}% CI", "loss"):
        t.add_column(col, justify="right")
    hp_cols = bool(report["hparams"])
    if hp_cols:
        t.add_column("lr")
        t.add_column("batch size")
    for r in report["allocation"]:
        cells = [
            f"{r['C']:.1e}",
            f"{r['N']:.4g}",
            f"{r['D']:.4g}",
            f"{r['tokens_per_param']:.4g}",
            _ci(r.get("intervals", {}).get("tokens_per_param"), ".4g"),
            f"{r['loss']:.4g}",
        ]
        if hp_cols:
            h = r["hparams"]
            cells += [
                f"{h['lr']:.4g}" if "lr" in h else "",
                f"{h['batch_size']:.4g}" if "batch_size" in h else "",
            ]
        t.add_row(*cells)
    con.print(t)
    for key, name in (
        ("approach2", "approach 2 (isoFLOP)"),
        ("approach1", "approach 1 (envelope)"),
    ):
        a = report.get(key)
        if a:
            con.print(
                f"{name}: N_opt ∝ C^{a['a']:.4g} {_ci(a['N_opt']['exponent_ci'], '.4g')}, "
                f"D_opt ∝ C^{a['b']:.4g} {_ci(a['D_opt']['exponent_ci'], '.4g')}"
            )
    hp = report.get("hparams")
    if hp:
        for k in ("lr", "batch_size"):
            if hp[k]:
                con.print(
                    f"{k}_opt = {hp[k]['coef']:.4g} · C^{hp[k]['exponent']:.4g} "
                    f"(exponent {level}% CI {_ci(hp[k]['exponent_ci'], '.4g')})"
                )
    for n in report["notes"]:
        con.print(f"note: {n}")
    con.print(f"fit.json and plots in {report['out']}")


# ---------------------------------------------------------------------------- plan


def plan_main(argv: list[str]) -> int:
    from muscale.scaling import report as scaling

    cfg = compose("plan", argv)
    fmt = check_format(cfg.format)
    report = scaling.plan(_options(scaling.PlanOptions, cfg))
    if fmt == "json":
        print_json(report)
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console(width=140)
    level = round(report["level"] * 100)
    t = Table(title=f"plan ({report['source']})")
    t.add_column("plan")
    for col in (
        "N",
        "D (train)",
        "tokens/param",
        "loss",
        "train FLOPs",
        "inference FLOPs",
        "total FLOPs",
    ):
        t.add_column(col, justify="right")
    extra = [k for k in ("lr", "batch_size") if k in report["chinchilla"]]
    for k in extra:
        t.add_column(k, justify="right")
    for name in ("chinchilla", "inference_aware"):
        p = report.get(name)
        if not p:
            continue
        cells = [
            name.replace("_", "-"),
            f"{p['N']:.4g}",
            f"{p['D']:.4g}",
            f"{p['tokens_per_param']:.4g}",
            f"{p['loss']:.4g}",
            f"{p['train_flops']:.4g}",
            f"{p['inference_flops']:.4g}",
            f"{p['total_flops']:.4g}",
        ]
        cells += [f"{p[k]:.4g}" for k in extra]
        t.add_row(*cells)
        iv = p.get("intervals")
        if iv:
            t.add_row(
                f"  {level}% CI",
                _ci(iv["N"], ".4g"),
                _ci(iv["D"], ".4g"),
                _ci(iv["tokens_per_param"], ".4g"),
                _ci(iv["loss"], ".4g"),
                "",
                "",
                "",
                *["" for _ in extra],
            )
    con.print(t)
    con.print(f"uncertainty: {report['uncertainty']}")
    sys.stdout.flush()
    return 0
