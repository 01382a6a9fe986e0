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

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from muscale.cli.common import check_format, conf_dir, print_json
from muscale.cli.common import compose as common_compose
from muscale.errors import ConfigError, UserError

SUBCOMMANDS = ("fit", "plan")


def compose(name: str, overrides: list[str]) -> DictConfig:
    """Compose ``conf/scaling/<name>.yaml``: its own primary directory, because under
    ``conf/`` ``data`` is a config group and ``data=runs.csv`` would read as a group choice
    (the interface the issue fixes is ``muscale scaling fit data=<file>``)."""
    return common_compose(name, overrides, config_dir=conf_dir() / "scaling")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUBCOMMANDS:
        got = argv[0] if argv else "nothing"
        raise UserError(f"scaling needs a subcommand, fit or plan (got {got})")
    return {"fit": fit_main, "plan": plan_main}[argv[0]](argv[1:])


# ---------------------------------------------------------------------------- fit


def _flops(cfg: DictConfig) -> Any:
    from muscale.scaling.laws import FlopsModel

    return FlopsModel(
        coef=float(cfg.flops.coef), n_ctx=int(cfg.flops.n_ctx), aspect=float(cfg.flops.aspect)
    )


def _approaches(value: Any) -> tuple[set[int], bool]:
    """``auto`` -> ({3}, True); a list -> (that set plus 3, False)."""
    if isinstance(value, str) and value == "auto":
        return {3}, True
    items = list(value) if isinstance(value, (list, ListConfig)) else [value]
    try:
        chosen = {int(v) for v in items}
    except (TypeError, ValueError):
        raise ConfigError("approaches", value, "auto or a list of 1, 2, 3") from None
    if not chosen <= {1, 2, 3}:
        raise ConfigError("approaches", value, "auto or a list of 1, 2, 3")
    return chosen | {3}, False


def _tristate(name: str, value: Any) -> str:
    text = str(value).lower()
    if text not in ("auto", "true", "false"):
        raise ConfigError(name, value, "choose auto, true or false")
    return text


def fit_data(cfg: DictConfig) -> dict[str, Any]:
    """Run every requested fit on ``cfg.data``; returns the report and fitted objects."""
    from muscale.scaling.allocation import compute_optimal, plan_intervals
    from muscale.scaling.approach1 import fit_approach1
    from muscale.scaling.approach2 import fit_approach2
    from muscale.scaling.approach3 import fit_approach3, select_points
    from muscale.scaling.hparams import fit_hparams
    from muscale.scaling.io import canonical, from_store, read_table

    flops = _flops(cfg)
    columns = {str(k): str(v) for k, v in cfg.columns.items()}
    if (cfg.data is None) == (cfg.get("store") is None):
        raise UserError("give exactly one of data=<csv|parquet> or store=<sweep store>")
    if cfg.data is not None:
        raw = read_table(str(cfg.data))
    else:
        raw, columns = from_store(str(cfg.store), cfg.get("sweep")), {}
    df = canonical(raw, columns, flops)
    chosen, auto = _approaches(cfg.approaches)
    want_hp = _tristate("hparams", cfg.hparams)
    n_boot, level, seed = int(cfg.bootstrap), float(cfg.level), int(cfg.seed)
    if n_boot < 0:
        raise ConfigError("bootstrap", n_boot, "must be >= 0")
    if not 0 < level < 1:
        raise ConfigError("level", level, "must be in (0, 1)")
    notes: list[str] = []
    report: dict[str, Any] = {}

    hp = None
    has_hp = "lr" in df or "batch_size" in df
    if want_hp == "true" or (want_hp == "auto" and has_hp):
        hp = fit_hparams(
            df,
            method=str(cfg.hparams_method),
            levels_tol=float(cfg.levels_tol),
            n_boot=min(n_boot, 500),
            level=level,
            seed=seed,
        )
    curves = "run" in df and df.groupby("run").size().max() > 1
    final = df  # one row per run: what approach 2 groups into isoFLOP levels
    rows3 = df  # what approach 3 fits
    if curves:
        final = df.loc[df.groupby("run")["C"].idxmax()]
        notes.append(
            "runs have several checkpoints: approach 2 uses each run's last, approach 3 every "
            "checkpoint (an intermediate loss of a decaying schedule overstates a run of that "
            "length)"
        )
    if hp is not None:  # a hyperparameter sweep: only the best run of each (N, D) is optimal
        final = final.loc[final.groupby(["N", "D"])["loss"].idxmin()]
        rows3 = rows3.loc[rows3.groupby(["N", "D"])["loss"].idxmin()]
        notes.append("hyperparameter sweep: approaches 2 and 3 use the best run per (N, D)")

    fit2 = fit1 = None  # the cheap approaches first, so that their input errors come fast
    if 2 in chosen or auto:
        try:
            kept, _ = select_points(
                final, drop_top=int(cfg.drop_top), min_N=float(cfg.min_N), min_C=float(cfg.min_C)
            )
            fit2 = fit_approach2(
                kept,
                flops=flops,
                tol=float(cfg.levels_tol),
                n_boot=min(n_boot, 1000),
                level=level,
                seed=seed,
            )
        except UserError as exc:
            if not auto:
                raise
            notes.append(f"approach 2 skipped: {exc}")
    if 1 in chosen or (auto and curves):
        fit1 = fit_approach1(df, flops=flops, n_boot=min(n_boot, 200), level=level, seed=seed)
    fit3 = fit_approach3(
        rows3,
        delta=float(cfg.delta),
        drop_top=int(cfg.drop_top),
        min_N=float(cfg.min_N),
        min_C=float(cfg.min_C),
        drop_residual=None if cfg.drop_residual is None else float(cfg.drop_residual),
        n_boot=n_boot,
        level=level,
        seed=seed,
    )
    report.update(fit3.to_json())
    report["approach"] = 3
    report["approach2"] = None if fit2 is None else fit2.to_json()
    report["approach1"] = None if fit1 is None else fit1.to_json()
    report["hparams"] = None if hp is None else hp.to_json()

    boot = fit3.boot_laws
    alloc = []
    for c in [float(x) for x in cfg.report_compute]:
        p = compute_optimal(fit3.law, c, flops)
        row: dict[str, Any] = {"C": c, **p.to_json()}
        if boot is not None:
            row["intervals"] = plan_intervals(boot, compute=c, flops=flops, level=level)[
                "chinchilla"
            ]
        if hp is not None:
            row["hparams"] = hp.predict(c, level)
        alloc.append(row)
    report["allocation"] = alloc
    report["tokens_per_param"] = {f"{r['C']:.0e}": r["tokens_per_param"] for r in alloc}
    report["flops"] = OmegaConf.to_container(cfg.flops)
    report["data"] = {
        "path": str(cfg.data if cfg.data is not None else cfg.store),
        "rows": len(df),
        "fitted_rows": fit3.n_points,
    }
    report["notes"] = notes
    return {
        "report": report,
        "df": rows3,
        "fit3": fit3,
        "fit2": fit2,
        "fit1": fit1,
        "hp": hp,
        "flops": flops,
    }


def fit_main(argv: list[str]) -> int:
    cfg = compose("fit", argv)
    fmt = check_format(cfg.format)
    res = fit_data(cfg)
    report = res["report"]
    out = Path(cfg.out) if cfg.out else Path("outputs/scaling") / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    report["out"] = str(out)
    if bool(cfg.plots):
        report["plots"] = [str(p) for p in _plots(res, out, float(cfg.levels_tol))]
    (out / "fit.json").write_text(json.dumps(report, indent=2, default=_default))
    if fmt == "json":
        print_json(report)
    else:
        _print_fit(report)
    return 0


def _default(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def _plots(res: dict[str, Any], out: Path, tol: float) -> list[Path]:
    from muscale.scaling import plots

    paths = [
        plots.plot_isoflop(
            res["df"], res["fit3"], res["fit2"], res["flops"], out / "isoflop.png", tol
        ),
        plots.plot_frontier(
            res["df"], res["fit3"], res["flops"], out / "frontier.png", res["fit1"], res["fit2"]
        ),
        plots.plot_residuals(res["df"], res["fit3"], out / "residuals.png"),
    ]
    if res["hp"] is not None and (res["hp"].lr or res["hp"].batch_size):
        paths.append(plots.plot_hparams(res["hp"], out / "hparams.png"))
    return paths


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
            f"{r['N']:.3g}",
            f"{r['D']:.3g}",
            f"{r['tokens_per_param']:.1f}",
            _ci(r.get("intervals", {}).get("tokens_per_param"), ".1f"),
            f"{r['loss']:.4f}",
        ]
        if hp_cols:
            h = r["hparams"]
            cells += [
                f"{h['lr']:.3g}" if "lr" in h else "",
                f"{h['batch_size']:.3g}" if "batch_size" in h else "",
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
                f"{name}: N_opt ∝ C^{a['a']:.3f} {_ci(a['N_opt']['exponent_ci'], '.3f')}, "
                f"D_opt ∝ C^{a['b']:.3f} {_ci(a['D_opt']['exponent_ci'], '.3f')}"
            )
    hp = report.get("hparams")
    if hp:
        for k in ("lr", "batch_size"):
            if hp[k]:
                con.print(
                    f"{k}_opt = {hp[k]['coef']:.4g} · C^{hp[k]['exponent']:.4f} "
                    f"(exponent {level}% CI {_ci(hp[k]['exponent_ci'], '.4f')})"
                )
    for n in report["notes"]:
        con.print(f"note: {n}")
    con.print(f"fit.json and plots in {report['out']}")


# ---------------------------------------------------------------------------- plan


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, value, "must be a number, e.g. 1e21") from None
    if not math.isfinite(x):
        raise ConfigError(name, value, "must be finite")
    return x


def load_fit_json(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"fit={p}: no such file (write one with `muscale scaling fit out=DIR`)")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"fit={p}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(d, dict):
        raise UserError(f"fit={p}: expected a JSON object with E, A, B, alpha, beta")
    return d


def plan_report(cfg: DictConfig) -> dict[str, Any]:
    import numpy as np

    from muscale.scaling.allocation import plan, plan_intervals
    from muscale.scaling.laws import ChinchillaLaw, published
    from muscale.scaling.powerlaw import PowerLaw

    flops = _flops(cfg)
    compute = _number("compute", cfg.compute)
    target = _number("loss", cfg.loss)
    d_inf = _number("inference_tokens", cfg.inference_tokens) or 0.0
    if d_inf < 0:
        raise ConfigError("inference_tokens", d_inf, "must be >= 0")
    boot = None
    hp_laws: dict[str, PowerLaw] = {}
    if cfg.fit:
        d = load_fit_json(str(cfg.fit))
        law = ChinchillaLaw.from_dict(d)
        source = f"fit {cfg.fit}"
        if d.get("bootstrap"):
            boot = np.array(d["bootstrap"], dtype=np.float64)
        for k, v in (d.get("hparams") or {}).items():
            if k in ("lr", "batch_size") and v:
                hp_laws[k] = PowerLaw.from_json(v)
    else:
        law, cite = published(str(cfg.law))
        source = f"published law {cfg.law!s}: {cite}"
    plans = plan(law, compute=compute, target_loss=target, inference_tokens=d_inf, flops=flops)
    level = float(cfg.level)
    report: dict[str, Any] = {
        "source": source,
        "law": law.as_dict(),
        "compute": compute,
        "target_loss": plans["chinchilla"].loss,
        "inference_tokens": d_inf,
        "flops": OmegaConf.to_container(cfg.flops),
    }
    ivs = (
        plan_intervals(
            boot,
            compute=compute,
            target_loss=target,
            inference_tokens=d_inf,
            flops=flops,
            level=level,
        )
        if boot is not None
        else {}
    )
    for name, p in plans.items():
        entry = p.to_json()
        if name in ivs:
            entry["intervals"] = ivs[name]
        for k, pl in hp_laws.items():
            entry[k] = float(pl(p.train_flops))
        report[name] = entry
    report["level"] = level
    report["uncertainty"] = (
        f"{len(boot)} bootstrap replicates of the fit"
        if boot is not None
        else "none (no bootstrap replicates in the law's source)"
    )
    return report


def plan_main(argv: list[str]) -> int:
    cfg = compose("plan", argv)
    fmt = check_format(cfg.format)
    report = plan_report(cfg)
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
            f"{p['tokens_per_param']:.1f}",
            f"{p['loss']:.4f}",
            f"{p['train_flops']:.3g}",
            f"{p['inference_flops']:.3g}",
            f"{p['total_flops']:.3g}",
        ]
        cells += [f"{p[k]:.3g}" for k in extra]
        t.add_row(*cells)
        iv = p.get("intervals")
        if iv:
            t.add_row(
                f"  {level}% CI",
                _ci(iv["N"], ".3g"),
                _ci(iv["D"], ".3g"),
                _ci(iv["tokens_per_param"], ".1f"),
                _ci(iv["loss"], ".4f"),
                "",
                "",
                "",
                *["" for _ in extra],
            )
    con.print(t)
    con.print(f"uncertainty: {report['uncertainty']}")
    sys.stdout.flush()
    return 0
