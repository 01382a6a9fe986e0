"""μP-Adam/AdamW/SGD (or any torch optimizer) and a schedule, from a plan."""

from __future__ import annotations

import importlib
import inspect

import torch
from torch import nn

from muscale.errors import ConfigError, UserError
from muscale.optim.config import OPTIMIZERS, OptimConfig
from muscale.optim.groups import param_groups
from muscale.optim.schedules import lr_multiplier
from muscale.param.plan import Plan


def optimizer_class(cfg: OptimConfig) -> type[torch.optim.Optimizer]:
    path = OPTIMIZERS[cfg.name][0] if cfg.name in OPTIMIZERS else cfg.name
    module, _, cls = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("optim.name", cfg.name, "no such torch optimizer class") from exc


def make_optimizer(
    model: nn.Module, plan: Plan, cfg: OptimConfig, *, total_steps: int = 1
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Optimizer with per-group LR/eps/weight decay from ``plan``, and its LR schedule."""
    if cfg.rule_family != plan.optim_family:
        raise UserError(
            f"the plan was built for {plan.optim_family} but optim.name={cfg.name} is "
            f"{cfg.rule_family}: build the model with optim_family={cfg.rule_family!r}"
        )
    cls = optimizer_class(cfg)
    accepted = inspect.signature(cls.__init__).parameters
    groups = param_groups(model, plan, cfg)
    for g in groups:
        g.pop("names")
        if "eps" not in accepted:
            g.pop("eps")
    kwargs: dict = dict(cfg.kwargs)
    if "betas" in accepted:
        kwargs.setdefault("betas", tuple(cfg.betas))
    if "momentum" in accepted:
        kwargs.setdefault("momentum", cfg.momentum)
    if "nesterov" in accepted and cfg.nesterov:
        kwargs.setdefault("nesterov", True)
    opt = cls(groups, lr=cfg.lr, **kwargs)  # type: ignore[call-arg]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(cfg.schedule, total_steps))
    return opt, sched
