"""The policy behind ``muscale scaling fit|plan``, as library calls with typed options.

:func:`fit` chooses which Chinchilla approaches a table of runs supports (Hoffmann et al.
2022, Approaches 1-3; Besiroglu et al. 2024 for the Approach 3 replication), reduces
multi-checkpoint runs and hyperparameter sweeps to the rows each approach needs, and
reports the compute-optimal allocation with bootstrap intervals. :func:`plan` turns a
fitted or published law into N, D (and LR, batch size when the fit has hyperparameter
laws) for a compute budget, a target loss, or an inference-aware budget (Sardana et al.
2023). The CLI only composes the options and prints.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muscale.errors import ConfigError, UserError

#: defaults of ``flops`` (C = D · f(N)); see :class:`muscale.scaling.laws.FlopsModel`
FLOPS = {"coef": 6.0, "n_ctx": 0, "aspect": 128.0}


def _flops(d: dict[str, Any]) -> Any:
    from muscale.scaling.laws import FlopsModel

    return FlopsModel(coef=float(d["coef"]), n_ctx=int(d["n_ctx"]), aspect=float(d["aspect"]))


@dataclass(kw_only=True)
class FitOptions:
    """What ``conf/scaling/fit.yaml`` documents, one field per key.

    Exactly one of ``data`` (CSV/parquet) or ``store`` (a sweep store) is the input.
    ``approaches``: ``"auto"`` (3, plus 2 and 1 when the data allow) or a list (3 always
    included; a listed approach the data cannot support is an error). ``hparams``: auto,
    true or false (lr/batch-size laws against compute).
    """

    data: str | None = None
    store: str | None = None
    sweep: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    flops: dict[str, Any] = field(default_factory=lambda: dict(FLOPS))
    approaches: Any = "auto"
    hparams: Any = "auto"
    hparams_method: str = "vertex"
    drop_top: int = 0
    min_N: float = 0.0
    min_C: float = 0.0
    drop_residual: float | None = None
    delta: float = 1e-3
    bootstrap: int = 1000
    level: float = 0.95
    seed: int = 0
    levels_tol: float = 0.05
    report_compute: list[float] = field(default_factory=lambda: [1e21, 1e22, 1e23, 1e24])


@dataclass(kw_only=True)
class FitResult:
    """The JSON report (what ``fit.json`` holds) and the fitted objects behind it."""

    report: dict[str, Any]
    df: Any  # the rows approach 3 fitted
    fit3: Any
    fit2: Any
    fit1: Any
    hp: Any
    flops: Any


def _approaches(value: Any) -> tuple[set[int], bool]:
    """``auto`` -> ({3}, True); a list -> (that set plus 3, False)."""
    if isinstance(value, str) and value == "auto":
        return {3}, True
    items = list(value) if isinstance(value, list | tuple) else [value]
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


def fit(opts: FitOptions) -> FitResult:
    """Run every requested fit on ``opts.data`` (or ``opts.store``)."""
    from muscale.scaling.allocation import compute_optimal, plan_intervals
    from muscale.scaling.approach1 import fit_approach1
    from muscale.scaling.approach2 import fit_approach2
    from muscale.scaling.approach3 import fit_approach3, select_points
    from muscale.scaling.hparams import fit_hparams
    from muscale.scaling.io import canonical, from_store, read_table

    flops = _flops(opts.flops)
    columns = {str(k): str(v) for k, v in opts.columns.items()}
    if (opts.data is None) == (opts.store is None):
        raise UserError("give exactly one of data=<csv|parquet> or store=<sweep store>")
    if opts.data is not None:
        raw = read_table(str(opts.data))
    else:
        raw, columns = from_store(str(opts.store), opts.sweep), {}
    df = canonical(raw, columns, flops)
    chosen, auto = _approaches(opts.approaches)
    want_hp = _tristate("hparams", opts.hparams)
    n_boot, level, seed = int(opts.bootstrap), float(opts.level), int(opts.seed)
    if n_boot < 0:
        raise ConfigError("bootstrap", n_boot, "must be >= 0")
    if not 0 < level < 1:
        raise ConfigError("level", level, "must be in (0, 1)")
    notes: list[str] = []

    hp = None
    has_hp = "lr" in df or "batch_size" in df
    if want_hp == "true" or (want_hp == "auto" and has_hp):
        hp = fit_hparams(
            df,
            method=str(opts.hparams_method),
            levels_tol=float(opts.levels_tol),
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
                final,
                drop_top=int(opts.drop_top),
                min_N=float(opts.min_N),
                min_C=float(opts.min_C),
            )
            fit2 = fit_approach2(
                kept,
                flops=flops,
                tol=float(opts.levels_tol),
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
        delta=float(opts.delta),
        drop_top=int(opts.drop_top),
        min_N=float(opts.min_N),
        min_C=float(opts.min_C),
        drop_residual=None if opts.drop_residual is None else float(opts.drop_residual),
        n_boot=n_boot,
        level=level,
        seed=seed,
    )
    report: dict[str, Any] = {**fit3.to_json(), "approach": 3}
    report["approach2"] = None if fit2 is None else fit2.to_json()
    report["approach1"] = None if fit1 is None else fit1.to_json()
    report["hparams"] = None if hp is None else hp.to_json()
    report["allocation"] = alloc = []
    for c in [float(x) for x in opts.report_compute]:
        p = compute_optimal(fit3.law, c, flops)
        row: dict[str, Any] = {"C": c, **p.to_json()}
        if fit3.boot_laws is not None:
            row["intervals"] = plan_intervals(fit3.boot_laws, compute=c, flops=flops, level=level)[
                "chinchilla"
            ]
        if hp is not None:
            row["hparams"] = hp.predict(c, level)
        alloc.append(row)
    report["tokens_per_param"] = {f"{r['C']:.0e}": r["tokens_per_param"] for r in alloc}
    report["flops"] = dict(opts.flops)
    report["data"] = {
        "path": str(opts.data if opts.data is not None else opts.store),
        "rows": len(df),
        "fitted_rows": fit3.n_points,
    }
    report["notes"] = notes
    return FitResult(report=report, df=rows3, fit3=fit3, fit2=fit2, fit1=fit1, hp=hp, flops=flops)


def plots(res: FitResult, out: Path, levels_tol: float) -> list[Path]:
    """isoFLOP, frontier, residual (and hyperparameter) figures of a fit, under ``out``."""
    from muscale.scaling import plots as p

    paths = [
        p.plot_isoflop(res.df, res.fit3, res.fit2, res.flops, out / "isoflop.png", levels_tol),
        p.plot_frontier(res.df, res.fit3, res.flops, out / "frontier.png", res.fit1, res.fit2),
        p.plot_residuals(res.df, res.fit3, out / "residuals.png"),
    ]
    if res.hp is not None and (res.hp.lr or res.hp.batch_size):
        paths.append(p.plot_hparams(res.hp, out / "hparams.png"))
    return paths


def save_fit(res: FitResult, out: Path, *, with_plots: bool, levels_tol: float) -> dict[str, Any]:
    """Write ``fit.json`` (and the plots) into ``out``; the report with ``out``/``plots``."""
    out.mkdir(parents=True, exist_ok=True)
    report = res.report
    report["out"] = str(out)
    if with_plots:
        report["plots"] = [str(x) for x in plots(res, out, levels_tol)]
    (out / "fit.json").write_text(json.dumps(report, indent=2, default=_default))
    return report


def _default(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


# ---------------------------------------------------------------------------- plan


@dataclass(kw_only=True)
class PlanOptions:
    """What ``conf/scaling/plan.yaml`` documents: a budget (``compute`` FLOPs or a target
    ``loss``), the law (``fit``: a fit.json, else the published ``law``), the FLOPs model."""

    compute: Any = None
    loss: Any = None
    inference_tokens: Any = 0
    fit: str | None = None
    law: str = "epoch"
    flops: dict[str, Any] = field(default_factory=lambda: dict(FLOPS))
    level: float = 0.95


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
    """A ``fit.json`` written by :func:`save_fit` (one clear error for a wrong file)."""
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


def plan(opts: PlanOptions) -> dict[str, Any]:
    """Compute-optimal and inference-aware plans, with intervals when the fit has
    bootstrap replicates, and LR/batch size when it has hyperparameter laws."""
    import numpy as np

    from muscale.scaling.allocation import plan as make_plans
    from muscale.scaling.allocation import plan_intervals
    from muscale.scaling.laws import ChinchillaLaw, published
    from muscale.scaling.powerlaw import PowerLaw

    flops = _flops(opts.flops)
    compute = _number("compute", opts.compute)
    target = _number("loss", opts.loss)
    d_inf = _number("inference_tokens", opts.inference_tokens) or 0.0
    if d_inf < 0:
        raise ConfigError("inference_tokens", d_inf, "must be >= 0")
    boot = None
    hp_laws: dict[str, PowerLaw] = {}
    if opts.fit:
        d = load_fit_json(str(opts.fit))
        law = ChinchillaLaw.from_dict(d)
        source = f"fit {opts.fit}"
        if d.get("bootstrap"):
            boot = np.array(d["bootstrap"], dtype=np.float64)
        for k, v in (d.get("hparams") or {}).items():
            if k in ("lr", "batch_size") and v:
                hp_laws[k] = PowerLaw.from_json(v)
    else:
        law, cite = published(str(opts.law))
        source = f"published law {opts.law!s}: {cite}"
    plans = make_plans(
        law, compute=compute, target_loss=target, inference_tokens=d_inf, flops=flops
    )
    level = float(opts.level)
    report: dict[str, Any] = {
        "source": source,
        "law": law.as_dict(),
        "compute": compute,
        "target_loss": plans["chinchilla"].loss,
        "inference_tokens": d_inf,
        "flops": dict(opts.flops),
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
