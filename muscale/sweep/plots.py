"""The standard μTransfer figures (TP5 Fig. 1): loss vs log2(LR) per width, schemes side by
side, optimum marked; and the optimum against width with its interval and trend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from muscale.sweep.optima import SweepFit


def plot_transfer(fit: SweepFit, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schemes = sorted(fit.trends)
    fig, axes = plt.subplots(
        1, len(schemes), figsize=(5.2 * len(schemes), 4), squeeze=False, sharey=True
    )
    cmap = plt.get_cmap("viridis")
    for ax, s in zip(axes[0], schemes, strict=True):
        curves = sorted((c for (sc, _), c in fit.best.items() if sc == s), key=lambda c: c.width)
        for j, c in enumerate(curves):
            color = cmap(j / max(len(curves) - 1, 1))
            xs = [np.log2(lr) for lr, v in zip(c.lrs, c.losses, strict=True) if v is not None]
            ys = [v for v in c.losses if v is not None]
            ax.plot(xs, ys, "o-", color=color, ms=3, label=f"width {c.width}")
            ax.axvline(c.log2_lr_opt, color=color, ls=":", lw=1)
            ax.plot([c.log2_lr_opt], [c.best_loss], "*", color=color, ms=12, mec="k")
        t = fit.trends[s]
        ax.set_title(f"{s.upper()}: optimum drifts {t.slope:+.2f} oct/doubling")
        ax.set_xlabel("log2(learning rate)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_optimum_vs_width(fit: SweepFit, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4))
    for s in sorted(fit.trends):
        cs = sorted((c for (sc, _), c in fit.best.items() if sc == s), key=lambda c: c.width)
        x = np.log2([c.width for c in cs])
        y = np.array([c.log2_lr_opt for c in cs])
        err = np.array(
            [
                [c.log2_lr_opt - c.log2_lr_ci[0] for c in cs],
                [c.log2_lr_ci[1] - c.log2_lr_opt for c in cs],
            ]
        )
        line = ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, label=s.upper())
        t = fit.trends[s]
        ax.plot(x, t.intercept + t.slope * x, "-", color=line[0].get_color(), alpha=0.6)
    ax.set_xlabel("log2(width)")
    ax.set_ylabel("optimal log2(LR)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
