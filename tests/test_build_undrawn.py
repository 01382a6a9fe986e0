"""``build_model`` skips torch's default init (``draw=False``) because the plan overwrites
every parameter in full: the models it returns are bit-identical to models built with
torch's init and then initialised from the plan, for every scheme and option that decides
what a parameter is (biases, norms, tied and learned embeddings, zero_readout/zero_query,
orthogonal init, depth rules, SwiGLU, GQA)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

from muscale.build import build_model, plan_for
from muscale.models import FAMILIES
from muscale.models.configs import GPTConfig, MLPConfig
from muscale.models.layers import Linear, ScaledEmbedding, ScaledLinear
from muscale.param.config import ParamConfig
from muscale.param.init import init_parameters
from muscale.param.plan import forward_multipliers, shape_info

GPT = GPTConfig(width=64, depth=2, n_heads=4, vocab_size=96, seq_len=16)
MLP = MLPConfig(width=64, depth=2, in_dim=12, out_dim=5)
CASES = [
    (GPT, ParamConfig(scheme="mup", base_width=32)),
    (GPT, ParamConfig(scheme="mup", base_width=32, zero_readout=True, zero_query=True)),
    (GPT, ParamConfig(scheme="sp", base_width=32, init_dist="orthogonal")),
    (GPT, ParamConfig(scheme="ntk", base_width=32)),
    (
        dataclasses.replace(GPT, tie_embeddings=True, norm="layernorm", bias=True),
        ParamConfig(scheme="mup", base_width=32, zero_readout=True),
    ),
    (
        dataclasses.replace(GPT, pos="learned", mlp="swiglu", q_per_kv=2, depth=3),
        ParamConfig(scheme="mup", base_width=32, base_depth=2, depth_alpha=0.5),
    ),
    (MLP, ParamConfig(scheme="mup", base_width=32)),
    (
        dataclasses.replace(MLP, residual=True, bias=False, depth=3),
        ParamConfig(scheme="mup", base_width=32, base_depth=2, depth_alpha=1.0),
    ),
    (MLP, ParamConfig(scheme="sp", base_width=32, init_dist="orthogonal")),
]
IDS = [f"{type(m).__name__}-{p.scheme}-{i}" for i, (m, p) in enumerate(CASES)]


def _drawn_then_planned(mcfg, pcfg, seed: int, *, poison: bool = False) -> nn.Module:
    """The model as build_model made it before ``draw=False``: torch's default init (under
    whatever global RNG state the caller left), then the plan's init. ``poison=True`` builds
    undrawn and fills every parameter with NaN first, so any element the plan's init did not
    write would show."""
    shape = shape_info(mcfg, pcfg)
    mults = forward_multipliers(pcfg, "adam", shape)
    model = FAMILIES[mcfg.family][1](mcfg, mults, draw=not poison)
    if poison:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    init_parameters(model, plan_for(model, pcfg, "adam", shape=shape), seed=seed)
    return model


def _assert_identical(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name  # bit-identical (NaN would differ)


@pytest.mark.parametrize("mcfg,pcfg", CASES, ids=IDS)
def test_undrawn_build_equals_drawn_then_planned(mcfg, pcfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SP/NTK guards' warnings are not the subject here
        torch.manual_seed(123)
        ours, _ = build_model(mcfg, pcfg, seed=3)
        torch.manual_seed(7)  # another RNG state for torch's draw: the plan erases it
        drawn = _drawn_then_planned(mcfg, pcfg, seed=3)
        poisoned = _drawn_then_planned(mcfg, pcfg, seed=3, poison=True)
    _assert_identical(ours, drawn)
    _assert_identical(ours, poisoned)
    if getattr(mcfg, "tie_embeddings", False):
        assert ours.lm_head.weight is ours.wte.weight


def test_reset_parameters_still_draws_like_torch():
    """Only construction skips the draw: a later reset_parameters() is torch's."""
    for ours, ref in [
        (lambda: Linear(8, 5, bias=True, draw=False), lambda: nn.Linear(8, 5)),
        (lambda: ScaledLinear(8, 5, bias=True, mult=0.5, draw=False), lambda: nn.Linear(8, 5)),
        (lambda: ScaledEmbedding(9, 4, mult=2.0, draw=False), lambda: nn.Embedding(9, 4)),
    ]:
        a, b = ours(), ref()
        torch.manual_seed(0)
        a.reset_parameters()
        torch.manual_seed(0)
        b.reset_parameters()
        _assert_identical(a, b)
    torch.manual_seed(0)
    drawn = Linear(8, 5, bias=True)  # draw=True is nn.Linear's init
    torch.manual_seed(0)
    _assert_identical(drawn, nn.Linear(8, 5))
