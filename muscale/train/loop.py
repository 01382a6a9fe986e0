"""The trainer: one function, :func:`run`, from a config to a trained, logged run.

Works the same from ``muscale train`` (Hydra), from a sweep trial (in-process) and under
``torchrun`` (DDP / FSDP2). Order of business:

1. :func:`prepare` validates everything and builds nothing heavy: typed configs, the data
   source, the plan (on the meta device), the checkpoint to resume from (verified and
   compared with this config). Nothing is written before it succeeds, so a bad input never
   touches an existing run directory.
2. The model is built and initialised from ``trainer.seed`` (identically on every rank),
   wrapped for DDP/FSDP2, optionally compiled; the optimizer and schedule come from the
   plan (:func:`muscale.optim.build.make_optimizer`).
3. Each step ``s`` trains on ``data.train_batch(s, micro, grad_accum)``, a pure function
   of the step, so resuming at step ``s`` needs no data state and an interrupted run
   resumed from a checkpoint follows the uninterrupted trajectory bit for bit (CPU).

A run *diverges* when a train loss is NaN/inf or exceeds ``trainer.diverge_factor`` times
the first step's loss; it then stops cleanly: ``"diverged": true`` in the last metrics line,
in ``result.json`` and in the returned :class:`TrainResult` (the CLI exits with status 3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from muscale.errors import UserError
from muscale.train import checkpoint as ckpt_io
from muscale.train import distributed as dist_utils
from muscale.train.config import LoggerConfig, TrainerConfig, logger_config, trainer_config

EXIT_DIVERGED = 3


@dataclass(kw_only=True)
class TrainResult:
    """What a run achieved (also written to ``<run dir>/result.json``).

    ``completed`` is False when the run stopped early on purpose (``stop_at``, time limit,
    SIGTERM) and can be resumed; a diverged run is not completed either.
    """

    final_loss: float | None
    final_eval_loss: float | None
    best_eval_loss: float | None
    diverged: bool
    steps: int
    tokens: int
    wall_time: float
    run_dir: Path
    completed: bool = True
    diverged_reason: str | None = None
    stopped_by: str | None = None  # "signal" (SIGTERM) | "time_limit" | "stop_at"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["run_dir"] = str(self.run_dir)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }


# --------------------------------------------------------------------------- losses


def _lm_loss(out: Tensor, y: Tensor) -> Tensor:  # (B, T, V), (B, T)
    return F.cross_entropy(out.float().flatten(0, 1), y.flatten())


def _mse(out: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(out.float(), y.float())


def _ce(out: Tensor, y: Tensor) -> Tensor:  # (B, C), (B,)
    return F.cross_entropy(out.float(), y)


#: data kind -> (loss, model family it needs, {model field: data attribute})
KINDS: dict[str, tuple[Any, str, dict[str, str]]] = {
    "lm": (_lm_loss, "gpt", {"vocab_size": "vocab_size", "seq_len": "seq_len"}),
    "regression": (_mse, "mlp", {"in_dim": "in_dim", "out_dim": "out_dim"}),
    "classification": (_ce, "mlp", {"in_dim": "in_dim", "out_dim": "out_dim"}),
}


# --------------------------------------------------------------------------- preparing


@dataclass(kw_only=True)
class Setup:
    """Everything :func:`prepare` validated (see the module docstring)."""

    config: dict[str, Any]  # effective, resolved: model/param/optim/data/trainer/logger
    trainer: TrainerConfig
    logger: LoggerConfig
    optim: Any  # OptimConfig
    data: Any  # DataSource
    plan: Any  # Plan
    resume_from: Path | None
    resume_meta: dict[str, Any] | None


def _plain(cfg: Any) -> dict[str, Any]:
    from muscale.config import to_dict

    d = to_dict(cfg)
    return {k: v for k, v in d.items() if k != "hydra"}


def prepare(
    cfg: Any,
    run_dir: Path | None,
    *,
    data: Any = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> Setup:
    """Validate ``cfg`` and the resume checkpoint; build the data source (no writes).

    ``data``: an already built source for this config (the CLI builds it once).
    """
    from muscale.build import build_model, param_config
    from muscale.data import build_data, data_config
    from muscale.models import model_config
    from muscale.optim.config import OptimConfig

    raw = _plain(cfg)
    for section in ("model", "param", "optim", "data"):
        if section not in raw:
            raise UserError(f"the training config has no {section!r} section")
    tcfg = trainer_config(raw.get("trainer") or {})
    lcfg = logger_config(raw.get("logger") or {})
    optim = OptimConfig(**raw["optim"])
    pcfg = param_config(raw["param"])
    dcfg = data_config(raw["data"])
    env_rank, env_world, _ = dist_utils.env_info()
    rank = env_rank if rank is None else rank
    world = env_world if world_size is None else world_size
    dist_utils.check_parallel(tcfg.parallel, world)
    if tcfg.grad_accum > 1 and dcfg.batch_size % (world * tcfg.grad_accum):
        raise UserError(
            f"data.batch_size={dcfg.batch_size} is not divisible by world_size x "
            f"trainer.grad_accum = {world} x {tcfg.grad_accum}"
        )
    if data is None:
        data = build_data(dcfg, rank=rank, world_size=world)
    _, family, fields = KINDS[data.kind]
    model_d = dict(raw["model"])
    if model_d.get("family", "gpt") != family:
        raise UserError(
            f"data={dcfg.name} ({data.kind}) needs model={family}, got "
            f"model={model_d.get('family')}"
        )
    for mfield, attr in fields.items():  # the data decide vocabulary, context, dims
        model_d[mfield] = getattr(data, attr)
    mcfg = model_config(model_d)
    meta_model, plan = build_model(mcfg, pcfg, optim_family=optim.rule_family, device="meta")
    _check_memory(meta_model, mcfg, optim, dcfg, tcfg, world)
    config = {
        "model": dataclasses.asdict(mcfg),
        "param": dataclasses.asdict(pcfg),
        "optim": dataclasses.asdict(optim),
        "data": dataclasses.asdict(dcfg),
        "trainer": dataclasses.asdict(tcfg),
        "logger": dataclasses.asdict(lcfg),
    }
    resume_from, meta = None, None
    if tcfg.resume is not None:
        if tcfg.resume == "auto":
            resume_from = ckpt_io.latest_checkpoint(run_dir) if run_dir is not None else None
        else:
            resume_from = ckpt_io.find_checkpoint(tcfg.resume)
        if resume_from is not None:
            meta = ckpt_io.read_meta(resume_from)
            ckpt_io.check_compatible(resume_from, meta, config, plan)
    return Setup(
        config=config,
        trainer=tcfg,
        logger=lcfg,
        optim=optim,
        data=data,
        plan=plan,
        resume_from=resume_from,
        resume_meta=meta,
    )


def _check_memory(meta_model: Any, mcfg: Any, optim: Any, dcfg: Any, tcfg: Any, world: int) -> None:
    """Refuse a model that cannot fit before anything is allocated (muscale.train.memory)."""
    from muscale.train import memory

    per_rank = dcfg.batch_size // max(world * tcfg.grad_accum, 1)
    est = memory.estimate(
        meta_model,
        optim_name=optim.name,
        momentum=optim.momentum,
        tokens_per_rank_step=per_rank * (getattr(mcfg, "seq_len", 1) or 1),
        width=mcfg.width,
        depth=mcfg.depth,
        shards=world if tcfg.parallel == "fsdp" else 1,
    )
    memory.check_fits(est, tcfg.device)


# --------------------------------------------------------------------------- running


class _StopSignal:
    """SIGTERM (SLURM pre-emption) -> checkpoint at the next log step and stop."""

    def __init__(self) -> None:
        self.flag = False
        self._old: Any = None

    def __enter__(self) -> _StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.flag = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def run(cfg: Any, run_dir: str | Path, *, data: Any = None) -> TrainResult:
    """Train the model of ``cfg`` (a DictConfig or dict with model/param/optim/data/trainer
    [/logger] sections) in ``run_dir``; see the module docstring.

    Raises :class:`UserError` for bad configs, data or checkpoints (before writing
    anything); a diverged run returns normally with ``diverged=True``.
    """
    t_start = time.perf_counter()
    tcfg = trainer_config(_plain(cfg).get("trainer") or {})
    if tcfg.threads:  # e.g. 1 per trial when a sweep runs trials side by side
        torch.set_num_threads(tcfg.threads)
    device = dist_utils.resolve_device(tcfg.device, dist_utils.env_info()[2])
    info = dist_utils.setup(tcfg.parallel, device)
    try:
        # every rank works in rank 0's run dir (Hydra gives other ranks a scratch dir)
        run_dir = Path(dist_utils.broadcast_object(str(Path(run_dir).resolve()), info))
        setup = prepare(cfg, run_dir, data=data)
        return _train(setup, run_dir, device, info, t_start)
    finally:
        dist_utils.teardown(info)


def _precision(tcfg: TrainerConfig, device: torch.device) -> str:
    if tcfg.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return tcfg.precision


def _train(
    setup: Setup, run_dir: Path, device: torch.device, info: dist_utils.DistInfo, t_start: float
) -> TrainResult:
    from muscale.build import build_model
    from muscale.models import model_config
    from muscale.optim.build import make_optimizer
    from muscale.optim.schedules import lr_multiplier
    from muscale.train.logging import MetricsLogger
    from muscale.train.mfu import flops_per_token, peak_flops
    from muscale.train.progress import Progress

    tcfg, data, config = setup.trainer, setup.data, setup.config
    mcfg = model_config(config["model"])
    precision = _precision(tcfg, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(tcfg.seed)
    model, plan = build_model(
        mcfg,
        config["param"],
        optim_family=setup.optim.rule_family,
        seed=tcfg.seed,
        device=device,
    )
    flops_token = flops_per_token(model, mcfg)
    peak = peak_flops(device, precision)
    base = model
    model = dist_utils.wrap(model, info, device)
    opt, sched = make_optimizer(base, plan, setup.optim, total_steps=tcfg.max_steps)
    lr_at = lr_multiplier(setup.optim.schedule, tcfg.max_steps)
    state: dict[str, Any] = {
        "step": 0,
        "tokens": 0,
        "initial_loss": None,
        "best_eval_loss": None,
        "final_eval_loss": None,
        "final_loss": None,
    }
    if setup.resume_from is not None:
        assert setup.resume_meta is not None
        msd: dict = {}
        if info.is_main:  # rank 0 reads the tensors; load_full_state broadcasts them
            msd = ckpt_io.read_model_state(setup.resume_from, setup.resume_meta)
        saved, osd, rng = ckpt_io.read_train_state(setup.resume_from, optim=info.is_main)
        dist_utils.load_full_state(model, opt, msd, osd, info)
        sched.load_state_dict(saved["scheduler"])
        ckpt_io.set_rng_state(rng)
        for k in state:
            state[k] = saved.get(k, state[k])
    start = int(state["step"])
    fwd: Any = torch.compile(model) if tcfg.compile else model
    loss_fn = KINDS[data.kind][0]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    per_step = data.batch_size * (data.seq_len if data.kind == "lm" else 1)
    params = [p for p in model.parameters() if p.requires_grad]
    clip = tcfg.grad_clip if tcfg.grad_clip > 0 else float("inf")
    accum = tcfg.grad_accum

    logger = MetricsLogger(
        run_dir,
        enabled=info.is_main,
        cfg=setup.logger,
        config=config,
        resume_step=start if setup.resume_from is not None else None,
    )
    if info.is_main:
        (run_dir / "config.json").write_text(
            json.dumps(
                {**config, "data_info": data.describe(), "world_size": info.world_size},
                indent=1,
                default=str,
            )
        )
    progress = Progress(tcfg.progress, total=tcfg.max_steps, start=start, enabled=info.is_main)
    if setup.resume_from is not None:
        progress.message(f"resumed from {setup.resume_from} at step {start}")

    monitor: Any = None
    if tcfg.monitor_every and info.parallel != "fsdp":
        try:
            from muscale.diagnostics.monitor import spectral_summary as monitor
        except ImportError:
            progress.message("trainer.monitor_every: muscale.diagnostics.monitor missing; off")

    def to_dev(t: Tensor) -> Tensor:
        return t.to(device, non_blocking=True)

    def train_step(step: int) -> tuple[Tensor, Tensor]:
        model.train()
        total = torch.zeros((), device=device)
        for m in range(accum):
            x, y = data.train_batch(step, m, accum)
            with dist_utils.accumulating(model, info, m == accum - 1), autocast:
                loss = loss_fn(fwd(to_dev(x)), to_dev(y))
            (loss / accum if accum > 1 else loss).backward()
            total += loss.detach()
        gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
        if hasattr(gnorm, "full_tensor"):  # FSDP2: a DTensor
            gnorm = gnorm.full_tensor()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return total / accum if accum > 1 else total, gnorm.detach()

    @torch.no_grad()
    def evaluate() -> float:
        """Mean held-out loss; each rank takes its slice of every eval batch."""
        model.eval()
        acc = torch.zeros((), device=device)
        for i in range(data.eval_batches):
            x, y = data.eval_batch(i, info.rank, info.world_size)
            with autocast:
                acc += loss_fn(fwd(to_dev(x)), to_dev(y)).float()
        return float(dist_utils.all_mean(acc / data.eval_batches, info))

    def save(step: int) -> None:
        msd, osd = dist_utils.full_state(model, opt, info)
        if info.is_main:
            ckpt_io.save_checkpoint(
                run_dir / "checkpoints",
                step=step,
                model_state=msd,
                optim_state=osd,
                train_state={**state, "scheduler": _sched_state(sched)},
                config=config,
                plan=plan,
                keep=tcfg.keep_checkpoints,
            )
        dist_utils.barrier(info)

    diverged, reason, stopped, stopped_by = False, None, False, None
    pending: list[tuple[int, Tensor, Tensor]] = []
    t_interval, tokens_interval = time.perf_counter(), 0
    step = start
    with _StopSignal() as sig:
        while step < tcfg.max_steps:
            loss, gnorm = train_step(step)
            step += 1
            state["tokens"] += per_step
            tokens_interval += per_step
            pending.append((step, loss, gnorm))
            progress.step(step)
            last = step == tcfg.max_steps
            early = tcfg.stop_at is not None and step >= tcfg.stop_at
            if step % tcfg.log_every == 0 or last or early:
                timeout = tcfg.time_limit_s is not None and (
                    time.perf_counter() - t_start > tcfg.time_limit_s
                )
                packed = torch.stack(
                    [x for _, lo, g in pending for x in (lo, g)]
                    + [torch.tensor(float(sig.flag or timeout), device=device)]
                )
                reduced = dist_utils.all_mean(packed.float(), info).tolist()
                elapsed = time.perf_counter() - t_interval
                tps = tokens_interval / max(elapsed, 1e-9)
                for j, (s, _, _) in enumerate(pending):
                    lval, gval = reduced[2 * j], reduced[2 * j + 1]
                    if state["initial_loss"] is None:
                        state["initial_loss"] = lval
                    state["final_loss"] = lval
                    reason = _divergence(lval, state["initial_loss"], tcfg.diverge_factor)
                    if s % tcfg.log_every == 0 or s == step or reason is not None:
                        row = {
                            "step": s,
                            "loss": lval,
                            "lr": setup.optim.lr * lr_at(s - 1),
                            "tokens": state["tokens"] - (step - s) * per_step,
                            "tokens_per_s": tps,
                            "grad_norm": gval,
                            "time": time.perf_counter() - t_start,
                        }
                        if peak:
                            row["mfu"] = tps * flops_token / (peak * info.world_size)
                        if reason is not None:
                            row.update(diverged=True, reason=reason)
                        logger.log(row)
                        progress.metrics(row)
                    if reason is not None:
                        diverged, step = True, s
                        state["tokens"] = s * per_step
                        break
                pending.clear()
                if diverged:
                    break
                stopped = early or reduced[-1] > 0
                stopped_by = _stop_cause(early, sig.flag or (reduced[-1] > 0 and not timeout))
                t_interval, tokens_interval = time.perf_counter(), 0
            eval_now = tcfg.eval_every and step % tcfg.eval_every == 0
            if eval_now or (last and not diverged):
                ev = evaluate()
                state["final_eval_loss"] = ev
                if math.isfinite(ev) and (
                    state["best_eval_loss"] is None or ev < state["best_eval_loss"]
                ):
                    state["best_eval_loss"] = ev
                row = {"step": step, "eval_loss": ev, "tokens": state["tokens"]}
                logger.log(row)
                progress.metrics(row)
                t_interval = time.perf_counter()  # eval time is not training throughput
            if monitor is not None and info.is_main and step % tcfg.monitor_every == 0:
                logger.log({"step": step, **monitor(dist_utils.unwrap(model))})
            if not last and (
                stopped or (tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0)
            ):
                save(step)
                t_interval = time.perf_counter()
            if stopped:
                progress.message(f"stopping at step {step} (checkpointed; resume to continue)")
                break
    if (
        not diverged
        and step == tcfg.max_steps
        and tcfg.save_final
        and (setup.resume_from is None or step > start)
    ):
        save(step)
    completed = not diverged and step == tcfg.max_steps
    result = TrainResult(
        final_loss=state["final_loss"],
        final_eval_loss=state["final_eval_loss"],
        best_eval_loss=state["best_eval_loss"],
        diverged=diverged,
        steps=step,
        tokens=int(state["tokens"]),
        wall_time=time.perf_counter() - t_start,
        run_dir=run_dir,
        completed=completed,
        diverged_reason=reason,
        stopped_by=stopped_by if stopped else None,
    )
    progress.close()
    if diverged:
        progress.message(f"diverged at step {step}: {reason}")
    if info.is_main:
        logger.summary(result.to_dict())
        (run_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
    logger.close()
    return result


def _stop_cause(early: bool, signalled: bool) -> str:
    """Why a run stopped before ``max_steps``: SIGTERM wins (the scheduler must requeue)."""
    return "signal" if signalled else "stop_at" if early else "time_limit"


def _divergence(loss: float, initial: float | None, factor: float) -> str | None:
    """Why a loss counts as diverged, or None."""
    if not math.isfinite(loss):
        return f"loss is {loss}"
    if factor and initial is not None and math.isfinite(initial) and loss > factor * initial:
        return f"loss {loss:.4g} > {factor:g} x initial loss {initial:.4g}"
    return None


def _sched_state(sched: Any) -> dict[str, Any]:
    """LambdaLR state without its lambdas (rebuilt from the config on load)."""
    s = dict(sched.state_dict())
    s["lr_lambdas"] = [None] * len(s.get("lr_lambdas", []))
    return json.loads(json.dumps(s, default=float))
