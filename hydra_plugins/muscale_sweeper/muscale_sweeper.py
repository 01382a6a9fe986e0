"""muscale's Hydra sweeper: proxy-width x hyperparameter sweeps (every ``sweep.strategy``).

Hydra only loads sweepers from the ``hydra_plugins`` package, so this thin class lives here
and the logic lives in :mod:`muscale.sweep`. It works with any Hydra launcher (basic,
joblib, submitit/SLURM): each round is one ``launcher.launch`` batch, each job runs
:func:`muscale.sweep.job.run_trial`, which writes its result to the store before
returning it. Finished trials found in the store are never launched again.
"""

from __future__ import annotations

import logging
import math
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
        from muscale.sweep.driver import drive, loss_of, trial_arguments
        from muscale.sweep.store import Store
        from muscale.sweep.strategy import planner

        assert self.config is not None and self.launcher is not None
        cfg = SweepConfig(**to_dict(self.config.sweep))
        store = Store(cfg.store)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        plan = planner(cfg, max_steps=int(self.config.trainer.max_steps))
        done = {r.key: r for r in store.records(cfg.name)}
        fixed = trial_arguments(cfg, arguments, plan)
        state = {"job_idx": 0}
        returns: list[Any] = []

        def launch(todo: list[Any]) -> list[float]:
            batch = [fixed + t.overrides() for t in todo]
            results = self.launcher.launch(batch, initial_job_idx=state["job_idx"])
            state["job_idx"] += len(batch)
            returns.append(results)
            out = []
            for t, r in zip(todo, results, strict=True):
                try:
                    value = r.return_value
                    out.append(loss_of(value.get("loss"), value.get("diverged", False)))
                except Exception as exc:  # a failed job counts as a failed trial
                    log.warning("trial %s failed: %s", t.key, " ".join(str(exc).split())[:300])
                    out.append(math.inf)
            return out

        def on_round(launched: int, reused: int) -> None:
            log.info(
                "sweep %s: launching %d trials (%d already in the store)",
                cfg.name,
                launched,
                reused,
            )

        drive(
            plan,
            launch,
            done={k: loss_of(r.loss, r.diverged) for k, r in done.items()},
            max_rounds=self.max_rounds,
            on_round=on_round,
        )
        return returns
