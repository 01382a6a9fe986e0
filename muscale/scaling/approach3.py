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
    Written as few in-place passes over (k, n) as possible: this is the whole cost of a fit.
    The exponentials are not max-shifted: a row whose trial point overflows returns a
    non-finite value, which the line search rejects (it backtracks), and accepted points
    have finite terms by construction.
    """
    a, b, e, al, be = (theta[:, j : j + 1] for j in range(5))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e1 = np.multiply(al, -log_n)
        e1 += a
        np.exp(e1, out=e1)  # A / N^alpha
        e2 = np.multiply(be, -log_d)
        e2 += b
        np.exp(e2, out=e2)  # B / D^beta
        e3 = np.exp(e)  # E, (k, 1)
        s = e1 + e2
        s += e3  # predicted loss
        r = np.log(s)
        r -= log_loss  # log-residual
        psi = np.clip(r, -delta, delta)  # Huber'(r)
        r -= 0.5 * psi  # Huber(r) = psi (r - psi / 2)
        if weights is not None:
            psi *= weights
        f = np.einsum("kn,kn->k", psi, r)
        psi /= s  # dLSE/du_j = e_j / s
        e1 *= psi
        e2 *= psi
    grad = np.empty((theta.shape[0], 5))
    grad[:, 0] = e1.sum(axis=1)
    grad[:, 1] = e2.sum(axis=1)
    grad[:, 2] = psi.sum(axis=1) * e3[:, 0]
    # einsum, not ``@``: a BLAS matvec spawns threads that spin on a busy machine
    grad[:, 3] = -np.einsum("kn,n->k", e1, log_n)
    grad[:, 4] = -np.einsum("kn,n->k", e2, log_d)
    return f, grad


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
        return np.column_stack(
            [np.exp(t[:, 2]), np.exp(t[:, 0]), np.exp(t[:, 1]), t[:, 3], t[:, 4]]
        )

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


class _Centred:
    """The fit in centred coordinates: ``a' = a − α·mean(log N)``, ``b' = b − β·mean(log D)``.

    A linear change of variables (same optimum, same objective values) that removes most of
    the correlation between ``a`` and ``α`` (log N ≈ 20 on real data), so L-BFGS needs about
    half the iterations."""

    def __init__(self, df: pd.DataFrame) -> None:
        log_n = np.log(df["N"].to_numpy(dtype=np.float64))
        log_d = np.log(df["D"].to_numpy(dtype=np.float64))
        self.m_n, self.m_d = float(log_n.mean()), float(log_d.mean())
        self.log_n = log_n - self.m_n
        self.log_d = log_d - self.m_d
        self.log_l = np.log(df["loss"].to_numpy(dtype=np.float64))

    def to_centred(self, theta: Array) -> Array:
        t = np.array(theta, dtype=np.float64, copy=True)
        t[:, 0] -= t[:, 3] * self.m_n
        t[:, 1] -= t[:, 4] * self.m_d
        return t

    def from_centred(self, theta: Array) -> Array:
        t = np.array(theta, dtype=np.float64, copy=True)
        t[:, 0] += t[:, 3] * self.m_n
        t[:, 1] += t[:, 4] * self.m_d
        return t

    def minimize(
        self, x0: Array, delta: float, weights: Array | None = None, group: int = 1, **tol: Any
    ) -> BatchResult:
        """Batched L-BFGS from ``x0`` (original coordinates); rows ``i`` use
        ``weights[i // group]``. Returns the result in original coordinates."""

        def fun_grad(x: Array, rows: NDArray[np.int64]) -> tuple[Array, Array]:
            w = None if weights is None else weights[rows // group]
            return objective(x, self.log_n, self.log_d, self.log_l, delta, w)

        res = minimize_batched(fun_grad, self.to_centred(x0), **tol)
        res.x = self.from_centred(res.x)
        return res


#: grid stage: every start to a moderate tolerance (still tighter than scipy's default
#: ``factr``, about 2e-6 relative on this objective); polish stage: the distinct optima to a
#: tight one (the grid stage finds the basin, the polish fixes the last digits cheaply);
#: bootstrap replicates start at the optimum and are run to a tight tolerance directly.
GRID_TOL: dict[str, Any] = {"ftol": 1e-7, "gtol": 1e-10, "max_iter": 300}
POLISH_TOL: dict[str, Any] = {"ftol": 1e-14, "gtol": 1e-13, "max_iter": 2000}
BOOT_TOL: dict[str, Any] = {"ftol": 1e-11, "gtol": 1e-12, "max_iter": 1000}


def _fit_points(df: pd.DataFrame, *, delta: float, starts: Array) -> Approach3Fit:
    problem = _Centred(df)
    res = problem.minimize(starts, delta, **GRID_TOL)
    optima, _ = distinct_optima(res)
    if optima.shape[0]:
        polished = problem.minimize(optima[:16], delta, **POLISH_TOL)
        optima, values = distinct_optima(polished)
    else:
        values = np.zeros(0)
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
    res = _Centred(df).minimize(
        np.tile(starts, (n_boot, 1)), fit.delta, weights, group=k, **BOOT_TOL
    )
    fun = np.where(np.isfinite(res.fun), res.fun, np.inf).reshape(n_boot, k)
    best = fun.argmin(axis=1)
    return res.x.reshape(n_boot, k, 5)[np.arange(n_boot), best]


def tokens_per_param(law: ChinchillaLaw, compute: float) -> float:
    """Compute-optimal ``D/N`` at ``compute`` FLOPs under ``C = 6ND`` (closed form)."""
    n = law.G * (compute / 6.0) ** law.a
    return compute / (6.0 * n * n)
