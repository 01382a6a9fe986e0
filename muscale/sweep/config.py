"""Typed config of a proxy sweep (the ``sweep`` node of ``conf/sweep.yaml``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from muscale.errors import ConfigError, check_choice, check_positive, check_positive_int
from muscale.param.rules import SCHEMES
from muscale.sweep.store import check_sweep_name

STRATEGIES = ("grid", "adaptive")

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
class SweepConfig:
    """Widths x schemes x seeds x LR (grid or adaptive) x other hyperparameters.

    ``lrs``: an explicit LR grid; otherwise ``lr_points`` log-spaced values in
    [``lr_min``, ``lr_max``]. ``params``: other hyperparameters to grid over, by short name
    (see :data:`SWEEPABLE`) or full config key, e.g. ``{"alpha_out": [0.5, 1, 2]}``.
    ``store``: SQLite path or database URL (``postgresql://...`` on clusters).
    ``lease_s``: a trial's lease lapses when its owner's heartbeat (every ``lease_s / 4``)
    is older than this, so another sweep may take it over (see :mod:`muscale.sweep.store`).
    """

    name: str = "sweep"
    widths: list[int] = field(default_factory=lambda: [64, 128, 256])
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
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)

    def __post_init__(self) -> None:
        self.params = {k: v for k, v in self.params.items() if v is not None}
        if isinstance(self.seeds, int):
            self.seeds = list(range(self.seeds))
        if isinstance(self.adaptive, dict):
            self.adaptive = AdaptiveConfig(**self.adaptive)
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

    def lr_grid(self) -> list[float]:
        if self.lrs is not None:
            return sorted(float(x) for x in self.lrs)
        lo, hi = math.log2(self.lr_min), math.log2(self.lr_max)
        n = self.lr_points
        return [2 ** (lo + (hi - lo) * i / (n - 1)) for i in range(n)]


def param_key(name: str) -> str:
    """Config key of a swept hyperparameter, from its short name (see :data:`SWEEPABLE`)."""
    if name in SWEEPABLE:
        return SWEEPABLE[name]
    raise ConfigError(
        "sweep.params", name, f"unknown hyperparameter: use one of {', '.join(SWEEPABLE)}"
    )
