"""Typed configs of the ``trainer`` and ``logger`` config groups.

Both double as Hydra structured-config schemas (:func:`train_schemas`), and the trainer
validates them again when it starts (:func:`trainer_config`, :func:`logger_config`), so a
config that reaches :func:`muscale.train.loop.run` without Hydra (the sweep calls it
in-process) is checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from muscale.errors import ConfigError, check_choice, check_positive

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
PARALLEL = ("none", "ddp", "fsdp")
PROGRESS = ("auto", "rich", "plain", "off")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass(kw_only=True)
class TrainerConfig:
    """How to train (the model, data and optimizer are their own groups).

    ``max_steps`` optimizer steps, each over ``data.batch_size`` sequences (global, split
    over ranks and ``grad_accum`` micro-batches). ``eval_every``: held-out loss every N
    steps and at the end (0: only at the end). ``log_every``: a metrics line every N steps.
    ``device``: auto (CUDA when available), cpu, cuda or cuda:<i>. ``precision``: auto
    (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16. ``compile``: ``torch.compile`` the
    model. ``grad_clip``: max global gradient norm (0: no clipping, the norm is still
    logged). ``parallel``: none, ddp or fsdp (FSDP2 ``fully_shard`` per block), used under
    ``torchrun``. ``resume``: a checkpoint dir, a run dir (its latest checkpoint), ``auto``
    (this run dir's latest checkpoint if any) or null. ``checkpoint_every``: save every N
    steps (0: only at the end); ``keep_checkpoints``: how many to keep.
    ``diverge_factor``: stop as diverged when a logged loss is non-finite or above
    ``diverge_factor`` x the first step's loss (0: only non-finite). ``stop_at``: end this
    invocation after step N with a checkpoint, as if pre-empted (to split a run over jobs);
    ``time_limit_s`` does the same after a wall-clock budget. ``threads``: CPU threads for
    torch (null: torch's default; 1 per trial when trials run in parallel on a small
    machine). ``monitor_every``: log
    :func:`muscale.diagnostics.monitor.spectral_summary` every N steps (0: off).
    ``init_from``: a Hugging Face model directory whose weights start the run (a
    ``muscale export format=hf`` output, or any supported HF model for ``model=hf``);
    learning rates still come from this run's μP plan (:mod:`muscale.hf.load`).
    """

    max_steps: int = 200
    eval_every: int = 50
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    grad_accum: int = 1
    grad_clip: float = 1.0
    parallel: str = "none"
    resume: str | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    save_final: bool = True
    diverge_factor: float = 3.0
    stop_at: int | None = None
    time_limit_s: float | None = None
    monitor_every: int = 0
    progress: str = "auto"
    threads: int | None = None
    init_from: str | None = None

    def __post_init__(self) -> None:
        check_positive("trainer.max_steps", self.max_steps)
        for name in ("eval_every", "checkpoint_every", "monitor_every", "seed"):
            check_positive(f"trainer.{name}", getattr(self, name), allow_zero=True)
        for name in ("log_every", "grad_accum", "keep_checkpoints"):
            check_positive(f"trainer.{name}", getattr(self, name))
        check_positive("trainer.grad_clip", self.grad_clip, allow_zero=True)
        if self.threads is not None:
            check_positive("trainer.threads", self.threads)
        check_positive("trainer.diverge_factor", self.diverge_factor, allow_zero=True)
        if 0 < self.diverge_factor <= 1:
            raise ConfigError(
                "trainer.diverge_factor", self.diverge_factor, "must be > 1 (or 0: only NaN/inf)"
            )
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError("trainer.device", self.device, "choose auto, cpu, cuda or cuda:<i>")
        check_choice("trainer.precision", self.precision, PRECISIONS)
        check_choice("trainer.parallel", self.parallel, PARALLEL)
        check_choice("trainer.progress", self.progress, PROGRESS)
        if self.stop_at is not None:
            check_positive("trainer.stop_at", self.stop_at)
        if self.time_limit_s is not None:
            check_positive("trainer.time_limit_s", self.time_limit_s)
        if self.resume is not None and not str(self.resume).strip():
            self.resume = None


@dataclass(kw_only=True)
class LoggerConfig:
    """Where metrics go besides ``<run dir>/metrics.jsonl`` (always written).

    ``wandb``: also log to Weights & Biases. ``mode``: online, offline or disabled; null
    means ``$WANDB_MODE`` if set, else offline when no ``WANDB_API_KEY`` is set (never a
    network call the user did not ask for). ``group``/``job_type``: null means the sweep
    name (or ``<family>-<scheme>``) and ``width=<w>``, so a sweep's runs group by width.
    """

    wandb: bool = False
    project: str = "muscale"
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.mode is not None:
            check_choice("logger.mode", self.mode, WANDB_MODES)


def train_schemas() -> list[tuple[str, str, type]]:
    """``(group, name, dataclass)`` rows for Hydra's ConfigStore (like ``data_schemas``).

    ``conf/trainer/default.yaml`` and ``conf/logger/default.yaml`` name them in their
    defaults list (``/schema/trainer@_here_``).
    """
    return [("schema", "trainer", TrainerConfig), ("schema", "logger", LoggerConfig)]


def _typed(cls: type, d: Any, prefix: str) -> Any:
    if isinstance(d, cls):
        return d
    from muscale.config import to_dict, typed_config

    fields = to_dict(d) if d is not None else {}
    return typed_config(cls, fields, prefix)


def trainer_config(d: Any) -> TrainerConfig:
    """A validated :class:`TrainerConfig` from a dataclass, dict or DictConfig."""
    return _typed(TrainerConfig, d, "trainer")


def logger_config(d: Any) -> LoggerConfig:
    """A validated :class:`LoggerConfig` from a dataclass, dict, DictConfig or None."""
    return _typed(LoggerConfig, d, "logger")
