"""One sweep trial as a Hydra job: look up the store, train, record the result.

Runs wherever the launcher puts it (in-process, a joblib worker, a SLURM job). The run
directory is the job's Hydra output dir, named by the trial key, and the trainer resumes
from its last checkpoint there (``trainer.resume=auto``): a requeued or re-run trial
continues instead of starting over.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
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
    """Train the trial ``cfg.sweep_trial`` unless the store has it done or another live
    owner holds its lease; return its result (``leased=True`` when skipped for an owner).

    The lease is renewed by a heartbeat thread while training; a run stopped early by
    SIGTERM is recorded as failed (resumable) and ends this process with ``EXIT_STOPPED``.
    """
    from muscale.sweep.store import new_owner
    from muscale.train.loop import run as train
    from muscale.train.stop import Stopped

    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = SweepConfig(**to_dict(cfg.sweep))
    key = str(cfg.sweep_trial)
    store = Store(sweep.store)
    # what the sweeper varied: the keys the fit groups curves by (None: not set by this trial,
    # e.g. a confirmation trial of a successive-halving sweep has no rung)
    hparams = {k: v for k in sweep.hparam_keys() if (v := OmegaConf.select(cfg, k)) is not None}
    if sweep.strategy not in SEARCH_STRATEGIES:
        hparams = {param_key(k): OmegaConf.select(cfg, param_key(k)) for k in sweep.params}
    tcfg = training_config(cfg)
    owner = new_owner()
    claim = store.claim(
        key,
        owner=owner,
        ttl=sweep.lease_s,
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
    if claim == "done":
        prev = store.get(key)
        assert prev is not None
        return {"key": key, "loss": prev.loss, "diverged": prev.diverged, "reused": True}
    if claim == "leased":
        return {"key": key, "loss": None, "diverged": False, "leased": True}
    t0 = time.perf_counter()
    try:
        with _heartbeat(store, key, owner, sweep.lease_s / 4):
            res = train(tcfg, run_dir)
    except BaseException as exc:
        store.fail(key, f"{type(exc).__name__}: {exc}")
        raise
    if res.stopped_by in ("signal", "time_limit"):
        # cut short from outside: not a result, resumable (a halving rung's planned stop at
        # ``trainer.stop_at`` is a result and is recorded below)
        store.fail(key, f"stopped early at step {res.steps} ({res.stopped_by}); resumable")
        if res.stopped_by == "signal":
            raise Stopped(f"trial {key} stopped by SIGTERM at step {res.steps}")
        return {"key": key, "loss": None, "diverged": False, "stopped": True}
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


@contextlib.contextmanager
def _heartbeat(store: Store, key: str, owner: str, every: float) -> Iterator[None]:
    """Renew the lease every ``every`` seconds from a daemon thread while training."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):  # a busy store: the next beat retries
                store.heartbeat(key, owner)

    thread = threading.Thread(target=beat, name=f"lease-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
