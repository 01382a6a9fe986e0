r"""Chinchilla Approach 1: the minimum over training curves.

Hoffmann et al. 2022, §3.1: from training curves of many model sizes, take at each
compute value the run with the lowest loss (the envelope of all curves, interpolated on a
log-spaced grid of 1500 FLOP values), and fit :math:`N_{opt} \propto C^a`,
:math:`D_{opt} \propto C^b` to the envelope. Grid points where the envelope sits on the
smallest or largest model trained are dropped (the true optimum may lie outside the sizes
tried). Intervals: bootstrap over whole runs. The usual caveat holds: an intermediate
checkpoint of a cosine schedule is not the loss of a run trained to that length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from muscale.errors import UserError
from muscale.scaling.laws import SIX_ND, FlopsModel
from muscale.scaling.powerlaw import PowerLaw, fit_loglog, with_intervals

Array = NDArray[np.float64]
MIN_RUNS = 3


@dataclass(kw_only=True)
class EnvelopeFit:
    C: Array  # grid points on the envelope (interior ones)
    N: Array  # model size of the best run at each
    D: Array
    loss: Array
    N_opt: PowerLaw
    D_opt: PowerLaw
    n_runs: int

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.N_opt.exponent,
            "b": self.D_opt.exponent,
            "N_opt": self.N_opt.to_json(),
            "D_opt": self.D_opt.to_json(),
            "n_runs": self.n_runs,
            "n_envelope_points": len(self.C),
        }


def _curves(df: pd.DataFrame) -> list[tuple[float, Array, Array]]:
    """(N, log C sorted, loss) per run; runs are the ``run`` column, else the model size."""
    key = "run" if "run" in df else "N"
    out = []
    for _, g in df.groupby(key, sort=True):
        if g["N"].nunique() != 1:
            raise UserError(f"run {g[key].iloc[0]!r} has several model sizes N; one per run")
        n_run = g["N"].iloc[0]
        g = g.groupby("C", as_index=False)["loss"].min()  # best of repeats at one point
        lc = np.log(g["C"].to_numpy())
        if lc.size >= 2:
            out.append((float(n_run), lc, g["loss"].to_numpy()))
    return out


def envelope(
    curves: list[tuple[float, Array, Array]], flops: FlopsModel, n_grid: int = 1500
) -> tuple[Array, Array, Array, Array]:
    """The lowest interpolated loss at each grid compute, and the size that attains it;
    interior points only (not the smallest or largest size)."""
    lo = min(c[1][0] for c in curves)
    hi = max(c[1][-1] for c in curves)
    grid = np.linspace(lo, hi, n_grid)
    losses = np.full((len(curves), n_grid), np.inf)
    for i, (_, lc, loss) in enumerate(curves):
        inside = (grid >= lc[0]) & (grid <= lc[-1])
        losses[i, inside] = np.interp(grid[inside], lc, loss)
    sizes = np.array([c[0] for c in curves])
    best = losses.argmin(axis=0)
    n_best = sizes[best]
    keep = np.isfinite(losses.min(axis=0)) & (n_best > sizes.min()) & (n_best < sizes.max())
    c = np.exp(grid[keep])
    n = n_best[keep]
    return c, n, c / flops(n), losses.min(axis=0)[keep]


def fit_approach1(
    df: pd.DataFrame,
    *,
    flops: FlopsModel = SIX_ND,
    n_grid: int = 1500,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> EnvelopeFit:
    """Envelope fit of training curves: a frame with ``N``, ``C``, ``loss`` per checkpoint
    and a ``run`` column (or one run per model size)."""
    curves = _curves(df)
    if len(curves) < MIN_RUNS:
        raise UserError(
            f"approach 1 needs training curves (2+ checkpoints each) of at least {MIN_RUNS} "
            f"model sizes; got {len(curves)}"
        )
    c, n, d, loss = envelope(curves, flops, n_grid)
    if np.unique(n).size < 2:
        raise UserError(
            "approach 1: the loss envelope passes through fewer than 2 interior model sizes; "
            "train more sizes (or longer curves) around the optimum"
        )
    rng = np.random.default_rng(seed)
    boot_n: list[tuple[float, float]] = []
    boot_d: list[tuple[float, float]] = []
    for _ in range(n_boot):
        pick = [curves[i] for i in rng.integers(0, len(curves), len(curves))]
        cb, nb, db, _ = envelope(pick, flops, n_grid // 5)
        if np.unique(nb).size < 2:
            continue
        boot_n.append(fit_loglog(cb, nb))
        boot_d.append(fit_loglog(cb, db))
    return EnvelopeFit(
        C=c,
        N=n,
        D=d,
        loss=loss,
        N_opt=with_intervals(c, n, boot_n, level),
        D_opt=with_intervals(c, d, boot_d, level),
        n_runs=len(curves),
    )
