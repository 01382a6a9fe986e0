"""Fully connected network, the setting of TP4/TP5's MLP experiments."""

from __future__ import annotations

from torch import Tensor, nn

from muscale.models.configs import MLPConfig
from muscale.models.layers import Linear, ScaledLinear, activation
from muscale.param.roles import ParamSpec, Role


class MLPBlock(nn.Module):
    """``W act(h)``, or ``h + branch · W act(h)`` when residual."""

    def __init__(
        self, width: int, *, bias: bool, act: str, residual: bool, branch: float, draw: bool = True
    ) -> None:
        super().__init__()
        self.act = activation(act)
        self.fc = Linear(width, width, bias=bias, draw=draw)
        self.residual = residual
        self.branch = float(branch)

    def forward(self, h: Tensor) -> Tensor:
        out = self.fc(self.act(h))
        return h + self.branch * out if self.residual else out


class MLP(nn.Module):
    """``draw=False``: layers built without torch's default init, as in
    :class:`~muscale.models.gpt.GPT` (for :func:`muscale.build.build_model`)."""

    def __init__(self, cfg: MLPConfig, mults: dict[str, float], *, draw: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = ScaledLinear(
            cfg.in_dim, cfg.width, bias=cfg.bias, mult=mults["input"], draw=draw
        )
        self.blocks = nn.ModuleList(
            MLPBlock(
                cfg.width,
                bias=cfg.bias,
                act=cfg.activation,
                residual=cfg.residual,
                branch=mults["branch"],
                draw=draw,
            )
            for _ in range(cfg.depth)
        )
        self.act = activation(cfg.activation)
        self.out = ScaledLinear(
            cfg.width, cfg.out_dim, bias=cfg.bias, mult=mults["output"], draw=draw
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, in_dim) -> (B, out_dim)
        h = self.inp(x)  # (B, width) pre-activation
        for block in self.blocks:
            h = block(h)
        return self.out(self.act(h))

    def param_specs(self) -> dict[str, ParamSpec]:
        c = self.cfg
        specs = {"inp.weight": ParamSpec(role=Role.INPUT, fan_in=c.in_dim, fan_out="width")}
        specs["out.weight"] = ParamSpec(
            role=Role.OUTPUT, fan_in="width", fan_out=c.out_dim, tag="readout"
        )
        if c.bias:
            specs["inp.bias"] = _bias("width")
            specs["out.bias"] = _bias(c.out_dim)
        for i in range(c.depth):
            specs[f"blocks.{i}.fc.weight"] = ParamSpec(
                role=Role.HIDDEN, fan_in="width", fan_out="width", block=i
            )
            if c.bias:
                specs[f"blocks.{i}.fc.bias"] = _bias("width", block=i)
        return specs


def _bias(dim: str | int, block: int | None = None) -> ParamSpec:
    return ParamSpec(role=Role.VECTOR, fan_in=dim, fan_out=dim, fill="zeros", block=block)
