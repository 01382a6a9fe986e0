"""muscale's Hydra sweeper: proxy-width x hyperparameter sweeps, grid or adaptive.

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
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class MuscaleSweeper(Sweeper):
    def __init__(self, max_rounds: int = 50) -> None:
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
        """Validate every trial, then run rounds; bad input is one line and exit 2, a
        SIGTERM stops the workers (checkpointed) and exits ``EXIT_STOPPED``."""
        import sys

        from muscale.cli.main import _user_error_types, one_line
        from muscale.train.stop import Stopped

        try:
            return self._sweep(arguments)
        except Stopped as exc:
            sys.stderr.write(
                f"muscale sweep: {exc.message}; finished trials are in the store, re-run "
                "the same command to resume the rest\n"
            )
            raise
        except _user_error_types() as exc:
            sys.stderr.write(f"muscale sweep: error: {one_line(exc)}\n")
            raise SystemExit(2) from None

    def _sweep(self, arguments: list[str]) -> Any:
        from muscale.config import to_dict
        from muscale.sweep.config import SweepConfig
        from muscale.sweep.store import Store
        from muscale.sweep.strategy import planner
        from muscale.train.stop import Stopped, forwarding_sigterm

        assert self.config is not None and self.launcher is not None
        cfg = SweepConfig(**to_dict(self.config.sweep))
        fixed = _fixed_arguments(arguments)
        if not any(a.startswith("param.base_width=") for a in fixed):
            # μP's base shape: the smallest proxy unless the user says otherwise
            fixed.append(f"param.base_width={min(cfg.widths)}")
        self._validate_trials(planner(cfg).next_round({}), fixed)  # before anything is written
        store = Store(cfg.store)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        plan = planner(cfg)
        losses: dict[str, tuple[Any, float]] = {}
        state: dict[str, Any] = {"job_idx": 0, "returns": []}
        for _ in range(self.max_rounds):
            trials = plan.next_round(losses)
            if not trials:
                break
            with forwarding_sigterm(state):
                self._run_round(cfg, store, trials, fixed, losses, state)
            if state.get("signal"):
                raise Stopped("stopped by SIGTERM (workers checkpointed and stopped)")
        return state["returns"]

    def _validate_trials(self, trials: list[Any], fixed: list[str]) -> None:
        """Compose and check the training config of every distinct (scheme, width,
        hyperparameters) of the first round: a bad width fails here, not as a row."""
        from muscale.sweep.trial import training_config
        from muscale.train.loop import prepare

        assert self.hydra_context is not None and self.config is not None
        data_cache: dict[str, Any] = {}
        seen: set[Any] = set()
        for t in trials:
            if t.group in seen:
                continue
            seen.add(t.group)
            job = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(fixed + t.overrides())
            )
            with open_dict(job):
                del job["hydra"]  # its runtime fields exist only inside a launched job
            tcfg = training_config(job)
            data_key = OmegaConf.to_yaml(tcfg.data)
            setup = prepare(tcfg, None, data=data_cache.get(data_key))
            data_cache[data_key] = setup.data

    def _run_round(
        self,
        cfg: Any,
        store: Any,
        trials: list[Any],
        fixed: list[str],
        losses: dict[str, tuple[Any, float]],
        state: dict[str, Any],
    ) -> None:
        """Run one round's trials: skip those done, wait for those leased by a live owner
        (another sweep of the same name, an array job), launch the rest."""
        import time

        pending = list(trials)
        while pending:
            states = store.lease_states([t.key for t in pending], cfg.lease_s)
            for t in pending:
                if states[t.key] == "done":  # finished by us earlier or by another owner
                    rec = store.get(t.key)
                    losses[t.key] = (t, _loss_of(rec.loss, rec.diverged))
            free = [t for t in pending if states[t.key] == "free"]
            if free:
                log.info(
                    "sweep %s: launching %d trials (%d done or leased elsewhere)",
                    cfg.name,
                    len(free),
                    len(trials) - len(free),
                )
                batch = [fixed + t.overrides() for t in free]
                results = self.launcher.launch(batch, initial_job_idx=state["job_idx"])
                state["job_idx"] += len(batch)
                state["returns"].append(results)
                for t, r in zip(free, results):
                    try:
                        value = r.return_value
                        if value.get("leased"):
                            continue  # another owner took it first: wait for its result
                        losses[t.key] = (t, _loss_of(value.get("loss"), value.get("diverged")))
                    except Exception as exc:  # a failed job counts as a failed trial
                        log.warning("trial %s failed: %s", t.key, " ".join(str(exc).split())[:300])
                        losses[t.key] = (t, math.inf)
                if state.get("signal"):
                    return
            pending = [t for t in pending if t.key not in losses]
            if pending and not free:
                time.sleep(min(2.0, cfg.lease_s / 10))  # leased elsewhere: poll the store


def _loss_of(loss: float | None, diverged: bool | None) -> float:
    if diverged or loss is None or not math.isfinite(loss):
        return math.inf
    return float(loss)


def _fixed_arguments(arguments: Sequence[str]) -> list[str]:
    """User overrides applied to every job, minus the keys each trial sets itself."""
    owned = ("param=", "model.width=", "trainer.seed=", "optim.lr=", "sweep_trial=")
    return [a for a in arguments if not a.startswith(owned)]
