"""Example: a user's own model under a coordinate check in CI (see the GitHub workflow).

``MyNet`` is an ordinary ``nn.Module``; it declares its parameters' roles and muscale's plan
gives it μP (init, readout multiplier, per-tensor Adam LR). The ``coord_check`` fixture comes
from muscale's pytest plugin and fails the test listing the modules that do not scale.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from muscale.optim.config import OptimConfig
from muscale.param.config import ParamConfig
from muscale.param.init import init_parameters
from muscale.param.plan import ShapeInfo, forward_multipliers, make_plan
from muscale.param.roles import ParamSpec, Role


class MyNet(nn.Module):
    def __init__(self, width: int, out_mult: float) -> None:
        super().__init__()
        self.enc = nn.Linear(16, width)
        self.hid = nn.Linear(width, width)
        self.head = nn.Linear(width, 4)
        self.out_mult = out_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hid(torch.relu(self.enc(x)))
        return self.head(torch.relu(h) * self.out_mult)


SPECS = {
    "enc.weight": ParamSpec(role=Role.INPUT, fan_in=16, fan_out="width"),
    "enc.bias": ParamSpec(role=Role.VECTOR, fan_in="width", fan_out="width", fill="zeros"),
    "hid.weight": ParamSpec(role=Role.HIDDEN, fan_in="width", fan_out="width"),
    "hid.bias": ParamSpec(role=Role.VECTOR, fan_in="width", fan_out="width", fill="zeros"),
    "head.weight": ParamSpec(role=Role.OUTPUT, fan_in="width", fan_out=4, tag="readout"),
    "head.bias": ParamSpec(role=Role.VECTOR, fan_in=4, fan_out=4, fill="zeros"),
}


def build(width: int, seed: int):
    pcfg = ParamConfig(scheme="mup", base_width=64)
    shape = ShapeInfo(
        dims={"width": width}, base_dims={"width": 64}, width_dim="width", depth=1, base_depth=1
    )
    model = MyNet(width, forward_multipliers(pcfg, "adam", shape)["output"])
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    plan = make_plan(SPECS, shapes, shape, pcfg, "adam")
    init_parameters(model, plan, seed=seed)
    return model, plan


@pytest.mark.coord_check
def test_my_net_is_mup(coord_check):
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g))
    coord_check(
        build,
        [64, 128, 256, 512],
        batch=batch,
        optimizer=OptimConfig(name="adam", lr=0.01),
        points={"enc": "embed", "hid": "hidden", "head": "logits"},
    )
