"""``muscale train``: train one model as a Hydra app (run dirs, ``-m``, launchers).

    muscale train model.width=128 optim.lr=0.02 data=pytext trainer.max_steps=500
    muscale train hydra.run.dir=runs/w128 trainer.resume=auto
    torchrun --nproc_per_node=2 -m muscale.train trainer.parallel=ddp hydra.run.dir=runs/ddp

Before Hydra starts (and creates or touches any run directory) the overrides are composed
and everything the run needs is validated, data and resume checkpoint included, so bad
input is one line on stderr and exit status 2. Exit status 3: the run diverged.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from muscale.errors import UserError


def register_schemas() -> None:
    """The core, data and trainer schemas (kept for callers; see muscale.hydra_app)."""
    from muscale.hydra_app import register_configs

    register_configs()


def _run_dir_flag(flags: list[str]) -> Path | None:
    for f in flags:
        if f.startswith("hydra.run.dir="):
            return Path(f.split("=", 1)[1])
    return None


def _check_writable(run_dir: Path) -> None:
    """The run directory can be made: its nearest existing ancestor is a writable dir."""
    p = run_dir.resolve()
    while not p.exists():
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK):
        raise UserError(f"hydra.run.dir={run_dir}: cannot create it ({p} is not a writable dir)")


def _rank_argv(argv: list[str], rank: int, scratch: str) -> list[str]:
    """Ranks other than 0 run Hydra in a scratch dir, writing no outputs or logs."""
    if rank == 0:
        return argv
    drop = ("hydra.run.dir=", "hydra.output_subdir=", "hydra/job_logging=", "hydra/hydra_logging=")
    return [a for a in argv if not a.startswith(drop)] + [
        f"hydra.run.dir={scratch}",
        "hydra.output_subdir=null",
        "hydra/job_logging=disabled",
        "hydra/hydra_logging=disabled",
    ]


def _outcome(res: Any) -> str:
    if res.diverged:
        return "DIVERGED"
    if res.stopped_by == "signal":
        return "STOPPED EARLY by SIGTERM (checkpointed; rerun with trainer.resume=auto)"
    return "done" if res.completed else f"stopped early ({res.stopped_by}; checkpointed)"


def _exit_status(results: list[Any]) -> int:
    """3 (EXIT_DIVERGED) if a run diverged, 143 (EXIT_STOPPED) if SIGTERM stopped one."""
    from muscale.train.loop import EXIT_DIVERGED
    from muscale.train.stop import EXIT_STOPPED

    if any(r.diverged for r in results):
        return EXIT_DIVERGED
    return EXIT_STOPPED if any(r.stopped_by == "signal" for r in results) else 0


def main(argv: list[str]) -> int:
    from muscale.cli.common import (
        compose,
        config_location,
        hydra_flags,
        is_sweep_value,
        run_app,
        sig4,
    )
    from muscale.config import to_dict
    from muscale.train.distributed import env_info
    from muscale.train.loop import prepare, run

    overrides, flags = hydra_flags(argv)
    multirun = any(f in ("-m", "--multirun") for f in flags)
    register_schemas()
    name, cdir = config_location(flags, "train")
    cfg = compose(name, [o for o in overrides if not is_sweep_value(o)], extra_dir=cdir)
    pre: Any = None
    if not multirun:
        pre = prepare(cfg, _run_dir_flag(flags))
        _check_writable(_run_dir_flag(flags) or Path("outputs"))
    results: list[Any] = []

    def task(job_cfg: DictConfig) -> int:
        from hydra.core.hydra_config import HydraConfig

        run_dir = Path(HydraConfig.get().runtime.output_dir)
        data = None
        if pre is not None and to_dict(job_cfg.data) == to_dict(cfg.data):
            data = pre.data
        try:
            res = run(job_cfg, run_dir, data=data)
        except UserError as exc:
            sys.stderr.write(f"muscale train: error: {' '.join(str(exc).split())}\n")
            raise SystemExit(2) from None
        results.append(res)
        if env_info()[0] == 0:
            ev = res.final_eval_loss
            sys.stderr.write(
                f"muscale train: {_outcome(res)} at step {res.steps}"
                f" | loss {sig4(res.final_loss)} | eval_loss {sig4(ev)} | {res.run_dir}\n"
            )
        return _exit_status([res])

    rank = env_info()[0]
    scratch = tempfile.mkdtemp(prefix=f"muscale-rank{rank}-") if rank else ""
    try:
        run_app("train", _rank_argv(list(argv), rank, scratch), task)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return _exit_status(results)
