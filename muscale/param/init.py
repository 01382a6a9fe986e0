"""Initialise a model's tensors from its plan (seeded, in parameter order)."""

from __future__ import annotations

import math

import torch
from torch import nn

from muscale.param.plan import Plan


@torch.no_grad()
def init_parameters(model: nn.Module, plan: Plan, *, seed: int = 0) -> None:
    """Draw every tensor as the plan says.

    Orthogonal matrices get gain ``std * sqrt(max(shape))`` so that their entries have the
    plan's variance std² (a square Gaussian matrix with entry std σ/sqrt(n) has singular
    values near σ; the orthogonal one has all of them exactly σ: Saxe et al. 2014).
    """
    plans = plan.by_name()
    gens: dict[torch.device, torch.Generator] = {}
    for name, p in model.named_parameters():
        pp = plans[name]
        if p.is_meta:  # shape-only model (e.g. `muscale inspect` of a huge width)
            continue
        if p.device not in gens:
            gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        g = gens[p.device]
        if pp.init == "zeros":
            p.zero_()
        elif pp.init == "ones":
            p.fill_(1.0)
        elif pp.init == "orthogonal":
            nn.init.orthogonal_(p, gain=pp.init_std * math.sqrt(max(p.shape)), generator=g)
        else:
            p.normal_(0.0, pp.init_std, generator=g)
