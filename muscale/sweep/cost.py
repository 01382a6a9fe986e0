"""What tuning cost: trials, optimizer steps, wall seconds and training FLOPs of a sweep.

Halving rungs of one point share a run directory and resume each other, so a point costs
the steps of its highest rung, and its rungs' wall times add up (each is the time of its
own increment). FLOPs per token are the trainer's own count (``6N`` plus attention, see
:func:`muscale.train.mfu.flops_per_token`), from the model rebuilt on the meta device.
A diverged trial is counted at its planned steps (an upper bound). With
``trainer.threads=1`` (the sweeps' parallel setting) wall seconds are CPU-seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from muscale.sweep.config import STOP_AT
from muscale.sweep.store import Record


@dataclass(kw_only=True)
class Cost:
    trials: int  # store rows (each halving rung is a row)
    runs: int  # run directories (a promoted point's rungs share one)
    steps: int
    wall_seconds: float
    flops: float

    def to_json(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "runs": self.runs,
            "steps": self.steps,
            "wall_seconds": self.wall_seconds,
            "flops": self.flops,
        }


def step_flops(config: dict[str, Any]) -> float:
    """Training FLOPs of one optimizer step of a trial's training config."""
    from omegaconf import OmegaConf

    from muscale.build import build_model
    from muscale.models import model_config
    from muscale.train.loop import prepare
    from muscale.train.mfu import flops_per_token

    plain = {k: v for k, v in config.items() if k in ("model", "param", "optim", "data")}
    setup = prepare(OmegaConf.create({**plain, "trainer": {}, "logger": {}}), None)
    mcfg = model_config(setup.config["model"])
    model, _ = build_model(mcfg, setup.config["param"], device="meta")
    data = setup.data
    per_step = data.batch_size * (data.seq_len if data.kind == "lm" else 1)
    return float(per_step * flops_per_token(model, mcfg))


def tuning_cost(records: list[Record]) -> Cost:
    """The cost of the trials behind ``records`` (finished rows of one or more sweeps)."""
    runs: dict[str, tuple[int, dict[str, Any]]] = {}
    wall = 0.0
    for r in records:
        planned = r.hparams.get(STOP_AT) or (r.config.get("trainer") or {}).get("max_steps") or 0
        run = r.run_dir or r.key
        if run not in runs or int(planned) > runs[run][0]:
            runs[run] = (int(planned), r.config)
        wall += float(r.wall_time or 0.0)
    per_step: dict[str, float] = {}
    flops = 0.0
    for steps, config in runs.values():
        sig = json.dumps(
            {k: config.get(k) for k in ("model", "param", "data")}, sort_keys=True, default=str
        )
        if sig not in per_step:
            per_step[sig] = step_flops(config)
        flops += steps * per_step[sig]
    return Cost(
        trials=len(records),
        runs=len(runs),
        steps=sum(s for s, _ in runs.values()),
        wall_seconds=wall,
        flops=flops,
    )
