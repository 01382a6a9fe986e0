r"""Hyperparameters against compute: ``η_opt = a·C^b`` and ``B_opt = c·C^d``.

DeepSeek-AI 2024 ("DeepSeek LLM", §3.1, Eq. 1) sweep batch size and learning rate at
several compute budgets and fit power laws of the optimum against compute
(they report :math:`η_{opt} = 0.3118\,C^{-0.1250}`, :math:`B_{opt} = 0.2920\,C^{0.3271}`).

Per compute level (runs grouped as in :func:`muscale.scaling.approach2.compute_levels`) the
optimum is, by ``method``:

* ``vertex`` (default): the vertex of a least-squares quadratic of loss in
  ``(log η, log B)`` (or in the one that varies), the loss being close to quadratic in log
  hyperparameters near its minimum; the best run when the fit is not convex or its vertex
  falls outside the swept range;
* ``near_optimal``: DeepSeek's rule, every run within ``tol`` (0.25%) of the level's
  minimum loss is a data point of the regression.

Intervals: bootstrap of runs within each level, the whole pipeline refitted per replicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from muscale.errors import ConfigError, UserError
from muscale.scaling.approach2 import compute_levels
from muscale.scaling.powerlaw import PowerLaw, fit_loglog, with_intervals

Array = NDArray[np.float64]
METHODS = ("vertex", "near_optimal")
MIN_LEVELS = 2


@dataclass(kw_only=True)
class HparamFit:
    lr: PowerLaw | None  # eta_opt = coef * C**exponent
    batch_size: PowerLaw | None
    points: pd.DataFrame  # columns C, lr, batch_size: the optima (or near-optimal runs)
    method: str
    levels: int
    notes: list[str] = field(default_factory=list)

    def predict(self, compute: float, level: float = 0.95) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, law in (("lr", self.lr), ("batch_size", self.batch_size)):
            if law is not None:
                out[name] = float(law(compute))
                out[f"{name}_ci"] = law.interval(compute, level)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "levels": self.levels,
            "lr": None if self.lr is None else self.lr.to_json(),
            "batch_size": None if self.batch_size is None else self.batch_size.to_json(),
            "optima": self.points.to_dict(orient="list"),
            "notes": self.notes,
        }


def _quad_opt(x: Array, y: Array) -> float | None:
    coef = np.polyfit(x, y, 2)
    if not coef[0] > 0:
        return None
    v = -coef[1] / (2 * coef[0])
    return float(v) if x.min() <= v <= x.max() else None


def _quad2_opt(x: Array, z: Array, y: Array) -> tuple[float, float] | None:
    """Vertex of ``y ≈ c0 + c1 x + c2 z + c3 x² + c4 z² + c5 xz`` if convex and in range."""
    X = np.column_stack([np.ones_like(x), x, z, x * x, z * z, x * z])
    c, *_ = np.linalg.lstsq(X, y, rcond=None)
    H = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    if not (H[0, 0] > 0 and np.linalg.det(H) > 0):
        return None
    vx, vz = np.linalg.solve(H, -c[1:3])
    if not (x.min() <= vx <= x.max() and z.min() <= vz <= z.max()):
        return None
    return float(vx), float(vz)


def _level_optima(sub: pd.DataFrame, cols: list[str], method: str, tol: float) -> list[dict]:
    """The optimum (``vertex``) or the near-optimal runs of one compute level."""
    c = float(np.exp(np.log(sub["C"].to_numpy()).mean()))
    loss = sub["loss"].to_numpy()
    if method == "near_optimal":
        near = sub[loss <= loss.min() * (1 + tol)]
        return [{"C": c, **{k: float(r[k]) for k in cols}} for _, r in near.iterrows()]
    best = sub.iloc[int(loss.argmin())]
    opt = {k: float(best[k]) for k in cols}
    logs = {k: np.log(sub[k].to_numpy()) for k in cols}
    varying = [k for k in cols if np.unique(logs[k]).size >= 3]
    if len(varying) == 2 and len(sub) >= 6:
        v = _quad2_opt(logs[varying[0]], logs[varying[1]], loss)
        if v is not None:
            opt = {varying[0]: float(np.exp(v[0])), varying[1]: float(np.exp(v[1]))}
    elif len(varying) == 1:
        k = varying[0]
        others = [o for o in cols if o != k]
        same = np.ones(len(sub), dtype=bool)
        for o in others:  # the 1-D profile through the best run
            same &= np.isclose(sub[o].to_numpy(), float(best[o]))
        if same.sum() >= 3:
            v1 = _quad_opt(logs[k][same], loss[same])
            if v1 is not None:
                opt[k] = float(np.exp(v1))
    return [{"C": c, **opt}]


def _optima(
    df: pd.DataFrame,
    labels: NDArray[np.int64],
    cols: list[str],
    method: str,
    tol: float,
    rng: Any = None,
) -> pd.DataFrame:
    rows: list[dict] = []
    for lab in np.unique(labels):
        sub = df[labels == lab]
        if rng is not None:
            sub = sub.iloc[rng.integers(0, len(sub), len(sub))]
        rows += _level_optima(sub, cols, method, tol)
    return pd.DataFrame(rows)


def fit_hparams(
    df: pd.DataFrame,
    *,
    method: str = "vertex",
    tol: float = 0.0025,
    levels_tol: float = 0.05,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
) -> HparamFit:
    """Power laws of the optimal ``lr`` and ``batch_size`` against ``C``, from a frame of
    sweep runs with columns ``C``, ``loss`` and ``lr`` and/or ``batch_size``."""
    if method not in METHODS:
        raise ConfigError("hparams_method", method, "choose one of " + ", ".join(METHODS))
    cols = [k for k in ("lr", "batch_size") if k in df]
    if not cols:
        raise UserError("hyperparameter laws need an lr or batch_size column (columns.lr=...)")
    labels = compute_levels(df["C"].to_numpy(), levels_tol)
    n_levels = int(np.unique(labels).size)
    if n_levels < MIN_LEVELS:
        raise UserError(
            f"hyperparameter laws need sweeps at {MIN_LEVELS}+ compute levels; found {n_levels} "
            f"(levels_tol={levels_tol} in log10 C)"
        )
    points = _optima(df, labels, cols, method, tol)
    rng = np.random.default_rng(seed)
    boots: dict[str, list[tuple[float, float]]] = {k: [] for k in cols}
    for _ in range(n_boot):
        pts = _optima(df, labels, cols, method, tol, rng)
        for k in cols:
            if pts["C"].nunique() >= 2:
                boots[k].append(fit_loglog(pts["C"], pts[k]))
    laws: dict[str, PowerLaw | None] = {"lr": None, "batch_size": None}
    notes = []
    for k in cols:
        if np.unique(points[k]).size < 2:
            notes.append(f"{k} does not vary across the optima: no law fitted")
            continue
        laws[k] = with_intervals(points["C"], points[k], boots[k], level)
    return HparamFit(
        lr=laws["lr"],
        batch_size=laws["batch_size"],
        points=points,
        method=method,
        levels=n_levels,
        notes=notes,
    )
