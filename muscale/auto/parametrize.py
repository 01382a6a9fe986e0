"""``parametrize``: μP (or SP/NTK) for any ``nn.Module`` family, without editing its code.

::

    model, plan = muscale.parametrize(lambda w: MyNet(width=w), width=1024, base_width=128)
    opt, sched = muscale.optim.optimizer.make_optimizer(model, plan, OptimConfig(lr=3e-3))

Roles come from shapes (:mod:`muscale.auto.infer`), the plan from muscale's rule table
(:func:`muscale.param.plan.make_plan`, TP5 Table 8), the init from the plan, and the forward
multipliers from hooks (:mod:`muscale.auto.hooks`).

Attention: μP's logit scale is ``1/d_head`` where ``d_head`` grows (TP5 Def. 4.1). Shapes
cannot tell how a module splits a width into heads, so give ``head_dim(width)`` when it
grows and name the attention modules (``attention=`` pattern, ``attn_attr=`` the float
attribute their forward passes to ``scaled_dot_product_attention(scale=...)``). A
hand-written ``F.scaled_dot_product_attention(q, k, v)`` has no such attribute: scale the
number of heads instead (head_dim fixed, where μP and SP attention agree).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from muscale.auto.hooks import HOOKS_KEY, attach, hook_table
from muscale.auto.infer import Build, Inferred, infer, meta_build
from muscale.errors import ConfigError, UserError, check_choice
from muscale.param.config import ParamConfig
from muscale.param.init import init_parameters
from muscale.param.plan import Plan, ShapeInfo, make_plan
from muscale.param.roles import ParamSpec, Role
from muscale.param.rules import FAMILIES


def _param_config(param: Any, scheme: str | None, base_width: int) -> ParamConfig:
    from muscale.config import to_dict

    pcfg = param if isinstance(param, ParamConfig) else ParamConfig(**to_dict(param or {}))
    pcfg = dataclasses.replace(pcfg, base_width=int(base_width))
    if scheme is not None:
        pcfg = dataclasses.replace(pcfg, scheme=scheme)
    pcfg.__post_init__()
    if pcfg.depth_alpha != 0.0:
        raise ConfigError(
            "param.depth_alpha",
            pcfg.depth_alpha,
            "parametrize cannot reach a model's residual adds; use 0 (or a muscale GPT)",
        )
    return pcfg


def _fills(specs: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
    """Vectors start as biases (zeros) or gains (ones), decided by the attribute name that
    PyTorch modules use for them (``bias``); an explicit ``vector:<fill>`` override wins."""
    out = {}
    for name, s in specs.items():
        if s.role == Role.VECTOR and s.fill is None:
            fill = "zeros" if name.rpartition(".")[2] == "bias" else "ones"
            s = dataclasses.replace(s, fill=fill)
        out[name] = s
    return out


def _check_fills(model: nn.Module, specs: dict[str, ParamSpec]) -> None:
    """A vector the module itself starts at another constant (a learned temperature at
    0.5, say) would be silently reset: refuse, naming it."""
    for name, p in model.named_parameters():
        s = specs.get(name)
        if s is None or s.role != Role.VECTOR or p.is_meta or p.numel() == 0:
            continue
        first = p.detach().flatten()[0]
        if bool((p == first).all()) and float(first) != (1.0 if s.fill == "ones" else 0.0):
            raise UserError(
                f"parametrize: {name} starts at {float(first):.4g} in the module but the plan "
                f"would fill it with {s.fill}; pass roles={{{name!r}: 'vector:ones'}} or "
                "'vector:zeros' (or give it a role that is drawn at random)"
            )


def _attention_modules(
    ref: nn.Module, pattern: str | None, attr: str, head_scales: bool
) -> list[str]:
    if pattern is None:
        if head_scales:
            raise UserError(
                "parametrize: head_dim grows with width but muscale cannot reach the attention "
                "scale of this model; scale the number of heads (head_dim fixed) or pass "
                "attention='<module pattern>' with attn_attr='<its float scale attribute>'"
            )
        return []
    names = [n for n, _ in ref.named_modules() if fnmatch.fnmatchcase(n, pattern)]
    if not names:
        raise UserError(f"parametrize: attention={pattern!r} matches no module of the model")
    for n in names:
        if not isinstance(getattr(ref.get_submodule(n), attr, None), float | int):
            raise UserError(
                f"parametrize: module {n!r} has no float attribute {attr!r} (attn_attr); "
                "name the attribute its forward passes as the attention scale"
            )
    return names


def plan_from_inferred(
    inf: Inferred,
    shapes: Mapping[str, tuple[int, ...]],
    pcfg: ParamConfig,
    optim_family: str,
    *,
    head_dims: tuple[int, int] | None,
    attention: list[str],
    attn_attr: str,
) -> Plan:
    """The plan of an inferred family; ``head_dims`` = (at width, at base width)."""
    dims, base = dict(inf.dims), dict(inf.base_dims)
    if head_dims is not None:
        dims["head_dim"], base["head_dim"] = head_dims
    shape = ShapeInfo(
        dims=dims, base_dims=base, width_dim="width", depth=inf.depth, base_depth=inf.depth
    )
    plan = make_plan(_fills(inf.specs), shapes, shape, pcfg, optim_family)
    plan.shape[HOOKS_KEY] = hook_table(inf.readouts, inf.inputs, attention, attn_attr)
    return plan


def parametrize(
    build: Build,
    *,
    width: int,
    base_width: int,
    scheme: str | None = "mup",
    optim_family: str = "adam",
    roles: Mapping[str, str] | None = None,
    param: Any = None,
    head_dim: Callable[[int], int] | None = None,
    attention: str | None = None,
    attn_attr: str = "scale",
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, Plan]:
    """``build(width)`` parametrized and initialised; returns ``(model, plan)``.

    ``scheme``: "mup" | "sp" | "ntk" (overrides ``param.scheme``; None keeps it).
    ``optim_family``: "adam" | "sgd" (the rule table's LR column). ``roles``: name-pattern
    overrides (see :func:`muscale.auto.infer.infer`). ``param``: a
    :class:`~muscale.param.config.ParamConfig` or dict (multipliers, init stds,
    zero_readout, ...). ``head_dim``/``attention``/``attn_attr``: the attention logit
    scale (module docstring). The base model is never instantiated: only meta-device
    shells at three widths.
    """
    check_choice("optim_family", optim_family, FAMILIES)
    pcfg = _param_config(param, scheme, base_width)
    if base_width > width and not pcfg.allow_base_above_width:
        raise ConfigError(
            "param.base_width",
            base_width,
            f"must be <= the width {width} (or allow_base_above_width)",
        )
    inf = infer(build, width=width, base_width=base_width, roles=roles)
    head_dims = (head_dim(width), head_dim(base_width)) if head_dim is not None else None
    head_scales = head_dims is not None and head_dims[0] != head_dims[1]
    with torch.device(device):
        model = build(width)
    attn = _attention_modules(model, attention, attn_attr, head_scales)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    plan = plan_from_inferred(
        inf, shapes, pcfg, optim_family, head_dims=head_dims, attention=attn, attn_attr=attn_attr
    )
    _check_fills(model, _fills(inf.specs))
    init_parameters(model, plan, seed=seed)
    attach(model, plan)
    return model, plan


def plan_only(build: Build, **kwargs: Any) -> Plan:
    """The plan :func:`parametrize` would return, from meta builds only (nothing allocated)."""
    kwargs = {**kwargs, "device": "meta"}
    return parametrize(build, **kwargs)[1]


__all__ = ["meta_build", "parametrize", "plan_from_inferred", "plan_only"]
