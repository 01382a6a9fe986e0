"""A probe Hydra app for the SLURM launcher tests: records where and how each job ran.

Each job writes ``echo.json`` in its Hydra output dir (the SLURM job id, the array task,
the restart count, the python that ran it, ``x`` and ``x**2``) and returns the same record,
which submitit pickles back to the launching process.

With ``hold_s > 0`` the first run of a job leaves a ``state.json`` "checkpoint" and then
waits for up to ``hold_s`` seconds, so a test can preempt it; the requeued run finds the
checkpoint and resumes from it, as muscale's trainer does with ``trainer.resume=auto``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

#: environment of the job worth checking: who scheduled it, and what the launcher's setup set
ENV_KEYS = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_RESTART_COUNT",
    "SLURM_CPUS_PER_TASK",
    "OMP_NUM_THREADS",
    "SUBMITIT_EXECUTOR",
)


@hydra.main(version_base="1.3", config_path="conf", config_name="slurm_echo")
def main(cfg: DictConfig) -> dict[str, Any]:
    out = Path(HydraConfig.get().runtime.output_dir)
    state = out / "state.json"
    resumed = state.is_file()
    attempts = json.loads(state.read_text())["attempts"] + 1 if resumed else 1
    tmp = state.with_suffix(".tmp")  # written whole, then renamed: a reader never sees half
    tmp.write_text(json.dumps({"attempts": attempts, "job_id": os.environ.get("SLURM_JOB_ID")}))
    os.replace(tmp, state)
    if cfg.hold_s > 0 and not resumed:
        time.sleep(float(cfg.hold_s))  # submitit's USR2 handler requeues us from here
    record: dict[str, Any] = {key.lower(): os.environ.get(key) for key in ENV_KEYS}
    record.update(
        x=cfg.x,
        square=cfg.x**2,
        attempts=attempts,
        resumed=resumed,
        python=sys.executable,
    )
    (out / "echo.json").write_text(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
