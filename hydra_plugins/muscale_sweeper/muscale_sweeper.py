"""muscale's Hydra sweeper: proxy-width x hyperparameter sweeps (every ``sweep.strategy``).

Hydra only loads sweepers from the ``hydra_plugins`` package, so this thin class lives here
and the logic lives in :mod:`muscale.sweep`. It works with any Hydra launcher (basic,
joblib, submitit/SLURM): each round is one ``launcher.launch`` batch, each job runs
:func:`muscale.sweep.trial.run_trial`, which writes its result to the store before
returning it. Finished trials found in the store are never launched again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class MuscaleSweeper(Sweeper):
    def __init__(self, max_rounds: int = 1000) -> None:
        self.max_rounds = max_rounds
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from muscale.config import to_dict
        from muscale.sweep.config import SweepConfig
        from muscale.sweep.store import Store
        from muscale.sweep.strategy import fixed_overrides, planner

        assert self.config is not None and self.launcher is not None
        cfg = SweepConfig(**to_dict(self.config.sweep))
        store = Store(cfg.store)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        plan = planner(cfg, max_steps=int(self.config.trainer.max_steps))
        losses: dict[str, tuple[Any, float]] = {}
        done = {r.key: r for r in store.records(cfg.name)}
        fixed = _fixed_arguments(arguments, depth_sweep=cfg.depths is not None)
        if not any(a.startswith("param.base_width=") for a in fixed):
            # μP's base shape: the smallest proxy unless the user says otherwise
            fixed.append(f"param.base_width={min(cfg.widths)}")
        if cfg.depths is not None and not any(a.startswith("param.base_depth=") for a in fixed):
            fixed.append(f"param.base_depth={min(cfg.depths)}")
        for extra in fixed_overrides(plan):  # what the strategy needs wins over the user's
            fixed = [a for a in fixed if not a.startswith(extra.split("=", 1)[0] + "=")]
            fixed.append(extra)
        job_idx, returns = 0, []
        for _ in range(self.max_rounds):
            trials = plan.next_round(losses)
            if not trials:
                break
            todo = []
            for t in trials:
                if t.key in done:  # finished in an earlier (maybe killed) sweep: reuse
                    losses[t.key] = (t, _loss_of(done[t.key].loss, done[t.key].diverged))
                else:
                    todo.append(t)
            if not todo:
                continue
            log.info(
                "sweep %s: launching %d trials (%d already in the store)",
                cfg.name,
                len(todo),
                len(trials) - len(todo),
            )
            batch = [fixed + t.overrides() for t in todo]
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            returns.append(results)
            for t, r in zip(todo, results):
                try:
                    value = r.return_value
                    losses[t.key] = (t, _loss_of(value.get("loss"), value.get("diverged", False)))
                except Exception as exc:  # a failed job counts as a failed trial
                    log.warning("trial %s failed: %s", t.key, " ".join(str(exc).split())[:300])
                    losses[t.key] = (t, math.inf)
        return returns


def _loss_of(loss: float | None, diverged: bool) -> float:
    if diverged or loss is None or not math.isfinite(loss):
        return math.inf
    return float(loss)


def _fixed_arguments(arguments: Sequence[str], *, depth_sweep: bool = False) -> list[str]:
    """User overrides applied to every job, minus the keys each trial sets itself."""
    owned: tuple[str, ...] = (
        "param=",
        "model.width=",
        "trainer.seed=",
        "optim.lr=",
        "sweep_trial=",
        "sweep_run=",
    )
    if depth_sweep:
        owned += ("model.depth=",)
    return [a for a in arguments if not a.startswith(owned)]
