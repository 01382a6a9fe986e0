"""Transfer: the large run's ready-to-train Hydra config from a proxy sweep's fit.

Under μP the optimal base hyperparameters do not depend on width (TP5 §3), so the target
keeps the proxies' ``param.base_width`` and takes the proxies' optimum. ``method=mean``
uses the precision-weighted mean of the per-width optima (right when the trend is flat);
``method=trend`` extrapolates the fitted log2(LR) trend to the target width (for a scheme
whose optimum drifts, e.g. SP). The default ``auto`` picks mean when transfer holds.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from muscale.errors import ConfigError, UserError
from muscale.sweep.fit import SweepFit, predict_loss
from muscale.sweep.store import Record

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


def transferred_lr(
    fit: SweepFit, scheme: str, width: int, method: str
) -> tuple[float, tuple[float, float], str]:
    """log2(LR) for the target, its 95% interval, and the method used."""
    if method not in METHODS:
        raise ConfigError("method", method, f"choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = "mean" if fit.holds(scheme) else "trend"
    cs = [c for (s, _), c in fit.best.items() if s == scheme]
    if method == "mean":
        x = np.array([c.log2_lr_opt for c in cs])
        sd = np.array([max((c.log2_lr_ci[1] - c.log2_lr_ci[0]) / 3.92, 0.05) for c in cs])
        w = 1 / sd**2
        mean = float(np.sum(w * x) / np.sum(w))
        se = float(math.sqrt(1 / np.sum(w)))
        return mean, (mean - 1.96 * se, mean + 1.96 * se), method
    t = fit.trends[scheme]
    xw = math.log2(width)
    mean = t.intercept + t.slope * xw
    xbar = float(np.mean(np.log2(t.widths)))
    half = max(abs(t.ci[1] - t.slope), 0.0) * abs(xw - xbar)
    return mean, (mean - half, mean + half), method


def make_transfer(
    fit: SweepFit,
    records: list[Record],
    target: TargetConfig,
    *,
    scheme: str | None = None,
    method: str = "auto",
    store: str = "",
) -> dict[str, Any]:
    """The target config (a dict ready to dump as a Hydra YAML)."""
    scheme = scheme or fit.scheme
    if scheme not in fit.trends:
        raise UserError(f"scheme={scheme} is not in the fit; it has {', '.join(fit.trends)}")
    widths = sorted(w for s, w in fit.best if s == scheme)
    if target.width < max(widths):
        raise ConfigError(
            "target.width",
            target.width,
            f"must be >= the largest proxy width ({max(widths)}): transfer goes up",
        )
    x, (lo, hi), used = transferred_lr(fit, scheme, target.width, method)
    best_curve = fit.best[(scheme, max(widths))]
    proto = next(
        r
        for r in records
        if r.scheme == scheme and r.width == max(widths) and r.hparams == best_curve.hparams
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
    optim = dict(cfg["optim"], lr=float(2.0**x))
    trainer = dict(
        cfg.get("trainer", {}),
        device=target.device,
        precision=target.precision,
        compile=target.compile,
        resume="auto",
    )
    if target.max_steps is not None:
        trainer["max_steps"] = target.max_steps
    hp_opt = {k: v for k, v in best_curve.hparams.items()}
    pred, plo, phi = predict_loss(fit.loss_law[scheme], target.width)
    trend = fit.trends[scheme]
    provenance = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "store": store,
        "sweep": fit.sweep,
        "scheme": scheme,
        "proxy_widths": widths,
        "transfer_holds": fit.holds(scheme),
        "lr_method": used,
        "lr": float(2.0**x),
        "lr_ci": [float(2.0**lo), float(2.0**hi)],
        "lr_trend_slope_octaves_per_doubling": trend.slope,
        "lr_trend_slope_ci": list(trend.ci),
        "hp_opt": hp_opt,
        "predicted_loss": pred,
        "predicted_loss_ci": [plo, phi],
        "git_commit": proto.git_commit,
        "launch": _launch_hint(target),
    }
    out: dict[str, Any] = {
        "defaults": ["train", "_self_"],
        "model": model,
        "param": param,
        "optim": optim,
        "data": cfg.get("data", {}),
        "trainer": trainer,
        "logger": cfg.get("logger", {}),
        "provenance": provenance,
    }
    for key, value in hp_opt.items():
        _set_dotted(out, key, value)
    return out


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
