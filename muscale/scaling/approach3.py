r"""Chinchilla Approach 3: fit ``L(N, D) = E + A/N^α + B/D^β`` to final losses.

Hoffmann et al. 2022, §3.3 and App. D.2: minimise

.. math:: \sum_i \mathrm{Huber}_\delta\big(\mathrm{LSE}(a - \alpha \log N_i,\;
          b - \beta \log D_i,\; e) - \log L_i\big),\qquad \delta = 10^{-3},

over ``(a, b, e, α, β)`` with ``A = e^a, B = e^b, E = e^e``, by L-BFGS from a grid of
starts (α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}: 4500 starts),
keeping the best. All starts run together in :func:`muscale.scaling.lbfgs.minimize_batched`
with the analytic gradient. Confidence intervals come from a nonparametric bootstrap over
points (Besiroglu et al. 2024, §3), every replicate refitted at once as a batch whose rows
carry their own resampling weights, started from the distinct optima of the full fit.

Outliers: Besiroglu et al. 2024 drop the 5 highest-loss points (``drop_top=5``); the
options ``min_N``/``min_C`` (small runs) and ``drop_residual`` (points whose log-residual
from a first fit exceeds a threshold) cover the other choices seen in replications.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from muscale.errors import ConfigError, UserError
from muscale.scaling.laws import ChinchillaLaw
from muscale.scaling.lbfgs import BatchResult, minimize_batched

Array = NDArray[np.float64]
PARAMS = ("a", "b", "e", "alpha", "beta")
MIN_POINTS = 8


def standard_grid() -> Array:
    """The 4500 starts ``(a, b, e, alpha, beta)`` of Hoffmann et al. 2022 / Besiroglu 2024."""
    ab = np.arange(0.0, 25.0 + 1e-9, 5.0)
    e = np.arange(-1.0, 1.0 + 1e-9, 0.5)
    ex = np.arange(0.0, 2.0 + 1e-9, 0.5)
    return np.array(list(itertools.product(ab, ab, e, ex, ex)), dtype=np.float64)


def huber(r: Array, delta: float) -> Array:
    """``r²/2`` for ``|r| <= δ``, else ``δ(|r| − δ/2)`` (scipy.special.huber)."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(
    theta: Array,
    log_n: Array,
    log_d: Array,
    log_loss: Array,
    delta: float = 1e-3,
    weights: Array | None = None,
) -> tuple[Array, Array]:
    """Huber objective and its gradient for every row of ``theta`` (k, 5) at once.

    ``weights`` (k, n) or (n,) multiplies each point's term (bootstrap resampling counts).
    The log-sum-exp is shifted by its maximum so that no start overflows.
    """
    a, b, e, al, be = (theta[:, j : j + 1] for j in range(5))
    u1 = a - al * log_n
    u2 = b - be * log_d
    m = np.maximum(np.maximum(u1, u2), e)
    e1 = np.exp(u1 - m)
    e2 = np.exp(u2 - m)
    e3 = np.exp(e - m)
    s = e1 + e2 + e3
    r = m + np.log(s) - log_loss
    absr = np.abs(r)
    small = absr <= delta
    h = np.where(small, 0.5 * r * r, delta * (absr - 0.5 * delta))
    psi = np.clip(r, -delta, delta)
    if weights is not None:
        h = h * weights
        psi = psi * weights
    q = psi / s
    p1 = q * e1
    p2 = q * e2
    grad = np.empty((theta.shape[0], 5))
    grad[:, 0] = p1.sum(axis=1)
    grad[:, 1] = p2.sum(axis=1)
    grad[:, 2] = (q * e3).sum(axis=1)
    grad[:, 3] = -(p1 @ log_n)
    grad[:, 4] = -(p2 @ log_d)
    return h.sum(axis=1), grad


@dataclass(kw_only=True)
class Approach3Fit:
    """The best fit, the distinct local optima found, and bootstrap intervals."""

    law: ChinchillaLaw
    theta: Array  # (a, b, e, alpha, beta)
    objective: float
    n_points: int
    dropped: int
    delta: float
    n_starts: int
    optima: Array  # (m, 5) distinct local optima, best first
    optima_objective: Array  # (m,)
    boot: Array | None = None  # (n_boot, 5) replicate fits in law coordinates
    level: float = 0.95
    residuals: Array = field(default_factory=lambda: np.zeros(0))  # log L_pred - log L

    @property
    def boot_laws(self) -> Array | None:
        """Bootstrap replicates as columns E, A, B, alpha, beta."""
        if self.boot is None:
            return None
        t = self.boot
        return np.column_stack([np.exp(t[:, 2]), np.exp(t[:, 0]), np.exp(t[:, 1]), t[:, 3], t[:, 4]])

    def intervals(self) -> dict[str, list[float]]:
        """Percentile intervals of E, A, B, alpha, beta and the allocation exponents."""
        if self.boot is None:
            return {}
        laws = self.boot_laws
        assert laws is not None
        q = [(1 - self.level) / 2 * 100, (1 + self.level) / 2 * 100]
        out = {
            name: np.percentile(laws[:, j], q).tolist()
            for j, name in enumerate(("E", "A", "B", "alpha", "beta"))
        }
        al, be = laws[:, 3], laws[:, 4]
        out["a"] = np.percentile(be / (al + be), q).tolist()
        out["b"] = np.percentile(al / (al + be), q).tolist()
        return out

    def to_json(self) -> dict[str, Any]:
        law = self.law
        return {
            **law.as_dict(),
            "a": law.a,
            "b": law.b,
            "G": law.G,
            "intervals": self.intervals(),
            "level": self.level,
            "objective": self.objective,
            "n_points": self.n_points,
            "dropped": self.dropped,
            "delta": self.delta,
            "n_starts": self.n_starts,
            "n_bootstrap": 0 if self.boot is None else len(self.boot),
            "bootstrap": None if self.boot_laws is None else self.boot_laws.tolist(),
        }


def select_points(
    df: pd.DataFrame,
    *,
    drop_top: int = 0,
    min_N: float = 0.0,
    min_C: float = 0.0,
) -> tuple[pd.DataFrame, int]:
    """Outlier rules applied before fitting; returns the kept frame and how many went."""
    if drop_top < 0:
        raise ConfigError("drop_top", drop_top, "must be >= 0")
    keep = (df["N"] >= min_N) & (df["C"] >= min_C)
    kept = df[keep]
    if drop_top:
        kept = kept.drop(kept["loss"].nlargest(drop_top).index)
    return kept, len(df) - len(kept)


def fit_approach3(
    df: pd.DataFrame,
    *,
    delta: float = 1e-3,
    drop_top: int = 0,
    min_N: float = 0.0,
    min_C: float = 0.0,
    drop_residual: float | None = None,
    grid: Array | None = None,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
    boot_starts: int = 4,
) -> Approach3Fit:
    """Fit Approach 3 to a frame with columns ``N``, ``D``, ``loss`` (and ``C``).

    ``drop_residual``: after a first fit, drop points with ``|log L_pred − log L|`` above it
    and refit. ``n_boot > 0`` adds percentile intervals at ``level``.
    """
    if not delta > 0:
        raise ConfigError("delta", delta, "must be > 0")
    kept, dropped = select_points(df, drop_top=drop_top, min_N=min_N, min_C=min_C)
    _check_points(kept)
    starts = standard_grid() if grid is None else np.asarray(grid, dtype=np.float64)
    fit = _fit_points(kept, delta=delta, starts=starts)
    if drop_residual is not None:
        if not drop_residual > 0:
            raise ConfigError("drop_residual", drop_residual, "must be > 0 (log-loss residual)")
        res = np.abs(_log_residuals(fit.law, kept))
        n_before = len(kept)
        kept = kept[res <= drop_residual]
        _check_points(kept)
        dropped += n_before - len(kept)
        fit = _fit_points(kept, delta=delta, starts=starts)
    fit.dropped = dropped
    if n_boot > 0:
        fit.boot = _bootstrap(kept, fit, n_boot=n_boot, seed=seed, n_starts=boot_starts)
        fit.level = level
    return fit


def _check_points(df: pd.DataFrame) -> None:
    if len(df) < MIN_POINTS:
        raise UserError(
            f"approach 3 needs at least {MIN_POINTS} runs to fit 5 parameters; got {len(df)} "
            "(after dropping outliers)"
        )
    if df["N"].nunique() < 2 or df["D"].nunique() < 2:
        raise UserError("approach 3 needs at least 2 distinct model sizes and 2 token counts")


def _log_residuals(law: ChinchillaLaw, df: pd.DataFrame) -> Array:
    return np.log(law.loss(df["N"].to_numpy(), df["D"].to_numpy())) - np.log(df["loss"].to_numpy())


def _fit_points(df: pd.DataFrame, *, delta: float, starts: Array) -> Approach3Fit:
    log_n = np.log(df["N"].to_numpy(dtype=np.float64))
    log_d = np.log(df["D"].to_numpy(dtype=np.float64))
    log_l = np.log(df["loss"].to_numpy(dtype=np.float64))

    def fun_grad(x: Array, rows: NDArray[np.int64]) -> tuple[Array, Array]:
        return objective(x, log_n, log_d, log_l, delta)

    res = minimize_batched(fun_grad, starts)
    optima, values = distinct_optima(res)
    if not optima.shape[0] or not _valid(optima[0]):
        raise UserError("approach 3 found no finite fit with positive exponents: check the data")
    law = ChinchillaLaw.from_log(optima[0])
    return Approach3Fit(
        law=law,
        theta=optima[0],
        objective=float(values[0]),
        n_points=len(df),
        dropped=0,
        delta=delta,
        n_starts=len(starts),
        optima=optima,
        optima_objective=values,
        residuals=_log_residuals(law, df),
    )


def _valid(theta: Array) -> bool:
    return bool(np.isfinite(theta).all() and theta[3] > 0 and theta[4] > 0)


def distinct_optima(res: BatchResult, *, rtol: float = 1e-6) -> tuple[Array, Array]:
    """Local optima sorted by objective, one per basin (points within ``rtol`` of objective
    and 1e-3 in parameters are the same optimum); only those with positive exponents."""
    ok = np.isfinite(res.fun) & (res.x[:, 3] > 0) & (res.x[:, 4] > 0)
    x, f = res.x[ok], res.fun[ok]
    order = np.argsort(f, kind="stable")
    x, f = x[order], f[order]
    keep: list[int] = []
    for i in range(len(f)):
        if len(keep) >= 64:
            break
        same = any(
            abs(f[i] - f[j]) <= rtol * max(abs(f[j]), 1e-300) and np.abs(x[i] - x[j]).max() < 1e-3
            for j in keep
        )
        if not same:
            keep.append(i)
    return x[keep], f[keep]


def _bootstrap(
    df: pd.DataFrame, fit: Approach3Fit, *, n_boot: int, seed: int, n_starts: int
) -> Array:
    """Refit ``n_boot`` resamples (multinomial counts as weights) in one batch, each from the
    ``n_starts`` best distinct optima of the full fit; keep each replicate's best."""
    rng = np.random.default_rng(seed)
    n = len(df)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    starts = fit.optima[: max(1, n_starts)]
    k = len(starts)
    x0 = np.tile(starts, (n_boot, 1))
    log_n = np.log(df["N"].to_numpy(dtype=np.float64))
    log_d = np.log(df["D"].to_numpy(dtype=np.float64))
    log_l = np.log(df["loss"].to_numpy(dtype=np.float64))

    def fun_grad(x: Array, rows: NDArray[np.int64]) -> tuple[Array, Array]:
        return objective(x, log_n, log_d, log_l, fit.delta, weights[rows // k])

    res = minimize_batched(fun_grad, x0)
    fun = np.where(np.isfinite(res.fun), res.fun, np.inf).reshape(n_boot, k)
    best = fun.argmin(axis=1)
    return res.x.reshape(n_boot, k, 5)[np.arange(n_boot), best]


def fit_summary(fit: Approach3Fit) -> dict[str, float]:
    """Parameters with the compute-optimal exponents (for tables)."""
    law = fit.law
    return {**law.as_dict(), "a": law.a, "b": law.b, "G": law.G, "objective": fit.objective}


def tokens_per_param(law: ChinchillaLaw, compute: float) -> float:
    """Compute-optimal ``D/N`` at ``compute`` FLOPs under ``C = 6ND`` (closed form)."""
    n = law.G * (compute / 6.0) ** law.a
    return compute / (6.0 * n * n)


_ = math  # keep math for docstrings' sake
