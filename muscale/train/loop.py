"""The trainer: one function, :func:`run`, from a config to a trained, logged run.

Works the same from ``muscale train`` (Hydra), from a sweep trial (in-process) and under
``torchrun`` (DDP / FSDP2). Order of business:

1. :func:`prepare` validates everything and builds nothing heavy: typed configs, the data
   source, the plan (on the meta device), the checkpoint to resume from (verified and
   compared with this config). Nothing is written before it succeeds, so a bad input never
   touches an existing run directory.
2. The model is built and initialised from ``trainer.seed`` (identically on every rank),
   wrapped for DDP/FSDP2, optionally compiled; the optimizer and schedule come from the
   plan (:func:`muscale.optim.optimizer.make_optimizer`).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from muscale.errors import UserError
from muscale.models.losses import cross_entropy, mse
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


#: data kind -> (loss, model families it fits, {model field: data attribute})
KINDS: dict[str, tuple[Any, tuple[str, ...], dict[str, str]]] = {
    "lm": (cross_entropy, ("gpt", "hf"), {"vocab_size": "vocab_size", "seq_len": "seq_len"}),
    "regression": (mse, ("mlp",), {"in_dim": "in_dim", "out_dim": "out_dim"}),
    "classification": (cross_entropy, ("mlp",), {"in_dim": "in_dim", "out_dim": "out_dim"}),
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
    _, families, fields = KINDS[data.kind]
    model_d = dict(raw["model"])
    if model_d.get("family", "gpt") not in families:
        raise UserError(
            f"data={dcfg.name} ({data.kind}) needs model={'|'.join(families)}, got "
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
    resume_from, meta = resume_point(tcfg, run_dir, config, plan)
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


def resume_point(
    tcfg: TrainerConfig, run_dir: Path | None, config: dict[str, Any], plan: Any
) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint ``trainer.resume`` names (``auto``: this run dir's latest, if any)
    and its meta, verified to come from this very configuration; ``(None, None)`` if none."""
    if tcfg.resume is None:
        return None, None
    if tcfg.resume == "auto":
        found = ckpt_io.latest_checkpoint(run_dir) if run_dir is not None else None
    else:
        found = ckpt_io.find_checkpoint(tcfg.resume)
    if found is None:
        return None, None
    meta = ckpt_io.read_meta(found)
    ckpt_io.check_compatible(found, meta, config, plan)
    return found, meta


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
        depth=mcfg.depth or 1,  # an HF model with depth=None: its own layer count (>= 1)
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


@dataclass(kw_only=True)
class TrainState:
    """How far the run has come: ``train_state.json`` of a checkpoint holds these fields
    (with the scheduler and optimizer layout), and resuming restores them."""

    step: int = 0
    tokens: int = 0
    initial_loss: float | None = None
    best_eval_loss: float | None = None
    final_eval_loss: float | None = None
    final_loss: float | None = None

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> TrainState:
        """The fields of a checkpoint's train state (missing ones at their defaults)."""
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})


@dataclass(kw_only=True)
class Trainer:
    """The built pieces of one run (:func:`build`): the model as trained (wrapped for
    DDP/FSDP2) and as run forward (compiled or not), the optimizer and its schedule."""

    setup: Setup
    run_dir: Path
    device: torch.device
    info: dist_utils.DistInfo
    model: torch.nn.Module
    fwd: Any  # the model, or torch.compile(model)
    opt: torch.optim.Optimizer
    sched: Any  # LambdaLR
    plan: Any  # Plan
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    autocast: Any  # a reusable context manager: bf16 autocast or nullcontext
    lr_at: Callable[[int], float]  # step -> LR multiplier
    per_step: int  # tokens (or samples) per optimizer step, all ranks
    flops_per_token: float
    peak_flops: float | None


@dataclass(kw_only=True)
class Outputs:
    """Where a run reports: ``metrics.jsonl`` (+ W&B), the progress display, the monitor."""

    logger: Any  # MetricsLogger
    progress: Any  # Progress
    monitor: Callable[[torch.nn.Module], dict[str, float]] | None

    def log(self, row: dict[str, Any]) -> None:
        self.logger.log(row)
        self.progress.metrics(row)


@dataclass
class Window:
    """The steps since the last metrics line: their losses and grad norms stay on the
    device until then, so logging costs one all-reduce per ``log_every`` steps."""

    pending: list[tuple[int, Tensor, Tensor]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)
    tokens: int = 0

    def reset(self) -> None:
        self.pending.clear()
        self.t0, self.tokens = time.perf_counter(), 0


def build(setup: Setup, run_dir: Path, device: torch.device, info: dist_utils.DistInfo) -> Trainer:
    """Build the model (seeded by ``trainer.seed``, identical on every rank), wrap it for
    DDP/FSDP2, and make the optimizer and schedule from its plan."""
    from muscale.build import build_model
    from muscale.models import model_config
    from muscale.optim.optimizer import make_optimizer
    from muscale.optim.schedules import lr_multiplier
    from muscale.train.mfu import flops_per_token, peak_flops

    tcfg, data = setup.trainer, setup.data
    mcfg = model_config(setup.config["model"])
    precision = _precision(tcfg, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(tcfg.seed)
    base, plan = build_model(
        mcfg,
        setup.config["param"],
        optim_family=setup.optim.rule_family,
        seed=tcfg.seed,
        device=device,
    )
    if tcfg.init_from is not None and setup.resume_from is None:
        init_from_hf(base, plan, tcfg.init_from)
    flops = flops_per_token(base, mcfg)
    model = dist_utils.wrap(base, info, device)
    opt, sched = make_optimizer(base, plan, setup.optim, total_steps=tcfg.max_steps)
    bf16 = precision == "bf16"
    return Trainer(
        setup=setup,
        run_dir=run_dir,
        device=device,
        info=info,
        model=model,
        fwd=torch.compile(model) if tcfg.compile else model,
        opt=opt,
        sched=sched,
        plan=plan,
        loss_fn=KINDS[data.kind][0],
        autocast=torch.autocast(device.type, dtype=torch.bfloat16)
        if bf16
        else contextlib.nullcontext(),
        lr_at=lr_multiplier(setup.optim.schedule, tcfg.max_steps),
        per_step=data.batch_size * (data.seq_len if data.kind == "lm" else 1),
        flops_per_token=flops,
        peak_flops=peak_flops(device, precision),
    )


def restore(tr: Trainer) -> TrainState:
    """The state to start from: fresh, or the resume checkpoint's (model, optimizer,
    schedule and RNG states loaded in place)."""
    setup, info = tr.setup, tr.info
    if setup.resume_from is None:
        return TrainState()
    assert setup.resume_meta is not None
    msd: dict = {}
    if info.is_main:  # rank 0 reads the tensors; load_full_state broadcasts them
        msd = ckpt_io.read_model_state(setup.resume_from, setup.resume_meta)
    saved, osd, rng = ckpt_io.read_train_state(setup.resume_from, optim=info.is_main)
    dist_utils.load_full_state(tr.model, tr.opt, msd, osd, info)
    tr.sched.load_state_dict(saved["scheduler"])
    ckpt_io.set_rng_state(rng)
    return TrainState.from_saved(saved)


def open_outputs(tr: Trainer, start: int) -> Outputs:
    """The metrics logger (appending after ``start`` when resuming), ``config.json``, the
    progress display and the optional spectral monitor."""
    from muscale.train.logging import MetricsLogger
    from muscale.train.progress import Progress

    setup, info, tcfg = tr.setup, tr.info, tr.setup.trainer
    resumed = setup.resume_from is not None
    logger = MetricsLogger(
        tr.run_dir,
        enabled=info.is_main,
        cfg=setup.logger,
        config=setup.config,
        resume_step=start if resumed else None,
    )
    if info.is_main:
        config = {**setup.config, "data_info": setup.data.describe(), "world_size": info.world_size}
        (tr.run_dir / "config.json").write_text(json.dumps(config, indent=1, default=str))
    progress = Progress(tcfg.progress, total=tcfg.max_steps, start=start, enabled=info.is_main)
    if resumed:
        progress.message(f"resumed from {setup.resume_from} at step {start}")
    monitor: Any = None
    if tcfg.monitor_every and info.parallel != "fsdp":
        try:
            from muscale.diagnostics.monitor import spectral_summary as monitor
        except ImportError:
            progress.message("trainer.monitor_every: muscale.diagnostics.monitor missing; off")
    return Outputs(logger=logger, progress=progress, monitor=monitor)


def train_step(tr: Trainer, step: int) -> tuple[Tensor, Tensor]:
    """One optimizer step over ``grad_accum`` micro-batches of step ``step``'s batch;
    returns the mean loss and the global gradient norm (before clipping), on the device."""
    tcfg, data, info, device = tr.setup.trainer, tr.setup.data, tr.info, tr.device
    accum = tcfg.grad_accum
    tr.model.train()
    total = torch.zeros((), device=device)
    for m in range(accum):
        x, y = data.train_batch(step, m, accum)
        with dist_utils.accumulating(tr.model, info, m == accum - 1), tr.autocast:
            loss = tr.loss_fn(
                tr.fwd(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            )
        (loss / accum if accum > 1 else loss).backward()
        total += loss.detach()
    params = [p for p in tr.model.parameters() if p.requires_grad]
    clip = tcfg.grad_clip if tcfg.grad_clip > 0 else float("inf")
    gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
    if hasattr(gnorm, "full_tensor"):  # FSDP2: a DTensor
        gnorm = gnorm.full_tensor()
    tr.opt.step()
    tr.sched.step()
    tr.opt.zero_grad(set_to_none=True)
    return total / accum if accum > 1 else total, gnorm.detach()


@torch.no_grad()
def evaluate(tr: Trainer) -> float:
    """Mean held-out loss; each rank takes its slice of every eval batch."""
    data, info, device = tr.setup.data, tr.info, tr.device
    tr.model.eval()
    acc = torch.zeros((), device=device)
    for i in range(data.eval_batches):
        x, y = data.eval_batch(i, info.rank, info.world_size)
        with tr.autocast:
            acc += tr.loss_fn(
                tr.fwd(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            ).float()
    return float(dist_utils.all_mean(acc / data.eval_batches, info))


def save_checkpoint(tr: Trainer, state: TrainState) -> None:
    """Checkpoint at ``state.step`` (every rank takes part in gathering the state)."""
    msd, osd = dist_utils.full_state(tr.model, tr.opt, tr.info)
    if tr.info.is_main:
        ckpt_io.save_checkpoint(
            tr.run_dir / "checkpoints",
            step=state.step,
            model_state=msd,
            optim_state=osd,
            train_state={**dataclasses.asdict(state), "scheduler": _sched_state(tr.sched)},
            config=tr.setup.config,
            plan=tr.plan,
            keep=tr.setup.trainer.keep_checkpoints,
        )
    dist_utils.barrier(tr.info)


def maybe_checkpoint(tr: Trainer, state: TrainState, *, stopping: bool) -> bool:
    """Checkpoint before the last step when stopping early or every ``checkpoint_every``
    steps (the last step is saved by :func:`finish`); whether it saved."""
    tcfg, step = tr.setup.trainer, state.step
    if step == tcfg.max_steps:
        return False
    if stopping or (tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0):
        save_checkpoint(tr, state)
        return True
    return False


def log_metrics(
    tr: Trainer, state: TrainState, window: Window, out: Outputs, t_start: float, *, stop: bool
) -> tuple[str | None, bool]:
    """Reduce the window's losses and grad norms (and this rank's stop request) over ranks
    in one all-reduce; log every ``log_every``-th step and the latest; check divergence.

    Returns ``(why the run diverged or None, whether any rank asked to stop)``. On
    divergence the state goes back to the first diverged step.
    """
    tcfg, step = tr.setup.trainer, state.step
    packed = torch.stack(
        [x for _, loss, gnorm in window.pending for x in (loss, gnorm)]
        + [torch.tensor(float(stop), device=tr.device)]
    )
    reduced = dist_utils.all_mean(packed.float(), tr.info).tolist()
    tps = window.tokens / max(time.perf_counter() - window.t0, 1e-9)
    for j, (s, _, _) in enumerate(window.pending):
        loss, gnorm = reduced[2 * j], reduced[2 * j + 1]
        if state.initial_loss is None:
            state.initial_loss = loss
        state.final_loss = loss
        reason = _divergence(loss, state.initial_loss, tcfg.diverge_factor)
        if s % tcfg.log_every == 0 or s == step or reason is not None:
            row = {
                "step": s,
                "loss": loss,
                "lr": tr.setup.optim.lr * tr.lr_at(s - 1),
                "tokens": state.tokens - (step - s) * tr.per_step,
                "tokens_per_s": tps,
                "grad_norm": gnorm,
                "time": time.perf_counter() - t_start,
            }
            if tr.peak_flops:
                row["mfu"] = tps * tr.flops_per_token / (tr.peak_flops * tr.info.world_size)
            if reason is not None:
                row.update(diverged=True, reason=reason)
            out.log(row)
        if reason is not None:
            state.step, state.tokens = s, s * tr.per_step
            return reason, False
    window.reset()
    return None, reduced[-1] > 0


def log_eval(tr: Trainer, state: TrainState, out: Outputs) -> None:
    """Evaluate, keep the best and latest held-out loss, log them."""
    ev = evaluate(tr)
    state.final_eval_loss = ev
    if math.isfinite(ev) and (state.best_eval_loss is None or ev < state.best_eval_loss):
        state.best_eval_loss = ev
    out.log({"step": state.step, "eval_loss": ev, "tokens": state.tokens})


def train_loop(
    tr: Trainer, state: TrainState, out: Outputs, t_start: float
) -> tuple[str | None, str | None]:
    """Train from ``state.step`` to ``trainer.max_steps``, evaluating, monitoring and
    checkpointing on schedule. Returns ``(why it diverged or None, why it stopped early or
    None)``: early on ``stop_at``, ``time_limit_s`` or SIGTERM (:func:`_stop_cause`), with a
    checkpoint to resume from."""
    tcfg, info = tr.setup.trainer, tr.info
    window = Window()
    stopped_by: str | None = None
    with _StopSignal() as sig:
        while state.step < tcfg.max_steps:
            loss, gnorm = train_step(tr, state.step)
            state.step += 1
            state.tokens += tr.per_step
            window.tokens += tr.per_step
            window.pending.append((state.step, loss, gnorm))
            out.progress.step(state.step)
            step, last = state.step, state.step == tcfg.max_steps
            early = tcfg.stop_at is not None and step >= tcfg.stop_at
            stopping = False
            if step % tcfg.log_every == 0 or last or early:
                timeout = tcfg.time_limit_s is not None and (
                    time.perf_counter() - t_start > tcfg.time_limit_s
                )
                reason, asked = log_metrics(
                    tr, state, window, out, t_start, stop=sig.flag or timeout
                )
                if reason is not None:
                    return reason, None
                stopping = early or asked
                stopped_by = _stop_cause(early, sig.flag or (asked and not timeout))
            if (tcfg.eval_every and step % tcfg.eval_every == 0) or last:
                log_eval(tr, state, out)
                window.t0 = time.perf_counter()  # eval time is not training throughput
            if out.monitor is not None and info.is_main and step % tcfg.monitor_every == 0:
                out.logger.log({"step": step, **out.monitor(dist_utils.unwrap(tr.model))})
            if maybe_checkpoint(tr, state, stopping=stopping):
                window.t0 = time.perf_counter()
            if stopping:
                out.progress.message(f"stopping at step {step} (checkpointed; resume to continue)")
                return None, stopped_by
    return None, None


def finish(
    tr: Trainer,
    state: TrainState,
    out: Outputs,
    *,
    start: int,
    reason: str | None,
    t_start: float,
    stopped_by: str | None = None,
) -> TrainResult:
    """Save the final checkpoint (a finished run), write ``result.json``, close outputs.
    ``stopped_by``: why the loop stopped early (``signal`` makes ``muscale train`` exit 143)."""
    tcfg = tr.setup.trainer
    done = reason is None and state.step == tcfg.max_steps
    if done and tcfg.save_final and (tr.setup.resume_from is None or state.step > start):
        save_checkpoint(tr, state)
    result = TrainResult(
        final_loss=state.final_loss,
        final_eval_loss=state.final_eval_loss,
        best_eval_loss=state.best_eval_loss,
        diverged=reason is not None,
        steps=state.step,
        tokens=int(state.tokens),
        wall_time=time.perf_counter() - t_start,
        run_dir=tr.run_dir,
        completed=done,
        diverged_reason=reason,
        stopped_by=None if done else stopped_by,
    )
    out.progress.close()
    if reason is not None:
        out.progress.message(f"diverged at step {state.step}: {reason}")
    if tr.info.is_main:
        out.logger.summary(result.to_dict())
        (tr.run_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
    out.logger.close()
    return result


def _train(
    setup: Setup, run_dir: Path, device: torch.device, info: dist_utils.DistInfo, t_start: float
) -> TrainResult:
    """Build, restore, train, finish: the whole run once :func:`prepare` has passed."""
    tr = build(setup, run_dir, device, info)
    state = restore(tr)
    start = state.step
    out = open_outputs(tr, start)
    reason, stopped_by = train_loop(tr, state, out, t_start)
    return finish(
        tr, state, out, start=start, reason=reason, t_start=t_start, stopped_by=stopped_by
    )


def init_from_hf(model: torch.nn.Module, plan: Any, path: str) -> None:
    """``trainer.init_from``: start from an HF checkpoint's weights, keep this run's plan."""
    from muscale.hf.load import load_hf_into

    load_hf_into(model, plan, path)


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
