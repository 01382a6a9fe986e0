"""Run a chosen set of diagnostics on a checkpoint: what ``muscale diagnose`` calls.

A table maps each diagnostic's name to the function that computes it, so adding one is a
row. Batches for the Hessian and the NTK are random (no data is read):
:func:`muscale.coord.run.synthetic_batch` gives a GPT uniform random tokens and their next
tokens, an MLP ``x ~ N(0, I)`` with uniform random class labels; the loss is the training
cross-entropy. The NTK of a GPT is that of the scalar ``uᵀ logits[:, -1] / √V`` for a
seeded Rademacher ``u`` (a one-probe estimate of the output-trace mean NTK, see
:class:`ProjectedLast`); an MLP's NTK is the mean over its outputs.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from muscale.errors import UserError


@dataclass(kw_only=True)
class SpectraOptions:
    min_dim: int = 16
    tw_sigmas: float = 4.0
    max_plots: int = 24


@dataclass(kw_only=True)
class HessianOptions:
    k: int = 10
    batch_size: int = 8
    tol: float = 1e-6
    trace_probes: int = 30
    slq_steps: int = 40
    slq_probes: int = 2


@dataclass(kw_only=True)
class NTKOptions:
    n: int = 16
    impl: str = "auto"


@dataclass(kw_only=True)
class JacobianOptions:
    width: int = 256
    depths: list[int] = field(default_factory=lambda: [2, 8, 32])
    activations: list[str] = field(default_factory=lambda: ["linear", "relu", "tanh"])
    inits: list[str] = field(default_factory=lambda: ["gaussian", "orthogonal"])


@dataclass(kw_only=True)
class DiagnoseOptions:
    """What ``conf/diagnose.yaml`` documents: the checkpoint, which diagnostics
    (``what``), the device, the seed and each diagnostic's options."""

    checkpoint: str | None = None
    what: list[str] = field(default_factory=lambda: ["spectra"])
    device: str = "cpu"
    seed: int = 0
    spectra: SpectraOptions = field(default_factory=SpectraOptions)
    hessian: HessianOptions = field(default_factory=HessianOptions)
    ntk: NTKOptions = field(default_factory=NTKOptions)
    jacobian: JacobianOptions = field(default_factory=JacobianOptions)
    #: the theory entries' keyword options (documented by each entry function)
    free_jacobian: dict[str, Any] = field(default_factory=dict)
    attention_ntk: dict[str, Any] = field(default_factory=dict)
    spectral_bias: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiagnoseOptions:
        """From a plain dict (the composed config; unknown keys ignored)."""
        sub = {"spectra": SpectraOptions, "hessian": HessianOptions, "ntk": NTKOptions,
               "jacobian": JacobianOptions}  # fmt: skip
        kw: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in d:
                continue
            value = d[name]
            if name in sub:
                known = sub[name].__dataclass_fields__
                value = sub[name](**{k: v for k, v in value.items() if k in known})
            kw[name] = value
        if isinstance(kw.get("what"), str | int | float):  # one name (or a bad what=42)
            kw["what"] = [kw["what"]]
        return cls(**kw)


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
    from muscale.coord.run import synthetic_batch

    return synthetic_batch(src.model_cfg, batch_size=n, seed=seed, device=device)


def _loss(model: nn.Module, batch: Any) -> torch.Tensor:
    from muscale.models.losses import cross_entropy

    x, y = batch
    return cross_entropy(model(x), y)


class ProjectedLast(nn.Module):
    """``uᵀ logits[:, -1] / √V``: a scalar output of a GPT for its NTK."""

    u: torch.Tensor

    def __init__(self, model: nn.Module, u: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("u", u)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        last = self.model(idx)[:, -1]  # (B, V)
        return (last @ self.u)[:, None] / math.sqrt(self.u.numel())


def _require_model(src: Source, what: str) -> nn.Module:
    if src.model is None:
        raise UserError(
            f"what={what} needs a model: pass a checkpoint directory (with "
            "meta.json), not a bare .safetensors file"
        )
    return src.model


def spectra(src: Source | None, opts: DiagnoseOptions) -> Any:
    """Per-layer singular-value spectra against Marchenko-Pastur / Tracy-Widom edges."""
    from muscale.diagnostics.spectra import weight_spectra

    assert src is not None
    target = src.model if src.model is not None else src.state
    assert target is not None
    return weight_spectra(
        target, min_dim=int(opts.spectra.min_dim), tw_sigmas=float(opts.spectra.tw_sigmas)
    )


def hessian(src: Source | None, opts: DiagnoseOptions) -> dict[str, Any]:
    """Top Hessian eigenvalues, Hutchinson trace and the SLQ spectral density."""
    from muscale.diagnostics.hessian import hessian_summary

    assert src is not None
    model = _require_model(src, "hessian")
    ho = opts.hessian
    batch = _batch(src, int(ho.batch_size), int(opts.seed), opts.device)
    h = hessian_summary(
        model,
        _loss,
        batch,
        k=int(ho.k),
        tol=float(ho.tol),
        trace_probes=int(ho.trace_probes),
        slq_steps=int(ho.slq_steps),
        slq_probes=int(ho.slq_probes),
        seed=int(opts.seed),
    )
    lo, hi = float(h.slq.nodes.min()), float(h.slq.nodes.max())
    grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 400)
    return {
        "dim": h.dim,
        "matvecs": h.matvecs,
        "top_eigenvalues": h.top_eigenvalues,
        "top_residuals": h.top_residuals,
        "trace": h.trace,
        "trace_stderr": h.trace_stderr,
        "batch": f"{ho.batch_size} random examples, seed {opts.seed}",
        "density": {"grid": grid.tolist(), "values": h.slq.density(grid).tolist()},
    }


def ntk(src: Source | None, opts: DiagnoseOptions) -> dict[str, Any]:
    """The empirical NTK on a random batch and its eigenvalue decay."""
    from muscale.diagnostics.ntk import eigendecay, empirical_ntk

    assert src is not None
    model = _require_model(src, "ntk")
    x, _ = _batch(src, int(opts.ntk.n), int(opts.seed) + 1, opts.device)
    note = "MLP outputs, mean over outputs"
    if src.model_cfg.get("family") == "gpt":
        g = torch.Generator().manual_seed(int(opts.seed) + 2)
        v = int(src.model_cfg["vocab_size"])
        u = (torch.randint(0, 2, (v,), generator=g) * 2 - 1).float().to(opts.device)
        model = ProjectedLast(model, u)
        note = "GPT: scalar u·logits[:, -1]/√V, Rademacher u (seeded)"
    k = empirical_ntk(model, x, impl=str(opts.ntk.impl), trace="mean")
    lam, slope = eigendecay(k)
    return {
        "n": len(x),
        "trace": "mean",
        "note": note,
        "eigenvalues": lam.tolist(),
        "decay_slope": slope,
        "trace_value": float(torch.trace(k)),
    }


def jacobian(src: Source | None, opts: DiagnoseOptions) -> list[dict[str, Any]]:
    """Dynamical isometry of critical plain MLPs (needs no checkpoint)."""
    from muscale.diagnostics.isometry import isometry_study

    jo = opts.jacobian
    rows = isometry_study(
        tuple(jo.activations),
        tuple(jo.inits),
        tuple(jo.depths),
        width=int(jo.width),
        seed=int(opts.seed),
    )
    return [r.to_dict() for r in rows]


def free_jacobian(src: Source | None, opts: DiagnoseOptions) -> dict[str, Any]:
    """Jacobian singular-value spectra predicted by free multiplicative convolution vs
    sampled networks (:func:`muscale.diagnostics.free_jacobian.free_jacobian_entry`)."""
    from muscale.diagnostics.free_jacobian import free_jacobian_entry

    return free_jacobian_entry({"seed": int(opts.seed), **opts.free_jacobian})


def attention_ntk(src: Source | None, opts: DiagnoseOptions) -> dict[str, Any]:
    """Infinite-width attention NNGP/NTK and the empirical kernel's convergence with width
    (:func:`muscale.diagnostics.ntk_attention.attention_ntk_entry`)."""
    from muscale.diagnostics.ntk_attention import attention_ntk_entry

    return attention_ntk_entry(dict(opts.attention_ntk))


def spectral_bias(src: Source | None, opts: DiagnoseOptions) -> dict[str, Any]:
    """ReLU-NTK vs Gaussian-kernel eigenvalues by spherical-harmonic degree
    (:func:`muscale.diagnostics.spectral_bias.spectral_bias_entry`)."""
    from muscale.diagnostics.spectral_bias import spectral_bias_entry

    return spectral_bias_entry(dict(opts.spectral_bias))


#: name -> (function, whether it needs a checkpoint); results come in this order
DIAGNOSTICS: dict[str, tuple[Callable[[Source | None, DiagnoseOptions], Any], bool]] = {
    "spectra": (spectra, True),
    "hessian": (hessian, True),
    "ntk": (ntk, True),
    "jacobian": (jacobian, False),
    "free_jacobian": (free_jacobian, False),
    "attention_ntk": (attention_ntk, False),
    "spectral_bias": (spectral_bias, False),
}


def run(opts: DiagnoseOptions) -> dict[str, Any]:
    """Compute every requested diagnostic; returns the results dict for the report
    (:func:`muscale.diagnostics.report.write_report`)."""
    if not opts.what:
        raise UserError(f"what=[] is not allowed: choose at least one of {', '.join(DIAGNOSTICS)}")
    for w in opts.what:
        if w not in DIAGNOSTICS:
            raise UserError(f"what={w!r} is not allowed: choose any of {', '.join(DIAGNOSTICS)}")
    needs_model = any(DIAGNOSTICS[w][1] for w in opts.what)
    src = load_source(opts.checkpoint, opts.device) if needs_model else None
    results: dict[str, Any] = {}
    if src is not None:
        results["source"] = src.label
    for name, (fn, _) in DIAGNOSTICS.items():
        if name in opts.what:
            results[name] = fn(src, opts)
    return results


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    """The results as JSON-ready data (spectra as dicts, the Hessian without its density)."""
    out = dict(results)
    if "spectra" in out:
        out["spectra"] = [lay.to_dict() for lay in out["spectra"]]
    if "hessian" in out:
        out["hessian"] = {k: v for k, v in out["hessian"].items() if k != "density"}
    return out
