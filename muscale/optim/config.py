"""Typed optimizer and LR-schedule configs (the ``optim`` config group)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from muscale.errors import ConfigError, check_choice, check_positive
from muscale.optim.guards import check_l2_adaptive, decay_style, infer_family

#: name -> (torch class path, rule-table family, how the class applies weight_decay)
OPTIMIZERS: dict[str, tuple[str, str, str]] = {
    "adamw": ("torch.optim.AdamW", "adam", "decoupled"),
    "adam": ("torch.optim.Adam", "adam", "l2"),
    "sgd": ("torch.optim.SGD", "sgd", "l2"),
}
SCHEDULES = ("constant", "cosine", "wsd", "linear")
WD_MODES = ("independent", "coupled")


@dataclass(kw_only=True)
class ScheduleConfig:
    """LR schedule, a multiplier applied to every param group alike.

    ``constant`` (after warmup), ``cosine`` (linear warmup + cosine to ``min_lr_ratio``),
    ``linear`` (warmup + linear decay), ``wsd`` (warmup-stable-decay, Hu et al. 2024:
    constant, then linear decay over the last ``decay_frac`` of training).
    """

    name: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_frac: float = 0.2

    def __post_init__(self) -> None:
        check_choice("optim.schedule.name", self.name, SCHEDULES)
        check_positive("optim.schedule.warmup_steps", self.warmup_steps, allow_zero=True)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("optim.schedule.min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        if not 0.0 < self.decay_frac <= 1.0:
            raise ConfigError("optim.schedule.decay_frac", self.decay_frac, "must be in (0, 1]")


@dataclass(kw_only=True)
class OptimConfig:
    """Optimizer hyperparameters **at the base width**; the plan scales them per tensor.

    ``name``: adam, adamw, sgd, or the dotted path of any ``torch.optim`` class taking
    per-group ``lr``/``eps``/``weight_decay`` (``family``, adam or sgd, is inferred for
    SGD and the Adam-like classes; give it for any other class).
    ``weight_decay`` with ``wd_mode``:

    * ``independent`` (default; Wortsman et al. 2023, Kosson et al. 2025, u-μP): each step
      multiplies decayed tensors by ``1 - schedule(t) · weight_decay`` whatever their LR, so
      the decay does not change when μP rescales a tensor's LR or when you sweep the LR.
      Here ``weight_decay`` is a per-step rate (e.g. 1e-4).
    * ``coupled`` (microsoft/mup): the torch value is ``weight_decay / lr_scale`` so that
      ``lr · weight_decay`` per step is the same at every width and depth (AdamW's usual
      meaning at the base width, e.g. 0.1). ``lr_scale`` includes the depth factor, so with
      ``depth_alpha=0.5`` this differs from CompleteP's code, which divides by the width
      factor only (docs/parametrization.md, "Coupled decay with a depth rule").

    Vectors (biases, gains) are never decayed. Plain Adam applies decay as an L2 term that
    goes through Adam's normaliser, so ``weight_decay > 0`` with it is rejected: use adamw.
    """

    name: str = "adamw"
    lr: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.0
    wd_mode: str = "independent"
    momentum: float = 0.0
    nesterov: bool = False
    family: str | None = None
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS and not self.name.startswith("torch.optim."):
            raise ConfigError(
                "optim.name",
                self.name,
                f"choose one of {', '.join(OPTIMIZERS)} or a torch.optim class path",
            )
        check_positive("optim.lr", self.lr)
        check_positive("optim.eps", self.eps, allow_zero=True)
        check_positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        check_positive("optim.momentum", self.momentum, allow_zero=True)
        check_choice("optim.wd_mode", self.wd_mode, WD_MODES)
        if self.family is not None:
            check_choice("optim.family", self.family, ("adam", "sgd"))
        check_l2_adaptive(self.name, self.rule_family, self.decay_style, self.weight_decay)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError("optim.betas", list(self.betas), "two numbers in [0, 1)")
        if isinstance(self.schedule, dict):
            self.schedule = ScheduleConfig(**self.schedule)

    @property
    def rule_family(self) -> str:
        """Which column of the rule table this optimizer uses (``family``, or inferred from
        the class: ``torch.optim.SGD`` is sgd, Adam-like classes are adam)."""
        if self.family is not None:
            return self.family
        return OPTIMIZERS[self.name][1] if self.name in OPTIMIZERS else infer_family(self.name)

    @property
    def decay_style(self) -> str:
        """``l2`` (decay through the gradient) or ``decoupled`` (AdamW-style)."""
        if self.name in OPTIMIZERS and not self.kwargs.get("decoupled_weight_decay"):
            return OPTIMIZERS[self.name][2]
        path = OPTIMIZERS[self.name][0] if self.name in OPTIMIZERS else self.name
        return decay_style(path, self.kwargs)
