"""The field's standard coordinate-check figure (TP5 Fig. 5; mup's ``plot_coord_data``):
one panel per step, size on a log2 axis, one line per module; a row for the level and a
row for the change."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from muscale.coord.run import CoordData


def plot_coord(data: CoordData, path: str | Path, *, title: str | None = None) -> Path:
    """Write the figure to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    level, change = data.mean_over_seeds()
    steps = data.steps + 1
    fig, axes = plt.subplots(2, steps, figsize=(3.2 * steps, 6.4), squeeze=False, sharex=True)
    cmap = plt.get_cmap("viridis")
    n = len(data.points)
    for row, (stat, arr) in enumerate(
        (("level  mean|x_t|", level), ("change  mean|x_t - x_0|", change))
    ):
        for t in range(steps):
            ax = axes[row, t]
            for j, p in enumerate(data.points):
                y = arr[:, j, t]
                if not np.any(y > 0):
                    continue
                ax.plot(
                    data.sizes,
                    np.where(y > 0, y, np.nan),
                    marker="o",
                    ms=3,
                    color=cmap(j / max(n - 1, 1)),
                    label=p.label,
                )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"t = {t}", fontsize=9)
            if t == 0:
                ax.set_ylabel(stat, fontsize=9)
            if row == 1:
                ax.set_xlabel(data.axis)
    handles, labels = axes[0, -1].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    head = (
        title or f"coordinate check ({data.scheme or 'model'}, {data.family}, {data.seeds} seeds)"
    )
    fig.suptitle(head, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.8, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
