"""Search strategies: which trials to run next, round by round.

``grid``: every (scheme, width, hyperparameters, seed, LR) of the grid in one round.

``random``, ``asha``, ``tpe``, ``cmaes``: joint search at one proxy, then confirmation at
the others (:mod:`muscale.sweep.search`). Grid and adaptive trials of a depth sweep
(``sweep.depths``) vary the depth at the one width.

``adaptive``: per LR curve (scheme, width, other hyperparameters), a search in
x = log2(LR): three points ``init_step`` octaves apart, extended outward while the best point
sits on the edge, then successive quadratic (parabolic) interpolation through the best point
and its neighbours — the vertex of the parabola is the next LR — falling back to bisection
of the larger gap when the parabola is not convex. A curve stops when the next proposal is
within ``tol`` octaves of a measured point or after ``max_trials`` LRs. Loss near the
optimum is close to quadratic in log2(LR) (TP5 Fig. 1), so this needs far fewer trials than
a grid of the same resolution. Seeds of one LR run together; their mean loss is used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Protocol

from muscale.sweep.config import SEARCH_STRATEGIES, SweepConfig, param_key
from muscale.sweep.trial_spec import Trial

#: a curve's measured points: log2(LR) -> mean loss over seeds (inf: diverged or failed)
Curve = dict[float, float]


def _hp_grid(cfg: SweepConfig) -> list[dict[str, object]]:
    keys = [param_key(k) for k in cfg.params]
    values = [list(v) for v in cfg.params.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)] or [{}]


#: a proxy's shape: (width, depth); depth is None unless the sweep varies it
Shape = tuple[int, int | None]


def proxy_shapes(cfg: SweepConfig) -> list[Shape]:
    if cfg.depths is None:
        return [(w, None) for w in cfg.widths]
    return [(cfg.widths[0], d) for d in cfg.depths]


def _trials_at(cfg: SweepConfig, scheme: str, shape: Shape, hp: dict, lr: float) -> list[Trial]:
    width, depth = shape
    return [
        Trial(sweep=cfg.name, scheme=scheme, width=width, depth=depth, seed=s, lr=lr, hparams=hp)
        for s in cfg.seeds
    ]


def grid_trials(cfg: SweepConfig) -> list[Trial]:
    return [
        t
        for scheme in cfg.schemes
        for shape in proxy_shapes(cfg)
        for hp in _hp_grid(cfg)
        for lr in cfg.lr_grid()
        for t in _trials_at(cfg, scheme, shape, hp, lr)
    ]


def next_x(curve: Curve, *, step: float, tol: float, lo: float, hi: float) -> float | None:
    """The next log2(LR) to measure on one curve, or None when it has converged."""
    xs = sorted(curve)
    ys = [curve[x] for x in xs]
    i = min(range(len(xs)), key=lambda j: ys[j])
    if all(math.isinf(y) for y in ys):  # everything diverged: go to smaller LRs
        lower = xs[0] - step
        return lower if lower >= lo - 1e-9 else None
    if i == 0 or i == len(xs) - 1:  # optimum on the edge: extend outward
        out = xs[0] - step if i == 0 else xs[-1] + step
        return out if lo - 1e-9 <= out <= hi + 1e-9 else None
    x0, x1, x2 = xs[i - 1], xs[i], xs[i + 1]
    y0, y1, y2 = ys[i - 1], ys[i], ys[i + 1]
    cand: float | None = None
    if all(map(math.isfinite, (y0, y1, y2))):
        denom = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        if denom != 0:
            v = x1 - 0.5 * ((x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)) / denom
            if x0 < v < x2:
                cand = v
    if cand is None or min(abs(cand - x) for x in xs) < tol:
        # bisect the larger gap next to the best point (golden-section style safeguard)
        cand = 0.5 * (x0 + x1) if (x1 - x0) >= (x2 - x1) else 0.5 * (x1 + x2)
    if min(abs(cand - x) for x in xs) < tol:
        return None
    return cand


class AdaptivePlanner:
    """Proposes one new LR per unfinished curve per round."""

    def __init__(self, cfg: SweepConfig) -> None:
        self.cfg = cfg
        a = cfg.adaptive
        lo, hi = math.log2(min(cfg.lr_grid())), math.log2(max(cfg.lr_grid()))
        self.lo, self.hi = lo, hi
        center = math.log2(a.center) if a.center else 0.5 * (lo + hi)
        self.start = [center - a.init_step, center, center + a.init_step]
        self.curves = [
            (s, shape, hp)
            for s in cfg.schemes
            for shape in proxy_shapes(cfg)
            for hp in _hp_grid(cfg)
        ]

    def curve_of(
        self, scheme: str, shape: Shape, hp: dict, losses: Mapping[str, tuple[Trial, float]]
    ) -> Curve:
        """Mean loss per measured LR of one curve, from finished trials' losses (by key)."""
        curve: Curve = {}
        by_lr: dict[float, list[float]] = {}
        for trial, loss in losses.values():
            if (trial.scheme, (trial.width, trial.depth), trial.hparams) == (scheme, shape, hp):
                by_lr.setdefault(round(math.log2(trial.lr), 9), []).append(loss)
        for x, ls in by_lr.items():
            curve[x] = math.inf if any(math.isinf(v) for v in ls) else sum(ls) / len(ls)
        return curve

    def next_round(self, losses: Mapping[str, tuple[Trial, float]]) -> list[Trial]:
        out: list[Trial] = []
        a = self.cfg.adaptive
        for scheme, shape, hp in self.curves:
            curve = self.curve_of(scheme, shape, hp, losses)
            todo = [x for x in self.start if round(x, 9) not in curve]
            if todo:
                xs = todo
            elif len(curve) >= a.max_trials:
                continue
            else:
                step = a.init_step
                x = next_x(curve, step=step, tol=a.tol, lo=self.lo, hi=self.hi)
                if x is None:
                    continue
                xs = [x]
            for x in xs:
                out += _trials_at(self.cfg, scheme, shape, hp, 2.0**x)
        return [t for t in out if t.key not in losses]


class GridPlanner:
    def __init__(self, cfg: SweepConfig) -> None:
        self.trials = grid_trials(cfg)

    def next_round(self, losses: Mapping[str, tuple[Trial, float]]) -> list[Trial]:
        return [t for t in self.trials if t.key not in losses]


class Planner(Protocol):
    """Proposes the next round of trials from the losses measured so far (by trial key)."""

    def next_round(self, losses: Mapping[str, tuple[Trial, float]]) -> list[Trial]: ...


def planner(cfg: SweepConfig, *, max_steps: int | None = None) -> Planner:
    """The planner of ``cfg.strategy`` (``max_steps``: the trainer's, for successive halving).

    grid and adaptive plan here; random, asha, tpe and cmaes in :mod:`muscale.sweep.search`.
    """
    if cfg.strategy == "adaptive":
        return AdaptivePlanner(cfg)
    if cfg.strategy in SEARCH_STRATEGIES:
        from muscale.sweep.search import SearchPlanner

        return SearchPlanner(cfg, max_steps=max_steps)
    return GridPlanner(cfg)


def fixed_overrides(plan: Planner) -> list[str]:
    """Overrides a planner needs on every trial (e.g. evaluation at halving rungs)."""
    return list(getattr(plan, "fixed_overrides", []))
