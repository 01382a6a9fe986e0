"""Fit the optimal hyperparameters per width and their trend across widths.

Per LR curve (scheme, width): the optimum of log2(LR) is the vertex of a quadratic fitted to
the mean loss over seeds at the best LR and up to two neighbours on each side (loss is close
to quadratic in log2(LR) near the optimum; TP5 Fig. 1). Its uncertainty is a bootstrap over
seeds (≥ 2 seeds), else a residual bootstrap of the quadratic (≥ 4 points), else half the
local grid spacing. Diverged trials are excluded from the curve but counted; a best point at
the edge of the measured LRs is flagged ``on_edge`` (the true optimum may lie outside).

Across widths: weighted least squares of log2(lr_opt) on log2(width) (weights from the
per-width intervals) gives the drift in octaves per width doubling with a t-interval. μP
transfer holds when |slope| ≤ ``slope_tol``; SP drifts by ~0.3–1.7 octaves per doubling
(TP5 Fig. 1 ≈ 0.9).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from muscale.errors import UserError
from muscale.sweep.store import Record


@dataclass
class CurveFit:
    scheme: str
    width: int
    hparams: dict[str, Any]
    lrs: list[float]
    losses: list[float | None]  # mean over seeds; None where a trial diverged
    log2_lr_opt: float
    log2_lr_ci: tuple[float, float]
    on_edge: bool
    n_trials: int
    n_diverged: int
    best_loss: float

    @property
    def lr_opt(self) -> float:
        return 2.0**self.log2_lr_opt


@dataclass
class Trend:
    slope: float
    ci: tuple[float, float]
    intercept: float
    drift_octaves: float
    widths: list[int]


@dataclass
class SweepFit:
    sweep: str | None
    scheme: str
    curves: list[CurveFit]
    best: dict[tuple[str, int], CurveFit]  # (scheme, width) -> curve at the best hparams
    trends: dict[str, Trend]
    slope_tol: float
    loss_law: dict[str, dict[str, Any]] = field(default_factory=dict)

    def holds(self, scheme: str) -> bool:
        return abs(self.trends[scheme].slope) <= self.slope_tol

    def to_json(self) -> dict[str, Any]:
        per_width = []
        for (scheme, width), c in sorted(self.best.items()):
            hp_opt = dict(c.hparams)
            per_width.append(
                {
                    "scheme": scheme,
                    "width": width,
                    "lr_opt": c.lr_opt,
                    "lr_opt_ci": [2.0 ** c.log2_lr_ci[0], 2.0 ** c.log2_lr_ci[1]],
                    "log2_lr_opt": c.log2_lr_opt,
                    "on_edge": c.on_edge,
                    "best_loss": c.best_loss,
                    "n_trials": c.n_trials,
                    "n_diverged": c.n_diverged,
                    "hp_opt": hp_opt,
                    "curve": {"lr": c.lrs, "loss": c.losses},
                }
            )
        by_scheme = {
            s: {
                "trend": {"lr": _trend_json(t)},
                "transfer_holds": self.holds(s),
                "loss_law": self.loss_law.get(s),
            }
            for s, t in self.trends.items()
        }
        return {
            "sweep": self.sweep,
            "scheme": self.scheme,
            "per_width": per_width,
            "trend": {"lr": _trend_json(self.trends[self.scheme])},
            "transfer_holds": self.holds(self.scheme),
            "slope_tol": self.slope_tol,
            "by_scheme": by_scheme,
        }


def _trend_json(t: Trend) -> dict[str, Any]:
    d = asdict(t)
    d["ci"] = list(t.ci)
    return d


def _quad_vertex(x: np.ndarray, y: np.ndarray, x_best: float) -> float:
    """Vertex of the least-squares parabola, clamped to the points' span; x_best if concave."""
    if len(x) < 3:
        return x_best
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return x_best
    return float(np.clip(-b / (2 * a), x.min(), x.max()))


def _window(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    i = int(np.argmin(ys))
    lo, hi = max(0, i - 2), min(len(xs), i + 3)
    return xs[lo:hi], ys[lo:hi], i


def fit_curve(records: list[Record], n_boot: int = 300, seed: int = 0) -> CurveFit:
    """Optimum of log2(LR) on one curve (records share scheme, width and hparams)."""
    r0 = records[0]
    by_lr: dict[float, dict[int, float | None]] = defaultdict(dict)
    n_div = 0
    for r in records:
        loss = r.loss
        ok_loss = loss is not None and math.isfinite(loss) and not r.diverged
        n_div += not ok_loss
        by_lr[r.lr][r.seed] = float(loss) if ok_loss and loss is not None else None
    lrs = sorted(by_lr)
    seeds = sorted({s for d in by_lr.values() for s in d})
    means: list[float | None] = []
    for lr in lrs:
        vals = [v for v in by_lr[lr].values() if v is not None]
        means.append(float(np.mean(vals)) if len(vals) == len(by_lr[lr]) else None)
    ok = [i for i, m in enumerate(means) if m is not None]
    if not ok:
        raise UserError(
            f"every trial diverged at scheme={r0.scheme} width={r0.width}: lower the LR range"
        )
    xs = np.log2(np.array([lrs[i] for i in ok]))
    ys = np.array([means[i] for i in ok])
    wx, wy, i_best = _window(xs, ys)
    x_best = float(xs[i_best])
    x_opt = _quad_vertex(wx, wy, x_best)
    best_idx = ok[i_best]
    on_edge = best_idx in (0, len(lrs) - 1)
    rng = np.random.default_rng(seed)
    boots: list[float] = []
    if len(seeds) >= 2:
        for _ in range(n_boot):
            pick = rng.choice(seeds, size=len(seeds), replace=True)
            ym = []
            for i in ok:
                got = [by_lr[lrs[i]].get(int(s)) for s in pick]
                vals = [v for v in got if v is not None]
                ym.append(np.mean(vals) if vals else np.nan)
            ym_arr = np.array(ym)
            keep = np.isfinite(ym_arr)
            bx, by, bi = _window(xs[keep], ym_arr[keep])
            boots.append(_quad_vertex(bx, by, float(xs[keep][bi])))
    elif len(wx) >= 4:
        coef = np.polyfit(wx, wy, 2)
        resid = wy - np.polyval(coef, wx)
        for _ in range(n_boot):
            yb = np.polyval(coef, wx) + rng.choice(resid, size=len(resid), replace=True)
            boots.append(_quad_vertex(wx, yb, float(wx[int(np.argmin(yb))])))
    if boots:
        lo, hi = np.percentile(boots, [2.5, 97.5])
        ci = (float(min(lo, x_opt)), float(max(hi, x_opt)))
    else:
        gaps = np.diff(xs)
        half = 0.5 * float(gaps.min()) if len(gaps) else 0.5
        ci = (x_opt - half, x_opt + half)
    return CurveFit(
        scheme=r0.scheme,
        width=r0.width,
        hparams=dict(r0.hparams),
        lrs=lrs,
        losses=means,
        log2_lr_opt=x_opt,
        log2_lr_ci=ci,
        on_edge=on_edge,
        n_trials=len(records),
        n_diverged=n_div,
        best_loss=float(ys.min()),
    )


def fit_trend(curves: list[CurveFit]) -> Trend:
    """WLS of log2(lr_opt) on log2(width); t-interval on the slope."""
    from scipy import stats

    x = np.log2([c.width for c in curves])
    y = np.array([c.log2_lr_opt for c in curves])
    sd = np.array([max((c.log2_lr_ci[1] - c.log2_lr_ci[0]) / (2 * 1.96), 0.05) for c in curves])
    w = 1.0 / sd**2
    xm = np.sum(w * x) / np.sum(w)
    ym = np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
    intercept = float(ym - slope * xm)
    n = len(x)
    se = math.sqrt(1.0 / sxx)
    if n > 2:
        chi2 = float(np.sum(w * (y - intercept - slope * x) ** 2)) / (n - 2)
        se *= math.sqrt(max(chi2, 1.0))
        q = float(stats.t.ppf(0.975, n - 2))
    else:
        q = 1.96
    span = float(x.max() - x.min())
    return Trend(
        slope=slope,
        ci=(slope - q * se, slope + q * se),
        intercept=intercept,
        drift_octaves=slope * span,
        widths=[c.width for c in curves],
    )


def fit_loss_law(curves: list[CurveFit]) -> dict[str, Any]:
    """Best loss against width, to predict the target's loss with an interval.

    ``L(w) = E + A w^-p`` (Kaplan et al. 2020's width/parameter law) when there are at least
    4 widths (one residual degree of freedom); else ``a + b log2(w)``, whose interval widens
    with the extrapolation distance. Covariances come from the least-squares fit.
    """
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    w = np.array([c.width for c in curves], dtype=float)
    y = np.array([c.best_loss for c in curves])
    if len(w) >= 4:

        def law(x: np.ndarray, e: float, a: float, p: float) -> np.ndarray:
            return e + a * x ** (-p)

        p0 = (float(y.min()) * 0.9, float(y.max() - y.min() + 1e-3) * float(w.min()) ** 0.5, 0.5)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", OptimizeWarning)
                popt, pcov = curve_fit(
                    law, w, y, p0=p0, maxfev=20000, bounds=([0, 0, 0], [np.inf, np.inf, 4])
                )
            if np.all(np.isfinite(pcov)):
                return {
                    "form": "E + A w^-p",
                    "E": float(popt[0]),
                    "A": float(popt[1]),
                    "p": float(popt[2]),
                    "cov": pcov.tolist(),
                    "dof": len(w) - 3,
                }
        except (RuntimeError, ValueError, OptimizeWarning):
            pass
    x = np.log2(w)
    X = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(w) - 2
    s2 = float(np.sum((y - X @ coef) ** 2) / dof) if dof > 0 else 0.0
    cov = s2 * np.linalg.inv(X.T @ X)
    return {
        "form": "a + b log2(w)",
        "a": float(coef[0]),
        "b": float(coef[1]),
        "cov": cov.tolist(),
        "dof": dof,
    }


def predict_loss(
    law: dict[str, Any], width: float, n_samples: int = 500
) -> tuple[float, float, float]:
    """Predicted loss at ``width`` and its 95% interval (t-interval / covariance sampling)."""
    from scipy import stats

    if law["form"] == "a + b log2(w)":
        g = np.array([1.0, math.log2(width)])
        mean = float(law["a"] + law["b"] * g[1])
        se = float(math.sqrt(max(g @ np.array(law["cov"]) @ g, 0.0)))
        q = float(stats.t.ppf(0.975, law["dof"])) if law["dof"] > 0 else 0.0
        return mean, mean - q * se, mean + q * se
    theta = np.array([law["E"], law["A"], law["p"]])

    def f(t: np.ndarray) -> float:
        return float(t[0] + t[1] * width ** (-t[2]))

    mean = f(theta)
    rng = np.random.default_rng(0)
    draws = rng.multivariate_normal(
        theta, np.array(law["cov"]), size=n_samples, check_valid="ignore"
    )
    vals = np.array([f(d) for d in draws if d[2] >= 0])
    vals = vals[np.isfinite(vals)]
    if len(vals) < 10:
        return mean, mean, mean
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return mean, float(lo), float(hi)


def fit_sweep(
    records: list[Record], *, scheme: str | None = None, slope_tol: float = 0.15, n_boot: int = 300
) -> SweepFit:
    """Per-width optima and their trend, for every scheme in ``records``."""
    if not records:
        raise UserError(
            "the store has no finished trials for this sweep: run `muscale sweep` first"
        )
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[
            (r.scheme, r.width, tuple(sorted((k, repr(v)) for k, v in r.hparams.items())))
        ].append(r)
    curves = [fit_curve(rs, n_boot=n_boot) for rs in groups.values()]
    best: dict[tuple[str, int], CurveFit] = {}
    for c in curves:
        k = (c.scheme, c.width)
        if k not in best or c.best_loss < best[k].best_loss:
            best[k] = c
    schemes = sorted({s for s, _ in best})
    primary = scheme or ("mup" if "mup" in schemes else schemes[0])
    if primary not in schemes:
        raise UserError(
            f"scheme={primary} has no trials in this store; it has {', '.join(schemes)}"
        )
    trends, laws = {}, {}
    for s in schemes:
        cs = sorted((c for (sc, _), c in best.items() if sc == s), key=lambda c: c.width)
        if len(cs) < 2:
            raise UserError(
                f"scheme={s} has a single width ({cs[0].width}): "
                "a transfer fit needs at least 2 widths"
            )
        trends[s] = fit_trend(cs)
        laws[s] = fit_loss_law(cs)
    sweep = records[0].sweep if len({r.sweep for r in records}) == 1 else None
    return SweepFit(
        sweep=sweep,
        scheme=primary,
        curves=curves,
        best=best,
        trends=trends,
        slope_tol=slope_tol,
        loss_law=laws,
    )
