"""``muscale diagnose``: spectra, Hessian, NTK and Jacobian diagnostics into a report.

    muscale diagnose checkpoint=runs/a/checkpoints/step_0000100 what=[spectra,hessian,ntk]
    muscale diagnose checkpoint=model.safetensors               # spectra only
    muscale diagnose what=[jacobian] format=json

Writes ``report.md`` and PNG plots into ``out`` (default ``outputs/diagnose/<timestamp>``);
``format=json`` prints the numbers as JSON on stdout.

Batches for the Hessian and the NTK (no data is read): a GPT gets ``batch_size`` sequences of
``seq_len`` tokens drawn uniformly from its vocabulary with ``torch.Generator().manual_seed(
seed)`` and the next-token cross-entropy; an MLP gets ``x ~ N(0, I)`` inputs and uniformly
random class labels (cross-entropy), same seed. The NTK of a GPT is that of the scalar
``uᵀ logits[:, -1] / √V`` for a seeded Rademacher ``u`` (a one-probe estimate of the
output-trace mean NTK); an MLP's NTK is the mean over its outputs.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from muscale.cli.common import check_format, compose, print_json
from muscale.errors import UserError

WHATS = ("spectra", "hessian", "ntk", "jacobian")


@dataclass(kw_only=True)
class Source:
    label: str
    model: nn.Module | None  # None for a bare state dict
    state: dict[str, torch.Tensor] | None
    model_cfg: dict[str, Any]


def _latest_checkpoint(path: Path) -> Path:
    if (path / "model.safetensors").exists():
        return path
    steps = sorted((path / "checkpoints").glob("step_*")) if (path / "checkpoints").is_dir() else []
    if not steps:
        raise UserError(
            f"checkpoint={path}: no model.safetensors there and no checkpoints/step_* below it"
        )
    return steps[-1]


def load_source(checkpoint: str | None, device: str) -> Source:
    """A model (checkpoint dir / run dir) or a bare state dict (``.safetensors`` file)."""
    if not checkpoint:
        raise UserError(
            "checkpoint is required for spectra/hessian/ntk: pass checkpoint=<dir or .safetensors>"
        )
    path = Path(checkpoint)
    if not path.exists():
        raise UserError(f"checkpoint={checkpoint}: no such file or directory")
    if path.is_file():
        if path.suffix != ".safetensors":
            raise UserError(f"checkpoint={checkpoint}: a file must be a .safetensors state dict")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device=device)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(
                f"checkpoint={checkpoint}: not a readable .safetensors file: {exc}"
            ) from None
        return Source(label=str(path), model=None, state=state, model_cfg={})
    load_model: Any = None
    with contextlib.suppress(ImportError):
        from muscale.train.checkpoint import load_model  # the trainer's loader
    if load_model is not None:
        loaded = load_model(str(path), device=device)
        cfg = dict(loaded.config.get("model", {}))
        return Source(label=str(path), model=loaded.model, state=None, model_cfg=cfg)
    return _load_dir(_latest_checkpoint(path), device)


def _load_dir(ckpt: Path, device: str) -> Source:
    """Fallback reader of the checkpoint contract (meta.json + model.safetensors)."""
    from safetensors.torch import load_file

    from muscale.build import build_model

    meta_path = ckpt / "meta.json"
    if not meta_path.exists():
        raise UserError(f"checkpoint={ckpt}: meta.json missing")
    meta = json.loads(meta_path.read_text())
    cfg = meta["config"]
    family = meta.get("plan", {}).get("optim_family", "adam")
    model, _ = build_model(cfg["model"], cfg["param"], optim_family=family, device=device)
    model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=device))
    return Source(label=str(ckpt), model=model, state=None, model_cfg=dict(cfg["model"]))


def _batch(src: Source, n: int, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mc = src.model_cfg
    if mc.get("family") == "gpt":
        idx = torch.randint(0, int(mc["vocab_size"]), (n, int(mc["seq_len"]) + 1), generator=g)
        return idx[:, :-1].to(device), idx[:, 1:].to(device)
    x = torch.randn(n, int(mc["in_dim"]), generator=g)
    y = torch.randint(0, int(mc["out_dim"]), (n,), generator=g)
    return x.to(device), y.to(device)


def _ce_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


class _ProjectedLast(nn.Module):
    """``uᵀ logits[:, -1] / √V``: a scalar output of a GPT for its NTK."""

    u: torch.Tensor

    def __init__(self, model: nn.Module, u: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("u", u)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        last = self.model(idx)[:, -1]
        return (last @ self.u)[:, None] / math.sqrt(self.u.numel())


def _require_model(src: Source, what: str) -> nn.Module:
    if src.model is None:
        raise UserError(
            f"what={what} needs a model: pass a checkpoint directory (with "
            "meta.json), not a bare .safetensors file"
        )
    return src.model


def run(cfg: Any) -> dict[str, Any]:
    """Compute every requested diagnostic; returns the results dict for the report."""
    what = [cfg.what] if isinstance(cfg.what, str | int | float) else list(cfg.what)
    if not what:
        raise UserError(f"what=[] is not allowed: choose at least one of {', '.join(WHATS)}")
    for w in what:
        if w not in WHATS:
            raise UserError(f"what={w!r} is not allowed: choose any of {', '.join(WHATS)}")
    device = str(cfg.device)
    results: dict[str, Any] = {}
    src = load_source(cfg.checkpoint, device) if set(what) - {"jacobian"} else None
    if src is not None:
        results["source"] = src.label
    if "spectra" in what and src is not None:
        from muscale.diagnostics.spectra import weight_spectra

        target = src.model if src.model is not None else src.state
        assert target is not None
        results["spectra"] = weight_spectra(
            target, min_dim=int(cfg.spectra.min_dim), tw_sigmas=float(cfg.spectra.tw_sigmas)
        )
    if "hessian" in what and src is not None:
        from muscale.diagnostics.hessian import hessian_summary

        model = _require_model(src, "hessian")
        batch = _batch(src, int(cfg.hessian.batch_size), int(cfg.seed), device)
        h = hessian_summary(
            model,
            _ce_loss,
            batch,
            k=int(cfg.hessian.k),
            tol=float(cfg.hessian.tol),
            trace_probes=int(cfg.hessian.trace_probes),
            slq_steps=int(cfg.hessian.slq_steps),
            slq_probes=int(cfg.hessian.slq_probes),
            seed=int(cfg.seed),
        )
        lo, hi = float(h.slq.nodes.min()), float(h.slq.nodes.max())
        grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 400)
        results["hessian"] = {
            "dim": h.dim,
            "matvecs": h.matvecs,
            "top_eigenvalues": h.top_eigenvalues,
            "top_residuals": h.top_residuals,
            "trace": h.trace,
            "trace_stderr": h.trace_stderr,
            "batch": f"{cfg.hessian.batch_size} random examples, seed {cfg.seed}",
            "density": {"grid": grid.tolist(), "values": h.slq.density(grid).tolist()},
        }
    if "ntk" in what and src is not None:
        from muscale.diagnostics.ntk import eigendecay, empirical_ntk

        model = _require_model(src, "ntk")
        x, _ = _batch(src, int(cfg.ntk.n), int(cfg.seed) + 1, device)
        note = "MLP outputs, mean over outputs"
        if src.model_cfg.get("family") == "gpt":
            g = torch.Generator().manual_seed(int(cfg.seed) + 2)
            v = int(src.model_cfg["vocab_size"])
            u = (torch.randint(0, 2, (v,), generator=g) * 2 - 1).float().to(device)
            model = _ProjectedLast(model, u)
            note = "GPT: scalar u·logits[:, -1]/√V, Rademacher u (seeded)"
        k = empirical_ntk(model, x, impl=str(cfg.ntk.impl), trace="mean")
        lam, slope = eigendecay(k)
        results["ntk"] = {
            "n": len(x),
            "trace": "mean",
            "note": note,
            "eigenvalues": lam.tolist(),
            "decay_slope": slope,
            "trace_value": float(torch.trace(k)),
        }
    if "jacobian" in what:
        from muscale.diagnostics.jacobian import isometry_study

        jc = cfg.jacobian
        rows = isometry_study(
            tuple(jc.activations),
            tuple(jc.inits),
            tuple(jc.depths),
            width=int(jc.width),
            seed=int(cfg.seed),
        )
        results["jacobian"] = [r.to_dict() for r in rows]
    return results


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    out = dict(results)
    if "spectra" in out:
        out["spectra"] = [lay.to_dict() for lay in out["spectra"]]
    if "hessian" in out:
        out["hessian"] = {k: v for k, v in out["hessian"].items() if k != "density"}
    return out


def main(argv: list[str]) -> int:
    cfg = compose("diagnose", argv)
    fmt = check_format(cfg.format)
    t0 = time.perf_counter()
    results = run(cfg)
    out = (
        Path(cfg.out) if cfg.out else Path("outputs/diagnose") / time.strftime("%Y-%m-%d_%H-%M-%S")
    )
    from muscale.diagnostics.report import write_report

    path = write_report(out, results, max_esd_plots=int(cfg.spectra.max_plots))
    sys.stderr.write(f"muscale diagnose: report {path} ({time.perf_counter() - t0:.1f}s)\n")
    if fmt == "json":
        print_json({"report": str(path), **to_json(results)})
    else:
        sys.stdout.write(path.read_text())
    return 0
