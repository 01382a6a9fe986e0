"""Transfer: the large run's ready-to-train Hydra config from a proxy sweep's fit.

Under μP the optimal base hyperparameters do not depend on width (TP5 §3), so the target
keeps the proxies' ``param.base_width`` and takes the proxies' optimum. ``method=mean``
uses the precision-weighted mean of the per-proxy optima (right when the trend is flat);
``method=trend`` extrapolates the fitted log2 trend to the target width (for a scheme
whose optimum drifts, e.g. SP). The default ``auto`` picks mean when the verdict is
"holds", trend when it is "drifts"; when "inconclusive", mean for μP (whose theory says
the optimum is width-independent) and trend for other schemes.

Every tuned value is transferred (:func:`tuned_values`): the LR and every hyperparameter
fitted across proxies (a confirmation sweep's α_out, ...) by the same rule; the others the
sweep varied (α_in, α_attn, init std, warmup from a joint search) at the found point. Each
carries its provenance (source, proxies, trials, fit and verdict) into the YAML. For a
depth sweep (``scale="depth"``) the target's depth plays the width's role.

:func:`make_transfer` builds the config (content); :func:`write_transfer` writes it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from muscale.errors import ConfigError, UserError
from muscale.sweep.config import LR_KEY, STOP_AT, SWEEPABLE
from muscale.sweep.optima import ParamFit, SweepFit, Verdict, predict_loss
from muscale.sweep.store import Record

#: schemes whose theory says the optimum does not move with width (mean when inconclusive)
WIDTH_INDEPENDENT = ("mup",)

METHODS = ("auto", "mean", "trend")


@dataclass(kw_only=True)
class TargetConfig:
    width: int
    depth: int | None = None
    max_steps: int | None = None
    device: str = "cuda"
    precision: str = "bf16"
    compile: bool = True
    launcher: str = "torchrun"  # torchrun | slurm
    nproc_per_node: int = 8
    nodes: int = 1

    def __post_init__(self) -> None:
        for name in ("width", "depth", "max_steps", "nproc_per_node", "nodes"):
            value = getattr(self, name)
            if value is None and name in ("depth", "max_steps"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"target.{name}", value, "a positive integer")
        if self.launcher not in ("torchrun", "slurm"):
            raise ConfigError("target.launcher", self.launcher, "choose torchrun or slurm")


def transfer_method(method: str, scheme: str, v: Verdict) -> str:
    """The transfer method ``method`` stands for: ``mean``/``trend`` as given; ``auto``: the
    mean when the optimum holds, the trend when it drifts, and when inconclusive the mean
    for width-independent schemes (μP) and the trend for the others."""
    if method not in METHODS:
        raise ConfigError("method", method, f"choose one of {', '.join(METHODS)}")
    if method != "auto":
        return method
    if v.kind == "holds":
        return "mean"
    if v.kind == "drifts":
        return "trend"
    return "mean" if scheme in WIDTH_INDEPENDENT else "trend"


def transfer_log2(
    xs: list[float],
    cis: list[tuple[float, float]],
    trend: Any,
    target: int,
    method: str,
) -> tuple[float, tuple[float, float]]:
    """log2 of the value at ``target`` and its 95% interval: weighted mean, or the trend."""
    if method == "mean" or trend is None:
        x = np.array(xs)
        sd = np.array([max((hi - lo) / 3.92, 0.05) for lo, hi in cis])
        w = 1 / sd**2
        mean = float(np.sum(w * x) / np.sum(w))
        se = float(math.sqrt(1 / np.sum(w)))
        return mean, (mean - 1.96 * se, mean + 1.96 * se)
    xw = math.log2(target)
    mean = trend.intercept + trend.slope * xw
    xbar = float(np.mean(np.log2(trend.widths)))
    half = max(abs(trend.ci[1] - trend.slope), 0.0) * abs(xw - xbar)
    return mean, (mean - half, mean + half)


def transferred_lr(
    fit: SweepFit, scheme: str, width: int, method: str
) -> tuple[float, tuple[float, float], str]:
    """log2(LR) for the target (its width, or depth for a depth sweep), interval, method."""
    used = transfer_method(method, scheme, fit.verdict(scheme))
    cs = [c for (s, _), c in fit.best.items() if s == scheme]
    x, ci = transfer_log2(
        [c.log2_lr_opt for c in cs], [c.log2_lr_ci for c in cs], fit.trends[scheme], width, used
    )
    return x, ci, used


def _short(key: str) -> str:
    return next((k for k, v in SWEEPABLE.items() if v == key), key)


def tuned_values(
    fit: SweepFit,
    records: list[Record],
    target: int,
    *,
    scheme: str,
    method: str = "auto",
    param_fits: dict[str, ParamFit] | None = None,
) -> dict[str, dict[str, Any]]:
    """Config key -> {value, source, provenance...} for everything the sweep tuned.

    ``target``: the target's width (its depth for a depth sweep). Sources: ``fit`` (optimum
    per proxy, transferred by mean or trend), ``search`` (a value the sweep varied, taken at
    the best curve: the found point of a joint search or the best grid value; not fitted
    across proxies).
    """
    param_fits = param_fits or {}
    scale = fit.scale
    proxies = sorted(v for s, v in fit.best if s == scheme)
    x, (lo, hi), used = transferred_lr(fit, scheme, target, method)
    v = fit.verdict(scheme)
    t = fit.trends[scheme]
    best_curve = fit.best[(scheme, max(proxies))]
    out: dict[str, dict[str, Any]] = {
        LR_KEY: {
            "value": float(2.0**x),
            "source": "fit",
            "ci": [float(2.0**lo), float(2.0**hi)],
            "method": used,
            scale + "s": proxies,
            "verdict": v.kind,
            "reason": v.reason,
            "slope": t.slope,
            "slope_ci": list(t.ci),
            "trials": sum((c.n_trials for (s, _), c in fit.best.items() if s == scheme), 0),
        }
    }
    for key, value in sorted(best_curve.hparams.items()):
        if key == STOP_AT:
            continue
        name = _short(key)
        pf = param_fits.get(name)
        if pf is not None and len(pf.optima) >= 2 and pf.trend is not None:
            m = transfer_method(method, scheme, pf.verdict)
            xv, (lv, hv) = transfer_log2(
                [o.log2_opt for o in pf.optima], [o.log2_ci for o in pf.optima], pf.trend, target, m
            )
            out[key] = {
                "value": float(2.0**xv),
                "source": "fit",
                "ci": [float(2.0**lv), float(2.0**hv)],
                "method": m,
                scale + "s": [o.scale_value for o in pf.optima],
                "verdict": pf.verdict.kind,
                "reason": pf.verdict.reason,
                "slope": pf.trend.slope,
                "slope_ci": list(pf.trend.ci),
                "trials": sum(len(o.keys) for o in pf.optima),
            }
            continue
        at = [
            r
            for r in records
            if r.scheme == scheme and STOP_AT not in r.hparams and r.hparams.get(key) == value
        ]
        where = sorted({int((r.width if scale == "width" else r.depth) or 0) for r in at})
        out[key] = {
            "value": value,
            "source": "search",
            "note": "the best point's value; not fitted across proxies",
            scale + "s": where,
            "trials": len(at),
            "best_loss": min(
                (r.loss for r in at if r.loss is not None and not r.diverged), default=None
            ),
        }
    return out


def make_transfer(
    fit: SweepFit,
    records: list[Record],
    target: TargetConfig,
    *,
    scheme: str | None = None,
    method: str = "auto",
    store: str = "",
    param_fits: dict[str, ParamFit] | None = None,
) -> dict[str, Any]:
    """The target config (a dict ready to dump as a Hydra YAML), every tuned value set."""
    scheme = scheme or fit.scheme
    if scheme not in fit.trends:
        raise UserError(f"scheme={scheme} is not in the fit; it has {', '.join(fit.trends)}")
    scale = fit.scale
    proxies = sorted(w for s, w in fit.best if s == scheme)
    if scale == "depth" and target.depth is None:
        raise ConfigError("target.depth", None, "a depth sweep transfers to a target depth")
    target_value = target.width if scale == "width" else int(target.depth or 0)
    if target_value < max(proxies):
        raise ConfigError(
            f"target.{scale}",
            target_value,
            f"must be >= the largest proxy {scale} ({max(proxies)}): transfer goes up",
        )
    if param_fits is None:  # every other hyperparameter the sweep varied, fitted the same way
        from muscale.sweep.optima import fit_all, swept_params

        names = [p for p in swept_params(records) if p != "lr"]
        param_fits = fit_all(
            records, params=names, scale=fit.scale, scheme=scheme, tol=fit.slope_tol
        )
    tuned = tuned_values(
        fit, records, target_value, scheme=scheme, method=method, param_fits=param_fits
    )
    best_curve = fit.best[(scheme, max(proxies))]
    proto = next(
        r
        for r in records
        if r.scheme == scheme
        and (r.width if scale == "width" else r.depth) == max(proxies)
        and r.hparams == best_curve.hparams
    )
    cfg = proto.config
    model = dict(cfg["model"], width=target.width)
    if target.depth is not None:
        model["depth"] = target.depth
    param = dict(cfg["param"])
    if target.depth is not None and param.get("base_depth") is None:
        param["base_depth"] = int(
            cfg["model"]["depth"]
        )  # depth rules scale from the proxies' depth
    optim = dict(cfg["optim"])
    trainer = dict(
        cfg.get("trainer", {}),
        device=target.device,
        precision=target.precision,
        compile=target.compile,
        resume="auto",
        stop_at=None,  # a halving rung's stop is not the target's
    )
    if target.max_steps is not None:
        trainer["max_steps"] = target.max_steps
    hp_opt = {k: t["value"] for k, t in tuned.items() if k != LR_KEY}
    pred, plo, phi = predict_loss(fit.loss_law[scheme], target_value)
    trend = fit.trends[scheme]
    lr = tuned[LR_KEY]
    provenance = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "store": store,
        "sweep": fit.sweep,
        "scheme": scheme,
        "scale": scale,
        "proxy_widths": proxies,
        "transfer_holds": fit.holds(scheme),
        "verdict": fit.verdict(scheme).kind,
        "lr_method": lr["method"],
        "lr": lr["value"],
        "lr_ci": lr["ci"],
        "lr_trend_slope_octaves_per_doubling": trend.slope,
        "lr_trend_slope_ci": list(trend.ci),
        "hp_opt": hp_opt,
        "tuned": tuned,
        "predicted_loss": pred,
        "predicted_loss_ci": [plo, phi],
        "git_commit": proto.git_commit,
        "launch": _launch_hint(target),
    }
    provenance = json.loads(json.dumps(provenance))  # plain lists, no shared YAML anchors
    out: dict[str, Any] = {
        "defaults": _defaults(cfg),
        "model": model,
        "param": param,
        "optim": optim,
        "data": cfg.get("data", {}),
        "trainer": trainer,
        "logger": cfg.get("logger", {}),
        "provenance": provenance,
    }
    for key, t in tuned.items():
        _set_dotted(out, key, t["value"])
    return out


#: config groups whose option the written config must pick (train.yaml's are gpt, synthetic)
GROUPS = (("model", "family"), ("param", "scheme"), ("optim", "name"), ("data", "name"))


def _defaults(cfg: dict[str, Any]) -> list[Any]:
    """``train`` with the proxies' model, parametrization, optimizer and data options, so
    that the groups' schemas match the values written below (an MLP proxy -> model=mlp)."""
    from muscale.hydra_app import conf_dir

    out: list[Any] = ["train"]
    for group, field_ in GROUPS:
        name = (cfg.get(group) or {}).get(field_)
        if name and (conf_dir() / group / f"{name}.yaml").is_file():
            out.append({f"override /{group}": name})
    return [*out, "_self_"]


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = value


def _launch_hint(t: TargetConfig) -> str:
    if t.launcher == "slurm":
        return (
            "muscale train --config-dir <dir of this file> --config-name <this file's stem> "
            "hydra/launcher=slurm_gpu -m"
        )
    return (
        f"torchrun --nnodes={t.nodes} --nproc_per_node={t.nproc_per_node} -m muscale.train "
        "--config-dir <dir of this file> --config-name <this file's stem> trainer.parallel=fsdp"
    )


def write_transfer(cfg: dict[str, Any], path: Path, *, overwrite: bool = False) -> Path:
    """Write the YAML atomically (never half a file, never over an existing file unless
    ``overwrite``) with a header explaining how to run it."""
    from muscale.files import write_text_new

    prov = cfg["provenance"]
    header = (
        "# Generated by `muscale transfer` from a proxy sweep; see `provenance` below.\n"
        f"# Run: muscale train --config-dir {path.parent} --config-name {path.stem}\n"
        f"# Cluster: {prov['launch']}\n"
    )
    return write_text_new(path, header + yaml.safe_dump(cfg, sort_keys=False), overwrite=overwrite)
