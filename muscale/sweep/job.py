"""One sweep trial as a Hydra job: look up the store, train, record the result.

Runs wherever the launcher puts it (in-process, a joblib worker, a SLURM job). The run
directory is the job's Hydra output dir, named by the trial key, and the trainer resumes
from its last checkpoint there (``trainer.resume=auto``): a requeued or re-run trial
continues instead of starting over.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from muscale.config import to_dict
from muscale.sweep.config import SEARCH_STRATEGIES, SweepConfig, param_key
from muscale.sweep.store import Store

#: keys of the sweep config that are not part of a training config
SWEEP_KEYS = ("sweep", "sweep_trial", "sweep_run")


def training_config(cfg: DictConfig) -> dict[str, Any]:
    """The trial's training config as plain data (what the store records and the trainer
    takes): everything but the sweep bookkeeping, resuming on."""
    plain = {k: v for k, v in to_dict(cfg).items() if k not in SWEEP_KEYS and k != "hydra"}
    plain["trainer"] = {**plain["trainer"], "resume": "auto"}
    if "logger" in plain and plain["logger"].get("group") is None:
        # wandb groups a sweep's runs; job_type=width
        plain["logger"] = {**plain["logger"], "group": str(cfg.sweep.name)}
    return plain


def run_trial(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Train the trial ``cfg.sweep_trial`` unless the store already has it; return its result."""
    from muscale.train.loop import run as train

    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = SweepConfig(**to_dict(cfg.sweep))
    key = str(cfg.sweep_trial)
    store = Store(sweep.store)
    prev = store.get(key)
    if prev is not None and prev.status == "done":
        return {"key": key, "loss": prev.loss, "diverged": prev.diverged, "reused": True}
    # what the sweeper varied: the keys the fit groups curves by (None: not set by this trial,
    # e.g. a confirmation trial of a successive-halving sweep has no rung)
    hparams = {k: v for k in sweep.hparam_keys() if (v := OmegaConf.select(cfg, k)) is not None}
    if sweep.strategy not in SEARCH_STRATEGIES:
        hparams = {param_key(k): OmegaConf.select(cfg, param_key(k)) for k in sweep.params}
    tcfg = training_config(cfg)
    store.start(
        key,
        sweep=sweep.name,
        scheme=str(cfg.param.scheme),
        width=int(cfg.model.width),
        depth=int(cfg.model.depth),
        seed=int(cfg.trainer.seed),
        lr=float(cfg.optim.lr),
        hparams=hparams,
        config=tcfg,
        run_dir=str(run_dir),
    )
    t0 = time.perf_counter()
    try:
        res = train(tcfg, run_dir)
    except Exception as exc:
        store.fail(key, f"{type(exc).__name__}: {exc}")
        raise
    store.finish(
        key,
        final_loss=res.final_loss,
        final_eval_loss=res.final_eval_loss,
        best_eval_loss=res.best_eval_loss,
        diverged=res.diverged,
        wall_time=time.perf_counter() - t0,
    )
    loss = res.best_eval_loss if res.best_eval_loss is not None else res.final_loss
    return {"key": key, "loss": loss, "diverged": bool(res.diverged), "reused": False}
