"""The round loop of a sweep, apart from how trials run.

``drive`` asks the planner for a round, takes finished trials from the store instead of
running them again, runs the rest through ``launch`` (Hydra's launcher in the sweeper
plugin; an in-process function in tests and notebooks) and feeds the losses back, until
the planner has nothing left. A failed or diverged trial counts as loss ``inf``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from muscale.sweep.config import SweepConfig
from muscale.sweep.strategy import Planner, fixed_overrides
from muscale.sweep.trial_spec import Trial

log = logging.getLogger(__name__)

#: runs a batch of trials, returns one loss per trial (inf: failed or diverged)
Launch = Callable[[list[Trial]], list[float]]


def loss_of(loss: float | None, diverged: bool) -> float:
    """The loss a planner sees: inf for a diverged, failed or missing result."""
    if diverged or loss is None or not math.isfinite(loss):
        return math.inf
    return float(loss)


def drive(
    plan: Planner,
    launch: Launch,
    *,
    done: Mapping[str, float] | None = None,
    max_rounds: int = 1000,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[Trial, float]]:
    """Run ``plan`` to the end; returns every trial's loss by key.

    ``done``: losses of trials already finished (by key, from the store): reused, never
    launched again. ``on_round(launched, reused)`` is called before each launch.
    """
    done = done or {}
    losses: dict[str, tuple[Trial, float]] = {}
    for _ in range(max_rounds):
        trials = plan.next_round(losses)
        if not trials:
            break
        todo = []
        for t in trials:
            if t.key in done:
                losses[t.key] = (t, done[t.key])
            else:
                todo.append(t)
        if not todo:
            continue
        if on_round is not None:
            on_round(len(todo), len(trials) - len(todo))
        for t, loss in zip(todo, launch(todo), strict=True):
            losses[t.key] = (t, loss)
    return losses


def trial_steps(trials: list[Trial], max_steps: int) -> int:
    """Optimizer steps the trials cost, counting resumed halving rungs once per run dir."""
    reached: dict[str, int] = {}
    for t in trials:
        steps = int(t.hparams.get("trainer.stop_at") or max_steps)
        reached[t.run_id] = max(reached.get(t.run_id, 0), steps)
    return sum(reached.values())


def trial_arguments(cfg: SweepConfig, arguments: Sequence[str], plan: Planner) -> list[str]:
    """Overrides every trial gets: the user's (minus what each trial sets), base shapes, and
    what the strategy needs (which wins over the user's, e.g. evaluation at halving rungs)."""
    owned: tuple[str, ...] = (
        "param=",
        "model.width=",
        "trainer.seed=",
        "optim.lr=",
        "sweep_trial=",
        "sweep_run=",
    )
    if cfg.depths is not None:
        owned += ("model.depth=",)
    fixed = [a for a in arguments if not a.startswith(owned)]
    if not any(a.startswith("param.base_width=") for a in fixed):
        # μP's base shape: the smallest proxy unless the user says otherwise
        fixed.append(f"param.base_width={min(cfg.widths)}")
    if cfg.depths is not None and not any(a.startswith("param.base_depth=") for a in fixed):
        fixed.append(f"param.base_depth={min(cfg.depths)}")
    for extra in fixed_overrides(plan):
        fixed = [a for a in fixed if not a.startswith(extra.split("=", 1)[0] + "=")]
        fixed.append(extra)
    return fixed


def run_local(
    overrides: Sequence[str], runs: Path, *, config_name: str = "sweep"
) -> tuple[SweepConfig, dict[str, tuple[Trial, float]]]:
    """A whole sweep in this process (no Hydra job per trial): same planner, store rows,
    run directories (``runs/<run_id>``) and resume behaviour as ``muscale sweep``."""
    from muscale.config import to_dict
    from muscale.hydra_app import compose
    from muscale.sweep.job import run_trial
    from muscale.sweep.store import Store
    from muscale.sweep.strategy import planner

    base = compose(config_name, list(overrides))
    cfg = SweepConfig(**to_dict(base.sweep))
    plan = planner(cfg, max_steps=int(base.trainer.max_steps))
    fixed = trial_arguments(cfg, overrides, plan)
    store = Store(cfg.store)
    done = {r.key: loss_of(r.loss, r.diverged) for r in store.records(cfg.name)}

    def launch(todo: list[Trial]) -> list[float]:
        out = []
        for t in todo:
            tcfg = compose(config_name, [*fixed, *t.overrides()])
            try:
                res = run_trial(tcfg, runs / t.run_id)
            except Exception as exc:  # a failed trial is a result (inf), as under Hydra
                log.warning("trial %s failed: %s", t.key, " ".join(str(exc).split())[:300])
                out.append(math.inf)
                continue
            out.append(loss_of(res["loss"], res["diverged"]))
        return out

    return cfg, drive(plan, launch, done=done)
