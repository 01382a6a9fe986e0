"""Build a model and its plan from configs: the front door of the library.

config -> shape info (dims at width and base width) -> forward multipliers
       -> module -> roles (param_specs) -> plan (rule table) -> init
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from muscale.errors import check_choice
from muscale.models import FAMILIES, model_config
from muscale.param.config import ParamConfig
from muscale.param.init import init_parameters
from muscale.param.plan import Plan, forward_multipliers, make_plan, shape_info
from muscale.param.rules import FAMILIES as OPTIM_FAMILIES


def param_config(d: Any) -> ParamConfig:
    if isinstance(d, ParamConfig):
        return d
    from muscale.config import to_dict

    return ParamConfig(**to_dict(d))


def build_model(
    model_cfg: Any,
    param_cfg: Any,
    *,
    optim_family: str = "adam",
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, Plan]:
    """Build, parametrize and initialise a model; return it with its plan.

    ``optim_family`` ("adam" or "sgd") selects the learning-rate column of the rule table.
    The model's forward multipliers are plain floats on its modules; everything else the
    parametrization decides is in the returned :class:`Plan`.
    """
    mcfg, pcfg = model_config(model_cfg), param_config(param_cfg)
    check_choice("optim family", optim_family, OPTIM_FAMILIES)
    if mcfg.family == "hf":  # roles inferred from shapes (muscale.auto), not param_specs()
        from muscale.hf.model import build_from_config

        return build_from_config(mcfg, pcfg, optim_family=optim_family, seed=seed, device=device)
    if pcfg.base_shapes:
        pcfg = _with_bsh_base_width(mcfg, pcfg)
    shape = shape_info(mcfg, pcfg)
    mults = forward_multipliers(pcfg, optim_family, shape)
    # draw=False: no torch default init, which init_parameters would overwrite in full
    # (every parameter has a plan entry; tests/test_build_undrawn.py)
    with torch.device(device):
        model = FAMILIES[mcfg.family][1](mcfg, mults, draw=False)
    plan = plan_for(model, pcfg, optim_family, shape=shape)
    init_parameters(model, plan, seed=seed)
    return model, plan


def _with_bsh_base_width(mcfg: Any, pcfg: ParamConfig) -> ParamConfig:
    """Replace ``base_width`` by the one a mup ``.bsh`` file implies (shapes from a meta build)."""
    import dataclasses

    from muscale.param.bsh import base_width_from_bsh, read_bsh

    unit = {"input": 1.0, "output": 1.0, "branch": 1.0, "attn_scale": 1.0}
    with torch.device("meta"):
        shell = FAMILIES[mcfg.family][1](mcfg, unit, draw=False)
    shapes = {n: tuple(p.shape) for n, p in shell.named_parameters()}
    assert pcfg.base_shapes is not None
    base = base_width_from_bsh(read_bsh(pcfg.base_shapes), shapes, mcfg.width)
    return dataclasses.replace(pcfg, base_width=base, base_shapes=None)


def plan_for(
    model: nn.Module, param_cfg: ParamConfig, optim_family: str, *, shape: Any = None
) -> Plan:
    """The plan of an already-built muscale model (its ``param_specs`` give the roles)."""
    if shape is None:
        shape = shape_info(model.cfg, param_cfg)  # type: ignore[attr-defined]
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    specs = model.param_specs()  # type: ignore[operator]
    return make_plan(specs, shapes, shape, param_cfg, optim_family)
