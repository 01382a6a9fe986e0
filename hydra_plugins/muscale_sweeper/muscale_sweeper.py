"""muscale's Hydra sweeper: proxy-width x hyperparameter sweeps (every ``sweep.strategy``).

Hydra only loads sweepers from the ``hydra_plugins`` package, so this thin class lives here
and the logic lives in :mod:`muscale.sweep`. It works with any Hydra launcher (basic,
joblib, submitit/SLURM): each round is one ``launcher.launch`` batch, each job runs
:func:`muscale.sweep.job.run_trial`, which writes its result to the store before
returning it. Finished trials found in the store are never launched again, and trials
leased by a live owner (another sweep of the same name, an array job) are waited for, not
run twice (:meth:`muscale.sweep.store.Store.claim`). Every distinct trial config of the first
round is validated before the store or the sweep directory is touched; a SIGTERM is
forwarded to the workers (they checkpoint) and the sweep exits 143.

What the user sees: one progress display (``sweep.progress``, see
:mod:`muscale.cli.sweep_progress`); Hydra's and the trials' log lines go to log files
(``conf/hydra/hydra_logging/muscale_sweep.yaml``, ``conf/hydra/job_logging/muscale_sweep.yaml``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

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
        from muscale.cli.sweep_progress import SweepProgress
        from muscale.config import to_dict
        from muscale.sweep.config import SweepConfig
        from muscale.sweep.driver import drive, loss_of, trial_arguments
        from muscale.sweep.settings import check_same_settings
        from muscale.sweep.store import Store
        from muscale.sweep.strategy import planner
        from muscale.train.stop import Stopped, forwarding_sigterm

        assert self.config is not None and self.launcher is not None
        cfg = SweepConfig(**to_dict(self.config.sweep))
        max_steps = int(self.config.trainer.max_steps)
        plan = planner(cfg, max_steps=max_steps)
        fixed = trial_arguments(cfg, arguments, plan)
        # before anything is written: a fresh planner's first round (the real one keeps state)
        self._validate_trials(planner(cfg, max_steps=max_steps).next_round({}), fixed)
        store = Store(cfg.store)
        check_same_settings(
            store,
            cfg.name,
            varies_depth=cfg.depths is not None,
            compose_trial=lambda t: self._training_config(fixed + t.overrides()),
        )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        done = {r.key: loss_of(r.loss, r.diverged) for r in store.records(cfg.name)}
        progress = SweepProgress(
            name=cfg.name, store=store, lease_s=cfg.lease_s, mode=cfg.progress, done=done
        )
        state: dict[str, Any] = {"job_idx": 0}
        returns: list[Any] = []

        def launch_batch(todo: list[Any]) -> list[Any]:
            batch = [fixed + t.overrides() for t in todo]
            results = self.launcher.launch(batch, initial_job_idx=state["job_idx"])
            state["job_idx"] += len(batch)
            returns.append(results)
            return list(results)

        def launch(todo: list[Any]) -> list[float]:
            losses = _run_leased(cfg, store, todo, launch_batch, state)
            progress.finished(losses)
            if state.get("signal"):
                raise Stopped("stopped by SIGTERM (workers checkpointed and stopped)")
            return [losses[t.key] for t in todo]

        def on_round(launched: int, reused: int) -> None:
            log.info(
                "sweep %s: %d trials to run (%d already in the store)",
                cfg.name,
                launched,
                reused,
            )

        with forwarding_sigterm(state), progress:
            drive(
                progress.planner(plan),
                launch,
                done=done,
                max_rounds=self.max_rounds,
                on_round=on_round,
            )
        return returns

    def _training_config(self, overrides: list[str]) -> dict[str, Any]:
        """The training config a trial job with ``overrides`` trains (and the store records)."""
        from muscale.sweep.job import training_config

        assert self.hydra_context is not None and self.config is not None
        job = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(job):
            del job["hydra"]  # its runtime fields exist only inside a launched job
        return training_config(job)

    def _validate_trials(self, trials: list[Any], fixed: list[str]) -> None:
        """Compose and check the training config of every distinct (scheme, width, depth,
        hyperparameters) of the first round: a bad width fails here, not as a row."""
        from muscale.train.loop import prepare

        assert self.hydra_context is not None and self.config is not None
        data_cache: dict[str, Any] = {}
        seen: set[Any] = set()
        for t in trials:
            if (t.group, t.depth) in seen:
                continue
            seen.add((t.group, t.depth))
            tcfg = OmegaConf.create(self._training_config(fixed + t.overrides()))
            data_key = OmegaConf.to_yaml(tcfg.data)
            setup = prepare(tcfg, None, data=data_cache.get(data_key))
            data_cache[data_key] = setup.data


def _run_leased(
    cfg: Any,
    store: Any,
    trials: list[Any],
    launch_batch: Callable[[list[Any]], list[Any]],
    state: dict[str, Any],
) -> dict[str, float]:
    """Losses of ``trials`` by key: those done are read from the store, those leased by a
    live owner (another sweep of the same name, an array job) are waited for, the rest are
    launched. A failed job counts as a failed trial (inf)."""
    import time

    from muscale.sweep.driver import loss_of

    losses: dict[str, float] = {}
    pending = list(trials)
    while pending:
        states = store.lease_states([t.key for t in pending], cfg.lease_s)
        for t in pending:
            if states[t.key] == "done":  # finished by us earlier or by another owner
                rec = store.get(t.key)
                losses[t.key] = loss_of(rec.loss, rec.diverged)
        free = [t for t in pending if states[t.key] == "free"]
        if free:
            for t, r in zip(free, launch_batch(free), strict=True):
                try:
                    value = r.return_value
                    if value.get("leased"):
                        continue  # another owner took it first: wait for its result
                    losses[t.key] = loss_of(value.get("loss"), bool(value.get("diverged")))
                except Exception as exc:  # a failed job counts as a failed trial
                    log.warning("trial %s failed: %s", t.key, " ".join(str(exc).split())[:300])
                    losses[t.key] = math.inf
            if state.get("signal"):
                return losses
        pending = [t for t in pending if t.key not in losses]
        if pending and not free:
            time.sleep(min(2.0, cfg.lease_s / 10))  # leased elsewhere: poll the store
    return losses
