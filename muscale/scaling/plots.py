"""Figures of a scaling fit: isoFLOP curves, the compute-optimal frontier, residuals,
and hyperparameters against compute. Each function writes one PNG and returns its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from muscale.scaling.approach1 import EnvelopeFit
from muscale.scaling.approach2 import IsoFlopFit, compute_levels
from muscale.scaling.approach3 import Approach3Fit
from muscale.scaling.hparams import HparamFit
from muscale.scaling.laws import FlopsModel


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def plot_isoflop(
    df: pd.DataFrame,
    fit3: Approach3Fit,
    fit2: IsoFlopFit | None,
    flops: FlopsModel,
    path: Path,
    tol: float = 0.05,
) -> Path:
    """Loss against N per compute level: runs, the Approach 3 law along ``C = const`` and,
    when fitted, the Approach 2 parabolas with their vertices."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    labels = compute_levels(df["C"].to_numpy(), tol)
    uniq = np.unique(labels)
    cmap = plt.get_cmap("viridis")
    for j, lab in enumerate(uniq):
        sub = df[labels == lab]
        color = cmap(j / max(len(uniq) - 1, 1))
        c = float(np.exp(np.log(sub["C"]).mean()))
        ax.scatter(sub["N"], sub["loss"], s=10, color=color)
        n = np.logspace(np.log10(sub["N"].min()) - 0.2, np.log10(sub["N"].max()) + 0.2, 100)
        ax.plot(n, fit3.law.loss(n, c / flops(n)), "-", color=color, lw=1, alpha=0.8)
    if fit2 is not None:
        for lvl in fit2.levels:
            x = np.linspace(np.log(min(lvl.N)), np.log(max(lvl.N)), 60)
            ax.plot(np.exp(x), np.polyval(lvl.coef, x), "--", color="k", lw=0.8)
            ax.plot([lvl.N_opt], [lvl.loss_opt], "*", color="red", ms=9, mec="k")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title("isoFLOP curves: law (solid), parabolas and vertices (dashed, *)")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_frontier(
    df: pd.DataFrame,
    fit3: Approach3Fit,
    flops: FlopsModel,
    path: Path,
    fit1: EnvelopeFit | None = None,
    fit2: IsoFlopFit | None = None,
) -> Path:
    """Compute-optimal N against C: the Approach 3 closed form with its bootstrap band,
    Approach 1/2 power laws where fitted, and the runs."""
    from muscale.scaling.allocation import compute_optimal

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    cs = np.logspace(np.log10(df["C"].min()) - 0.5, max(np.log10(df["C"].max()), 24.0), 60)
    ax.scatter(df["C"], df["N"], s=6, color="0.6", label="runs")
    n3 = [compute_optimal(fit3.law, c, flops).N for c in cs]
    ax.plot(cs, n3, "-", color="C0", label=f"approach 3 (a={fit3.law.a:.3f})")
    boot = fit3.boot_laws
    if boot is not None and len(boot):
        _, a_, b_, al, be = (boot[:, j : j + 1] for j in range(5))
        with np.errstate(all="ignore"):
            g = (al * a_ / (be * b_)) ** (1.0 / (al + be))
            band = g * (cs[None, :] / flops.coef) ** (be / (al + be))
        band = band[np.isfinite(band).all(axis=1)]
        lo, hi = np.percentile(np.array(band), [2.5, 97.5], axis=0)
        ax.fill_between(cs, lo, hi, color="C0", alpha=0.2)
    if fit2 is not None:
        ax.plot([x.C for x in fit2.levels], [x.N_opt for x in fit2.levels], "*", color="C3", ms=9)
        ax.plot(
            cs, fit2.N_opt(cs), "--", color="C3", label=f"approach 2 (a={fit2.N_opt.exponent:.3f})"
        )
    if fit1 is not None:
        ax.plot(fit1.C, fit1.N, ".", color="C2", ms=2)
        ax.plot(
            cs, fit1.N_opt(cs), ":", color="C2", label=f"approach 1 (a={fit1.N_opt.exponent:.3f})"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("compute-optimal N")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def plot_residuals(df: pd.DataFrame, fit3: Approach3Fit, path: Path) -> Path:
    """log L_pred − log L against N and against C (the points the fit kept)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    r = np.log(fit3.law.loss(df["N"].to_numpy(), df["D"].to_numpy())) - np.log(df["loss"])
    for ax, col, name in zip(axes, ("N", "C"), ("parameters N", "training FLOPs C"), strict=True):
        ax.scatter(df[col], r, s=8)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("log L_pred − log L")
    fig.suptitle(f"approach 3 residuals (RMS {float(np.sqrt(np.mean(r**2))):.4f})")
    return _save(fig, path)


def plot_hparams(fit: HparamFit, path: Path) -> Path:
    """Optimal LR and batch size against compute with their power laws."""
    plt = _plt()
    laws = [(k, law) for k, law in (("lr", fit.lr), ("batch_size", fit.batch_size)) if law]
    fig, axes = plt.subplots(
        1, max(len(laws), 1), figsize=(5 * max(len(laws), 1), 4), squeeze=False
    )
    for ax, (k, law) in zip(axes[0], laws, strict=False):
        c = fit.points["C"].to_numpy()
        ax.scatter(c, fit.points[k], s=12)
        cs = np.logspace(np.log10(c.min()) - 0.3, np.log10(c.max()) + 0.3, 50)
        ax.plot(cs, law(cs), "-", label=f"{law.coef:.3g}·C^{law.exponent:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C")
        ax.set_ylabel(f"optimal {k}")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
    return _save(fig, path)
