"""The per-parameter plan: the only bridge between the rule table, models and optimizers.

A :class:`Plan` is plain, JSON-serialisable data (one :class:`ParamPlan` per tensor, plus
the model-level forward multipliers). It is stored with checkpoints and sweep trials, and
nothing is stashed on tensors, so it survives ``torch.save``, ``torch.compile``, DDP and
FSDP (unlike mup's ``p.infshape``; mup issues #59, #60).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from muscale.errors import ConfigError, UserError
from muscale.param.config import ParamConfig
from muscale.param.guards import check_model_param
from muscale.param.roles import ParamSpec, Role
from muscale.param.rules import ATTN_SCALE_EXP, depth_rule, width_rule


@dataclass(frozen=True, kw_only=True)
class ParamPlan:
    """Everything muscale decides about one tensor.

    ``lr_scale``/``eps_scale`` multiply the optimizer's base LR/eps; ``wd_scale`` is 1 for
    decayed tensors and 0 for vectors (how the decay is applied depends on the optimizer's
    ``wd_mode``, see :mod:`muscale.optim.groups`).
    """

    name: str
    role: str
    shape: tuple[int, ...]
    width_mult: float
    depth_mult: float
    block: int | None
    init: str  # "normal" | "orthogonal" | "zeros" | "ones"
    init_std: float
    multiplier: float
    lr_scale: float
    eps_scale: float
    wd_scale: float


@dataclass(kw_only=True)
class Plan:
    scheme: str
    optim_family: str
    depth_alpha: float
    params: list[ParamPlan]
    multipliers: dict[str, float] = field(default_factory=dict)
    shape: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ParamPlan:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def by_name(self) -> dict[str, ParamPlan]:
        return {p.name: p for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        try:
            params = [ParamPlan(**{**p, "shape": tuple(p["shape"])}) for p in d["params"]]
            return cls(
                scheme=d["scheme"],
                optim_family=d["optim_family"],
                depth_alpha=float(d["depth_alpha"]),
                params=params,
                multipliers=dict(d.get("multipliers", {})),
                shape=dict(d.get("shape", {})),
            )
        except (KeyError, TypeError) as exc:
            raise UserError(f"not a muscale plan: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class ShapeInfo:
    """Model dimensions at the model's width and at the base width, and the depths."""

    dims: dict[str, int]
    base_dims: dict[str, int]
    width_dim: str
    depth: int
    base_depth: int

    def mult(self, dim: str | int) -> float:
        """Width multiplier n/n0 of a dimension (1 for fixed integer dims)."""
        if isinstance(dim, int):
            return 1.0
        return self.dims[dim] / self.base_dims[dim]

    def base(self, dim: str | int) -> int:
        return dim if isinstance(dim, int) else self.base_dims[dim]

    @property
    def depth_mult(self) -> float:
        return self.depth / self.base_depth


def shape_info(model_cfg: Any, param_cfg: ParamConfig) -> ShapeInfo:
    """Compare the model's dims at its width and at ``param.base_width``."""
    check_model_param(model_cfg, param_cfg)
    width, base = model_cfg.width, param_cfg.base_width
    if base > width and not param_cfg.allow_base_above_width:
        raise ConfigError(
            "param.base_width",
            base,
            f"must be <= model.width={width} (proxies are smaller than targets); "
            "set param.allow_base_above_width=true to allow it",
        )
    dims = model_cfg.dims(width)
    try:
        base_dims = model_cfg.dims(base)
    except ConfigError as exc:
        raise ConfigError("param.base_width", base, str(exc)) from exc
    base_depth = param_cfg.base_depth or model_cfg.depth
    return ShapeInfo(
        dims=dims,
        base_dims=base_dims,
        width_dim=next(iter(dims)),
        depth=model_cfg.depth,
        base_depth=base_depth,
    )


def forward_multipliers(param_cfg: ParamConfig, family: str, shape: ShapeInfo) -> dict[str, float]:
    """Model-level forward multipliers (plain floats the model stores).

    ``output``: alpha_out · m^mult(output) — 1/m under μP (TP5 Table 8). ``attn_scale``:
    alpha_attn/sqrt(d_head0) · m_head^e with e = -1/2 (SP/NTK: 1/sqrt(d)) or -1 (μP: 1/d).
    ``branch``: m_L^-alpha on every residual branch (depth rules).
    """
    scheme = param_cfg.scheme
    m = shape.mult(shape.width_dim)
    out = param_cfg.output_mult * m ** width_rule(scheme, Role.OUTPUT, family).mult
    mults = {
        "input": float(param_cfg.input_mult),
        "output": float(out),
        "branch": float(shape.depth_mult ** depth_rule(param_cfg.depth_alpha, family).branch),
    }
    if "head_dim" in shape.dims:
        d0 = shape.base_dims["head_dim"]
        m_h = shape.mult("head_dim")
        mults["attn_scale"] = param_cfg.attn_mult / math.sqrt(d0) * m_h ** ATTN_SCALE_EXP[scheme]
    return mults


def _role_mult(spec: ParamSpec, shape: ShapeInfo) -> float:
    """Fan-in multiplier for hidden/output, fan-out for input/vector (mup's convention)."""
    dim = spec.fan_in if spec.role in (Role.HIDDEN, Role.OUTPUT) else spec.fan_out
    return shape.mult(dim)


def _base_std(spec: ParamSpec, base_std: Mapping[Role, float | None], shape: ShapeInfo) -> float:
    """Init std at the base width: the configured one, else 1/sqrt(base fan-in).

    A tied embedding (``tag="tied_readout"``) is also the readout, whose default is
    1/sqrt(base d_model) (its fan-in as a readout is the embedding's fan-out). The readout
    meets each token's own row in the residual stream, so that token's logit is about
    ``(alpha_out/m) · n · std² / rms(x) = alpha_out · n0 · std² / rms(x)``: Θ(1) in width
    for any fixed std (μP's init exponent is 0 for both roles), but with the embedding's
    std 1 it is ≈ n0/2 (measured 32 at n0 = 64: an initial loss of 33 nats for a 256-token
    vocabulary); std = 1/sqrt(n0) makes it ≈ alpha_out. An explicit ``init_std.input``
    still wins, then ``init_std.output``."""
    std0 = base_std[spec.role]
    if std0 is None and spec.tag == "tied_readout":
        std0 = base_std[Role.OUTPUT]
        if std0 is None:
            return 1.0 / math.sqrt(shape.base(spec.fan_out))
    if std0 is None:
        std0 = 1.0 / math.sqrt(shape.base(spec.fan_in))
    return std0


def make_plan(
    specs: Mapping[str, ParamSpec],
    shapes: Mapping[str, tuple[int, ...]],
    shape: ShapeInfo,
    param_cfg: ParamConfig,
    family: str,
) -> Plan:
    """Apply the rule table to every declared parameter.

    ``shapes`` is every trainable tensor of the model (name -> shape); a tensor without a
    spec is an error that names it (a tensor the table cannot scale is a silent μP bug).
    """
    missing = [n for n in shapes if n not in specs]
    if missing:
        raise UserError(
            f"parameter {missing[0]!r} has no role: declare it in the model's param_specs() "
            f"(roles: {', '.join(r.value for r in Role)})"
        )
    scheme = param_cfg.scheme
    mults = forward_multipliers(param_cfg, family, shape)
    d_rule = depth_rule(param_cfg.depth_alpha, family)
    zero_tags = {
        "readout": scheme == "mup" and param_cfg.zero_readout,
        "query": scheme == "mup" and param_cfg.zero_query,
    }
    base_std = {
        Role.INPUT: param_cfg.init_std.input,
        Role.HIDDEN: param_cfg.init_std.hidden,
        Role.OUTPUT: param_cfg.init_std.output,
    }
    params = []
    for name, shp in shapes.items():
        spec = specs[name]
        rule = width_rule(scheme, spec.role, family)
        m = _role_mult(spec, shape)
        m_l = shape.depth_mult if spec.block is not None else 1.0
        d_lr = m_l**d_rule.lr
        d_eps = m_l**d_rule.eps
        if spec.fill is not None:
            init, std = spec.fill, 0.0
        elif zero_tags.get(spec.tag or "", False):
            init, std = "zeros", 0.0
        else:
            std0 = _base_std(spec, base_std, shape)
            init, std = param_cfg.init_dist, std0 * m**rule.init
            if init == "orthogonal" and len(shp) != 2:
                init = "normal"
        multiplier = {Role.INPUT: mults["input"], Role.OUTPUT: mults["output"]}.get(spec.role, 1.0)
        eps_scale = m**rule.eps * d_eps if param_cfg.scale_eps else 1.0
        params.append(
            ParamPlan(
                name=name,
                role=spec.role.value,
                shape=tuple(int(s) for s in shp),
                width_mult=float(m),
                depth_mult=float(m_l),
                block=spec.block,
                init=init,
                init_std=float(std),
                multiplier=float(multiplier),
                lr_scale=float(m**rule.lr * d_lr),
                eps_scale=float(eps_scale),
                wd_scale=0.0 if spec.role == Role.VECTOR else 1.0,
            )
        )
    return Plan(
        scheme=scheme,
        optim_family=family,
        depth_alpha=float(param_cfg.depth_alpha),
        params=params,
        multipliers=mults,
        shape={
            "dims": shape.dims,
            "base_dims": shape.base_dims,
            "depth": shape.depth,
            "base_depth": shape.base_depth,
        },
    )
