r"""Chinchilla Approach 2: isoFLOP profiles.

Hoffmann et al. 2022, §3.2: for each compute budget, train several model sizes, fit a
parabola to loss against :math:`\log N`, and take its vertex as :math:`N_{opt}(C)`; then fit
:math:`N_{opt} \propto C^a` and :math:`D_{opt} \propto C^b` across budgets. Runs are grouped
into compute levels by clustering :math:`\log_{10} C` (gaps larger than ``tol`` start a new
level), so budgets that are equal only up to rounding still group. Intervals: bootstrap of
runs within each level, every parabola and both power laws refitted per replicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from muscale.errors import ConfigError, UserError
from muscale.scaling.laws import SIX_ND, FlopsModel
from muscale.scaling.powerlaw import PowerLaw, fit_loglog, with_intervals

Array = NDArray[np.float64]
MIN_SIZES = 3  # a parabola needs three model sizes
MIN_LEVELS = 2  # a power law needs two budgets


def compute_levels(C: Array, tol: float = 0.05) -> NDArray[np.int64]:
    """Level index per run: sorted ``log10 C`` split where consecutive values differ by more
    than ``tol`` (0.05 ≈ 12%)."""
    if not tol > 0:
        raise ConfigError("levels_tol", tol, "must be > 0 (a gap in log10 C)")
    lc = np.log10(np.asarray(C, dtype=np.float64))
    order = np.argsort(lc, kind="stable")
    breaks = np.concatenate([[0], (np.diff(lc[order]) > tol).astype(np.int64)])
    labels = np.empty(len(lc), dtype=np.int64)
    labels[order] = np.cumsum(breaks)
    return labels


@dataclass(kw_only=True)
class IsoFlopLevel:
    C: float
    N_opt: float
    D_opt: float
    loss_opt: float
    coef: list[float]  # parabola in log N: c2 x² + c1 x + c0
    n_runs: int
    on_edge: bool  # vertex outside the sizes trained at this budget (extrapolated)
    N: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


@dataclass(kw_only=True)
class IsoFlopFit:
    levels: list[IsoFlopLevel]
    N_opt: PowerLaw
    D_opt: PowerLaw
    skipped: int  # levels with too few sizes or a concave profile

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.N_opt.exponent,
            "b": self.D_opt.exponent,
            "N_opt": self.N_opt.to_json(),
            "D_opt": self.D_opt.to_json(),
            "levels": [
                {k: v for k, v in lvl.__dict__.items() if k not in ("N", "loss")}
                for lvl in self.levels
            ],
            "skipped_levels": self.skipped,
        }

    def tokens_per_param(self, C: float) -> float:
        return float(self.D_opt(C) / self.N_opt(C))


def _vertex(x: Array, y: Array) -> tuple[float, Array] | None:
    """Vertex of the least-squares parabola ``y ≈ c2 x² + c1 x + c0``, or None if concave."""
    coef = np.polyfit(x, y, 2)
    if not coef[0] > 0:
        return None
    return float(-coef[1] / (2 * coef[0])), coef


def _levels(
    df: pd.DataFrame, labels: NDArray[np.int64], flops: FlopsModel
) -> tuple[list[IsoFlopLevel], int]:
    out: list[IsoFlopLevel] = []
    skipped = 0
    for lab in np.unique(labels):
        sub = df[labels == lab]
        x = np.log(sub["N"].to_numpy())
        y = sub["loss"].to_numpy()
        v = _vertex(x, y) if np.unique(x).size >= MIN_SIZES else None
        if v is None:
            skipped += 1
            continue
        xv, coef = v
        c = float(np.exp(np.log(sub["C"].to_numpy()).mean()))
        n_opt = float(np.exp(xv))
        out.append(
            IsoFlopLevel(
                C=c,
                N_opt=n_opt,
                D_opt=c / float(flops(n_opt)),
                loss_opt=float(np.polyval(coef, xv)),
                coef=coef.tolist(),
                n_runs=len(sub),
                on_edge=not (x.min() <= xv <= x.max()),
                N=sub["N"].tolist(),
                loss=y.tolist(),
            )
        )
    return out, skipped


def _boot_vertices(
    df: pd.DataFrame, labels: NDArray[np.int64], n_boot: int, rng: np.random.Generator
) -> tuple[Array, Array]:
    """Parabola vertices (log N) of every level in ``n_boot`` resamples of its runs, all
    replicates at once through weighted normal equations; NaN where a replicate's parabola
    is degenerate or concave. Returns (log C per level (L,), vertices (n_boot, L))."""
    levels = np.unique(labels)
    log_c = np.empty(len(levels))
    verts = np.full((n_boot, len(levels)), np.nan)
    for j, lab in enumerate(levels):
        m = labels == lab
        x = np.log(df["N"].to_numpy()[m])
        y = df["loss"].to_numpy()[m]
        log_c[j] = np.log(df["C"].to_numpy()[m]).mean()
        n = len(x)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
        X = np.column_stack([x * x, x, np.ones_like(x)])  # (n, 3)
        xtwx = np.einsum("rn,ni,nj->rij", w, X, X)
        xtwy = np.einsum("rn,ni,n->ri", w, X, y)
        ux, inv = np.unique(x, return_inverse=True)
        onehot = (inv[:, None] == np.arange(ux.size)).astype(np.float64)  # (n, sizes)
        ok = ((w @ onehot) > 0).sum(axis=1) >= MIN_SIZES  # 3+ distinct sizes drawn
        coef = np.full((n_boot, 3), np.nan)
        if ok.any():
            coef[ok] = np.linalg.solve(xtwx[ok], xtwy[ok][..., None])[..., 0]
        convex = coef[:, 0] > 0
        verts[convex, j] = -coef[convex, 1] / (2 * coef[convex, 0])
    return log_c, verts


def fit_approach2(
    df: pd.DataFrame,
    *,
    flops: FlopsModel = SIX_ND,
    tol: float = 0.05,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> IsoFlopFit:
    """IsoFLOP fit of a frame with ``N``, ``C``, ``loss`` (``D`` is recomputed from C)."""
    labels = compute_levels(df["C"].to_numpy(), tol)
    levels, skipped = _levels(df, labels, flops)
    if len(levels) < MIN_LEVELS:
        n_lev = int(labels.max()) + 1 if len(labels) else 0
        raise UserError(
            f"approach 2 needs at least {MIN_LEVELS} compute levels with {MIN_SIZES}+ model "
            f"sizes and a convex loss profile; found {len(levels)} usable of {n_lev} levels "
            f"(levels_tol={tol} in log10 C)"
        )
    rng = np.random.default_rng(seed)
    boot_n: list[tuple[float, float]] = []
    boot_d: list[tuple[float, float]] = []
    if n_boot > 0:
        log_c, verts = _boot_vertices(df, labels, n_boot, rng)
        for row in verts:
            ok = np.isfinite(row)
            if ok.sum() < MIN_LEVELS:
                continue
            c, n = np.exp(log_c[ok]), np.exp(row[ok])
            boot_n.append(fit_loglog(c, n))
            boot_d.append(fit_loglog(c, c / flops(n)))
    cs = [x.C for x in levels]
    return IsoFlopFit(
        levels=levels,
        N_opt=with_intervals(cs, [x.N_opt for x in levels], boot_n, level),
        D_opt=with_intervals(cs, [x.D_opt for x in levels], boot_d, level),
        skipped=skipped,
    )
