"""Joint search of the base hyperparameters at one proxy, then confirmation at the others.

TP5 (§7.2) tunes LR, output / input / attention multipliers, init std and warmup together by
random search at the proxy; the optimum of all of them is width-independent under μP, so the
search needs only one (the cheapest) proxy, and the other proxies confirm the transfer:

``random``   TP5's random search: ``search.trials`` points drawn from ``sweep.space`` (uniform
             in log(value) for log ranges), every point trained for the full trainer budget.
``asha``     successive halving (Jamieson & Talwalkar 2016; ASHA, Li et al. 2020, is its
             asynchronous form) over the same points: rung k trains for min_steps * eta^k
             steps (the last rung for trainer.max_steps) and keeps the best 1/eta. Rounds are
             synchronous, so it is deterministic. A promoted trial **resumes from its
             checkpoint**: every rung runs with the full schedule horizon (trainer.max_steps)
             and stops at ``trainer.stop_at`` = the rung's steps in one run directory, so a
             promoted point costs only its extra steps and its top-rung loss is bit for bit
             the loss of an uninterrupted run (the trainer's resume guarantee, on CPU).
``tpe``      optuna's TPE sampler, ``cmaes`` optuna's CMA-ES sampler (needs ``cmaes``),
             through optuna's ask/tell API on an in-memory study: ``search.batch`` points are
             asked per round and told when measured. Diverged points are told as failed.

Every trial is a row of the muscale store like any other; a re-run sweep replays the same
seeded proposals, finds them finished in the store and continues where it stopped.

Confirmation (``sweep.confirm.enabled``): around the found point, each of
``confirm.params`` is swept over ``confirm.points`` values ``confirm.spacing`` octaves apart
(the others fixed) at every proxy width (or depth) with ``confirm.seeds``; a curve whose best
point is on its edge is extended outward (``confirm.extend`` points at most). The fits per
hyperparameter and their verdicts are :func:`muscale.sweep.optima.fit_param`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from muscale.errors import ConfigError, UserError
from muscale.sweep.config import STOP_AT, Range, SweepConfig, space_key
from muscale.sweep.trial_spec import Trial

Losses = Mapping[str, tuple[Trial, float]]
Point = dict[str, float]


def _round(value: float, rng: Range) -> float | int:
    """6 significant digits (readable configs, stable keys); integers for int ranges."""
    if rng.int:
        return int(min(max(round(value), math.ceil(rng.low)), math.floor(rng.high)))
    return float(f"{value:.6g}")


def sample_points(space: Mapping[str, Range], n: int, seed: int) -> list[Point]:
    """``n`` points drawn from ``space`` with a seeded generator (names in sorted order)."""
    gen = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        point: Point = {}
        for name in sorted(space):
            r = space[name]
            u = float(gen.uniform())
            if r.log:
                v = math.exp(math.log(r.low) + u * (math.log(r.high) - math.log(r.low)))
            else:
                v = r.low + u * (r.high - r.low)
            point[name] = _round(v, r)
        points.append(point)
    return points


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


def mean_loss(losses: Losses, trials: list[Trial]) -> float | None:
    """Mean over the trials (seeds) of one point; inf if any diverged; None until all ran."""
    vals = []
    for t in trials:
        if t.key not in losses:
            return None
        vals.append(losses[t.key][1])
    if any(math.isinf(v) for v in vals):
        return math.inf
    return sum(vals) / len(vals)


class _Points:
    """Turns points of the space into trials of one scheme at one proxy."""

    def __init__(self, cfg: SweepConfig, scheme: str) -> None:
        self.cfg, self.scheme = cfg, scheme
        self.space = cfg.search_space()
        self.scale_value = cfg.search.width or min(cfg.scales())

    def trials(
        self,
        point: Point,
        *,
        scale_value: int | None = None,
        seeds: list[int] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[Trial]:
        s = self.scale_value if scale_value is None else scale_value
        width, depth = (s, None) if self.cfg.scale == "width" else (self.cfg.widths[0], s)
        hp = {space_key(k): v for k, v in sorted(point.items()) if k != "lr"}
        hp.update(extra or {})
        return [
            Trial(
                sweep=self.cfg.name,
                scheme=self.scheme,
                width=width,
                depth=depth,
                seed=seed,
                lr=float(point["lr"]),
                hparams=hp,
            )
            for seed in (self.cfg.seeds if seeds is None else seeds)
        ]


class RandomSearch(_Points):
    """Every point at the full budget, in one round."""

    def __init__(self, cfg: SweepConfig, scheme: str) -> None:
        super().__init__(cfg, scheme)
        self.points = sample_points(self.space, cfg.search.trials, cfg.search.seed)

    def next_round(self, losses: Losses) -> list[Trial]:
        return [t for p in self.points for t in self.trials(p) if t.key not in losses]

    def scored(self, losses: Losses) -> list[tuple[Point, float]]:
        out = [(p, mean_loss(losses, self.trials(p))) for p in self.points]
        return [(p, m) for p, m in out if m is not None]


class Halving(_Points):
    """Synchronous successive halving over trainer steps; promoted points resume."""

    def __init__(self, cfg: SweepConfig, scheme: str, max_steps: int) -> None:
        super().__init__(cfg, scheme)
        self.points = sample_points(self.space, cfg.search.trials, cfg.search.seed)
        self.rungs = rungs(max_steps, cfg.search.eta, cfg.search.min_steps)
        self.eta = cfg.search.eta

    def rung_trials(self, i: int, k: int) -> list[Trial]:
        return self.trials(self.points[i], extra={STOP_AT: self.rungs[k]})

    def survivors(self, losses: Losses) -> tuple[int, list[int], bool]:
        """(rung, points alive at it, whether that rung is fully measured)."""
        alive = list(range(len(self.points)))
        for k in range(len(self.rungs)):
            done = all(t.key in losses for i in alive for t in self.rung_trials(i, k))
            if not done or k == len(self.rungs) - 1:
                return k, alive, done
            score = {i: mean_loss(losses, self.rung_trials(i, k)) for i in alive}
            ranked = sorted(alive, key=lambda i: (score[i], i))
            alive = sorted(ranked[: max(1, len(alive) // self.eta)])
        raise AssertionError("unreachable")

    def next_round(self, losses: Losses) -> list[Trial]:
        k, alive, _ = self.survivors(losses)
        return [t for i in alive for t in self.rung_trials(i, k) if t.key not in losses]

    def scored(self, losses: Losses) -> list[tuple[Point, float]]:
        """Points measured at the top rung (the full budget)."""
        k, alive, _ = self.survivors(losses)
        if k != len(self.rungs) - 1:
            return []
        out = [(self.points[i], mean_loss(losses, self.rung_trials(i, k))) for i in alive]
        return [(p, m) for p, m in out if m is not None]

    @property
    def fixed_overrides(self) -> list[str]:
        """Every rung ends on an evaluation: rungs are multiples of the first."""
        return [f"trainer.eval_every={self.rungs[0]}"]


def rungs(max_steps: int, eta: int, min_steps: int | None) -> list[int]:
    """Rung budgets r0, r0*eta, ... below ``max_steps``, then ``max_steps``."""
    r0 = min_steps if min_steps is not None else max(1, max_steps // eta**2)
    if r0 > max_steps:
        raise ConfigError("sweep.search.min_steps", r0, f"must be <= trainer.max_steps={max_steps}")
    out, r = [], r0
    while r < max_steps:
        out.append(r)
        r *= eta
    return [*out, max_steps]


class ModelBased(_Points):
    """optuna TPE or CMA-ES through ask/tell on an in-memory study (seeded)."""

    def __init__(self, cfg: SweepConfig, scheme: str, kind: str) -> None:
        super().__init__(cfg, scheme)
        import optuna
        from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        n, seed = cfg.search.trials, cfg.search.seed
        if kind == "tpe":
            with warnings.catch_warnings():  # multivariate TPE is flagged experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler: Any = optuna.samplers.TPESampler(
                    seed=seed, n_startup_trials=max(4, n // 4), multivariate=True
                )
        else:
            try:
                import cmaes  # noqa: F401
            except ImportError as exc:
                raise UserError(
                    "sweep.strategy=cmaes needs the cmaes package: pip install cmaes"
                ) from exc
            # the first batch is sampled independently (no history yet): expected, not warned
            sampler = optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=0, warn_independent_sampling=False
            )
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.dists: dict[str, BaseDistribution] = {
            k: (
                IntDistribution(math.ceil(r.low), math.floor(r.high), log=r.log)
                if r.int
                else FloatDistribution(r.low, r.high, log=r.log)
            )
            for k, r in sorted(self.space.items())
        }
        self.asked: list[tuple[Any, Point]] = []
        self.told = 0

    def next_round(self, losses: Losses) -> list[Trial]:
        from optuna.trial import TrialState

        while self.told < len(self.asked):
            ot, point = self.asked[self.told]
            m = mean_loss(losses, self.trials(point))
            if m is None:
                break
            if math.isfinite(m):
                self.study.tell(ot, m)
            else:
                self.study.tell(ot, state=TrialState.FAIL)
            self.told += 1
        pending = [
            t for _, p in self.asked[self.told :] for t in self.trials(p) if t.key not in losses
        ]
        if pending:
            return pending
        n = self.cfg.search.trials
        out: list[Trial] = []
        for _ in range(min(self.cfg.search.batch, n - len(self.asked))):
            ot = self.study.ask(self.dists)
            point = {k: _round(float(v), self.space[k]) for k, v in ot.params.items()}
            self.asked.append((ot, point))
            out += self.trials(point)
        return [t for t in out if t.key not in losses] or (self.next_round(losses) if out else [])

    def scored(self, losses: Losses) -> list[tuple[Point, float]]:
        out = [(p, mean_loss(losses, self.trials(p))) for _, p in self.asked]
        return [(p, m) for p, m in out if m is not None]


def best_point(scored: list[tuple[Point, float]]) -> tuple[Point, float] | None:
    """The point with the lowest finite mean loss (first one on ties), or None."""
    ok = [(p, m) for p, m in scored if math.isfinite(m)]
    return min(ok, key=lambda pm: pm[1]) if ok else None


class Confirm(_Points):
    """Sweeps each confirmed hyperparameter around the found point at every proxy.

    A curve at the third proxy and beyond is **centred on the trend** of the narrower
    proxies' optima (least squares of log2 optimum on log2 width, extrapolated), rounded to
    the lattice ``found value x 2^(spacing k)``, instead of on the found value: when an
    optimum drifts with width (TP5 Fig. 1's SP LR; a finite-width drift of α_out), a curve
    centred on the found value has its best point on the edge at the widest (most expensive)
    proxies and needs ``extend`` extra points there. Centring on the trend keeps the optimum
    inside the curve; when nothing drifts the offset rounds to 0 and the curves of the
    different parameters keep sharing their centre trial. The first two proxies (no trend
    yet) are centred on the found point and run at once; a later proxy starts when every
    narrower proxy's curves are complete.
    """

    def __init__(self, cfg: SweepConfig, scheme: str, point: Point) -> None:
        super().__init__(cfg, scheme)
        c = cfg.confirm
        self.point = point
        self.params = [q for q in c.params if q in point]
        half = (c.points - 1) / 2
        self.initial = [c.spacing * (i - half) for i in range(c.points)]

    def curve_trials(self, q: str, scale_value: int, x: float) -> list[Trial]:
        """Trials with ``q`` at ``2^x`` times its found value (the others at the point)."""
        value = self.point[q] if x == 0 else self.point[q] * 2.0**x
        p = dict(self.point, **{q: _round(value, self.space[q])})
        return self.trials(p, scale_value=scale_value, seeds=self.cfg.confirm.seeds)

    def curve(self, q: str, s: int, losses: Losses, centre: float = 0.0) -> tuple[list, list]:
        """(trials still to run, offsets of the curve so far) of ``q`` at proxy ``s``; no
        trials left means the curve is complete (extended while its best was on an edge)."""
        c = self.cfg.confirm
        xs = [centre + x for x in self.initial]
        while True:
            missing = [t for x in xs for t in self.curve_trials(q, s, x) if t.key not in losses]
            if missing:
                return missing, xs
            if len(xs) - len(self.initial) >= c.extend:
                return [], xs
            means = {x: mean_loss(losses, self.curve_trials(q, s, x)) for x in xs}
            finite = {x: m for x, m in means.items() if m is not None and math.isfinite(m)}
            if not finite:
                xs.append(min(xs) - c.spacing)  # all diverged: go lower
                continue
            xb = min(finite, key=lambda x: (finite[x], x))
            if xb == min(xs):
                xs.append(min(xs) - c.spacing)
            elif xb == max(xs):
                xs.append(max(xs) + c.spacing)
            else:
                return [], xs

    def curve_round(self, q: str, s: int, losses: Losses) -> list[Trial]:
        """The trials ``q``'s curve at proxy ``s`` needs now (see :meth:`curve`)."""
        centre = self.centre(q, s, losses)
        return [] if centre is None else self.curve(q, s, losses, centre)[0]

    def optimum(self, q: str, s: int, losses: Losses, xs: list[float]) -> float | None:
        """log2(optimum / found value) of the complete curve at offsets ``xs``: the quadratic
        vertex of the mean-over-seeds losses (:func:`muscale.sweep.optima.optimum_1d`); None
        if every point diverged."""
        from muscale.sweep.optima import optimum_1d

        by_x = {
            x: {t.seed: _finite_or_none(losses[t.key][1]) for t in self.curve_trials(q, s, x)}
            for x in xs
        }
        opt = optimum_1d(by_x, n_boot=0)
        return None if opt is None else opt.x_opt

    def centre(self, q: str, s: int, losses: Losses) -> float | None:
        """Offset (octaves from the found value, a multiple of ``spacing``) of ``q``'s curve
        at proxy ``s``; None while a narrower proxy's curve of ``q`` is incomplete."""
        scales = self.cfg.scales()
        k = scales.index(s)
        if k < 2:
            return 0.0
        logs, opts = [], []
        for s_prev in scales[:k]:
            c_prev = self.centre(q, s_prev, losses)
            if c_prev is None:
                return None
            todo, xs = self.curve(q, s_prev, losses, c_prev)
            if todo:
                return None
            x = self.optimum(q, s_prev, losses, xs)
            if x is not None:
                logs.append(math.log2(s_prev))
                opts.append(x)
        if len(opts) < 2:
            return 0.0
        slope, intercept = np.polyfit(logs, opts, 1)
        spacing = self.cfg.confirm.spacing
        return float(round((slope * math.log2(s) + intercept) / spacing) * spacing)

    def next_round(self, losses: Losses) -> list[Trial]:
        out: dict[str, Trial] = {}
        for q in self.params:
            for s in self.cfg.scales():
                for t in self.curve_round(q, s, losses):
                    out.setdefault(t.key, t)  # the centre point is shared by the curves
        return list(out.values())


class SearchPlanner:
    """Search (per scheme) at one proxy, then (optionally) confirm at every proxy."""

    def __init__(self, cfg: SweepConfig, *, max_steps: int | None = None) -> None:
        if cfg.strategy == "asha" and max_steps is None:
            raise ConfigError("trainer.max_steps", max_steps, "successive halving needs it")
        for q in cfg.confirm.params:
            r = cfg.search_space().get(q)
            if cfg.confirm.enabled and r is not None and (not r.log or r.int):
                raise ConfigError(
                    "sweep.confirm.params", q, "confirmation sweeps log-scale float ranges"
                )
        self.cfg = cfg
        self.phases: dict[str, Any] = {}
        for s in cfg.schemes:
            one = dataclasses.replace(cfg, schemes=[s])
            if cfg.strategy == "asha":
                self.phases[s] = Halving(one, s, int(max_steps or 0))
            elif cfg.strategy in ("tpe", "cmaes"):
                self.phases[s] = ModelBased(one, s, cfg.strategy)
            else:
                self.phases[s] = RandomSearch(one, s)
        self.confirms: dict[str, Confirm] = {}
        self.found: dict[str, tuple[Point, float] | None] = {}

    @property
    def fixed_overrides(self) -> list[str]:
        """Overrides every trial of this sweep needs (successive halving: eval at rungs)."""
        first = next(iter(self.phases.values()))
        return first.fixed_overrides if isinstance(first, Halving) else []

    def next_round(self, losses: Losses) -> list[Trial]:
        out: list[Trial] = []
        for s, phase in self.phases.items():
            todo = phase.next_round(losses)
            if todo:
                out += todo
                continue
            if s not in self.found:
                self.found[s] = best_point(phase.scored(losses))
            if not self.cfg.confirm.enabled or self.found[s] is None:
                continue
            if s not in self.confirms:
                point = self.found[s][0]  # type: ignore[index]
                self.confirms[s] = Confirm(dataclasses.replace(self.cfg, schemes=[s]), s, point)
            out += self.confirms[s].next_round(losses)
        return out
