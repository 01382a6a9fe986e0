"""Fit the optimal hyperparameters per width and their trend across widths.

Per LR curve (scheme, width): the optimum of log2(LR) is the vertex of a quadratic fitted to
the mean loss over seeds at the best LR and up to two neighbours on each side (loss is close
to quadratic in log2(LR) near the optimum; TP5 Fig. 1). Its uncertainty is a bootstrap over
seeds (≥ 2 seeds), else a residual bootstrap of the quadratic (≥ 4 points), else half the
local grid spacing. Diverged trials are excluded from the curve but counted; a best point at
the edge of the measured LRs is flagged ``on_edge`` (the true optimum may lie outside).

Across widths: weighted least squares of log2(lr_opt) on log2(width) (weights from the
per-width intervals) gives the drift in octaves per width doubling with a t-interval; SP
drifts by ~0.3–1.7 octaves per doubling (TP5 Fig. 1 ≈ 0.9), μP should not drift.

The verdict (:func:`verdict`) is one of "holds", "drifts", "inconclusive", by the first rule
of :data:`VERDICT_RULES` that applies: data that cannot decide (one proxy, an optimum on the
edge of what was measured, one valid point left by divergence, one seed, an interval wider
than the tolerance) is "inconclusive", with what to sweep next.

The same machinery fits any swept hyperparameter (:func:`fit_param`: α_out, init std, ...)
and either proxy axis: width, or depth at a fixed width (``scale="depth"``, depth-μP /
CompleteP, ``param.depth_alpha``). Successive-halving rungs (``trainer.stop_at`` among a
record's hyperparameters) are partial runs and are left out of every fit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from muscale.errors import ConfigError, UserError
from muscale.sweep.config import LR_KEY, STOP_AT, space_key
from muscale.sweep.store import Record

SCALES = ("width", "depth")
VERDICTS = ("holds", "drifts", "inconclusive")


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
    depth: int | None = None
    n_seeds: int = 1

    @property
    def lr_opt(self) -> float:
        return 2.0**self.log2_lr_opt

    def scale_value(self, scale: str) -> int:
        return int(self.width if scale == "width" else self.depth or 0)


@dataclass
class Trend:
    slope: float
    ci: tuple[float, float]
    intercept: float
    drift_octaves: float
    widths: list[int]  # the proxies' scale values (widths, or depths for scale="depth")
    scale: str = "width"


@dataclass(frozen=True)
class Verdict:
    """Whether an optimum holds across proxies, with the reason and what to sweep next."""

    kind: str  # holds | drifts | inconclusive
    reason: str
    next: str = ""

    def to_json(self) -> dict[str, str]:
        return {"verdict": self.kind, "reason": self.reason, "next": self.next}


@dataclass
class SweepFit:
    sweep: str | None
    scheme: str
    curves: list[CurveFit]
    best: dict[tuple[str, int], CurveFit]  # (scheme, width or depth) -> curve at best hparams
    trends: dict[str, Trend]
    slope_tol: float
    loss_law: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    scale: str = "width"

    def verdict(self, scheme: str) -> Verdict:
        return self.verdicts[scheme]

    def holds(self, scheme: str) -> bool:
        """True only for the verdict "holds" (not for "inconclusive")."""
        return self.verdicts[scheme].kind == "holds"

    def to_json(self) -> dict[str, Any]:
        per_width = []
        for (scheme, _), c in sorted(self.best.items()):
            hp_opt = dict(c.hparams)
            per_width.append(
                {
                    "scheme": scheme,
                    "width": c.width,
                    "depth": c.depth,
                    "lr_opt": c.lr_opt,
                    "lr_opt_ci": [2.0 ** c.log2_lr_ci[0], 2.0 ** c.log2_lr_ci[1]],
                    "log2_lr_opt": c.log2_lr_opt,
                    "on_edge": c.on_edge,
                    "best_loss": c.best_loss,
                    "n_trials": c.n_trials,
                    "n_diverged": c.n_diverged,
                    "n_seeds": c.n_seeds,
                    "hp_opt": hp_opt,
                    "curve": {"lr": c.lrs, "loss": c.losses},
                }
            )
        by_scheme = {
            s: {
                "trend": {"lr": _trend_json(t)},
                "transfer_holds": self.holds(s),
                **self.verdicts[s].to_json(),
                "loss_law": self.loss_law.get(s),
            }
            for s, t in self.trends.items()
        }
        return {
            "sweep": self.sweep,
            "scheme": self.scheme,
            "scale": self.scale,
            "per_width": per_width,
            "trend": {"lr": _trend_json(self.trends[self.scheme])},
            "transfer_holds": self.holds(self.scheme),
            **self.verdicts[self.scheme].to_json(),
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


@dataclass
class Optimum1D:
    """The optimum of a loss curve in x = log2(value), from per-seed losses at each x."""

    xs: list[float]  # every measured x, sorted
    means: list[float | None]  # mean over seeds; None where a trial diverged
    x_opt: float
    ci: tuple[float, float]
    on_edge: bool
    edge: str | None  # "low" | "high" when on_edge
    n_valid: int
    n_seeds: int
    best_loss: float


def optimum_1d(
    by_x: dict[float, dict[int, float | None]], *, n_boot: int = 300, seed: int = 0
) -> Optimum1D | None:
    """Quadratic-vertex optimum and its interval (see the module docstring); None if all diverged.

    ``by_x``: log2(value) -> seed -> loss (None: diverged or failed).
    """
    xs_all = sorted(by_x)
    seeds = sorted({s for d in by_x.values() for s in d})
    means: list[float | None] = []
    for x in xs_all:
        vals = [v for v in by_x[x].values() if v is not None]
        means.append(float(np.mean(vals)) if len(vals) == len(by_x[x]) else None)
    ok = [i for i, m in enumerate(means) if m is not None]
    if not ok:
        return None
    xs = np.array([xs_all[i] for i in ok])
    ys = np.array([means[i] for i in ok])
    wx, wy, i_best = _window(xs, ys)
    x_best = float(xs[i_best])
    x_opt = _quad_vertex(wx, wy, x_best)
    best_idx = ok[i_best]
    edge = "low" if best_idx == 0 else "high" if best_idx == len(xs_all) - 1 else None
    rng = np.random.default_rng(seed)
    boots: list[float] = []
    if len(seeds) >= 2:
        for _ in range(n_boot):
            pick = rng.choice(seeds, size=len(seeds), replace=True)
            ym = []
            for i in ok:
                got = [by_x[xs_all[i]].get(int(s)) for s in pick]
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
    return Optimum1D(
        xs=list(xs_all),
        means=means,
        x_opt=x_opt,
        ci=ci,
        on_edge=edge is not None,
        edge=edge,
        n_valid=len(ok),
        n_seeds=len(seeds),
        best_loss=float(ys.min()),
    )


def _usable(r: Record) -> bool:
    """A loss a fit can use: a full run (not a successive-halving rung)."""
    return STOP_AT not in r.hparams


def _by_x(records: list[Record], x_of: Any) -> tuple[dict[float, dict[int, float | None]], int]:
    by_x: dict[float, dict[int, float | None]] = defaultdict(dict)
    n_div = 0
    for r in records:
        loss = r.loss
        ok_loss = loss is not None and math.isfinite(loss) and not r.diverged
        n_div += not ok_loss
        by_x[x_of(r)][r.seed] = float(loss) if ok_loss and loss is not None else None
    return by_x, n_div


def fit_curve(records: list[Record], n_boot: int = 300, seed: int = 0) -> CurveFit:
    """Optimum of log2(LR) on one curve (records share scheme, width and hparams)."""
    r0 = records[0]
    by_x, n_div = _by_x(records, lambda r: math.log2(r.lr))
    opt = optimum_1d(by_x, n_boot=n_boot, seed=seed)
    if opt is None:
        where = f"width={r0.width}" + (f" depth={r0.depth}" if r0.depth is not None else "")
        raise UserError(f"every trial diverged at scheme={r0.scheme} {where}: lower the LR range")
    lr_of = {math.log2(r.lr): r.lr for r in records}
    return CurveFit(
        scheme=r0.scheme,
        width=r0.width,
        hparams=dict(r0.hparams),
        lrs=[lr_of[x] for x in opt.xs],
        losses=opt.means,
        log2_lr_opt=opt.x_opt,
        log2_lr_ci=opt.ci,
        on_edge=opt.on_edge,
        n_trials=len(records),
        n_diverged=n_div,
        best_loss=opt.best_loss,
        depth=r0.depth,
        n_seeds=opt.n_seeds,
    )


def fit_line(
    scales: list[int], y: list[float], cis: list[tuple[float, float]], scale: str = "width"
) -> Trend:
    """WLS of y = log2(optimum) on log2(scale), weights from the 95% intervals; t-interval."""
    from scipy import stats

    x = np.log2(np.asarray(scales, dtype=float))
    y_arr = np.asarray(y, dtype=float)
    sd = np.array([max((hi - lo) / (2 * 1.96), 0.05) for lo, hi in cis])
    w = 1.0 / sd**2
    xm = np.sum(w * x) / np.sum(w)
    ym = np.sum(w * y_arr) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * (y_arr - ym)) / sxx)
    intercept = float(ym - slope * xm)
    n = len(x)
    se = math.sqrt(1.0 / sxx)
    q = 1.96  # the per-proxy intervals' own errors (known variance): normal quantile
    if n > 2:
        chi2 = float(np.sum(w * (y_arr - intercept - slope * x) ** 2)) / (n - 2)
        if chi2 > 1.0:  # more scatter than the intervals explain: scale it, t-quantile
            se *= math.sqrt(chi2)
            q = float(stats.t.ppf(0.975, n - 2))
    span = float(x.max() - x.min())
    return Trend(
        slope=slope,
        ci=(slope - q * se, slope + q * se),
        intercept=intercept,
        drift_octaves=slope * span,
        widths=[int(v) for v in scales],
        scale=scale,
    )


def fit_trend(curves: list[CurveFit], scale: str = "width") -> Trend:
    """WLS of log2(lr_opt) on log2(width) (or depth); t-interval on the slope."""
    return fit_line(
        [c.scale_value(scale) for c in curves],
        [c.log2_lr_opt for c in curves],
        [c.log2_lr_ci for c in curves],
        scale,
    )


@dataclass(frozen=True, kw_only=True)
class OptimumSummary:
    """What :func:`verdict` needs to know of one proxy's optimum."""

    scale_value: int
    on_edge: bool
    edge: str | None
    n_valid: int
    n_seeds: int
    value: float  # the optimum (not its log)
    lowest: float  # smallest / largest value measured on the curve
    highest: float


def _rule_too_few_proxies(t: Trend | None, opts: list[OptimumSummary], tol: float, p: str, sc: str):
    if len(opts) < 2 or t is None:
        return (
            "inconclusive",
            f"{len(opts)} {sc}(s) with a valid optimum",
            f"sweep {p} at >= 2 {sc}s",
        )
    return None


def _rule_one_valid_point(t, opts, tol, p, sc):
    bad = [o for o in opts if o.n_valid < 2]
    if bad:
        where = ", ".join(f"{sc} {o.scale_value}" for o in bad)
        return (
            "inconclusive",
            f"only one valid (non-diverged) point at {where}",
            f"sweep smaller {p} values there (below {_fmt(min(o.lowest for o in bad))})",
        )
    return None


def _rule_on_edge(t, opts, tol, p, sc):
    edge = [o for o in opts if o.on_edge]
    if edge:
        where = ", ".join(f"{sc} {o.scale_value} ({o.edge})" for o in edge)
        nxt = "; ".join(
            f"{sc} {o.scale_value}: "
            + (f"below {_fmt(o.lowest)}" if o.edge == "low" else f"above {_fmt(o.highest)}")
            for o in edge
        )
        who = "every optimum is" if len(edge) == len(opts) else "the optimum is"
        return (
            "inconclusive",
            f"{who} on the edge of the {p} range at {where}",
            f"extend {p}: {nxt}",
        )
    return None


def _rule_one_seed(t, opts, tol, p, sc):
    if min(o.n_seeds for o in opts) < 2:
        return (
            "inconclusive",
            "one seed: no interval from seed noise",
            "rerun with >= 2 seeds (sweep.seeds=[0,1] or sweep.confirm.seeds)",
        )
    return None


def _rule_interval(t, opts, tol, p, sc):
    """An equivalence test (two one-sided tests, Schuirmann 1987): ``holds`` only when the
    whole 95% interval of the slope lies within ±tol, ``drifts`` only when it lies wholly
    outside; an interval that reaches across an edge of the band cannot tell, whatever the
    point estimate says (a slope of 0.1 with interval -0.05..0.25 may well drift by 0.25)."""
    lo, hi = t.ci
    ci = f"slope {t.slope:+.3g} (95% CI {lo:+.3g}..{hi:+.3g}) octaves per {sc} doubling"
    if lo > tol or hi < -tol:
        return "drifts", f"{ci}: outside the tolerance ±{tol:g}", ""
    if -tol <= lo and hi <= tol:
        return "holds", f"{ci}: within the tolerance ±{tol:g}", ""
    why = "wider than" if (hi - lo) / 2 > tol else "across an edge of"
    return (
        "inconclusive",
        f"{ci}: interval {why} the tolerance ±{tol:g}",
        f"add seeds or proxies (a wider {sc} range) to narrow it",
    )


#: the verdict rules, in order; the first that returns (kind, reason, next) decides
VERDICT_RULES = (
    _rule_too_few_proxies,
    _rule_one_valid_point,
    _rule_on_edge,
    _rule_one_seed,
    _rule_interval,
)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def verdict(
    trend: Trend | None,
    optima: list[OptimumSummary],
    tol: float,
    *,
    param: str = "lr",
    scale: str = "width",
) -> Verdict:
    """holds / drifts / inconclusive for one hyperparameter across proxies (first rule wins)."""
    if not (tol >= 0 and math.isfinite(tol)):
        raise ConfigError("slope_tol", tol, "a finite number >= 0")
    for rule in VERDICT_RULES:
        got = rule(trend, optima, tol, param, scale)
        if got is not None:
            return Verdict(kind=got[0], reason=got[1], next=got[2])
    raise AssertionError("the last rule always decides")


def _summary(c: CurveFit, scale: str) -> OptimumSummary:
    valid = [lr for lr, m in zip(c.lrs, c.losses, strict=True) if m is not None]
    return OptimumSummary(
        scale_value=c.scale_value(scale),
        on_edge=c.on_edge,
        edge=(None if not c.on_edge else "low" if c.losses[0] == c.best_loss else "high"),
        n_valid=len(valid),
        n_seeds=c.n_seeds,
        value=c.lr_opt,
        lowest=min(c.lrs),
        highest=max(c.lrs),
    )


def fit_loss_law(curves: list[CurveFit], scale: str = "width") -> dict[str, Any]:
    """Best loss against width, to predict the target's loss with an interval.

    ``L(w) = E + A w^-p`` (Kaplan et al. 2020's width/parameter law) when there are at least
    4 widths (one residual degree of freedom); else ``a + b log2(w)``, whose interval widens
    with the extrapolation distance. Covariances come from the least-squares fit.
    """
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    w = np.array([c.scale_value(scale) for c in curves], dtype=float)
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


def _all_diverged(rs: list[Record]) -> bool:
    return all(r.diverged or r.loss is None or not math.isfinite(r.loss) for r in rs)


def detect_scale(records: list[Record]) -> str:
    """``depth`` when the records vary depth at a single width, else ``width``."""
    widths = {r.width for r in records}
    depths = {r.depth for r in records}
    return "depth" if len(widths) == 1 and len(depths) > 1 else "width"


def fit_sweep(
    records: list[Record],
    *,
    scheme: str | None = None,
    slope_tol: float = 0.15,
    n_boot: int = 300,
    scale: str | None = None,
) -> SweepFit:
    """Per-proxy LR optima, their trend and verdict, for every scheme in ``records``.

    Per proxy, the curve used is the one with the most LRs measured (a confirmation sweep's
    LR curve rather than a search's single points), then the lowest loss (a grid's best
    hyperparameters).
    """
    records = [r for r in records if _usable(r)]
    if not records:
        raise UserError(
            "the store has no finished trials for this sweep: run `muscale sweep` first"
        )
    if not (slope_tol >= 0 and math.isfinite(slope_tol)):
        raise ConfigError("slope_tol", slope_tol, "a finite number >= 0")
    scale = scale or detect_scale(records)
    if scale not in SCALES:
        raise ConfigError("scale", scale, f"choose one of {', '.join(SCALES)}")
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[
            (r.scheme, r.width, r.depth, tuple(sorted((k, repr(v)) for k, v in r.hparams.items())))
        ].append(r)
    curves = [fit_curve(rs, n_boot=n_boot) for rs in groups.values() if not _all_diverged(rs)]
    for r in records:  # a proxy where every trial diverged: say so
        if not any((c.scheme, c.width, c.depth) == (r.scheme, r.width, r.depth) for c in curves):
            fit_curve(
                [x for x in records if (x.scheme, x.width, x.depth) == (r.scheme, r.width, r.depth)]
            )
    best: dict[tuple[str, int], CurveFit] = {}

    def rank(c: CurveFit) -> tuple[int, float]:
        return (-len(c.lrs), c.best_loss)

    for c in curves:
        k = (c.scheme, c.scale_value(scale))
        if k not in best or rank(c) < rank(best[k]):
            best[k] = c
    schemes = sorted({s for s, _ in best})
    primary = scheme or ("mup" if "mup" in schemes else schemes[0])
    if primary not in schemes:
        raise UserError(
            f"scheme={primary} has no trials in this store; it has {', '.join(schemes)}"
        )
    trends, laws, verdicts = {}, {}, {}
    for s in schemes:
        cs = sorted(
            (c for (sc, _), c in best.items() if sc == s), key=lambda c: c.scale_value(scale)
        )
        if len(cs) < 2:
            raise UserError(
                f"scheme={s} has a single {scale} ({cs[0].scale_value(scale)}): "
                f"a transfer fit needs at least 2 {scale}s (after a joint search: "
                "sweep.confirm.enabled=true sweeps the other proxies)"
            )
        trends[s] = fit_trend(cs, scale)
        laws[s] = fit_loss_law(cs, scale)
        verdicts[s] = verdict(
            trends[s], [_summary(c, scale) for c in cs], slope_tol, param="lr", scale=scale
        )
    sweep = records[0].sweep if len({r.sweep for r in records}) == 1 else None
    return SweepFit(
        sweep=sweep,
        scheme=primary,
        curves=curves,
        best=best,
        trends=trends,
        slope_tol=slope_tol,
        loss_law=laws,
        verdicts=verdicts,
        scale=scale,
    )


# --------------------------------------------------------------------------- any hyperparameter


@dataclass
class ParamOptimum:
    """One proxy's optimum of one hyperparameter (the others fixed at ``fixed``)."""

    scale_value: int
    value: float
    log2_opt: float
    log2_ci: tuple[float, float]
    on_edge: bool
    edge: str | None
    n_valid: int
    n_seeds: int
    best_loss: float
    values: list[float]
    losses: list[float | None]
    fixed: dict[str, Any]  # the other coordinates of the curve (config key -> value)
    keys: list[str]  # the trials behind the curve

    def summary(self) -> OptimumSummary:
        return OptimumSummary(
            scale_value=self.scale_value,
            on_edge=self.on_edge,
            edge=self.edge,
            n_valid=self.n_valid,
            n_seeds=self.n_seeds,
            value=self.value,
            lowest=min(self.values),
            highest=max(self.values),
        )


@dataclass
class ParamFit:
    """One hyperparameter's optimum per proxy, its trend across proxies and the verdict."""

    param: str
    scheme: str
    scale: str
    optima: list[ParamOptimum]
    trend: Trend | None
    verdict: Verdict
    tol: float

    def to_json(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "scheme": self.scheme,
            "scale": self.scale,
            "tol": self.tol,
            **self.verdict.to_json(),
            "trend": None if self.trend is None else _trend_json(self.trend),
            "optima": [
                {
                    self.scale: o.scale_value,
                    "value": o.value,
                    "ci": [2.0 ** o.log2_ci[0], 2.0 ** o.log2_ci[1]],
                    "on_edge": o.on_edge,
                    "n_valid": o.n_valid,
                    "n_seeds": o.n_seeds,
                    "best_loss": o.best_loss,
                    "curve": {"value": o.values, "loss": o.losses},
                    "fixed": o.fixed,
                    "trials": o.keys,
                }
                for o in self.optima
            ],
        }


def _coord(r: Record, key: str) -> Any:
    return r.lr if key == LR_KEY else r.hparams.get(key)


def fit_param(
    records: list[Record],
    *,
    param: str = "lr",
    scale: str | None = None,
    scheme: str | None = None,
    tol: float = 0.15,
    n_boot: int = 300,
) -> ParamFit:
    """Fit one hyperparameter's optimum per proxy and its trend over log2(width or depth).

    ``param``: ``lr`` or a short name (``alpha_out``, ``init_std``, ...). Per proxy, the
    curve is the group of trials that vary only ``param`` (and the seed) with the most
    distinct values, then the lowest loss: a confirmation sweep's curve around the found
    point, or a grid's best. Optima are vertices of quadratics in log2(value).
    """
    key = space_key(param)
    usable = [r for r in records if _usable(r) and _coord(r, key) is not None]
    if scheme is None:
        schemes = sorted({r.scheme for r in usable})
        scheme = "mup" if "mup" in schemes else (schemes[0] if schemes else "mup")
    usable = [r for r in usable if r.scheme == scheme]
    scale = scale or (detect_scale(usable) if usable else "width")
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in usable:
        sv = r.width if scale == "width" else r.depth
        others = {k: v for k, v in r.hparams.items() if k != key}
        if key != LR_KEY:
            others[LR_KEY] = r.lr
        other_width_or_depth = r.depth if scale == "width" else r.width
        groups[
            (sv, other_width_or_depth, tuple(sorted((k, repr(v)) for k, v in others.items())))
        ].append(r)
    best: dict[int, ParamOptimum] = {}
    for (sv, _, _), rs in groups.items():
        vals = [float(_coord(r, key)) for r in rs]
        if min(vals) <= 0:
            continue  # a linear-scale hyperparameter (e.g. warmup 0): no log2 curve
        if len(set(vals)) < 3:
            continue  # not a curve (a search's single points): no optimum to locate
        by_x, _ = _by_x(rs, lambda r: math.log2(float(_coord(r, key))))
        opt = optimum_1d(by_x, n_boot=n_boot)
        if opt is None:
            continue
        r0 = rs[0]
        fixed = {k: v for k, v in r0.hparams.items() if k != key}
        if key != LR_KEY:
            fixed[LR_KEY] = r0.lr
        cand = ParamOptimum(
            scale_value=int(sv or 0),
            value=2.0**opt.x_opt,
            log2_opt=opt.x_opt,
            log2_ci=opt.ci,
            on_edge=opt.on_edge,
            edge=opt.edge,
            n_valid=opt.n_valid,
            n_seeds=opt.n_seeds,
            best_loss=opt.best_loss,
            values=[2.0**x for x in opt.xs],
            losses=opt.means,
            fixed=fixed,
            keys=sorted(r.key for r in rs),
        )
        prev = best.get(cand.scale_value)
        if prev is None or (-len(cand.values), cand.best_loss) < (
            -len(prev.values),
            prev.best_loss,
        ):
            best[cand.scale_value] = cand
    optima = [best[k] for k in sorted(best)]
    trend = (
        fit_line(
            [o.scale_value for o in optima],
            [o.log2_opt for o in optima],
            [o.log2_ci for o in optima],
            scale,
        )
        if len(optima) >= 2
        else None
    )
    return ParamFit(
        param=param,
        scheme=scheme,
        scale=scale,
        optima=optima,
        trend=trend,
        verdict=verdict(trend, [o.summary() for o in optima], tol, param=param, scale=scale),
        tol=tol,
    )


def swept_params(records: list[Record]) -> list[str]:
    """Short names of the hyperparameters with more than one value among full runs."""
    from muscale.sweep.config import SWEEPABLE

    usable = [r for r in records if _usable(r)]
    out = ["lr"] if len({r.lr for r in usable}) > 1 else []
    for name, key in SWEEPABLE.items():
        if len({repr(r.hparams.get(key)) for r in usable if key in r.hparams}) > 1:
            out.append(name)
    return out


def fit_all(
    records: list[Record],
    *,
    params: list[str] | None = None,
    scale: str | None = None,
    scheme: str | None = None,
    tol: float = 0.15,
    n_boot: int = 300,
) -> dict[str, ParamFit]:
    """:func:`fit_param` for each of ``params`` (default: every swept hyperparameter)."""
    return {
        p: fit_param(records, param=p, scale=scale, scheme=scheme, tol=tol, n_boot=n_boot)
        for p in (params if params is not None else swept_params(records))
    }
