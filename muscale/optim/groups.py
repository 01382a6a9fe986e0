"""Optimizer param groups from a plan: per-tensor LR, Adam eps and weight decay.

Tensors with identical (lr, eps, weight_decay) share a group, so a μP model has a handful
of groups (input, hidden, output, vectors, ...) and torch's fused/foreach kernels stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from muscale.optim.config import OptimConfig
from muscale.param.plan import ParamPlan, Plan


@dataclass(frozen=True)
class Effective:
    """What the optimizer actually uses for one tensor."""

    lr: float
    eps: float
    weight_decay: float


def effective(pp: ParamPlan, cfg: OptimConfig) -> Effective:
    """Per-tensor LR, eps and the torch ``weight_decay`` value (see OptimConfig for modes)."""
    lr = cfg.lr * pp.lr_scale
    wd = 0.0
    if cfg.weight_decay and pp.wd_scale:
        if cfg.wd_mode == "independent":
            wd = cfg.weight_decay * pp.wd_scale / lr  # lr(t) · wd = schedule(t) · λ
        else:
            wd = cfg.weight_decay * pp.wd_scale / pp.lr_scale  # lr(t) · wd = η λ schedule(t)
    return Effective(lr=lr, eps=cfg.eps * pp.eps_scale, weight_decay=wd)


def param_groups(model: nn.Module, plan: Plan, cfg: OptimConfig) -> list[dict[str, Any]]:
    plans = plan.by_name()
    groups: dict[Effective, list[Any]] = {}
    names: dict[Effective, list[str]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        eff = effective(plans[name], cfg)
        groups.setdefault(eff, []).append(p)
        names.setdefault(eff, []).append(name)
    return [
        {"params": ps, "lr": e.lr, "eps": e.eps, "weight_decay": e.weight_decay, "names": names[e]}
        for e, ps in groups.items()
    ]
