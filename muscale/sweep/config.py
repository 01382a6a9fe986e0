"""Typed config of a proxy sweep (the ``sweep`` node of ``conf/sweep.yaml``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from muscale.errors import ConfigError, check_choice, check_positive, check_positive_int
from muscale.param.rules import SCHEMES
from muscale.sweep.guards import check_sweep_name

#: ``grid``/``adaptive``: an LR (x ``params``) grid at every width; the others search the
#: joint ``space`` at one proxy (see :mod:`muscale.sweep.search`)
STRATEGIES = ("grid", "adaptive", "random", "asha", "tpe", "cmaes")
SEARCH_STRATEGIES = ("random", "asha", "tpe", "cmaes")
#: the sweep's progress display (``auto``: ``rich`` on a terminal, else ``plain``)
PROGRESS_MODES = ("auto", "rich", "plain", "off")

#: hyperparameters a sweep may vary besides the LR, and the config key each maps to
SWEEPABLE: dict[str, str] = {
    "init_std": "param.init_std.hidden",
    "init_std_input": "param.init_std.input",
    "init_std_output": "param.init_std.output",
    "alpha_out": "param.output_mult",
    "alpha_attn": "param.attn_mult",
    "alpha_in": "param.input_mult",
    "warmup": "optim.schedule.warmup_steps",
    "batch_size": "data.batch_size",
    "weight_decay": "optim.weight_decay",
}


@dataclass(kw_only=True)
class AdaptiveConfig:
    """Per-width search in log2(LR): a coarse bracket, then quadratic refinement.

    ``init_step`` octaves between the first ``3`` points around ``center`` (default: the
    geometric middle of [lr_min, lr_max]); stop when the next proposal is within ``tol``
    octaves of a measured point, or after ``max_trials`` LRs per width.
    """

    init_step: float = 2.0
    tol: float = 0.25
    max_trials: int = 8
    center: float | None = None

    def __post_init__(self) -> None:
        check_positive("sweep.adaptive.init_step", self.init_step)
        check_positive("sweep.adaptive.tol", self.tol)
        if self.max_trials < 3:
            raise ConfigError("sweep.adaptive.max_trials", self.max_trials, "must be >= 3")


@dataclass(kw_only=True)
class Range:
    """One hyperparameter's search range: uniform in log(value) (``log``) or in value."""

    low: float
    high: float
    log: bool = True
    int: bool = False

    def check(self, name: str) -> None:
        field_ = f"sweep.space.{name}"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(field_, [self.low, self.high], "finite low and high")
        if not self.high > self.low:
            raise ConfigError(f"{field_}.high", self.high, f"must exceed low={self.low}")
        if self.log and self.low <= 0:
            raise ConfigError(f"{field_}.low", self.low, "must be > 0 on a log scale")


@dataclass(kw_only=True)
class SearchConfig:
    """Joint search at one proxy (strategies random, asha, tpe, cmaes).

    ``trials``: configurations sampled (each run with every seed of ``sweep.seeds``).
    ``width``: the proxy width searched (default the smallest of ``sweep.widths``; the
    smallest of ``sweep.depths`` for a depth sweep). ``seed``: the sampler's seed.
    ``batch``: configurations asked per round by the model-based samplers (a round runs in
    parallel under a parallel launcher). ``min_steps`` and ``eta``: successive halving's
    first rung and reduction factor (default ``min_steps``: trainer.max_steps / eta^2).
    """

    trials: int = 16
    width: int | None = None
    seed: int = 0
    batch: int = 4
    min_steps: int | None = None
    eta: int = 3

    def __post_init__(self) -> None:
        check_positive("sweep.search.trials", self.trials)
        check_positive("sweep.search.batch", self.batch)
        if self.min_steps is not None:
            check_positive("sweep.search.min_steps", self.min_steps)
        if self.eta < 2:
            raise ConfigError("sweep.search.eta", self.eta, "must be >= 2")


@dataclass(kw_only=True)
class ConfirmConfig:
    """After the search: sweep each of ``params`` around the found point at every proxy.

    ``points`` values ``spacing`` octaves apart centred on the found value (the others fixed
    at the found point), each with every seed of ``seeds``; a curve whose best point sits on
    the edge is extended outward by up to ``extend`` more points. Only parameters that the
    search varied (are in ``sweep.space``) are confirmed.
    """

    enabled: bool = False
    params: list[str] = field(default_factory=lambda: ["lr", "alpha_out"])
    points: int = 5
    spacing: float = 1.0
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    extend: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.seeds, int):
            self.seeds = list(range(self.seeds))
        for name in self.params:
            if name != "lr" and name not in SWEEPABLE:
                raise ConfigError(
                    "sweep.confirm.params", name, f"use lr or one of {', '.join(SWEEPABLE)}"
                )
        if self.points < 3:
            raise ConfigError("sweep.confirm.points", self.points, "must be >= 3")
        check_positive("sweep.confirm.spacing", self.spacing)
        if not self.seeds:
            raise ConfigError("sweep.confirm.seeds", self.seeds, "give at least one seed")
        check_positive("sweep.confirm.extend", self.extend, allow_zero=True)


@dataclass(kw_only=True)
class SweepConfig:
    """Widths x schemes x seeds x LR (grid or adaptive) x other hyperparameters.

    ``lrs``: an explicit LR grid; otherwise ``lr_points`` log-spaced values in
    [``lr_min``, ``lr_max``]. ``params``: other hyperparameters to grid over, by short name
    (see :data:`SWEEPABLE`) or full config key, e.g. ``{"alpha_out": [0.5, 1, 2]}``.
    ``store``: SQLite path or database URL (``postgresql://...`` on clusters).
    ``lease_s``: a trial's lease lapses when its owner's heartbeat (every ``lease_s / 4``)
    is older than this, so another sweep may take it over (see :mod:`muscale.sweep.store`).
    ``progress``: the sweeper's one display of trials done/running/total, ETA and best loss
    per width (see :mod:`muscale.cli.sweep_progress`), one of :data:`PROGRESS_MODES`.
    """

    name: str = "default"
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    schemes: list[str] = field(default_factory=lambda: ["mup"])
    seeds: list[int] = field(default_factory=lambda: [0])
    lrs: list[float] | None = None
    lr_min: float = 1e-4
    lr_max: float = 1.0
    lr_points: int = 9
    strategy: str = "grid"
    params: dict[str, list[Any]] = field(default_factory=dict)
    store: str = "sweeps.db"
    lease_s: float = 120.0
    progress: str = "auto"
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    space: dict[str, Range] = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    depths: list[int] | None = None

    def __post_init__(self) -> None:
        self.params = {k: v for k, v in self.params.items() if v is not None}
        if isinstance(self.seeds, int):
            self.seeds = list(range(self.seeds))
        if isinstance(self.adaptive, dict):
            self.adaptive = AdaptiveConfig(**self.adaptive)
        if isinstance(self.search, dict):
            self.search = SearchConfig(**self.search)
        if isinstance(self.confirm, dict):
            self.confirm = ConfirmConfig(**self.confirm)
        self.space = {
            k: Range(**v) if isinstance(v, dict) else v
            for k, v in self.space.items()
            if v is not None
        }
        check_sweep_name(self.name)
        if not isinstance(self.widths, list | tuple) or not self.widths:
            raise ConfigError("sweep.widths", self.widths, "a non-empty list of widths")
        for w in self.widths:
            check_positive_int("sweep.widths", w)
        if not isinstance(self.schemes, list | tuple) or not self.schemes:
            raise ConfigError("sweep.schemes", self.schemes, f"a non-empty list of {SCHEMES}")
        for s in self.schemes:
            check_choice("sweep.schemes", s, SCHEMES)
        if not self.seeds:
            raise ConfigError("sweep.seeds", self.seeds, "give at least one seed")
        check_choice("sweep.strategy", self.strategy, STRATEGIES)
        check_positive("sweep.lease_s", self.lease_s)
        check_choice("sweep.progress", self.progress, PROGRESS_MODES)
        if self.lrs is not None:
            if not isinstance(self.lrs, list | tuple) or not self.lrs:
                raise ConfigError("sweep.lrs", self.lrs, "a non-empty list of positive LRs")
            for lr in self.lrs:
                check_positive("sweep.lrs", lr)
        else:
            check_positive("sweep.lr_min", self.lr_min)
            check_positive("sweep.lr_max", self.lr_max)
            if not self.lr_max > self.lr_min:
                raise ConfigError(
                    "sweep.lr_max", self.lr_max, f"must exceed sweep.lr_min={self.lr_min}"
                )
            check_positive_int("sweep.lr_points", self.lr_points)
            if self.lr_points < 2:
                raise ConfigError("sweep.lr_points", self.lr_points, "must be >= 2")
        for key, values in self.params.items():
            param_key(key)
            if not isinstance(values, list | tuple) or not values:
                raise ConfigError(f"sweep.params.{key}", values, "a non-empty list of values")

        for key, rng in self.space.items():
            space_key(key)
            rng.check(key)
        if self.depths is not None:
            if not self.depths:
                raise ConfigError("sweep.depths", self.depths, "give at least one depth or null")
            for d in self.depths:
                check_positive("sweep.depths", d)
            if len(self.widths) != 1:
                raise ConfigError(
                    "sweep.widths", self.widths, "a depth sweep (sweep.depths) needs one width"
                )
        if self.search.width is not None and self.search.width not in self.scales():
            raise ConfigError("sweep.search.width", self.search.width, f"one of {self.scales()}")

    @property
    def scale(self) -> str:
        """The axis the proxies vary along: ``width``, or ``depth`` when ``depths`` is set."""
        return "width" if self.depths is None else "depth"

    def scales(self) -> list[int]:
        return sorted(self.widths if self.depths is None else self.depths)

    def search_space(self) -> dict[str, Range]:
        """The joint space, always with the LR (default range [lr_min, lr_max], log)."""
        if "lr" in self.space:
            return dict(self.space)
        lrs = self.lr_grid() if self.lrs is not None else [self.lr_min, self.lr_max]
        return {"lr": Range(low=min(lrs), high=max(lrs)), **self.space}

    def hparam_keys(self) -> list[str]:
        """Config keys a trial of this sweep records as its hyperparameters (besides the LR)."""
        if self.strategy not in SEARCH_STRATEGIES:
            return [param_key(k) for k in self.params]
        keys = [param_key(k) for k in self.search_space() if k != "lr"]
        return [*keys, STOP_AT] if self.strategy == "asha" else keys

    def lr_grid(self) -> list[float]:
        if self.lrs is not None:
            return sorted(float(x) for x in self.lrs)
        lo, hi = math.log2(self.lr_min), math.log2(self.lr_max)
        n = self.lr_points
        return [2 ** (lo + (hi - lo) * i / (n - 1)) for i in range(n)]


#: the trainer key a successive-halving rung sets (its trials' step budget)
STOP_AT = "trainer.stop_at"
LR_KEY = "optim.lr"


def param_key(name: str) -> str:
    """Config key of a swept hyperparameter, from its short name (see :data:`SWEEPABLE`)."""
    if name in SWEEPABLE:
        return SWEEPABLE[name]
    raise ConfigError(
        "sweep.params", name, f"unknown hyperparameter: use one of {', '.join(SWEEPABLE)}"
    )


def space_key(name: str) -> str:
    """Config key of a searched hyperparameter: ``lr`` or a :data:`SWEEPABLE` short name."""
    if name == "lr":
        return LR_KEY
    if name in SWEEPABLE:
        return SWEEPABLE[name]
    raise ConfigError(
        "sweep.space", name, f"unknown hyperparameter: use lr or one of {', '.join(SWEEPABLE)}"
    )
