"""``muscale sweep``: proxy widths x hyperparameters through Hydra (any launcher).

muscale sweep sweep.widths=[64,128,256] sweep.schemes=[sp,mup] sweep.lrs=[1e-3,3e-3,1e-2]
muscale sweep sweep.strategy=adaptive sweep.seeds=3 hydra/launcher=muscale_joblib
muscale sweep ... hydra/launcher=slurm hydra.launcher.partition=gpu
"""

from __future__ import annotations

from typing import Any

from muscale.cli.common import compose, config_location, hydra_flags, run_hydra_app


def _task(cfg: Any) -> Any:
    from muscale.sweep.job import run_trial

    return run_trial(cfg)


def check_displays(sweep_progress: str, trainer_progress: str) -> None:
    """One live display per terminal: a trial's own bar (``trainer.progress`` rich) cannot
    draw under the sweep's (rich's ``Live`` refuses a second one in the process, and
    workers drawing on the same terminal garble it)."""
    from muscale.cli.sweep_progress import display_mode
    from muscale.errors import ConfigError

    if display_mode(sweep_progress) == "rich" and display_mode(trainer_progress) == "rich":
        raise ConfigError(
            "trainer.progress",
            trainer_progress,
            "a trial's live bar cannot draw under the sweep's display: keep plain "
            "(a sweep's default: each trial's steps go to its log) or off, "
            "or set sweep.progress=plain",
        )


def main(argv: list[str]) -> int:
    from muscale.config import to_dict
    from muscale.sweep.config import SweepConfig, param_key
    from muscale.sweep.strategy import planner

    overrides, flags = hydra_flags(argv)
    name, cdir = config_location(flags, "sweep")
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.startswith("sweep.params."):
            param_key(key.removeprefix("sweep.params."))  # unknown names: one clear line
    composed = compose(name, overrides, extra_dir=cdir)
    sweep = SweepConfig(**to_dict(composed.sweep))  # validate first: one line, exit 2
    planner(sweep, max_steps=int(composed.trainer.max_steps))  # e.g. rungs, optional samplers
    check_displays(sweep.progress, str(composed.trainer.progress))
    run_hydra_app("sweep", argv, _task, multirun=True, prog="muscale sweep")
    return 0
